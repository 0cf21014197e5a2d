"""The server and the edge as their own processes over real DDS, end to end, on the bundled
model: a two-stage answer with a crop of the original crosses the wire with both ends
counting the same bytes and its box arrives on colvlm/roi as an ImageMarker on the global
frame, a layered answer asks the edge's colvlm/request_layers for more token layers,
`colvlm ask` (run in this process) prints an answer and exits by its status, an independent
subscriber reads both nodes' /diagnostics and sees the server's report of the camera leave OK
once the edge is killed, and the server stops cleanly on SIGINT with its counts. One pair of
processes serves every feature: starting them is most of the time. What the node answers in
each situation (busy, no frame, stale, a lost edge, a failing model) is tested on the
in-memory transport in test/unit/test_server_node.py and test/unit/test_token_layers_node.py.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import threading
import time
import uuid

from cdr_reference import reference_typestore
from cyclonedds.core import Policy, Qos
from cyclonedds.sub import DataReader
from processes import START_TIMEOUT_S, ask_in_process, colvlm

from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.diagnostics import DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, ERROR, OK, WARN
from colvlm_msgs.geometry import Box, geometry_from_message, roi_box
from colvlm_msgs.token_codec import TokenCodec, payload_size
from colvlm_msgs.transport import create_node

NAMESPACE = 'cam0'
TIMEOUT_S = 60.0


class Client:
    """A test node in the server's namespace: asks, and counts the frames and token layers
    the edge sent (serialized bytes by stamp)."""

    def __init__(self):
        self.node = create_node(f'test_client_{uuid.uuid4().hex[:6]}', NAMESPACE)
        self.frames: dict[int, dict] = {}  # stamp -> {'bytes', 'width', 'height'}
        self.layers: dict[int, int] = {}  # stamp -> bytes of the layers sent unasked
        self._lock = threading.Lock()
        self.node.create_subscription('sensor_msgs/msg/CompressedImage',
                                      'colvlm/global/compressed', self._on_image, 'frames')
        self.node.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                      self._on_geometry, 'frame_info')
        self.node.create_subscription('colvlm/msg/TokenLayer', 'colvlm/token_layers',
                                      self._on_layer, 'token_layers')
        self.diagnostics: queue.Queue = queue.Queue()  # /diagnostics, as a monitor reads it
        self.node.create_subscription('diagnostic_msgs/msg/DiagnosticArray', DIAGNOSTICS_TOPIC,
                                      self.diagnostics.put, DIAGNOSTICS_QOS)
        self.ask_type = self.node.service_type('colvlm/srv/Ask')
        self._ask = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')
        # colvlm/roi read raw off the wire and decoded by rosbags, as a ROS 2 tool would.
        participant = self.node._participant
        self.roi_tap = DataReader(participant.participant, participant.topic(
            f'rt/{NAMESPACE}/colvlm/roi',
            self.node.message_type('visualization_msgs/msg/ImageMarker')),
            qos=Qos(Policy.Reliability.Reliable(0), Policy.History.KeepAll,
                    Policy.DataRepresentation(use_cdrv0_representation=True)))

    def _frame(self, stamp) -> dict:
        return self.frames.setdefault(stamps.to_ns(stamp), {'bytes': 0, 'parts': {}})

    def _count(self, frame: dict, part: str, message) -> None:
        # A frame the edge publishes again (the server's request_frame) is the same bytes.
        frame['parts'][part] = self.node.serialized_size(message)
        frame['bytes'] = sum(frame['parts'].values())

    def _on_image(self, message) -> None:
        with self._lock:
            self._count(self._frame(message.header.stamp), 'image', message)

    def _on_geometry(self, message) -> None:
        with self._lock:
            frame = self._frame(message.header.stamp)
            self._count(frame, 'geometry', message)
            frame['width'], frame['height'] = message.original_width, message.original_height
            frame['geometry'] = geometry_from_message(message)

    def _on_layer(self, message) -> None:
        stamp = stamps.to_ns(message.header.stamp)
        with self._lock:
            self.layers[stamp] = self.layers.get(stamp, 0) + self.node.serialized_size(message)

    def roi_marker(self, stamp):
        """The first colvlm/roi marker stamped `stamp` that adds a box, as rosbags decodes it."""
        from cyclonedds._clayer import ddspy_take  # raw bytes, as they crossed the wire

        store, deadline = reference_typestore(), time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for raw, _info in ddspy_take(self.roi_tap._ref, 0xFFFF, 50):
                marker = store.deserialize_cdr(raw, 'visualization_msgs/msg/ImageMarker')
                if marker.action == 0 and (marker.header.stamp.sec, marker.header.stamp.nanosec) \
                        == (stamp.sec, stamp.nanosec):
                    return marker
            time.sleep(0.05)
        raise AssertionError('no colvlm/roi marker for the answer')

    def ask(self, **fields):
        request = self.ask_type.Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question = 'What is written on the sign?'
        for name, value in fields.items():
            setattr(request.query, name, value)
        answer = self._ask.call(request, timeout=TIMEOUT_S).answer
        assert answer.query_id == request.query.query_id
        return answer



def _check_crop(client: Client, edge) -> None:
    answer = client.ask(policy='always')
    assert answer.status == Status.OK, answer.status_message
    assert answer.decision == Decision.LOCAL_CROP and answer.second_pass.ran
    frame = client.frames[stamps.to_ns(answer.frame_stamp)]
    roi = answer.roi
    assert 0 < roi.x_offset + roi.width <= frame['width']
    assert 0 < roi.y_offset + roi.height <= frame['height']
    assert answer.uplink_global_bytes == frame['bytes']
    # The box on colvlm/roi is the Answer's RoI on the global frame the edge published.
    box = frame['geometry'].to_global(roi_box(roi)).intersection(
        Box(0, 0, frame['geometry'].global_width, frame['geometry'].global_height))
    marker = client.roi_marker(answer.frame_stamp)
    assert [(p.x, p.y) for p in marker.points] == [
        (box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    assert marker.header.frame_id == answer.header.frame_id
    assert answer.uplink_bytes == answer.uplink_global_bytes + answer.uplink_crop_bytes
    # The edge counts what it sent; the server counted the same reply.
    assert int(edge.wait_for(r'uplink: .*crop 1 msgs (\d+) B', TIMEOUT_S).group(1)) == \
        answer.uplink_crop_bytes


def _check_layers(client: Client) -> None:
    answer = client.ask(policy='layers')  # threshold 0: asks for every layer
    assert answer.status == Status.OK, answer.status_message
    assert answer.decision == Decision.TOKEN_LAYERS and answer.second_pass.ran
    assert 'layers 0..3 of 4' in answer.status_message
    codec = TokenCodec.load(bundled_model_path() / 'token_codec_tower.npz')
    # The layer sent with the frame, then replies carrying layers 1..3.
    rest = sum(payload_size(64 * c, b) for c, b in
               zip(codec.layer_coefficients[1:], codec.layer_bits[1:], strict=True))
    sent = client.layers.get(stamps.to_ns(answer.frame_stamp), 0)
    assert answer.uplink_layer_bytes > sent + rest and answer.downlink_bytes > 0
    assert answer.uplink_bytes == answer.uplink_layer_bytes
    assert answer.uplink_global_bytes == answer.uplink_crop_bytes == 0


def _check_ask_cli(capsys) -> None:
    code, out, err = ask_in_process(capsys, 'What is written?', '--namespace', NAMESPACE, '--json')
    assert code == 0, err
    printed = json.loads(out)
    assert (printed['status_name'], printed['decision_name']) == ('OK', 'GLOBAL')
    assert printed['camera'] == f'/{NAMESPACE}' and printed['uplink_global_bytes'] > 0
    code, out, _ = ask_in_process(capsys, 'Which?', '--namespace', NAMESPACE, '--policy', 'often')
    assert code == 1 and 'status: BAD_REQUEST' in out
    code, _, err = ask_in_process(capsys, 'Anyone?', '--namespace', 'nowhere', '--timeout', '1')
    assert code == 2 and 'no answer from /nowhere/colvlm/ask within 1 s' in err


def _statuses(client: Client, until, timeout_s: float = TIMEOUT_S) -> dict:
    """Every DiagnosticStatus read from /diagnostics (newest per name) once `until` holds."""
    seen, deadline = {}, time.monotonic() + timeout_s
    while not until(seen):
        assert time.monotonic() < deadline, f'/diagnostics so far: {seen}'
        try:
            array = client.diagnostics.get(timeout=1.0)
        except queue.Empty:
            continue
        for status in array.status:
            seen[status.name] = (int(status.level), status.message,
                                 {pair.key: pair.value for pair in status.values})
    return seen


def _link(seen: dict) -> tuple | None:
    return next((v for name, v in seen.items()
                 if ': link ' in name and name.rsplit(': link ', 1)[1].strip('/') == NAMESPACE),
                None)


def _server(seen: dict) -> tuple | None:
    return next((v for name, v in seen.items() if name.endswith(': server')), None)


def _check_diagnostics(client: Client) -> None:
    """Both nodes report at 1 Hz: the edge its source, the server itself (with the answers
    this test got: reports from before them may still be queued) and its camera."""
    seen = _statuses(client, lambda seen: any('edge' in name for name in seen)
                     and _server(seen) is not None and 'answers ok' in _server(seen)[2]
                     and _link(seen) is not None and _link(seen)[0] == OK)
    edge = next(v for name, v in seen.items() if 'edge' in name)
    assert edge[0] == OK and int(edge[2]['frames']) > 0 and int(edge[2]['uplink B/s']) > 0, edge
    assert _server(seen)[0] == OK, _server(seen)
    assert {'model', 'device', 'queue', 'crops asked'} <= set(_server(seen)[2]), _server(seen)
    assert int(_link(seen)[2]['frames']) > 0, _link(seen)


def test_edge_and_server_processes_answer_over_dds(dds_env, capsys):
    # Both start at once: each loads the bundled model (the edge its vision tower).
    server = colvlm('server', '--namespace', NAMESPACE, '-p', 'policy=global',
                    '-p', 'gate.threshold=0.0', '-p', 'layers.timeout_s=10.0',
                    '-p', 'frame.max_age_s=0', '-p', 'status.period_s=0.5', env=dds_env)
    edge = colvlm('edge', '--source', 'synthetic', '--namespace', NAMESPACE,
                  '-p', 'source.fps=2', '-p', 'layers.enabled=true', '-p', 'layers.proactive=1',
                  '-p', 'status.period_s=0.5', env=dds_env)
    client = Client()
    try:
        server.wait_for(r'\bready: model', START_TIMEOUT_S)
        edge.wait_for(r'\bready: .*token layers pca4-tower', START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        while client.ask().status == Status.NO_FRAME:
            assert time.monotonic() < deadline, server.tail()
            time.sleep(0.3)
        _check_crop(client, edge)
        _check_layers(client)
        _check_ask_cli(capsys)
        _check_diagnostics(client)
        edge.kill()
        # A lost edge: the server's report of that camera leaves OK (its newest frame ages
        # past diagnostics.warn_age_s, and its services go once discovery sees it gone).
        lost = _link(_statuses(client, lambda seen: _link(seen) is not None
                               and _link(seen)[0] in (WARN, ERROR)))
        assert 'absent' in lost[1] or 'old' in lost[1], lost
    finally:
        edge.kill()
        client.node.shutdown()
        code = server.stop(signal.SIGINT, TIMEOUT_S)
    assert code == 0, server.tail()
    last = [line for line in server.lines if 'answered:' in line][-1]  # the final counts
    assert re.search(r'answered: .*\bok [3-9]', last), last
    assert 'Traceback' not in server.text()
