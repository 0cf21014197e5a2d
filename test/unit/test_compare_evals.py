"""tools.compare_evals: two eval runs compared question by question."""

from __future__ import annotations

import json
import math

import pytest

from tools import compare_evals


def _record(question_id: str, kind: str, correct: bool, policy: str = 'global',
            entropy: float = 1.0, first_correct: bool | None = None, **extra) -> dict:
    return {'id': question_id, 'kind': kind, 'question': f'q {question_id}', 'policy': policy,
            'threshold': None, 'random_rate': None, 'correct': correct,
            'first_correct': correct if first_correct is None else first_correct,
            'min_entropy': entropy, **extra}


def _write(folder, records) -> None:
    folder.mkdir()
    (folder / 'records.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))


def test_sign_test_matches_the_binomial_tail():
    assert compare_evals.sign_test(6, 3) == pytest.approx(2 * 130 / 512)  # C(9, 0..3)
    assert compare_evals.sign_test(3, 6) == compare_evals.sign_test(6, 3)
    assert compare_evals.sign_test(10, 0) == pytest.approx(2 / 1024)
    assert compare_evals.sign_test(4, 4) == 1.0
    assert compare_evals.sign_test(0, 0) == 1.0
    # Thousands of discordant questions: exact integers, no overflow, a tiny p.
    assert 0.0 <= compare_evals.sign_test(2000, 1000) < 1e-60
    with pytest.raises(ValueError, match='non-negative'):
        compare_evals.sign_test(-1, 2)


def test_counts_gained_and_lost_per_kind(tmp_path):
    a = [_record('1', 'text', False), _record('2', 'text', True), _record('3', 'color', True),
         _record('4', 'color', False)]
    b = [_record('1', 'text', True), _record('2', 'text', True), _record('3', 'color', False),
         _record('4', 'color', False), _record('5', 'color', True)]  # 5: only in B, left out
    _write(tmp_path / 'a', a)
    _write(tmp_path / 'b', b)
    rows = compare_evals.compare_accuracy(compare_evals.load_run(tmp_path / 'a'),
                                          compare_evals.load_run(tmp_path / 'b'))
    by_kind = {r['kind']: r for r in rows}
    assert [r['kind'] for r in rows] == ['all', 'color', 'text']
    assert (by_kind['text']['gained'], by_kind['text']['lost']) == (1, 0)
    assert (by_kind['color']['gained'], by_kind['color']['lost']) == (0, 1)
    assert by_kind['all']['n'] == 4
    assert by_kind['all']['accuracy_a'] == by_kind['all']['accuracy_b'] == 0.5
    assert by_kind['all']['p'] == 1.0


def test_the_auroc_difference_interval_sees_a_better_ranking(tmp_path):
    # A's entropies say nothing about its errors; B's rank every wrong answer above every right
    # one. Both answer the same questions right, so only the ranking differs.
    right = [i % 3 == 0 for i in range(60)]
    a = [_record(str(i), 'color', ok, entropy=float(i % 7)) for i, ok in enumerate(right)]
    b = [_record(str(i), 'color', ok, entropy=0.1 if ok else 2.0 + i / 100)
         for i, ok in enumerate(right)]
    rows = compare_evals.compare_auroc({'global': {r['id']: r for r in a}},
                                       {'global': {r['id']: r for r in b}}, resamples=300)
    [color] = rows
    assert color['kind'] == 'color' and color['right_a'] == color['right_b'] == 20
    assert color['auroc_b'] == 1.0 and color['auroc_a'] < 0.7
    low, high = color['difference_ci95']
    assert 0.0 < low <= high


def test_identical_runs_differ_by_nothing(tmp_path):
    records = [_record(str(i), 'text', i % 4 == 0, entropy=float((i * 7) % 11))
               for i in range(40)]
    run = {'global': {r['id']: r for r in records}}
    [row] = compare_evals.compare_auroc(run, run, resamples=200)  # one kind, one row
    assert row['kind'] == 'text'
    assert row['auroc_a'] == row['auroc_b']
    assert row['difference_ci95'] == (0.0, 0.0)


def test_no_right_answers_gives_no_auroc_and_no_interval():
    records = [_record(str(i), 'text', False, entropy=float(i)) for i in range(10)]
    run = {'global': {r['id']: r for r in records}}
    [row] = compare_evals.compare_auroc(run, run, resamples=50)
    assert math.isnan(row['auroc_a']) and row['difference_ci95'] is None
    assert 'n/a' in compare_evals.report([], [row])


def test_a_sweep_run_is_refused_by_name(tmp_path):
    _write(tmp_path / 'sweep', [_record('1', 'text', True, policy='entropy', threshold=0.1),
                                _record('1', 'text', True, policy='entropy', threshold=0.2)])
    with pytest.raises(compare_evals.CompareError, match=r"sweep.*2 settings of policy 'entropy'"):
        compare_evals.load_run(tmp_path / 'sweep')


def test_a_malformed_line_is_named(tmp_path):
    folder = tmp_path / 'bad'
    folder.mkdir()
    (folder / 'records.jsonl').write_text(json.dumps(_record('1', 'text', True)) + '\n{oops\n')
    with pytest.raises(compare_evals.CompareError, match=r'records.jsonl:2: not a colvlm eval'):
        compare_evals.load_run(folder)


def test_different_data_sets_are_refused(tmp_path):
    _write(tmp_path / 'a', [_record('1', 'text', True)])
    _write(tmp_path / 'b', [dict(_record('1', 'text', True), question='another question')])
    assert compare_evals.main([str(tmp_path / 'a'), str(tmp_path / 'b')]) == 2


def test_main_prints_both_tables(tmp_path, capsys):
    _write(tmp_path / 'a', [_record('1', 'text', False), _record('2', 'text', True)])
    _write(tmp_path / 'b', [_record('1', 'text', True), _record('2', 'text', True)])
    assert compare_evals.main([str(tmp_path / 'a'), str(tmp_path / 'b'),
                               '--resamples', '20']) == 0
    out = capsys.readouterr().out
    assert '| global | text | 2 | 50.0 | 100.0 | 1 | 0 | 1 |' in out
    assert '| kind | questions | AUROC A (right) |' in out


def test_a_missing_folder_is_one_line(tmp_path, capsys):
    assert compare_evals.main([str(tmp_path / 'absent'), str(tmp_path / 'absent')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'absent: no such records file' in err
