"""tools.eval_table: the README's table from a metrics.json, old and new."""

from __future__ import annotations

import json

from tools import eval_table


def _global(**extra) -> dict:
    return {'policy': 'global', 'accuracy': 0.7, 'retransmission_rate': 0.0,
            'accuracy_by_kind': {'text': 0.03, 'color': 0.9, 'presence': 0.95},
            'uplink_bytes_mean': 3100.0, 'llm_tokens_mean': 84.0, 'roi_hit_rate_text': None,
            'min_entropy_auroc': 0.98, 'min_entropy_auroc_text': 0.748, **extra}


def test_prints_the_text_auroc_with_its_interval(tmp_path, capsys):
    path = tmp_path / 'metrics.json'
    path.write_text(json.dumps([_global(min_entropy_auroc_text_ci95=[0.577, 0.905],
                                        n_first_right_text=7)]))
    assert eval_table.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert '| global | 70.0 | 3.0 | 90.0 | 95.0 | 3100 | 0.0 | 84.0 | n/a |' in out
    assert ('text questions 0.748 (95% bootstrap interval 0.58-0.91, 7 right global answers)'
            in out)


def test_reads_a_metrics_file_written_before_the_interval(tmp_path, capsys):
    path = tmp_path / 'metrics.json'
    path.write_text(json.dumps(_global()))  # one object, no interval fields
    assert eval_table.main([str(path)]) == 0
    assert 'text questions 0.748\n' in capsys.readouterr().out
