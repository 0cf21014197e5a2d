"""The `dds` backend: Cyclone DDS (PyPI `cyclonedds`) speaking rmw_cyclonedds_cpp's wire.

Topics `rt/<name>`, services `rq/<name>Request` + `rr/<name>Reply` carrying the 16-byte
request header, type names `pkg::msg::dds_::Name_`, XCDR1 only (rmw's readers match
nothing else), USER_DATA `typehash=RIHS01_...;` on endpoints and `clientid=`/`serviceid=`
on service endpoints, `enclave=/;` on the participant, ROS_DOMAIN_ID and
ROS_AUTOMATIC_DISCOVERY_RANGE honoured. Like rmw_cyclonedds, the participant publishes its
nodes and the GIDs of their readers and writers on `ros_discovery_info` (rmw_dds_common's
types), so that `ros2 node list` and `ros2 node info` on a ROS 2 machine name these nodes:
Jazzy's 16-byte GIDs, or with ROS_DISTRO humble (or older) Humble's 24-byte GIDs and no type
hash (discovery.graph_types). Each reader has a thread; service handlers run on a small pool
so that one may block on a call to another node.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
import itertools
import logging
import secrets
import threading
import time

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from colvlm_msgs import names
from colvlm_msgs.params import ParameterTable
from colvlm_msgs.qos import QosProfile, profile
from colvlm_msgs.transport import port
from colvlm_msgs.transport.actions import PortActions
from colvlm_msgs.transport.dds_readers import (
    POLL_S,
    DropLog,
    LateReplies,
    ReaderThread,
    user_data_value,
)
from colvlm_msgs.transport.discovery import (
    discovery_config,
    domain_id_from_environment,
    gid_data,
    gid_size,
    graph_types,
)
from colvlm_msgs.transport.logs import node_logger
from colvlm_msgs.transport.param_services import serve_parameters
from colvlm_msgs.typesupport import HEADER_GUID, HEADER_SEQUENCE, default_typesupport

# Service handlers at once per node: an ask blocks its handler until answered (the server
# keeps at most half of them waiting, port.SERVICE_THREADS), crops and frames do not.
_SERVICE_QUEUE = 2 * port.SERVICE_THREADS  # requests handed to the pool and not yet done
_KEEP_ALL_BACKLOG = 1024  # samples waiting for callbacks on a keep-all reader
_GRAPH_TOPIC = 'ros_discovery_info'  # no rt/ prefix: rmw avoids ROS conventions for it
# rmw_cyclonedds' own QoS for it: reliable, transient local, the newest sample only.
_GRAPH_QOS = QosProfile(_GRAPH_TOPIC, durability='transient_local', depth=1)

class _Participant:
    """One DDS participant per process and domain, shared by its nodes (like an rcl context)."""

    _lock = threading.Lock()
    _instances: dict[int, _Participant] = {}

    def __init__(self, domain_id: int):
        self.domain_id = domain_id
        self.domain = Domain(domain_id, discovery_config())
        self.participant = DomainParticipant(domain_id, qos=Qos(Policy.Userdata(b'enclave=/;')))
        self.topics: dict[str, Topic] = {}
        # rmw ids: 12 bytes of participant identity + a 4-byte big-endian counter.
        self._id_prefix = secrets.token_bytes(12)
        self._counter = itertools.count(1)
        # The ROS graph: node -> (namespace, name, GIDs of its readers, of its writers).
        self._nodes: dict[object, tuple[str, str, list[bytes], list[bytes]]] = {}
        self._graph_lock = threading.Lock()
        self._graph_writer: DataWriter | None = None
        self._gid_size = gid_size()  # Humble's 24 or Jazzy's 16, by ROS_DISTRO

    @classmethod
    def get(cls, domain_id: int) -> _Participant:
        with cls._lock:
            if domain_id not in cls._instances:
                cls._instances[domain_id] = cls(domain_id)
            return cls._instances[domain_id]

    def topic(self, name: str, data_type: type) -> Topic:
        with self._lock:
            if name not in self.topics:
                self.topics[name] = Topic(self.participant, name, data_type)
            return self.topics[name]

    def add_node(self, node: object, namespace: str, name: str) -> None:
        with self._graph_lock:
            self._nodes[node] = (namespace, name, [], [])
            self._publish_graph()

    def remove_node(self, node: object) -> None:
        with self._graph_lock:
            if self._nodes.pop(node, None) is not None:
                self._publish_graph()

    def associate(self, node: object, reader: DataReader | None = None,
                  writer: DataWriter | None = None) -> None:
        """Record a node's new reader and/or writer, as rmw's graph cache does."""
        with self._graph_lock:
            _, _, readers, writers = self._nodes[node]
            if reader is not None:
                readers.append(reader.guid.bytes)
            if writer is not None:
                writers.append(writer.guid.bytes)
            self._publish_graph()

    def _publish_graph(self) -> None:
        types, size = graph_types(self._gid_size), self._gid_size
        info = types.message('rmw_dds_common/msg/ParticipantEntitiesInfo')
        node_info = types.message('rmw_dds_common/msg/NodeEntitiesInfo').cls
        gid = types.message('rmw_dds_common/msg/Gid').cls
        if self._graph_writer is None:
            # Type hashes came with Iron: Humble's rmw neither sends nor reads them.
            self._graph_writer = DataWriter(
                self.participant, self.topic(_GRAPH_TOPIC, info.cls),
                qos=_qos(_GRAPH_QOS, f'typehash={info.type_hash};' if size == 16 else ''))
        self._graph_writer.write(info.cls(
            gid=gid(data=gid_data(self.participant.guid.bytes, size)),
            node_entities_info_seq=[
                node_info(node_namespace=namespace, node_name=name,
                          reader_gid_seq=[gid(data=gid_data(g, size)) for g in readers],
                          writer_gid_seq=[gid(data=gid_data(g, size)) for g in writers])
                for namespace, name, readers, writers in self._nodes.values()]))

    def endpoint_id(self) -> str:
        """A client/service id formatted as rmw_cyclonedds' csid_to_string does."""
        raw = self._id_prefix + next(self._counter).to_bytes(4, 'big')
        return f'{raw[0]:>2x}' + ''.join(f'.{b:x}' for b in raw[1:])


def _qos(qos: QosProfile, user_data: str) -> Qos:
    policies = [
        Policy.Reliability.Reliable(duration(seconds=1)) if qos.reliability == 'reliable'
        else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal if qos.durability == 'transient_local'
        else Policy.Durability.Volatile,
        Policy.History.KeepLast(qos.depth) if qos.history == 'keep_last'
        else Policy.History.KeepAll,
        Policy.DataRepresentation(use_cdrv0_representation=True),
        Policy.WriterDataLifecycle(autodispose=False),
        Policy.Userdata(user_data.encode('ascii')),
    ]
    if qos.deadline_ms:
        policies.append(Policy.Deadline(duration(milliseconds=qos.deadline_ms)))
    if qos.lifespan_ms:
        policies.append(Policy.Lifespan(duration(milliseconds=qos.lifespan_ms)))
    return Qos(*policies)


def _copy_fields(source, cls: type, **extra):
    """An instance of `cls` with the fields `cls` declares taken from `source` (the body of a
    service sample moving between its user-facing and its wire form), plus `extra`."""
    return cls(**extra, **{name: getattr(source, name) for name in cls.__annotations__
                           if name not in extra})


class DdsPublisher(port.Publisher):
    def __init__(self, writer: DataWriter, topic: str):
        self.writer, self.topic = writer, topic

    def publish(self, message) -> None:
        self.writer.write(message)

    def subscription_count(self) -> int:
        return self.writer.get_publication_matched_status().current_count


class DdsSubscription(port.Subscription):
    def __init__(self, topic: str, reader: DataReader | None = None):
        self.topic, self.dropped, self._reader = topic, 0, reader

    def publisher_count(self) -> int:
        return self._reader.get_subscription_matched_status().current_count


class DdsServiceServer(port.ServiceServer):
    def __init__(self, service: str):
        self.service = service


class DdsTimer(port.Timer):
    def __init__(self, period_s: float, callback: Callable, logger: logging.Logger,
                 stop: threading.Event):
        self._cancelled = threading.Event()
        self._stop = stop

        def run():
            while not (self._cancelled.wait(period_s) or stop.is_set()):
                try:
                    callback()
                except Exception as error:
                    logger.error(f'timer callback failed: {error!r}')

        threading.Thread(target=run, name='colvlm-timer', daemon=True).start()

    def cancel(self) -> None:
        self._cancelled.set()


class DdsClient(port.Client):
    def __init__(self, node: DdsNode, service_type, service: str):
        self.service = service
        self._node, self._type = node, service_type
        request_topic, reply_topic = names.dds_service_topics(service)
        participant = node._participant
        client_id = participant.endpoint_id()
        qos = profile('services', node.qos_profiles)
        self._writer = DataWriter(
            participant.participant,
            participant.topic(request_topic, service_type.request_wire),
            qos=_qos(qos, f'clientid={client_id};typehash={service_type.request_hash};'))
        self._reader = DataReader(
            participant.participant,
            participant.topic(reply_topic, service_type.response_wire),
            qos=_qos(qos, f'clientid={client_id};typehash={service_type.response_hash};'))
        # rmw uses the request writer's instance handle as the client's 64-bit id.
        self._guid = self._writer.get_instance_handle() & (2**64 - 1)
        participant.associate(node, reader=self._reader, writer=self._writer)
        self._sequence = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        node._add_reader(self._reader, self._on_reply, f'{service} replies', qos)

    def _on_reply(self, sample) -> None:
        if getattr(sample, HEADER_GUID) != self._guid:
            return  # another client's reply
        with self._lock:
            future = self._pending.pop(getattr(sample, HEADER_SEQUENCE), None)
        if future is not None:
            future.set_result(_copy_fields(sample, self._type.Response))

    def wait_for_service(self, timeout: float) -> bool:
        deadline = _deadline(timeout)
        while not (self._writer.get_publication_matched_status().current_count > 0
                   and self._reader.get_subscription_matched_status().current_count > 0):
            if _remaining(deadline) <= 0:
                return False
            time.sleep(0.02)
        return True

    def call(self, request, timeout: float):
        deadline = _deadline(timeout)
        if not self.wait_for_service(timeout):
            raise port.ServiceTimeout(f'service {self.service!r} is not available '
                                      f'(no server within {timeout:.1f} s)')
        sequence = next(self._sequence)
        future: Future = Future()
        with self._lock:
            self._pending[sequence] = future
        self._writer.write(_copy_fields(request, self._type.request_wire,
                                        **{HEADER_GUID: self._guid, HEADER_SEQUENCE: sequence}))
        try:
            return future.result(timeout=max(0.0, _remaining(deadline)))
        except TimeoutError:
            raise port.ServiceTimeout(f'service {self.service!r} did not answer within '
                                      f'{timeout:.1f} s') from None
        finally:
            with self._lock:
                self._pending.pop(sequence, None)


def _deadline(timeout: float) -> float:
    return time.monotonic() + timeout


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


class DdsNode(PortActions, port.WireTypesNode):
    """A node on the process's participant. Each reader has a thread that takes samples at
    once and another that runs the callbacks (dds_readers.py); service handlers run on a pool
    of port.SERVICE_THREADS; replies wait for their caller's reply reader on a thread of
    their own."""

    backend = 'dds'

    def __init__(self, name: str, namespace: str = '', domain_id: int | None = None,
                 parameters_file: str | None = None, qos_profiles: dict | None = None):
        self.name = names.validate_node_name(name)
        self.namespace = names.validate_namespace(namespace)
        self.logger = node_logger(self.namespace, self.name)
        self.parameters_file = parameters_file
        self.qos_profiles = qos_profiles
        self.domain_id = domain_id_from_environment() if domain_id is None else domain_id
        self._participant = _Participant.get(self.domain_id)
        self._participant.add_node(self, self.namespace, self.name)
        self._types = default_typesupport()
        self._stop = threading.Event()
        self._readers: list[ReaderThread] = []
        self._timers: list[DdsTimer] = []
        self._pool = ThreadPoolExecutor(max_workers=port.SERVICE_THREADS,
                                        thread_name_prefix=f'{name}-service')
        self._queued = threading.BoundedSemaphore(_SERVICE_QUEUE)  # requests in the pool
        self._replies = LateReplies(self._stop, self.logger)

    def serialized_size(self, message) -> int:
        return len(message.serialize(use_version_2=False))

    # Endpoints
    def _add_reader(self, reader: DataReader, on_sample: Callable, what: str, qos: QosProfile,
                    counter: port.Subscription | None = None) -> None:
        malformed = DropLog(self.logger, f'dropped a malformed sample on {what}')
        behind = DropLog(self.logger, f'dropped a sample on {what}')
        limit = qos.depth if qos.history == 'keep_last' else _KEEP_ALL_BACKLOG

        def on_error(error: Exception) -> None:
            if counter is not None:
                counter.dropped += 1
            malformed.drop(str(error))

        def on_overflow() -> None:
            if counter is not None:
                counter.dropped += 1
            behind.drop(f'{limit} (the {qos.name!r} depth) were waiting for callbacks')

        self._readers.append(ReaderThread(reader, on_sample, on_error, self._stop,
                                          f'{self.name}:{what}', limit, on_overflow))

    def create_publisher(self, msg_type: str, topic: str, qos) -> port.Publisher:
        info = self._types.message(msg_type)
        full = self.resolve_name(topic)
        writer = DataWriter(
            self._participant.participant,
            self._participant.topic(names.dds_topic(full), info.cls),
            qos=_qos(profile(qos, self.qos_profiles), f'typehash={info.type_hash};'))
        self._participant.associate(self, writer=writer)
        return DdsPublisher(writer, full)

    def create_subscription(self, msg_type: str, topic: str, callback: Callable,
                            qos) -> port.Subscription:
        info = self._types.message(msg_type)
        full = self.resolve_name(topic)
        reader = DataReader(
            self._participant.participant,
            self._participant.topic(names.dds_topic(full), info.cls),
            qos=_qos(profile(qos, self.qos_profiles), f'typehash={info.type_hash};'))
        self._participant.associate(self, reader=reader)
        subscription = DdsSubscription(full, reader)
        qos = profile(qos, self.qos_profiles)

        def on_sample(sample) -> None:
            del sample.sample_info
            try:
                callback(sample)
            except Exception as error:
                subscription.dropped += 1
                self.logger.error(f'callback on {full} failed: {error!r}')

        self._add_reader(reader, on_sample, full, qos, subscription)
        return subscription

    def create_service(self, srv_type: str, name: str, handler: Callable) -> port.ServiceServer:
        service_type = self._types.service(srv_type)
        full = self.resolve_name(name)
        request_topic, reply_topic = names.dds_service_topics(full)
        service_id = self._participant.endpoint_id()
        qos = profile('services', self.qos_profiles)
        reader = DataReader(
            self._participant.participant,
            self._participant.topic(request_topic, service_type.request_wire),
            qos=_qos(qos, f'serviceid={service_id};typehash={service_type.request_hash};'))
        writer = DataWriter(
            self._participant.participant,
            self._participant.topic(reply_topic, service_type.response_wire),
            qos=_qos(qos, f'serviceid={service_id};typehash={service_type.response_hash};'))
        self._participant.associate(self, reader=reader, writer=writer)
        reply_lock = threading.Lock()

        def serve(sample) -> None:
            guid, sequence = getattr(sample, HEADER_GUID), getattr(sample, HEADER_SEQUENCE)
            client_id = user_data_value(
                reader.get_matched_publication_data(sample.sample_info.publication_handle),
                'clientid')
            try:
                with port.serving_caller(f'{guid:016x}'):
                    response = handler(_copy_fields(sample, service_type.Request))
            except Exception as error:
                self.logger.error(f'service {full} handler failed: {error!r}')
                response = service_type.Response()  # success=false where it has one
            # rmw replies only once the caller's reply reader matched; LateReplies waits.
            self._replies.send(writer, reply_lock, client_id, _copy_fields(
                response, service_type.response_wire,
                **{HEADER_GUID: guid, HEADER_SEQUENCE: sequence}))

        self._add_reader(reader, lambda sample: self._submit(serve, sample), full, qos)
        return DdsServiceServer(full)

    def _submit(self, serve: Callable, sample) -> None:
        """Hand a request to the pool; with _SERVICE_QUEUE there already, wait (its reader's
        backlog then keeps the newest `services` depth, dropping the oldest)."""
        while not self._queued.acquire(timeout=POLL_S):
            if self._stop.is_set():
                return

        def run() -> None:
            try:
                serve(sample)
            finally:
                self._queued.release()

        try:
            self._pool.submit(run)
        except RuntimeError:  # the pool is shut: the node is shutting down
            self._queued.release()

    def create_client(self, srv_type: str, name: str) -> port.Client:
        return DdsClient(self, self._types.service(srv_type), self.resolve_name(name))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> port.Timer:
        self._timers.append(DdsTimer(period_s, callback, self.logger, self._stop))
        return self._timers[-1]

    def declare_parameters(self, table: ParameterTable, overrides: dict | None = None,
                           base: dict | None = None) -> dict:
        qualified = f'{self.namespace.rstrip("/")}/{self.name}'
        values = table.load(self.parameters_file, qualified, overrides, base)
        serve_parameters(self, table, values)  # `ros2 param list/get/describe`, read-only
        return values

    # Lifetime
    def spin(self) -> None:
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        for timer in self._timers:  # their threads end now, not a period later
            timer.cancel()
        for reader in self._readers:
            reader.join(timeout=2 * POLL_S + 1)
        self._replies.join(timeout=2 * POLL_S + 1)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._participant.remove_node(self)
