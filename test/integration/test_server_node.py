"""The server and the edge as their own processes over real DDS, end to end: a two-stage
answer with a crop of the original crosses the wire with both ends counting the same bytes,
`colvlm ask` (run in this process) prints an answer and exits by its status, and the server
stops cleanly on SIGINT with its counts. What the node answers in each situation (busy, no
frame, stale, a lost edge, a failing model) is tested on the in-memory transport in
test/unit/test_server_node.py.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import time
import uuid

from processes import START_TIMEOUT_S, colvlm, running

from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.transport import create_node

NAMESPACE = 'cam0'
TIMEOUT_S = 60.0


class Client:
    """A test node in the server's namespace: asks, and remembers the frames it saw."""

    def __init__(self):
        self.node = create_node(f'test_client_{uuid.uuid4().hex[:6]}', NAMESPACE)
        self.frames: dict[int, dict] = {}  # stamp -> {'bytes', 'width', 'height'}
        self.node.create_subscription('sensor_msgs/msg/CompressedImage',
                                      'colvlm/global/compressed', self._on_image, 'frames')
        self.node.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                      self._on_geometry, 'frame_info')
        self.ask_type = self.node.service_type('colvlm/srv/Ask')
        self._ask = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')

    def _frame(self, stamp) -> dict:
        return self.frames.setdefault(stamps.to_ns(stamp), {'bytes': 0})

    def _on_image(self, message) -> None:
        self._frame(message.header.stamp)['bytes'] += self.node.serialized_size(message)

    def _on_geometry(self, message) -> None:
        frame = self._frame(message.header.stamp)
        frame['bytes'] += self.node.serialized_size(message)
        frame['width'], frame['height'] = message.original_width, message.original_height

    def ask(self, **fields):
        request = self.ask_type.Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question = 'What is written on the sign?'
        for name, value in fields.items():
            setattr(request.query, name, value)
        answer = self._ask.call(request, timeout=TIMEOUT_S).answer
        assert answer.query_id == request.query.query_id
        return answer


def _ask_cli(capsys, *args) -> tuple[int, str, str]:
    """`colvlm ask ARGS...` in this process (the dds_env fixture set its environment)."""
    from colvlm_bench import ask_cli

    parser = argparse.ArgumentParser()
    ask_cli.add_arguments(parser)
    code = ask_cli.run(parser.parse_args(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_edge_and_server_processes_answer_over_dds(dds_env, tiny_llava_path, capsys):
    server = colvlm('server', '--model', str(tiny_llava_path), '--namespace', NAMESPACE,
                    '-p', 'policy=global', '-p', 'status.period_s=0.5', env=dds_env)
    client = Client()
    try:
        server.wait_for(r'\bready: model', START_TIMEOUT_S)
        with running('edge', '--source', 'synthetic', '--namespace', NAMESPACE,
                     '-p', 'source.fps=2', '-p', 'status.period_s=0.5', env=dds_env) as edge:
            deadline = time.monotonic() + START_TIMEOUT_S
            while (answer := client.ask(policy='always')).status == Status.NO_FRAME:
                assert time.monotonic() < deadline, server.tail()
                time.sleep(0.3)
            assert answer.status == Status.OK, answer.status_message
            assert answer.decision == Decision.LOCAL_CROP and answer.second_pass.ran
            frame = client.frames[stamps.to_ns(answer.frame_stamp)]
            roi = answer.roi
            assert 0 < roi.x_offset + roi.width <= frame['width']
            assert 0 < roi.y_offset + roi.height <= frame['height']
            assert answer.uplink_global_bytes == frame['bytes']
            assert answer.uplink_bytes == answer.uplink_global_bytes + answer.uplink_crop_bytes
            # The edge counts what it sent; the server counted the same reply.
            assert int(edge.wait_for(r'uplink: crop 1 msgs (\d+) B', TIMEOUT_S).group(1)) == \
                answer.uplink_crop_bytes

            code, out, err = _ask_cli(capsys, 'What is written?', '--namespace', NAMESPACE,
                                      '--json')
            assert code == 0, err
            printed = json.loads(out)
            assert (printed['status_name'], printed['decision_name']) == ('OK', 'GLOBAL')
            assert printed['camera'] == f'/{NAMESPACE}' and printed['uplink_global_bytes'] > 0
            code, out, _ = _ask_cli(capsys, 'Which?', '--namespace', NAMESPACE,
                                    '--policy', 'often')
            assert code == 1 and 'status: BAD_REQUEST' in out
        code, _, err = _ask_cli(capsys, 'Anyone?', '--namespace', 'nowhere', '--timeout', '1')
        assert code == 2 and 'not available' in err
    finally:
        client.node.shutdown()
        code = server.stop(signal.SIGINT, TIMEOUT_S)
    assert code == 0, server.tail()
    last = [line for line in server.lines if 'answered:' in line][-1]  # the final counts
    assert re.search(r'answered: .*\bok [2-9]', last), last
    assert 'Traceback' not in server.text()
