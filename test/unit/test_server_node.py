"""The server node on the in-memory transport, beside a real edge node: every query gets one
Answer with the status the situation calls for (scripted model; DDS end to end is
test/integration/test_server_over_dds.py)."""

from __future__ import annotations

import logging
import queue
import threading
import time

from node_harness import TIMEOUT_S, UNSURE, Rig, ScriptedVlm, status
import numpy as np
import pytest

from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.typesupport import message_class


@pytest.fixture
def rig():
    made = []

    def build(*args, **kwargs) -> Rig:
        made.append(Rig(*args, **kwargs))
        return made[-1]

    yield build
    for one in made:
        one.close()


def test_status_and_decision_enums_are_answer_msg_constants():
    answer_type = message_class('colvlm/msg/Answer')
    for enum, prefix in ((Status, 'STATUS_'), (Decision, 'DECISION_')):
        constants = {name[len(prefix):]: value for name, value in vars(answer_type).items()
                     if name.startswith(prefix)}
        assert constants == {member.name: member.value for member in enum}
    assert Status.BUSY == answer_type.STATUS_BUSY and Decision(2).name == 'LOCAL_CROP'


def test_no_frame_before_the_edge_sends_one(rig):
    answer = rig(**{'frame.fresh_timeout_s': 0.3}).ask()
    assert status(answer) == 'NO_FRAME', answer.status_message
    assert "no frame from the edge of '/cam0' within 0.3 s" in answer.status_message
    assert answer.decision == Decision.NONE and answer.answer == ''
    assert answer.camera == '/cam0' and not answer.first_pass.ran


def test_a_sure_answer_comes_from_the_global_frame_and_counts_its_bytes(rig):
    setup = rig()
    stamp = setup.feed()
    answer = setup.ask()
    assert status(answer) == 'OK', answer.status_message
    assert answer.decision == Decision.GLOBAL and answer.answer == 'global'
    assert stamps.to_ns(answer.frame_stamp) == stamp and answer.header.frame_id == 'camera'
    assert answer.first_pass.ran and not answer.second_pass.ran
    assert answer.model_id == 'scripted' and answer.gate_threshold > 0
    # What the edge counted as sent for the frame is what the answer says crossed.
    assert answer.uplink_global_bytes == setup.edges['cam0'].uplink.bytes['global'] > 1000
    assert answer.uplink_bytes == answer.uplink_global_bytes and answer.downlink_bytes == 0


def test_an_unsure_answer_is_refined_with_a_crop_of_the_original(rig):
    setup = rig()
    setup.feed()
    answer = setup.ask(f'{UNSURE}: what is written?', policy='entropy')
    assert status(answer) == 'OK', answer.status_message
    assert answer.decision == Decision.LOCAL_CROP and answer.answer == 'crop'
    assert answer.second_pass.ran and answer.second_pass.input_tokens > \
        answer.first_pass.input_tokens
    roi = answer.roi
    assert roi.width > 0 and roi.height > 0
    assert roi.x_offset + roi.width <= 160 and roi.y_offset + roi.height <= 120
    edge = setup.edges['cam0'].uplink
    assert answer.uplink_crop_bytes == edge.bytes['crop'] and edge.messages['crop'] == 1
    assert answer.downlink_bytes > 0
    assert answer.uplink_bytes == answer.uplink_global_bytes + answer.uplink_crop_bytes


def test_a_query_limits_its_own_tokens_without_touching_the_model(rig):
    setup = rig()
    setup.feed()
    setup.ask(max_new_tokens=3)
    setup.ask()
    assert [call['max_new_tokens'] for call in setup.backend.calls] == [3, None]


@pytest.mark.parametrize('question, fields, why', [
    ('', {}, 'empty question'),
    ('   ', {}, 'empty question'),
    ('x' * 10_000, {}, 'question of 10000 characters'),
    ('What colour?', {'policy': 'oracle'}, "unknown policy 'oracle'"),
    ('What colour?', {'camera': 'cam7'}, "unknown camera 'cam7'"),
    ('What colour?', {'camera': '/'}, "camera '/' names no camera"),
    ('What colour?', {'max_new_tokens': 5000}, 'max_new_tokens must be <= 1024, got 5000'),
])
def test_bad_requests_are_refused_and_serving_goes_on(rig, question, fields, why):
    setup = rig()
    setup.feed()
    answer = setup.ask(question, **fields)
    assert status(answer) == 'BAD_REQUEST' and why in answer.status_message
    assert '\n' not in answer.status_message
    assert not answer.first_pass.ran and answer.uplink_bytes == 0
    assert len(answer.question) < 1000  # an over-long question is not echoed whole
    assert status(setup.ask()) == 'OK'


def test_a_frame_named_by_stamp_is_answered_about_or_missing(rig):
    setup = rig()
    first = setup.feed()
    setup.feed()
    answer = setup.ask(frame_stamp=stamps.fill(
        message_class('builtin_interfaces/msg/Time')(), first))
    assert status(answer) == 'OK' and stamps.to_ns(answer.frame_stamp) == first
    missing = setup.ask(frame_stamp=stamps.fill(
        message_class('builtin_interfaces/msg/Time')(), first - 1))
    assert status(missing) == 'NO_FRAME' and 'is not held' in missing.status_message


def test_an_ended_source_is_answered_about_the_edges_last_frame(rig):
    setup = rig(**{'frame.max_age_s': 3.0})
    last = setup.feed(stamp_ns=time.time_ns() - 10 * 10**9)  # the source ended 10 s ago
    sent = setup.edges['cam0'].uplink.messages['global']
    answer = setup.ask()
    assert status(answer) == 'OK', answer.status_message
    assert stamps.to_ns(answer.frame_stamp) == last
    assert setup.edges['cam0'].uplink.messages['global'] == sent + 1  # asked for, sent again


def test_an_edge_without_token_layers_is_named_as_the_cause(rig):
    setup = rig(**{'frame.fresh_timeout_s': 0.3})
    setup.feed()  # a global frame, but this edge sends no token layers
    answer = setup.ask(policy='layers')
    assert status(answer) == 'NO_FRAME', answer.status_message
    assert 'did not arrive within 0.3 s (does the edge run with layers.enabled?)' in \
        answer.status_message


def test_a_held_frame_is_answered_at_once_without_asking_the_edge(rig):
    setup = rig()
    setup.feed()
    sent = setup.edges['cam0'].uplink.messages['global']
    assert status(setup.ask()) == 'OK'
    assert setup.edges['cam0'].uplink.messages['global'] == sent


def test_an_old_newest_frame_is_stale_when_the_edge_sends_none(rig):
    setup = rig(**{'frame.max_age_s': 3.0, 'frame.fresh_timeout_s': 0.3})
    setup.feed(stamp_ns=time.time_ns() - 10 * 10**9)
    setup.edges['cam0'].node.shutdown()
    answer = setup.ask()
    assert status(answer) == 'STALE_FRAME' and 's old (frame.max_age_s 3)' in \
        answer.status_message
    assert '\n' not in answer.status_message and not answer.first_pass.ran


def test_a_fresh_frame_is_asked_of_the_edge(rig):
    setup = rig(edge_params={'publish.mode': 'on_request'})
    with setup.cameras_running():
        asked_ns = time.time_ns()
        answer = setup.ask(fresh_frame=True)
    assert status(answer) == 'OK', answer.status_message
    assert stamps.to_ns(answer.frame_stamp) > asked_ns  # taken after the question
    assert setup.edges['cam0'].uplink.messages['global'] == 1  # and only that one was sent


def test_a_lost_edge_answers_from_the_global_pass(rig):
    setup = rig(**{'crop.timeout_s': 0.2})
    setup.feed()
    edge = setup.edges['cam0'].node
    edge.shutdown()  # no goodbye: the crop call fails
    answer = setup.ask(f'{UNSURE}?', policy='always')
    assert status(answer) == 'CROP_UNAVAILABLE', answer.status_message
    assert answer.decision == Decision.FALLBACK and 'crop unavailable' in answer.status_message
    assert answer.first_pass.ran and not answer.second_pass.ran
    assert answer.answer == answer.first_pass.answer
    assert answer.uplink_crop_bytes == 0 and answer.roi.width == 0


class _BlockingVlm(ScriptedVlm):
    """Holds its first answer until released, so queries pile up behind it."""

    def __init__(self):
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()

    def generate(self, *args, **kwargs):
        self.started.set()
        assert self.release.wait(TIMEOUT_S)
        return super().generate(*args, **kwargs)


def test_a_full_queue_answers_busy_and_every_query_exactly_once(rig):
    backend = _BlockingVlm()
    setup = rig(backend, **{'queue.max_size': 1})
    setup.feed()
    answers: queue.Queue = queue.Queue()
    setup.client.create_subscription('colvlm/msg/Answer', 'colvlm/answer', answers.put,
                                     'answers')
    queries = setup.client.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    query_type = setup.client.message_type('colvlm/msg/Query')
    queries.publish(query_type(query_id='running', question='What?'))
    assert backend.started.wait(TIMEOUT_S)
    ids = [f'burst-{k}' for k in range(5)]
    for query_id in ids:
        queries.publish(query_type(query_id=query_id, question='What shape is red?'))
    got = {}
    while len(got) < 4:  # all but the one in the queue are answered busy at once
        answer = answers.get(timeout=TIMEOUT_S)
        got.setdefault(answer.query_id, []).append(status(answer))
    backend.release.set()
    while len(got) < 6:
        answer = answers.get(timeout=TIMEOUT_S)
        got.setdefault(answer.query_id, []).append(status(answer))
    queries.publish(query_type(query_id='last', question=''))  # answered after all the rest
    while (answer := answers.get(timeout=TIMEOUT_S)).query_id != 'last':
        got[answer.query_id].append(status(answer))
    assert got == {'running': ['OK'], 'burst-0': ['OK'],
                   **{query_id: ['BUSY'] for query_id in ids[1:]}}
    assert setup.server.counts == {'OK': 2, 'BUSY': 4, 'BAD_REQUEST': 1}


def test_stopping_answers_the_waiting_queries_busy(rig):
    backend = _BlockingVlm()
    setup = rig(backend, **{'queue.max_size': 4})
    setup.feed()
    replies: queue.Queue = queue.Queue()
    query_type = setup.client.message_type('colvlm/msg/Query')
    setup.server.submit(query_type(query_id='running', question='What?'), replies.put)
    assert backend.started.wait(TIMEOUT_S)
    setup.server.submit(query_type(query_id='waiting', question='What?'), replies.put)
    stopper = threading.Thread(target=setup.server.stop)
    stopper.start()
    backend.release.set()
    stopper.join(TIMEOUT_S)
    got = {answer.query_id: status(answer) for answer in (replies.get(timeout=TIMEOUT_S)
                                                          for _ in range(2))}
    assert got == {'running': 'OK', 'waiting': 'BUSY'}
    setup.server.submit(query_type(query_id='late', question='What?'), replies.put)
    late = replies.get(timeout=TIMEOUT_S)
    assert status(late) == 'BUSY' and 'shutting down' in late.status_message


def test_model_failures_answer_model_error_and_serving_goes_on(rig):
    setup = rig(ScriptedVlm(failures=[RuntimeError('CUDA out of memory\nsecond line'), 'nan']))
    setup.feed()
    answers = [setup.ask() for _ in range(3)]
    assert [status(a) for a in answers] == ['MODEL_ERROR', 'MODEL_ERROR', 'OK']
    assert answers[0].status_message == 'internal error: RuntimeError: CUDA out of memory'
    assert 'NaN' in answers[1].status_message and answers[1].answer == ''
    assert answers[2].answer == 'global'


def test_bad_frames_are_dropped_and_counted(rig):
    from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
    from colvlm_edge.wire import global_frame_messages

    setup = rig()
    node = setup.client
    image_type = node.message_type('sensor_msgs/msg/CompressedImage')
    frames = node.create_publisher('sensor_msgs/msg/CompressedImage',
                                   'colvlm/global/compressed', 'frames')
    geometries = node.create_publisher('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                       'frame_info')
    bad = image_type(format='jpeg', data=list(b'not a jpeg'))
    stamps.fill(bad.header.stamp, time.time_ns())
    frames.publish(bad)
    # An image that does not match its geometry's size is refused when the pair completes.
    encoded = GlobalEncoder(GlobalEncoderConfig(width=32, height=32)).encode(
        np.zeros((48, 64, 3), np.uint8))
    image, geometry = global_frame_messages(image_type, node.message_type(
        'colvlm/msg/FrameGeometry'), encoded, time.time_ns(), 'camera')
    geometry.global_width = 64
    geometries.publish(geometry)
    frames.publish(image)
    deadline = time.monotonic() + TIMEOUT_S
    while setup.server.dropped_frames < 2:
        assert time.monotonic() < deadline, setup.server.dropped_frames
        time.sleep(0.01)
    assert status(setup.ask()) == 'NO_FRAME'
    setup.feed()
    assert status(setup.ask()) == 'OK'


def test_each_answered_question_is_one_info_line(rig, caplog):
    setup = rig()
    caplog.set_level(logging.INFO, logger=setup.server.node.logger.name)
    setup.feed()
    answer = setup.ask('What is written on the sign, the long one at the back?')
    refused = setup.ask('')
    asked = [record.getMessage() for record in caplog.records
             if record.getMessage().startswith('query ')]
    assert asked == [
        f"query {answer.query_id}: 'What is written on the sign, the long one at th…' -> "
        f"'global' (OK, global, {answer.total_ms:.0f} ms)",
        f"query {refused.query_id}: '' -> '' (BAD_REQUEST, none, {refused.total_ms:.0f} ms): "
        'empty question']
