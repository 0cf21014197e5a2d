"""The server against hostile or faulty peers on the in-memory transport (issue 19): a frame or
token layer stamped ahead of the clock is refused, counted and logged once a second at most,
and never answers a question; a frame holds at most the codec's layer count; a burst of 200
queries and 30 asks at once each get exactly one answer, BUSY beyond what waits. The same
probes against real processes over DDS: test/integration/test_abuse.py and tools/abuse.py."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import re
import threading
import time
import uuid

from node_harness import TIMEOUT_S, Rig, ScriptedVlm, status
import numpy as np
import pytest

from colvlm_edge.wire import token_layer_message
from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_msgs import stamps
from colvlm_msgs.token_codec import TokenCodec
from colvlm_msgs.transport.port import SERVICE_THREADS
from colvlm_server.intake import LOG_PERIOD_S, RefusalLog
from colvlm_server.token_layers import LayerOptions

HOUR_NS = 3600 * 10**9


class BlockedVlm(ScriptedVlm):
    """Answers only once `release` is set: the queue fills behind its first question."""

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def generate(self, images, question, **kwargs):
        self.entered.set()
        self.release.wait(TIMEOUT_S)
        return super().generate(images, question, **kwargs)


@pytest.fixture
def rig():
    made = []

    def build(*args, **kwargs) -> Rig:
        made.append(Rig(*args, **kwargs))
        return made[-1]

    yield build
    for one in made:
        if isinstance(one.backend, BlockedVlm):
            one.backend.release.set()
        one.close()


def wait_until(condition) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.01)


def test_refusals_are_logged_once_a_second_with_how_many_were_not(caplog):
    now = [100.0]
    log = RefusalLog(logging.getLogger('refusals'), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger='refusals'):
        for index in range(100):
            log.refuse(f'frame {index} refused')
        now[0] += LOG_PERIOD_S
        log.refuse('frame 100 refused')
    assert log.count == 101
    assert [r.getMessage() for r in caplog.records] == [
        'frame 0 refused', 'frame 100 refused (99 more like it not logged)']


def test_a_frame_stamped_ahead_of_the_clock_is_refused_and_never_answers(rig, caplog):
    setup = rig()
    ahead_ns = time.time_ns() + 24 * HOUR_NS  # an edge whose clock jumped a day
    setup.feed(stamp_ns=ahead_ns, wait=False)
    wait_until(lambda: setup.server.intake.ahead.count == 2)  # the image and its geometry
    now_ns = setup.feed()
    answer = setup.ask()
    assert status(answer) == 'OK' and stamps.to_ns(answer.frame_stamp) == now_ns
    # The image and its geometry in one line: a second refusal within a second is counted.
    (line,) = [r.getMessage() for r in caplog.records if 'ahead of this clock' in r.getMessage()]
    assert re.fullmatch(rf'frame (geometry )?of /cam0 refused: stamped {ahead_ns} ns, '
                        r'\d+\.\d s ahead of this clock \(frame.max_ahead_s 2\)', line), line
    assert setup.server.links[0].frames.completed == 1


def test_max_ahead_0_takes_any_stamp(rig):
    setup = rig(**{'frame.max_ahead_s': 0.0})
    setup.feed(stamp_ns=time.time_ns() + HOUR_NS)
    assert setup.server.intake.ahead.count == 0


def _codec() -> TokenCodec:
    return TokenCodec.load(bundled_model_path() / 'token_codec_tower.npz')


def _codec_rig(rig) -> Rig:
    codec = _codec()
    return rig(layer_options=LayerOptions({codec.codec_id: codec}))


def _layers(codec: TokenCodec, stamp_ns: int, indices) -> list:
    from colvlm_msgs.typesupport import message_class

    good = codec.encode(np.zeros((64, 128), np.float32))[0]
    return [token_layer_message(message_class('colvlm/msg/TokenLayer'),
                                dataclasses.replace(good, layer_index=index), stamp_ns,
                                'camera') for index in indices]


def test_a_frame_holds_at_most_the_codecs_layers_and_none_from_the_future(rig):
    setup = _codec_rig(rig)
    codec = next(iter(setup.layer_options.codecs.values()))
    publisher = setup.client.create_publisher('colvlm/msg/TokenLayer', 'colvlm/token_layers',
                                              'token_layers')
    stamp_ns = time.time_ns()
    # A peer repeating the layers of one frame, then one stamped an hour ahead.
    for message in [*_layers(codec, stamp_ns, [i % 4 for i in range(10)]),
                    *_layers(codec, stamp_ns + HOUR_NS, [0])]:
        publisher.publish(message)
    intake = setup.server.intake
    wait_until(lambda: intake.dropped.count + intake.ahead.count == 7)
    assert intake.ahead.count == 1 and intake.dropped.count == 6
    store = setup.server.links[0].layers
    assert len(store.get(stamp_ns)[0].layers) == 4 and store.get(stamp_ns + HOUR_NS) is None


def test_a_burst_of_200_queries_gets_200_answers(rig):
    setup = rig(BlockedVlm())
    setup.feed()
    answers: queue.Queue = queue.Queue()
    setup.client.create_subscription('colvlm/msg/Answer', 'colvlm/answer', answers.put,
                                     'answers')
    publisher = setup.client.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    query_type = setup.client.message_type('colvlm/msg/Query')
    sent = [uuid.uuid4().hex[:8] for _ in range(200)]
    publisher.publish(query_type(query_id=sent[0], question='What is written?'))
    assert setup.backend.entered.wait(TIMEOUT_S)  # the worker holds the first one
    for query_id in sent[1:]:
        publisher.publish(query_type(query_id=query_id, question='What is written?'))
    statuses = {}
    while len(statuses) < 200:
        if len(statuses) == 200 - 5:  # all but the running one and the 4 waiting
            setup.backend.release.set()
        answer = answers.get(timeout=TIMEOUT_S)
        assert answer.query_id not in statuses
        statuses[answer.query_id] = status(answer)
    assert sorted(statuses) == sorted(sent)
    assert sorted(statuses.values()) == ['BUSY'] * 195 + ['OK'] * 5


def test_at_most_half_the_service_threads_wait_on_asks(rig):
    setup = rig(BlockedVlm(), **{'queue.max_size': 40})
    setup.feed()
    callers = 30
    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        futures = [pool.submit(setup.ask) for _ in range(callers)]
        waiting, busy = SERVICE_THREADS // 2, []
        for future in concurrent.futures.as_completed(futures, TIMEOUT_S):
            busy.append(future.result())
            if len(busy) == callers - waiting:
                break
        setup.backend.release.set()
        answers = [future.result(TIMEOUT_S) for future in futures]
    assert all(status(a) == 'BUSY' and 'asks are waiting already' in a.status_message
               for a in busy)
    assert sorted(status(a) for a in answers) == ['BUSY'] * (callers - waiting) + \
        ['OK'] * waiting
