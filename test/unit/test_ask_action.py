"""colvlm/ask as an action, on the in-memory transport: a raw client speaking rcl_action's
wire (the send_goal, get_result and cancel_goal services, the feedback and status topics,
types from Ask.action through colvlm's typesupport) gets one feedback per stage and the
Answer; a cancel answers at once with a status. Over DDS between processes:
test/integration/test_ask_action_over_dds.py."""

from __future__ import annotations

import threading
import time
import uuid

from action_client import (
    CANCELED,
    ERROR_GOAL_TERMINATED,
    ERROR_NONE,
    ERROR_UNKNOWN_GOAL_ID,
    SUCCEEDED,
    UNKNOWN,
    RawAskClient,
)
from node_harness import TIMEOUT_S, UNSURE, Rig, ScriptedVlm, status
import pytest

from colvlm_edge.token_encoder import TokenLayerEncoder
from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision
from colvlm_msgs.token_codec import TokenCodec
from colvlm_server.token_layers import LayerOptions


class HeldVlm(ScriptedVlm):
    """The scripted model, whose first pass waits until the test lets it go."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def generate(self, images, question, **kwargs):
        assert self.release.wait(TIMEOUT_S)
        return super().generate(images, question, **kwargs)


@pytest.fixture
def rig():
    made = []

    def build(*args, **kwargs):
        made.append(Rig(*args, **kwargs))
        return made[-1], RawAskClient(made[-1].client)

    yield build
    for one in made:
        one.close()


def test_an_unsure_goal_reports_every_stage_of_the_crop_path_then_its_answer(rig):
    setup, client = rig()
    stamp = setup.feed()
    goal_id, accepted = client.send_goal(f'{UNSURE}: what is on the sign?')
    assert accepted.accepted and stamps.to_ns(accepted.stamp) > 0
    response = client.get_result(goal_id)
    assert response.status == SUCCEEDED
    answer = response.result.answer
    assert status(answer) == 'OK' and answer.decision == Decision.LOCAL_CROP
    assert answer.query_id == 'q1' and answer.answer == 'crop'
    assert client.stages(goal_id, until='second_pass') == [
        'frame', 'first_pass', 'crop_requested', 'crop_received', 'second_pass']
    feedback = {f.stage_name: f for f in client.feedback[goal_id]}
    first = feedback['first_pass']
    assert first.stage == first.STAGE_FIRST_PASS and first.refine and first.refinement == 'crop'
    assert first.min_entropy > first.gate_threshold > 0 and first.answer == 'global'
    assert all(stamps.to_ns(f.frame_stamp) == stamp and f.camera == '/cam0'
               for f in feedback.values())
    assert feedback['crop_requested'].roi.width > 0
    assert feedback['crop_received'].roi == answer.roi  # the box the edge actually cut
    assert feedback['crop_received'].uplink_bytes > feedback['first_pass'].uplink_bytes
    assert feedback['second_pass'].answer == 'crop' and not feedback['second_pass'].refine
    client.wait_status(goal_id, SUCCEEDED)


def test_a_sure_goal_stops_after_the_first_pass(rig):
    setup, client = rig()
    setup.feed()
    goal_id, _ = client.send_goal('What is written on the sign?')
    answer = client.get_result(goal_id).result.answer
    assert answer.decision == Decision.GLOBAL
    assert client.stages(goal_id, until='first_pass') == ['frame', 'first_pass']
    assert not client.feedback[goal_id][-1].refine
    assert client.feedback[goal_id][-1].refinement == 'none'


def test_a_bad_request_is_answered_with_its_status_and_no_stage(rig):
    _, client = rig()
    goal_id, accepted = client.send_goal('   ')
    response = client.get_result(goal_id)
    assert accepted.accepted and response.status == SUCCEEDED
    assert status(response.result.answer) == 'BAD_REQUEST'
    assert client.feedback.get(goal_id) is None


def test_cancel_while_waiting_for_the_edge_answers_at_once_and_drops_the_query(rig):
    backend = ScriptedVlm()
    setup, client = rig(backend, **{'frame.fresh_timeout_s': 120.0})
    goal_id, _ = client.send_goal('What is written on the sign?')
    cancelled = client.cancel_goal(goal_id)
    assert cancelled.return_code == ERROR_NONE
    assert [bytes(g.goal_id.uuid) for g in cancelled.goals_canceling] == [goal_id]
    # The edge has sent nothing, and the server would wait for it for two minutes.
    response = client.get_result(goal_id)
    assert response.status == CANCELED
    answer = response.result.answer
    assert status(answer) == 'CANCELED' and answer.query_id == 'q1'
    assert 'cancelled by the caller' in answer.status_message
    client.wait_status(goal_id, CANCELED)
    # The frame comes: the query, still waiting for it, is dropped before any pass.
    setup.feed()
    assert _wait_for(lambda: setup.server.counts.get('CANCELED') == 1)
    assert backend.calls == []
    assert client.cancel_goal(goal_id).return_code == ERROR_GOAL_TERMINATED


def test_cancel_during_a_pass_ends_the_goal_before_the_crop_is_asked(rig):
    backend = HeldVlm()
    setup, client = rig(backend)
    setup.feed()
    goal_id, _ = client.send_goal(f'{UNSURE}: what is on the sign?')
    assert client.stages(goal_id, until='frame') == ['frame']
    assert client.cancel_goal(goal_id).return_code == ERROR_NONE
    response = client.get_result(goal_id)  # while the model is still held in its first pass
    assert response.status == CANCELED
    assert response.result.answer.status_message == 'cancelled by the caller after frame'
    backend.release.set()
    assert _wait_for(lambda: setup.server.counts.get('CANCELED') == 1)
    assert len(backend.calls) == 1  # the first pass ran; no crop, no second pass
    assert client.stages(goal_id) == ['frame']


def test_unknown_goals_and_reused_ids(rig):
    setup, client = rig()
    setup.feed()
    unknown = uuid.uuid4().bytes
    assert client.get_result(unknown).status == UNKNOWN
    assert client.cancel_goal(unknown).return_code == ERROR_UNKNOWN_GOAL_ID
    goal_id, first = client.send_goal('What is written on the sign?')
    _, again = client.send_goal('What is written on the sign?', goal_id=goal_id)
    assert first.accepted and not again.accepted
    assert client.get_result(goal_id).status == SUCCEEDED


def test_a_layers_goal_reports_each_fetch_of_more_token_layers(rig):
    codec = TokenCodec.load(bundled_model_path() / 'token_codec_tower.npz')
    backend = ScriptedVlm()
    setup, client = rig(backend, tokens=TokenLayerEncoder(backend, codec),
                        edge_params={'layers.enabled': True, 'layers.proactive': 1},
                        layer_options=LayerOptions({codec.codec_id: codec}, 1, False),
                        policy='layers')
    stamp = setup.feed()
    assert setup.server.links[0].layers.wait_for(stamp, TIMEOUT_S) is not None
    frame_stamp = stamps.fill(setup.client.message_type('builtin_interfaces/msg/Time')(), stamp)
    goal_id, _ = client.send_goal(f'{UNSURE}: what is written?', frame_stamp=frame_stamp)
    answer = client.get_result(goal_id).result.answer
    assert answer.decision == Decision.TOKEN_LAYERS and 'layers 0..3 of 4' in \
        answer.status_message
    fetch = ['layers_requested', 'layers_received', 'second_pass']
    assert client.stages(goal_id, count=11) == ['frame', 'first_pass', *fetch * 3]
    feedback = client.feedback[goal_id]
    assert [f.layers for f in feedback] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    assert [f.refine for f in feedback if f.stage_name.endswith('pass')] == [True] * 4
    assert feedback[2].message == 'layers 1..1' and feedback[-1].refinement == 'layers'


def test_the_port_action_client_follows_a_goal(rig):
    setup, _ = rig()
    setup.feed()
    client = setup.client.create_action_client('colvlm/action/Ask', 'colvlm/ask')
    assert client.wait_for_server(TIMEOUT_S)
    goal = setup.client.action_type('colvlm/action/Ask').Goal()
    goal.query.query_id, goal.query.question = 'q2', f'{UNSURE}: the sign?'
    seen, changed = [], threading.Condition()

    def on_feedback(feedback) -> None:
        with changed:
            seen.append(feedback.stage_name)
            changed.notify_all()

    sent = client.send_goal(goal, TIMEOUT_S, on_feedback)
    code, result = sent.result(TIMEOUT_S)
    assert sent.accepted and code == SUCCEEDED and result.answer.query_id == 'q2'
    with changed:
        assert changed.wait_for(lambda: 'second_pass' in seen, TIMEOUT_S)
    assert seen[0] == 'frame' and sent.cancel(TIMEOUT_S) == ERROR_GOAL_TERMINATED


def _wait_for(predicate) -> bool:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
