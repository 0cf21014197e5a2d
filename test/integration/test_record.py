"""`colvlm record` as its own process over real DDS: what a publisher sends ends up in a bag
that rosbags reads back with the right types, definitions and bytes (mcap and sqlite3)."""

from __future__ import annotations

import queue
import signal
import threading
import time

from conftest import spawn
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
import yaml

from colvlm_bench.cli import main as colvlm_main
from colvlm_msgs import stamps
from colvlm_msgs.bag import BagError, colvlm_typestore, open_reader
from colvlm_msgs.image_codec import encode_image
from colvlm_msgs.transport import create_node
from colvlm_msgs.typesupport import default_typesupport

TIMEOUT_S = 20.0
S = 1_000_000_000


class Lines:
    """A child's stderr lines, drained by a thread so that a chatty child never blocks."""

    def __init__(self, process):
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in self.process.stderr:
            self._queue.put(line.rstrip('\n'))

    def wait_for(self, predicate) -> str:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self._queue.empty():
                    break
                continue
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError('no such line in time; got:\n' + '\n'.join(self.lines[-20:]))

    def finish(self) -> list[str]:
        self.process.wait(timeout=TIMEOUT_S)
        self._thread.join(timeout=TIMEOUT_S)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return self.lines


def start_recorder(out, dds_env, *flags):
    process = spawn(['-m', 'colvlm_bench.cli', 'record', str(out), *flags], dds_env)
    lines = Lines(process)
    lines.wait_for(lambda line: '.recorder]: recording /' in line
                   or 'Traceback' in line)
    return process, lines


def wait_matched(publisher) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while publisher.subscription_count() == 0:
        assert time.monotonic() < deadline, f'nobody subscribed to {publisher.topic}'
        time.sleep(0.02)


def counts_reach(line: str, wanted: dict[str, int]) -> bool:
    return all(f'{topic} {count}' in line for topic, count in wanted.items())


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_recorded_bag_reads_back_with_types_definitions_and_bytes(tmp_path, dds_env, storage):
    out = tmp_path / 'bag'
    process, lines = start_recorder(out, dds_env, '--namespace', 'cam0', '--storage', storage,
                                    '--status-period', '0.2')
    node = create_node('record_test', 'cam0')
    sent: dict[str, list[bytes]] = {}
    try:
        specs = [('colvlm/msg/Query', 'colvlm/query', 'queries'),
                 ('colvlm/msg/Answer', 'colvlm/answer', 'answers'),
                 ('colvlm/msg/FrameGeometry', 'colvlm/global/geometry', 'frame_info'),
                 ('sensor_msgs/msg/CompressedImage', 'colvlm/global/compressed', 'frames')]
        publishers = {}
        for msg_type, topic, qos in specs:
            publishers[msg_type] = node.create_publisher(msg_type, topic, qos)
            wait_matched(publishers[msg_type])
        rng = np.random.default_rng(5)
        for index in range(3):
            query = node.message_type('colvlm/msg/Query')(
                query_id=f'rec-{storage}-{index}', question=f'Is there a red star? #{index}')
            stamps.fill(query.frame_stamp, 100 * S + index)
            answer = node.message_type('colvlm/msg/Answer')(
                query_id=query.query_id, answer=f'yes {index}', uplink_bytes=1000 + index,
                model_id='bundled')
            answer.first_pass.ran = True
            geometry = node.message_type('colvlm/msg/FrameGeometry')(
                original_width=640 + index, original_height=480, preprocess='pad')
            frame = node.message_type('sensor_msgs/msg/CompressedImage')(
                format='bgr8; png compressed bgr8',
                data=list(encode_image(rng.integers(0, 256, (16, 16, 3), np.uint8), 'png', 1)))
            stamps.fill(frame.header.stamp, 100 * S + index)
            for (msg_type, _, _), message in zip(specs, (query, answer, geometry, frame),
                                                 strict=True):
                sent.setdefault(msg_type, []).append(message.serialize(use_version_2=False))
                publishers[msg_type].publish(message)
            time.sleep(0.05)
        reliable = {'/cam0/colvlm/query': 3, '/cam0/colvlm/answer': 3,
                    '/cam0/colvlm/global/geometry': 3}
        lines.wait_for(lambda line: counts_reach(line, reliable))
    finally:
        node.shutdown()
        process.send_signal(signal.SIGINT)
    log = lines.finish()
    assert process.returncode == 0, '\n'.join(log[-20:])
    assert 'recorded ' in log[-1] and 'Traceback' not in '\n'.join(log)

    store = colvlm_typestore()
    support = default_typesupport()
    expected_types = {'/cam0/colvlm/query': 'colvlm/msg/Query',
                      '/cam0/colvlm/answer': 'colvlm/msg/Answer',
                      '/cam0/colvlm/global/geometry': 'colvlm/msg/FrameGeometry',
                      '/cam0/colvlm/global/compressed': 'sensor_msgs/msg/CompressedImage'}
    metadata = yaml.safe_load((out / 'metadata.yaml').read_text())
    assert metadata['rosbag2_bagfile_information']['storage_identifier'] == storage
    with Reader(out) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == expected_types
        for connection in reader.connections:
            # The definition and hash travel in the bag: readers need no colvlm installed.
            assert connection.digest == support.message(connection.msgtype).type_hash
            assert connection.msgdef.data.strip()
        received: dict[str, list] = {}
        for connection, _, raw in reader.messages():
            received.setdefault(connection.msgtype, []).append(
                (bytes(raw), store.deserialize_cdr(raw, connection.msgtype)))
    for msg_type in ('colvlm/msg/Query', 'colvlm/msg/Answer', 'colvlm/msg/FrameGeometry'):
        assert [raw for raw, _ in received[msg_type]] == sent[msg_type], msg_type
    # Frames are best effort: whatever arrived is exact, and on loopback something did.
    frames = received['sensor_msgs/msg/CompressedImage']
    assert frames and all(raw in sent['sensor_msgs/msg/CompressedImage'] for raw, _ in frames)
    queries = [message for _, message in received['colvlm/msg/Query']]
    assert [q.query_id for q in queries] == [f'rec-{storage}-{i}' for i in range(3)]
    assert stamps.to_ns(queries[2].frame_stamp) == 100 * S + 2
    answers = [message for _, message in received['colvlm/msg/Answer']]
    assert answers[1].uplink_bytes == 1001 and answers[1].first_pass.ran


def test_duration_stops_the_recorder_and_closes_the_bag(tmp_path, dds_env):
    out = tmp_path / 'bag'
    process, lines = start_recorder(out, dds_env, '--namespace', 'cam0', '--storage', 'sqlite3',
                                    '--no-frames', '--duration', '1')
    log = lines.finish()
    assert process.returncode == 0, '\n'.join(log[-20:])
    with Reader(out) as reader:
        assert sorted(c.msgtype for c in reader.connections) == ['colvlm/msg/Answer',
                                                                 'colvlm/msg/Query']
        assert reader.message_count == 0


def test_a_recorder_killed_half_way_leaves_a_bag_named_as_unfinished(tmp_path, dds_env,
                                                                    capsys):
    out = tmp_path / 'bag'
    process, lines = start_recorder(out, dds_env, '--namespace', 'cam0')
    process.kill()
    lines.finish()
    with pytest.raises(BagError, match='no metadata.yaml.*killed before it closed the bag'):
        open_reader(out)
    assert colvlm_main(['replay', str(out), '--out', str(tmp_path / 'o'), '--no-progress']) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and 'killed before it closed the bag' in err[0]


def test_an_existing_bag_is_never_overwritten(tmp_path, dds_env):
    out = tmp_path / 'bag'
    out.mkdir()
    process = spawn(['-m', 'colvlm_bench.cli', 'record', str(out), '--namespace', 'cam0'],
                    dds_env)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        f'colvlm record: cannot create bag {str(out)!r}: {out} exists already, not overwriting.']
