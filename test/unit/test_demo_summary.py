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


def test_questions_read_well_and_exit_codes_read_as_words():
    from colvlm_bench.demo_report import display_question, exit_codes_line

    assert display_question('Is there a orange square?') == 'Is there an orange square?'
    assert display_question('Is there a red star?') == 'Is there a red star?'
    assert exit_codes_line({'server': 0, 'edge': -9}) == \
        'demo: the server exited 0, the edge was stopped by signal 9'


def test_every_crop_is_drawn_with_boxes_that_show_on_their_own_colour(tmp_path):
    import cv2
    import numpy as np

    from colvlm_bench.demo_report import draw_rois, write_report

    blue = np.full((120, 160, 3), (255, 80, 0), np.uint8)  # BGR: a sign as blue as the box
    (tmp_path / 'scene.png').write_bytes(cv2.imencode('.png', blue)[1].tobytes())
    roi = {'x_offset': 20, 'y_offset': 20, 'width': 80, 'height': 60}
    answers = []
    for k, said in enumerate(('red', 'blue', 'red', 'green', 'red', 'red')):
        question = Question(f'q{k}', 'scene.png', 'Is there a orange square?', ('red',),
                            'color', (30, 30, 90, 70))
        reply = {**_reply('OK', 'LOCAL_CROP'), 'answer': said, 'roi': roi,
                 'first_pass': {'min_entropy': 0.2}}
        answers.append((question, 'entropy', reply))
    drawn = draw_rois(tmp_path / 'images', tmp_path, answers)
    assert [name for _, _, name in drawn] == [f'q{k}.jpg' for k in range(6)]  # wrong ones too
    image = cv2.imread(str(tmp_path / 'images' / 'q1.jpg'))
    # Across the evidence box's left edge (x = 30) on the blue sign: dark and light pixels.
    row = image[50, 24:37].astype(int).sum(axis=1)
    assert row.min() < 150 and row.max() > 600
    summary = summarize_live(answers)
    assert round(summary['entropy']['accuracy_percent'], 1) == 66.7
    write_report(tmp_path, summary, answers, None, drawn)
    report = (tmp_path / 'report.md').read_text()
    assert '| scene | question |' in report and '| scene.png | Is there an orange square? |' \
        in report
    assert '| entropy | 6/6 | 66.7 |' in report
    assert all(f'](images/q{k}.jpg)' in report for k in range(6))
