"""The in-memory transport keeps the port's contract: real message classes through CDR,
per-subscription threads, blocking service calls with timeouts, timers, QoS depth."""

from __future__ import annotations

import threading

import pytest

from colvlm_msgs.qos import QosProfile
from colvlm_msgs.transport.memory import MemoryBus, MemoryNode
from colvlm_msgs.transport.port import ServiceTimeout
from colvlm_msgs.typesupport import message_class


@pytest.fixture
def bus():
    return MemoryBus()


@pytest.fixture
def nodes(bus):
    made = []

    def make(name, namespace=''):
        made.append(MemoryNode(name, namespace, bus=bus))
        return made[-1]

    yield make
    for node in made:
        node.shutdown()


def _collector():
    got, arrived = [], threading.Event()

    def on_message(message):
        got.append((message, threading.current_thread()))
        arrived.set()

    return got, arrived, on_message


def test_a_message_crosses_as_cdr_into_the_real_class(nodes):
    edge, server = nodes('edge', 'cam0'), nodes('server')
    got, arrived, on_message = _collector()
    server.create_subscription('colvlm/msg/Query', '/cam0/colvlm/query', on_message, 'queries')
    publisher = edge.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    assert publisher.topic == '/cam0/colvlm/query' and publisher.subscription_count() == 1
    sent = edge.message_type('colvlm/msg/Query')(query_id='q1', question='what colour?',
                                                 max_new_tokens=3)
    publisher.publish(sent)
    assert arrived.wait(10)
    message, thread = got[0]
    assert type(message) is message_class('colvlm/msg/Query')
    assert message is not sent and message == sent
    assert thread is not threading.current_thread()  # callbacks run on the transport's thread
    assert edge.serialized_size(sent) == len(sent.serialize(use_version_2=False))


def test_a_message_that_does_not_serialize_fails_in_publish(nodes):
    node = nodes('edge')
    publisher = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    with pytest.raises(Exception):  # noqa: B017 (cyclonedds raises its own error types)
        publisher.publish(node.message_type('colvlm/msg/Query')(max_new_tokens=-1))


def test_keep_last_drops_the_oldest_while_the_callback_is_busy(nodes):
    sender, receiver = nodes('sender'), nodes('receiver')
    started, release, handled, got = threading.Event(), threading.Event(), \
        threading.Semaphore(0), []

    def slow(message):
        started.set()
        release.wait(10)
        got.append(message.question)
        handled.release()

    depth10 = QosProfile('depth10', reliability='best_effort', depth=10)
    receiver.create_subscription('colvlm/msg/Query', 'q', slow, depth10)
    publisher = sender.create_publisher('colvlm/msg/Query', 'q', depth10)
    kind = sender.message_type('colvlm/msg/Query')
    publisher.publish(kind(question='first'))
    assert started.wait(10)  # taken: the queue is empty again
    for number in range(25):
        publisher.publish(kind(question=str(number)))
    release.set()
    for _ in range(11):
        assert handled.acquire(timeout=10)
    assert got == ['first'] + [str(n) for n in range(15, 25)]  # the newest depth samples


def test_a_failing_callback_is_counted_and_the_next_sample_still_arrives(nodes):
    sender, receiver = nodes('sender'), nodes('receiver')
    got, arrived, _ = _collector()

    def on_message(message):
        if message.question == 'bad':
            raise RuntimeError('boom')
        got.append(message)
        arrived.set()

    subscription = receiver.create_subscription('colvlm/msg/Query', 'q', on_message, 'queries')
    publisher = sender.create_publisher('colvlm/msg/Query', 'q', 'queries')
    kind = sender.message_type('colvlm/msg/Query')
    publisher.publish(kind(question='bad'))
    publisher.publish(kind(question='good'))
    assert arrived.wait(10)
    assert got[0].question == 'good' and subscription.dropped == 1


def test_transient_local_replays_to_a_late_subscriber(nodes):
    latched = QosProfile('latched', durability='transient_local', depth=1)
    sender, receiver = nodes('sender'), nodes('receiver')
    publisher = sender.create_publisher('colvlm/msg/Query', 'q', latched)
    kind = sender.message_type('colvlm/msg/Query')
    publisher.publish(kind(question='old'))
    publisher.publish(kind(question='newest'))
    volatile, volatile_arrived, on_volatile = _collector()
    receiver.create_subscription('colvlm/msg/Query', 'q', on_volatile,
                                 QosProfile('volatile', depth=1))
    got, arrived, on_message = _collector()
    receiver.create_subscription('colvlm/msg/Query', 'q', on_message, latched)
    assert arrived.wait(10) and got[0][0].question == 'newest'
    publisher.publish(kind(question='later'))  # reaches both
    while len(got) < 2:
        arrived.clear()
        assert arrived.wait(10)
    assert [m.question for m, _ in got] == ['newest', 'later']
    assert volatile_arrived.wait(10)  # its first sample is the one sent after it joined
    assert volatile[0][0].question == 'later'


def test_a_service_answers_and_its_handler_may_call_another_service(nodes):
    edge, relay, caller = nodes('edge'), nodes('relay'), nodes('caller')
    frame_type = edge.service_type('colvlm/srv/RequestFrame')

    def serve_frame(request):
        response = frame_type.Response(success=True)
        response.frame_stamp.sec = request.newer_than.sec + 1
        return response

    edge.create_service('colvlm/srv/RequestFrame', 'frame', serve_frame)
    inner = relay.create_client('colvlm/srv/RequestFrame', 'frame')
    relay.create_service('colvlm/srv/RequestFrame', 'relay',
                         lambda request: inner.call(request, timeout=10))
    client = caller.create_client('colvlm/srv/RequestFrame', 'relay')
    assert client.wait_for_service(1)
    request = frame_type.Request()
    request.newer_than.sec = 41
    response = client.call(request, timeout=10)
    assert type(response) is frame_type.Response
    assert response.success and response.frame_stamp.sec == 42


def test_a_failing_handler_answers_the_empty_response(nodes):
    server, caller = nodes('server'), nodes('caller')

    def broken(request):
        raise RuntimeError('boom')

    server.create_service('colvlm/srv/RequestFrame', 'frame', broken)
    client = caller.create_client('colvlm/srv/RequestFrame', 'frame')
    response = client.call(client.node.service_type('colvlm/srv/RequestFrame').Request(), 10)
    assert response.success is False


def test_calls_time_out_naming_the_service(nodes):
    server, caller = nodes('server'), nodes('caller')
    missing = caller.create_client('colvlm/srv/RequestFrame', 'nobody')
    assert not missing.wait_for_service(0.05)
    request = caller.service_type('colvlm/srv/RequestFrame').Request()
    with pytest.raises(ServiceTimeout, match="'/nobody' is not available"):
        missing.call(request, timeout=0.05)
    release = threading.Event()
    server.create_service('colvlm/srv/RequestFrame', 'slow',
                          lambda request: release.wait(10) and None)
    slow = caller.create_client('colvlm/srv/RequestFrame', 'slow')
    try:
        with pytest.raises(ServiceTimeout, match="'/slow' did not answer"):
            slow.call(request, timeout=0.05)
    finally:
        release.set()


def test_one_service_name_is_served_once(nodes):
    first, second = nodes('first'), nodes('second')
    first.create_service('colvlm/srv/RequestFrame', '/frame', lambda request: None)
    with pytest.raises(ValueError, match="'/frame' is already served"):
        second.create_service('colvlm/srv/RequestFrame', '/frame', lambda request: None)


def test_timers_fire_until_cancelled_and_a_shut_down_node_is_gone(nodes, bus):
    node = nodes('timed')
    ticks = threading.Semaphore(0)
    timer = node.create_timer(0.001, ticks.release)
    assert ticks.acquire(timeout=10) and ticks.acquire(timeout=10)
    timer.cancel()
    node.create_service('colvlm/srv/RequestFrame', 'frame', lambda request: None)
    node.shutdown()
    node.shutdown()  # twice is fine
    assert node.closed and bus.server('/frame', 0) is None
    with pytest.raises(RuntimeError, match='shut down'):
        node.create_publisher('colvlm/msg/Query', 'q', 'queries').publish(
            node.message_type('colvlm/msg/Query')())


def test_names_resolve_and_unknown_types_fail_as_on_dds(nodes):
    node = nodes('server', '/robot')
    assert node.resolve_name('colvlm/ask') == '/robot/colvlm/ask'
    assert node.resolve_name('~/status') == '/robot/server/status'
    with pytest.raises(Exception, match='Nope'):
        node.create_publisher('colvlm/msg/Nope', 'x', 'queries')


def test_a_best_effort_writer_does_not_reach_a_reliable_reader(nodes):
    sender, receiver = nodes('sender'), nodes('receiver')
    reliable, reliable_arrived, on_reliable = _collector()
    best_effort, best_effort_arrived, on_best_effort = _collector()
    receiver.create_subscription('colvlm/msg/Query', 'q', on_reliable, 'queries')
    receiver.create_subscription('colvlm/msg/Query', 'q', on_best_effort,
                                 QosProfile('be', reliability='best_effort'))
    publisher = sender.create_publisher('colvlm/msg/Query', 'q',
                                        QosProfile('be', reliability='best_effort'))
    publisher.publish(sender.message_type('colvlm/msg/Query')(question='lossy'))
    assert best_effort_arrived.wait(10) and best_effort[0][0].question == 'lossy'
    sender.create_publisher('colvlm/msg/Query', 'q', 'queries').publish(
        sender.message_type('colvlm/msg/Query')(question='sure'))
    assert reliable_arrived.wait(10)
    # In order per subscription: 'lossy' would have come first. DDS matches no reliable
    # reader to a best-effort writer.
    assert [m.question for m, _ in reliable] == ['sure']
