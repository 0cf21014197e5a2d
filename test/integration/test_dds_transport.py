"""Two processes over real Cyclone DDS on loopback, speaking rmw_cyclonedds' wire."""

from __future__ import annotations

import logging
import queue
import struct
import subprocess
import threading
import time

from cdr_reference import reference_typestore, to_rosbags
from conftest import spawn
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import Policy
import pytest

from colvlm_msgs.transport import ServiceTimeout, create_node

PEER = 'test/integration/dds_peer.py'
TIMEOUT_S = 20.0


class Peer:
    """A dds_peer.py process: send it commands, wait for its lines."""

    def __init__(self, role: str, namespace: str, env: dict):
        self.process = spawn([PEER, role, namespace], env, stdin=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect('ready')

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def send(self, command: str) -> None:
        self.process.stdin.write(command + '\n')
        self.process.stdin.flush()

    def expect(self, line: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.lines.get(timeout=0.5) == line:
                    return
            except queue.Empty:
                if self.process.poll() is not None:
                    break
        raise AssertionError(f'peer never printed {line!r}; stderr: {self.stderr()}')

    def stderr(self) -> str:
        if self.process.poll() is None:
            return '(still running)'
        return self.process.stderr.read()

    def close(self) -> int:
        if self.process.poll() is None:
            self.send('quit')
        return self.process.wait(timeout=TIMEOUT_S)


@pytest.fixture
def node(dds_env):
    node = create_node('test_client', 'robot')
    yield node
    node.shutdown()


def collect(node, msg_type: str, topic: str, qos: str) -> queue.Queue:
    received: queue.Queue = queue.Queue()
    node.create_subscription(msg_type, topic, received.put, qos)
    return received


def drain(received: queue.Queue, count: int) -> list:
    items = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(items) < count and time.monotonic() < deadline:
        try:
            items.append(received.get(timeout=0.2))
        except queue.Empty:
            pass
    return items


def test_reliable_topic_delivers_every_message_across_processes(node, dds_env):
    received = collect(node, 'colvlm/msg/Query', 'colvlm/query', 'queries')
    peer = Peer('talker', 'robot', dds_env)
    peer.send('publish 30')
    peer.expect('published')
    messages = drain(received, 30)
    assert [m.query_id for m in messages] == [f'q{i}' for i in range(30)]
    assert messages[7].question == 'question 7'
    assert peer.close() == 0


def test_a_burst_reaches_a_slow_callback_whole(node, dds_env):
    """Issue 19: 200 queries in a burst to a callback spending ms each lost 123 of them from
    the reader's history; samples are now taken off the reader at once."""
    received: queue.Queue = queue.Queue()

    def slow(message) -> None:
        time.sleep(0.005)  # what answering BUSY costs the server
        received.put(message)

    node.create_subscription('colvlm/msg/Query', 'colvlm/query', slow, 'queries')
    peer = Peer('talker', 'robot', dds_env)
    peer.send('publish 1')  # once both sides have matched: the burst is what is tested
    peer.expect('published')
    assert [m.query_id for m in drain(received, 1)] == ['q0']
    peer.send('publish 200')
    peer.expect('published')
    messages = drain(received, 200)
    assert [m.query_id for m in messages] == [f'q{i}' for i in range(200)]
    assert peer.close() == 0


def test_service_call_and_topic_round_trip_across_processes(node, dds_env):
    peer = Peer('server', 'robot', dds_env)
    crop = node.service_type('colvlm/srv/CropRoi')
    client = node.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')
    request = crop.Request(margin=12, output_width=300_000, output_height=7, codec='png')
    request.roi.x_offset, request.roi.width = 5, 640
    request.frame_stamp.sec = 1234
    response = client.call(request, timeout=TIMEOUT_S)
    assert response.success and response.status_message == 'margin=12'
    assert response.applied_roi.x_offset == 5 and response.applied_roi.width == 640
    assert len(response.image.data) == 300_000 and response.image.format == 'png'
    assert response.image.header.stamp.sec == 1234

    # Concurrent callers each get their own reply (matched by the request header).
    results = {}

    def call(margin: int) -> None:
        results[margin] = client.call(crop.Request(margin=margin), timeout=TIMEOUT_S)

    threads = [threading.Thread(target=call, args=(m,)) for m in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {m: r.status_message for m, r in results.items()} == {
        m: f'margin={m}' for m in range(8)}

    answers = collect(node, 'colvlm/msg/Answer', 'colvlm/answer', 'answers')
    publisher = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    deadline = time.monotonic() + TIMEOUT_S
    while publisher.subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    query_type = node.message_type('colvlm/msg/Query')
    publisher.publish(query_type(query_id='unique-7f3a', question='what is red?'))
    [answer] = drain(answers, 1)
    assert answer.query_id == 'unique-7f3a' and answer.answer == 'WHAT IS RED?'
    assert peer.close() == 0


def test_call_to_absent_service_times_out_naming_it(node):
    client = node.create_client('colvlm/srv/CropRoi', 'colvlm/no_such_service')
    with pytest.raises(ServiceTimeout, match='/robot/colvlm/no_such_service'):
        client.call(node.service_type('colvlm/srv/CropRoi').Request(), timeout=0.5)
    assert not client.wait_for_service(0.2)


def test_best_effort_writer_does_not_reach_a_reliable_reader(node, dds_env):
    """DDS QoS matching: a reliable reader refuses a best-effort writer, not the reverse."""
    other = create_node('second', 'robot')
    try:
        reliable = collect(other, 'colvlm/msg/Query', 'colvlm/query', 'queries')
        best_effort = collect(other, 'colvlm/msg/Query', 'colvlm/query', 'frames')
        frames_writer = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'frames')
        query_writer = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
        deadline = time.monotonic() + TIMEOUT_S
        while (frames_writer.subscription_count() < 1 or query_writer.subscription_count() < 2) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert frames_writer.subscription_count() == 1   # only the best-effort reader
        assert query_writer.subscription_count() == 2
        query_type = node.message_type('colvlm/msg/Query')
        frames_writer.publish(query_type(query_id='best-effort'))
        query_writer.publish(query_type(query_id='reliable'))
        assert sorted(m.query_id for m in drain(best_effort, 2)) == ['best-effort', 'reliable']
        assert [m.query_id for m in drain(reliable, 1)] == ['reliable']
        time.sleep(0.3)
        assert reliable.empty()
    finally:
        other.shutdown()


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_malformed_sample_is_logged_and_dropped_and_the_node_keeps_serving(node, dds_env):
    received = collect(node, 'colvlm/msg/Query', 'colvlm/query', 'queries')
    recorder = _Recorder()
    node.logger.addHandler(recorder)
    peer = Peer('malformed', 'robot', dds_env)
    peer.send('send')
    peer.expect('sent')
    [after] = drain(received, 1)
    assert after.query_id == 'after'
    assert any('malformed sample on /robot/colvlm/query' in line for line in recorder.lines)
    assert peer.close() == 0


def test_wire_names_user_data_and_request_header_follow_rmw_cyclonedds(node, dds_env):
    from cyclonedds._clayer import ddspy_take  # raw bytes, as they crossed the wire
    from cyclonedds.sub import DataReader

    peer = Peer('server', 'robot', dds_env)
    store = reference_typestore()
    participant = node._participant.participant
    builtin = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
    seen = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < 2 and time.monotonic() < deadline:
        for endpoint in builtin.take(N=50):
            if endpoint.topic_name in ('rt/robot/colvlm/answer', 'rr/robot/colvlm/crop_roiReply'):
                seen[endpoint.topic_name] = endpoint
        time.sleep(0.05)
    answer_writer = seen['rt/robot/colvlm/answer']
    assert answer_writer.type_name == 'colvlm::msg::dds_::Answer_'
    user_data = answer_writer.qos[Policy.Userdata].data.decode()
    assert user_data == f'typehash={store.hash_rihs01("colvlm/msg/Answer")};'
    reply_writer = seen['rr/robot/colvlm/crop_roiReply']
    assert reply_writer.type_name == 'colvlm::srv::dds_::CropRoi_Response_'
    reply_user_data = reply_writer.qos[Policy.Userdata].data.decode()
    assert reply_user_data.startswith('serviceid=')
    assert reply_user_data.endswith(
        f';typehash={store.hash_rihs01("colvlm/srv/CropRoi_Response")};')

    # The request as it crossed the wire: header {guid, seq} then the body's CDR.
    crop = node.service_type('colvlm/srv/CropRoi')
    tap = DataReader(participant, node._participant.topic('rq/robot/colvlm/crop_roiRequest',
                                                          crop.request_wire))
    client = node.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')
    request = crop.Request(margin=3, codec='jpeg', quality=80)
    client.call(request, timeout=TIMEOUT_S)
    [(raw, _info)] = ddspy_take(tap._ref, 0xFFFF, 1)
    reference = bytes(store.serialize_cdr(to_rosbags(request, 'colvlm/srv/CropRoi_Request', store),
                                          'colvlm/srv/CropRoi_Request'))
    assert raw[:4] == b'\x00\x01\x00\x00'                  # CDR little-endian, XCDR1
    guid, sequence = struct.unpack('<Qq', raw[4:20])
    assert guid == client._guid and sequence == 1
    assert raw[20:20 + len(reference) - 4] == reference[4:]
    assert set(raw[20 + len(reference) - 4:]) <= {0}     # rmw-style padding to 4 bytes
    assert peer.close() == 0


def test_nodes_and_their_endpoints_are_named_on_ros_discovery_info(node, dds_env):
    # What `ros2 node list` / `ros2 node info` read (rmw_dds_common's graph): each
    # participant publishes its nodes with the DDS GUIDs of their readers and writers.
    from cyclonedds.builtin import BuiltinTopicDcpsSubscription
    from cyclonedds.core import Qos
    from cyclonedds.sub import DataReader

    peer = Peer('server', 'robot', dds_env)
    participant = node._participant.participant
    info_type = node.message_type('rmw_dds_common/msg/ParticipantEntitiesInfo')
    graph = DataReader(participant, node._participant.topic('ros_discovery_info', info_type),
                       qos=Qos(Policy.Reliability.Reliable(0), Policy.Durability.TransientLocal,
                               Policy.History.KeepAll,
                               Policy.DataRepresentation(use_cdrv0_representation=True)))
    builtin = {'writer': BuiltinDataReader(participant, BuiltinTopicDcpsPublication),
               'reader': BuiltinDataReader(participant, BuiltinTopicDcpsSubscription)}
    wanted = {('writer', 'rt/robot/colvlm/answer'), ('writer', 'rr/robot/colvlm/crop_roiReply'),
              ('reader', 'rt/robot/colvlm/query'), ('reader', 'rq/robot/colvlm/crop_roiRequest')}
    endpoints, infos = {}, {}
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for kind, reader in builtin.items():
            for endpoint in reader.take(N=50):
                if (kind, endpoint.topic_name) in wanted:
                    endpoints[(kind, endpoint.topic_name)] = endpoint
        for sample in graph.take(N=50):
            infos[bytes(sample.gid.data)] = sample
        peer_gid = next(iter({e.participant_key.bytes for e in endpoints.values()}), None)
        if len(endpoints) == len(wanted) and peer_gid in infos:
            break
        time.sleep(0.05)
    assert len(endpoints) == len(wanted), f'discovered only {sorted(endpoints)}'
    info = infos[peer_gid]
    [entry] = [e for e in info.node_entities_info_seq if e.node_name == 'peer_server']
    assert entry.node_namespace == '/robot'
    gids = {'reader': {bytes(g.data) for g in entry.reader_gid_seq},
            'writer': {bytes(g.data) for g in entry.writer_gid_seq}}
    for (kind, topic), endpoint in endpoints.items():
        assert endpoint.key.bytes in gids[kind], f'{topic} {kind} is not in the node entry'
    # This process names its own node the same way.
    own = infos.get(participant.guid.bytes)
    assert own is not None and any(e.node_name == 'test_client' and e.node_namespace == '/robot'
                                   for e in own.node_entities_info_seq)
    assert peer.close() == 0


def test_a_humble_process_names_its_nodes_with_24_byte_gids(dds_env):
    # ROS_DISTRO=humble: ros_discovery_info as Humble's rmw_cyclonedds writes it, read raw
    # here by a plain participant and decoded with rosbags' Humble types.
    from cyclonedds._clayer import ddspy_take
    from cyclonedds.core import Qos
    from cyclonedds.domain import Domain, DomainParticipant
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from rosbags.typesys import Stores, get_typestore

    from colvlm_msgs.transport.discovery import discovery_config, graph_types

    domain_id = int(dds_env['ROS_DOMAIN_ID'])
    domain = Domain(domain_id, discovery_config(dds_env))  # noqa: F841 (held: loopback)
    participant = DomainParticipant(domain_id)
    info_type = graph_types(24).message('rmw_dds_common/msg/ParticipantEntitiesInfo').cls
    graph = DataReader(participant, Topic(participant, 'ros_discovery_info', info_type),
                       qos=Qos(Policy.Reliability.Reliable(0), Policy.Durability.TransientLocal,
                               Policy.History.KeepAll,
                               Policy.DataRepresentation(use_cdrv0_representation=True)))
    writers = BuiltinDataReader(participant, BuiltinTopicDcpsPublication)
    peer = Peer('server', 'robot', {**dds_env, 'ROS_DISTRO': 'humble'})
    store = get_typestore(Stores.ROS2_HUMBLE)
    entry = answer_writer = None
    deadline = time.monotonic() + TIMEOUT_S
    while (entry is None or answer_writer is None) and time.monotonic() < deadline:
        for endpoint in writers.take(N=50):
            if endpoint.topic_name == 'rt/robot/colvlm/answer':
                answer_writer = endpoint
        for raw, _info in ddspy_take(graph._ref, 0xFFFF, 50):
            sample = store.deserialize_cdr(raw, 'rmw_dds_common/msg/ParticipantEntitiesInfo')
            for candidate in sample.node_entities_info_seq:
                if candidate.node_name == 'peer_server':
                    info, entry = sample, candidate
        time.sleep(0.05)
    assert entry is not None and answer_writer is not None, peer.stderr()
    assert len(info.gid.data) == 24 and bytes(info.gid.data[16:]) == bytes(8)
    assert answer_writer.key.bytes + bytes(8) in {bytes(g.data) for g in entry.writer_gid_seq}
    assert entry.node_namespace == '/robot'
    assert peer.close() == 0
