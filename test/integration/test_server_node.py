"""The server as its own process over real DDS, beside a real edge: every query gets one
Answer, with the status the situation calls for, and `colvlm ask` prints it.

One server (a random tiny LLaVA, default policy 'global', a queue of one) and one synthetic
edge are shared by the module's tests, which run in file order: the first asks before the
edge starts, the last but one kills the edge.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

from conftest import module_dds_env, spawn
import numpy as np
import pytest

from colvlm_msgs import stamps
from colvlm_msgs.transport import create_node
from colvlm_msgs.typesupport import message_class
from colvlm_server.node import DECISION_NAMES, STATUS_NAMES

NAMESPACE = 'cam0'
START_TIMEOUT_S = 120.0   # importing torch on a busy machine is slow
TIMEOUT_S = 60.0
MAX_AGE_S = 3.0


class ProcessLog:
    """A child's stderr, read on a thread so that the pipe never fills."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines = process, []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip('\n'))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = TIMEOUT_S) -> re.Match:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = re.search(pattern, line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f'no line matching {pattern!r}:\n' + self.text())
                self._changed.wait(min(remaining, 0.5))

    def join(self) -> None:
        """Wait for the last line of an exited child."""
        self._reader.join(timeout=TIMEOUT_S)

    def text(self) -> str:
        return '\n'.join(self.lines[-40:])


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=TIMEOUT_S)


@pytest.fixture(scope='module')
def env():
    """dds_env for the whole module: one private domain, loopback discovery."""
    with module_dds_env() as env:
        yield env


@pytest.fixture(scope='module')
def server(env, tiny_llava_path):
    process = spawn(['-m', 'colvlm_bench.cli', 'server', '--model', str(tiny_llava_path),
                     '--namespace', NAMESPACE, '-p', 'policy=global', '-p', 'queue.max_size=1',
                     '-p', f'frame.max_age_s={MAX_AGE_S}', '-p', 'crop.timeout_s=1.0',
                     '-p', 'frame.fresh_timeout_s=5.0', '-p', 'status.period_s=1.0'], env)
    log = ProcessLog(process)
    log.wait_for(r'\bready: model', START_TIMEOUT_S)
    yield log
    stop(process)


class Client:
    """A test node in the server's namespace: asks, and remembers the frames it saw."""

    def __init__(self):
        self.node = create_node(f'test_client_{uuid.uuid4().hex[:6]}', NAMESPACE)
        self.frames: dict[int, dict] = {}   # stamp -> {'bytes', 'width', 'height'}
        self.node.create_subscription('sensor_msgs/msg/CompressedImage',
                                      'colvlm/global/compressed', self._on_image, 'frames')
        self.node.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                      self._on_geometry, 'frame_info')
        self.ask_type = self.node.service_type('colvlm/srv/Ask')
        self.answer_type = self.node.message_type('colvlm/msg/Answer')
        self._ask = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')

    def _frame(self, stamp) -> dict:
        return self.frames.setdefault(stamps.to_ns(stamp), {'bytes': 0})

    def _on_image(self, message) -> None:
        self._frame(message.header.stamp)['bytes'] += self.node.serialized_size(message)

    def _on_geometry(self, message) -> None:
        frame = self._frame(message.header.stamp)
        frame['bytes'] += self.node.serialized_size(message)
        frame['width'], frame['height'] = message.original_width, message.original_height

    def ask(self, question='What is written on the sign?', **fields):
        request = self.ask_type.Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question = question
        for name, value in fields.items():
            setattr(request.query, name, value)
        answer = self._ask.call(request, timeout=TIMEOUT_S).answer
        assert answer.query_id == request.query.query_id
        return answer

    def status(self, answer) -> str:
        return STATUS_NAMES[answer.status]


@pytest.fixture(scope='module')
def client(env):
    client = Client()
    yield client
    client.node.shutdown()


@pytest.fixture(scope='module')
def edge(env, server, client):
    process = spawn(['-m', 'colvlm_bench.cli', 'edge', '--source', 'synthetic',
                     '--namespace', NAMESPACE, '-p', 'global.width=128',
                     '-p', 'global.height=128', '-p', 'source.fps=2',
                     '-p', 'crop.max_requests=1000', '-p', 'status.period_s=0.5'], env)
    log = ProcessLog(process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while client.status(client.ask()) == 'NO_FRAME':
        assert time.monotonic() < deadline and process.poll() is None, log.text()
        time.sleep(0.3)
    yield log
    stop(process)


def test_status_and_decision_names_follow_answer_msg():
    answer_type = message_class('colvlm/msg/Answer')
    for prefix, names in (('STATUS_', STATUS_NAMES), ('DECISION_', DECISION_NAMES)):
        constants = {name: getattr(answer_type, name) for name in vars(answer_type)
                     if name.startswith(prefix)}
        assert constants == {prefix + name: value for value, name in enumerate(names)}


def test_no_frame_before_the_edge_starts(server, client):
    answer = client.ask()
    assert client.status(answer) == 'NO_FRAME' and 'no frame' in answer.status_message
    assert answer.decision == answer.DECISION_NONE and answer.answer == ''
    assert answer.camera == f'/{NAMESPACE}' and not answer.first_pass.ran


def test_always_refines_with_a_crop_of_the_original(edge, client):
    answer = client.ask(policy='always')
    assert client.status(answer) == 'OK', answer.status_message
    assert answer.decision == answer.DECISION_LOCAL_CROP and answer.policy == 'always'
    assert answer.first_pass.ran and answer.second_pass.ran
    assert answer.answer == answer.second_pass.answer
    assert len(answer.first_pass.token_min_entropy) >= 1
    assert answer.first_pass.gflops > 0 and answer.second_pass.input_tokens > \
        answer.first_pass.input_tokens            # global + crop images
    frame = client.frames[stamps.to_ns(answer.frame_stamp)]
    roi = answer.roi
    assert roi.width > 0 and roi.height > 0
    assert roi.x_offset + roi.width <= frame['width']
    assert roi.y_offset + roi.height <= frame['height']
    assert answer.uplink_global_bytes == frame['bytes']
    assert answer.uplink_crop_bytes > 0 and answer.downlink_bytes > 0
    assert answer.uplink_bytes == answer.uplink_global_bytes + answer.uplink_crop_bytes
    # The edge counts what it sent; the server counted the same reply.
    assert int(edge.wait_for(r'uplink: crop 1 msgs (\d+) B').group(1)) == \
        answer.uplink_crop_bytes


@pytest.mark.parametrize('question, fields, why', [
    ('', {}, 'empty question'),
    ('   ', {}, 'empty question'),
    ('x' * 10_000, {}, 'question of 10000 characters'),
    ('What colour is the sign?', {'policy': 'oracle'}, "unknown policy 'oracle'"),
    ('What colour is the sign?', {'camera': 'cam7'}, "unknown camera 'cam7'"),
])
def test_bad_requests_are_refused_and_serving_goes_on(edge, client, question, fields, why):
    answer = client.ask(question, **fields)
    assert client.status(answer) == 'BAD_REQUEST' and why in answer.status_message
    assert not answer.first_pass.ran and answer.uplink_bytes == 0
    good = client.ask()
    assert client.status(good) == 'OK', good.status_message
    assert good.decision == good.DECISION_GLOBAL and not good.second_pass.ran
    assert good.uplink_crop_bytes == 0 and good.uplink_bytes == good.uplink_global_bytes > 0


def test_a_full_queue_answers_busy_and_every_query_once(edge, client):
    answers: queue.Queue = queue.Queue()
    client.node.create_subscription('colvlm/msg/Answer', 'colvlm/answer', answers.put,
                                    'answers')
    queries = client.node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    query_type = client.node.message_type('colvlm/msg/Query')
    # Volatile topics drop what is sent before both sides match: probe until one comes back.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        assert time.monotonic() < deadline, 'the server never answered a probe'
        queries.publish(query_type(query_id='probe', question=''))
        try:
            if answers.get(timeout=0.5).query_id == 'probe':
                break
        except queue.Empty:
            pass
    ids = [f'burst-{k}' for k in range(12)]
    for query_id in ids:
        queries.publish(query_type(query_id=query_id, question='What shape is red?'))
    received: dict[str, list] = {query_id: [] for query_id in ids}
    deadline = time.monotonic() + TIMEOUT_S
    while any(not got for got in received.values()) and time.monotonic() < deadline:
        try:
            answer = answers.get(timeout=0.5)
        except queue.Empty:
            continue
        if answer.query_id in received:
            received[answer.query_id].append(client.status(answer))
    time.sleep(1.0)  # room for a duplicate to show up
    while not answers.empty():
        answer = answers.get()
        if answer.query_id in received:
            received[answer.query_id].append(client.status(answer))
    assert all(len(got) == 1 for got in received.values()), received
    statuses = [got[0] for got in received.values()]
    assert 'BUSY' in statuses and 'OK' in statuses, statuses
    assert set(statuses) <= {'BUSY', 'OK'}, statuses


def test_a_fresh_frame_is_asked_of_the_edge(edge, client):
    asked_ns = time.time_ns()
    answer = client.ask(fresh_frame=True)
    assert client.status(answer) == 'OK', answer.status_message
    assert stamps.to_ns(answer.frame_stamp) > asked_ns   # taken after the question


def test_ask_cli_prints_the_answer_and_exits_by_status(edge, env):
    def ask(*args):
        return subprocess.run(
            [sys.executable, '-m', 'colvlm_bench.cli', 'ask',
             *args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S + 30)

    done = ask('What is written on the sign?', '--namespace', NAMESPACE, '--json')
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer['status_name'] == 'OK' and answer['decision_name'] == 'GLOBAL'
    assert answer['first_pass']['ran'] and answer['uplink_global_bytes'] > 0
    assert answer['camera'] == f'/{NAMESPACE}' and answer['question'].startswith('What')

    refused = ask('Which sign?', '--namespace', NAMESPACE, '--policy', 'sometimes')
    assert refused.returncode == 1, refused.stderr
    assert 'status: BAD_REQUEST' in refused.stdout and 'sometimes' in refused.stdout

    nobody = ask('Anyone?', '--namespace', 'nowhere', '--timeout', '1')
    assert nobody.returncode == 2 and 'not available' in nobody.stderr


def test_a_lost_edge_answers_from_the_global_pass_then_frames_go_stale(edge, client):
    edge.process.send_signal(signal.SIGKILL)   # no goodbye: the crop call must time out
    edge.process.wait(timeout=TIMEOUT_S)
    answer = client.ask(policy='always')
    assert client.status(answer) == 'CROP_UNAVAILABLE', answer.status_message
    assert answer.decision == answer.DECISION_FALLBACK
    assert 'crop unavailable' in answer.status_message
    assert answer.first_pass.ran and not answer.second_pass.ran
    assert answer.answer == answer.first_pass.answer
    assert answer.uplink_crop_bytes == 0 and answer.roi.width == 0
    # The edge is gone, so the newest frame only ages.
    stale_at = stamps.to_ns(answer.frame_stamp) / 1e9 + MAX_AGE_S + 0.2
    time.sleep(max(0.0, stale_at - time.time()))
    stale = client.ask()
    assert client.status(stale) == 'STALE_FRAME' and 'old' in stale.status_message
    assert not stale.first_pass.ran


def test_the_server_stops_cleanly_with_its_counts(server):
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=TIMEOUT_S) == 0
    server.join()
    last = [line for line in server.lines if 'answered:' in line][-1]   # the final counts
    assert re.search(r'answered: .*\bok \d+', last), last
    assert 'Traceback' not in server.text()


class _FailingBackend:
    """A model that fails as models can: raising, then NaN scores, then answering."""

    model_id, num_layers, image_size, grid = 'failing', 2, (32, 32), (2, 2)

    def __init__(self):
        self.calls = 0

    def generate(self, images, question, *, attention_layer=None):
        from colvlm_models.vlm import Generation

        self.calls += 1
        if self.calls == 1:
            raise RuntimeError('CUDA out of memory\nsecond line')
        logits = np.full((1, 5), np.nan if self.calls == 2 else 0.0, np.float32)
        return Generation('fine', logits, 10, 4, 1, 1e6, 0.01)

    def image_attention(self, image, prompt, layer):
        raise NotImplementedError


def test_model_failures_answer_model_error_and_serving_goes_on(env):
    """The node in this process with a failing model; the test plays the edge."""
    from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
    from colvlm_edge.wire import global_frame_messages
    from colvlm_server.node import ServerNode
    from colvlm_server.parameters import SERVER_PARAMETERS, ServerConfig
    from colvlm_server.pipeline import TwoStagePipeline

    node = create_node('server', 'cam9')
    values = SERVER_PARAMETERS.resolve(overrides={'policy': 'global', 'status.period_s': 60.0})
    server = ServerNode(node, ServerConfig.from_values(values),
                        TwoStagePipeline(_FailingBackend(), attention_layer=0))
    edge = create_node('fake_edge', 'cam9')
    try:
        encoded = GlobalEncoder(GlobalEncoderConfig(width=32, height=32)).encode(
            np.zeros((48, 64, 3), np.uint8))
        image, geometry = global_frame_messages(
            edge.message_type('sensor_msgs/msg/CompressedImage'),
            edge.message_type('colvlm/msg/FrameGeometry'), encoded, time.time_ns(), 'camera')
        images = edge.create_publisher('sensor_msgs/msg/CompressedImage',
                                       'colvlm/global/compressed', 'frames')
        geometries = edge.create_publisher('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                           'frame_info')
        asker = edge.create_client('colvlm/srv/Ask', 'colvlm/ask')
        request = edge.service_type('colvlm/srv/Ask').Request()
        request.query.question = 'Is it dark?'
        deadline = time.monotonic() + TIMEOUT_S
        while server.frames.latest() is None:
            assert time.monotonic() < deadline
            geometries.publish(geometry)
            images.publish(image)
            time.sleep(0.2)
        answers = [asker.call(request, timeout=TIMEOUT_S).answer for _ in range(3)]
    finally:
        edge.shutdown()
        node.shutdown()
        server.stop()
    statuses = [STATUS_NAMES[a.status] for a in answers]
    assert statuses == ['MODEL_ERROR', 'MODEL_ERROR', 'OK'], [a.status_message for a in answers]
    assert answers[0].status_message == 'internal error: RuntimeError: CUDA out of memory'
    assert 'NaN' in answers[1].status_message
    assert answers[2].answer == 'fine' and answers[2].model_id == 'failing'
