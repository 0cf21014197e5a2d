"""One server of three cameras on the in-memory transport, each edge publishing only on
request and scoring its view (scripted scores): only the selected views' frames cross, every
byte of the selection is on the Answer, a lost edge or a bad request is a status."""

from __future__ import annotations

from node_harness import Rig, ScriptedScorer, status
import pytest

from colvlm_msgs import stamps
from colvlm_msgs.typesupport import message_class

CAMERAS = ('/robot/front', '/robot/left', '/robot/right')
QUESTION = 'What is written on the red sign?'


@pytest.fixture
def rig():
    made = []

    def build(scores=(0.1, 0.9, 0.3), **server_params) -> Rig:
        scorers = {camera: ScriptedScorer(score)
                   for camera, score in zip(CAMERAS, scores, strict=True)}
        made.append(Rig(namespace='robot', cameras=CAMERAS, scorers=scorers,
                        edge_params={'publish.mode': 'on_request'}, **server_params))
        for camera in CAMERAS:  # each edge has read a frame; none is published yet
            made[-1].feed(camera, wait=False)
        return made[-1]

    yield build
    for one in made:
        one.close()


def _sent(setup: Rig) -> dict[str, int]:
    return {camera.rsplit('/', 1)[1]: edge.uplink.messages.get('global', 0)
            for camera, edge in setup.edges.items()}


def test_only_the_best_scored_view_crosses_the_link(rig):
    setup = rig()
    answer = setup.ask(QUESTION)
    assert status(answer) == 'OK', answer.status_message
    assert (list(answer.views_sent), answer.view_selection) == (['left'], 'learned')
    assert answer.camera == '/robot/left'
    assert _sent(setup) == {'front': 0, 'left': 1, 'right': 0}
    scores = sum(edge.uplink.bytes['score'] for edge in setup.edges.values())
    assert answer.uplink_score_bytes == scores > 0
    assert answer.uplink_global_bytes == setup.edges['/robot/left'].uplink.bytes['global']
    assert answer.uplink_bytes == answer.uplink_global_bytes + answer.uplink_score_bytes
    assert answer.downlink_bytes > 0  # three score requests
    assert answer.select_ms > 0 and 'by learned' in answer.status_message


def test_several_views_count_every_frame_and_keep_the_surest_answer(rig):
    setup = rig(scores=(0.1, 0.9, 0.7), **{'views.max_selected': 2})
    answer = setup.ask(QUESTION)
    assert status(answer) == 'OK', answer.status_message
    assert sorted(answer.views_sent) == ['left', 'right']
    sent = setup.edges['/robot/left'].uplink.bytes['global'] + \
        setup.edges['/robot/right'].uplink.bytes['global']
    assert answer.uplink_global_bytes == sent  # the unkept view's frame crossed too
    assert answer.uplink_bytes == sent + answer.uplink_score_bytes


def test_a_view_named_in_the_question_needs_no_scores(rig):
    setup = rig()
    answer = setup.ask(f'{QUESTION} (right camera)')
    assert status(answer) == 'OK', answer.status_message
    assert (list(answer.views_sent), answer.view_selection) == (['right'], 'lexical')
    assert answer.uplink_score_bytes == 0
    assert all('score' not in edge.uplink.bytes for edge in setup.edges.values())
    assert _sent(setup) == {'front': 0, 'left': 0, 'right': 1}


def test_a_query_naming_a_camera_is_answered_about_it(rig):
    answer = rig().ask('What colour is the circle?', camera='front')
    assert status(answer) == 'OK', answer.status_message
    assert (list(answer.views_sent), answer.view_selection) == (['front'], 'query')
    assert answer.camera == '/robot/front'


def test_no_view_scoring_high_enough_falls_back_to_every_view(rig):
    answer = rig(scores=(0.1, 0.2, 0.3)).ask(QUESTION)
    assert status(answer) == 'OK', answer.status_message
    assert sorted(answer.views_sent) == ['front', 'left', 'right']
    assert answer.view_selection.startswith('fallback')


@pytest.mark.parametrize('camera, frame_stamp, message', [
    ('back', 0, "unknown camera 'back'; this server answers about '/robot/front', "),
    ('', 12345, 'a frame_stamp names a frame of one camera'),
])
def test_bad_requests_name_the_culprit(rig, camera, frame_stamp, message):
    stamp = stamps.fill(message_class('builtin_interfaces/msg/Time')(), frame_stamp)
    answer = rig().ask(QUESTION, camera=camera, frame_stamp=stamp)
    assert status(answer) == 'BAD_REQUEST'
    assert message in answer.status_message and '\n' not in answer.status_message
    assert answer.camera == ''


def test_a_lost_edge_is_skipped_and_the_server_keeps_serving(rig):
    setup = rig(**{'frame.fresh_timeout_s': 1.0, 'views.score_timeout_s': 1.0})
    setup.edges['/robot/front'].node.shutdown()
    answer = setup.ask(QUESTION)
    assert status(answer) == 'OK', answer.status_message
    assert list(answer.views_sent) == ['left']
    gone = setup.ask(f'{QUESTION} (front camera)')
    assert status(gone) == 'NO_FRAME'
    assert '(lexical: front: no fresh frame' in gone.status_message
    assert '\n' not in gone.status_message and gone.uplink_bytes == 0
    assert status(setup.ask(QUESTION)) == 'OK'


def test_a_failing_scorer_costs_only_its_view(rig):
    setup = rig(scores=(RuntimeError('tower failed'), 0.9, 0.3))
    answer = setup.ask(QUESTION)
    assert status(answer) == 'OK', answer.status_message
    assert list(answer.views_sent) == ['left']
