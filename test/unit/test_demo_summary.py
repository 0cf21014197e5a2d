"""How `colvlm demo` judges and sums up its answers: degraded means any status but OK or a
fallback, and the summary says how many of the entropy answers were."""

from __future__ import annotations

from colvlm_bench.demo_report import degraded, print_summary, summarize_live
from colvlm_bench.glyphvqa.questions import Question


def _reply(status: str, decision: str, uplink: int = 1000) -> dict:
    return {'answer': 'red', 'status_name': status, 'decision_name': decision,
            'uplink_bytes': uplink, 'total_ms': 10.0}


def test_degraded_answers_are_counted_per_policy(capsys):
    question = Question('q1', 'scene.png', 'What colour is the sign?', ('red',), 'color', None)
    answers = [(question, 'entropy', _reply('OK', 'GLOBAL')),
               (question, 'entropy', _reply('CROP_UNAVAILABLE', 'FALLBACK')),
               (question, 'entropy', _reply('NO_FRAME', 'NONE', 0)),
               (question, 'always', _reply('OK', 'LOCAL_CROP', 3000))]
    assert [degraded(reply) for _, _, reply in answers] == [False, True, True, False]
    summary = summarize_live(answers)
    assert (summary['entropy']['n'], summary['entropy']['ok'], summary['entropy']['degraded']) \
        == (3, 1, 2)
    assert summary['always']['retransmission_rate'] == 1.0
    print_summary(summary)
    printed = capsys.readouterr().out
    assert '2 of 3 entropy answers were degraded' in printed
    assert 'entropy vs always' in printed
