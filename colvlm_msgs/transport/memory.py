"""The `memory` backend: nodes of one process talking through a `MemoryBus`, no middleware.

It keeps the port's threading contract, so node logic tested on it behaves as on `dds`: each
subscription has its own thread (one subscription's callbacks never overlap, different ones
do), service handlers run on the serving node's pool of threads (a handler may block on a call
to another node), `Client.call` blocks its caller with a timeout, timers run on their own
thread. Every message and service body crosses as CDR bytes (serialized by the sender,
deserialized for the receiver) exactly as on the wire, so field and type bugs are not hidden
and `serialized_size` is the wire's. Keep-last QoS drops the oldest queued sample; transient
local replays a publisher's newest samples to late subscribers. There is no discovery: an
endpoint matches the moment it exists. For tests and in-process tools, not for deployments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
import logging
import threading

from colvlm_msgs import names
from colvlm_msgs.params import ParameterTable
from colvlm_msgs.qos import QosProfile, profile
from colvlm_msgs.transport import port
from colvlm_msgs.transport.actions import PortActions
from colvlm_msgs.typesupport import default_typesupport

_WIRE = {'use_version_2': False}   # XCDR1, what rmw_cyclonedds sends


def _encode(message) -> bytes:
    return message.serialize(**_WIRE)


class MemoryBus:
    """The shared medium of in-memory nodes: topics and services by fully qualified name."""

    def __init__(self):
        self._lock = threading.Condition()
        self._subscriptions: dict[str, list[MemorySubscription]] = {}
        self._publishers: dict[str, list[MemoryPublisher]] = {}
        self._services: dict[str, MemoryServiceServer] = {}

    def attach_subscription(self, subscription: MemorySubscription) -> None:
        with self._lock:
            self._subscriptions.setdefault(subscription.topic, []).append(subscription)
            latched = [data for publisher in self._publishers.get(subscription.topic, ())
                       for data in publisher.latched]
        if subscription.qos.durability != 'transient_local':
            return  # a volatile reader gets nothing sent before it joined, as on DDS
        for data in latched:  # what the transient-local publishers still hold
            subscription.deliver(data)

    def attach_publisher(self, publisher: MemoryPublisher) -> None:
        with self._lock:
            self._publishers.setdefault(publisher.topic, []).append(publisher)

    def publisher_count(self, topic: str) -> int:
        with self._lock:
            return len(self._publishers.get(topic, ()))

    def subscriptions(self, topic: str) -> list[MemorySubscription]:
        with self._lock:
            return list(self._subscriptions.get(topic, ()))

    def attach_service(self, server: MemoryServiceServer) -> None:
        with self._lock:
            if server.service in self._services:
                raise ValueError(f'service {server.service!r} is already served on this bus')
            self._services[server.service] = server
            self._lock.notify_all()

    def server(self, service: str, timeout: float) -> MemoryServiceServer | None:
        with self._lock:
            self._lock.wait_for(lambda: service in self._services, max(0.0, timeout))
            return self._services.get(service)

    def detach(self, owner: MemoryNode) -> None:
        """Remove every endpoint of `owner`."""
        with self._lock:
            for table in (self._subscriptions, self._publishers):
                for topic in list(table):
                    table[topic] = [e for e in table[topic] if e.node is not owner]
            for service in [s for s, server in self._services.items() if server.node is owner]:
                del self._services[service]


class MemoryPublisher(port.Publisher):
    def __init__(self, node: MemoryNode, topic: str, qos: QosProfile):
        self.node, self.topic, self._qos = node, topic, qos
        keep = qos.depth if qos.durability == 'transient_local' else 0
        self.latched: deque[bytes] = deque(maxlen=keep)

    def publish(self, message) -> None:
        if self.node.closed:
            raise RuntimeError(f'publish on {self.topic}: node {self.node.name!r} is shut down')
        data = _encode(message)
        self.latched.append(data)
        for subscription in self.node.bus.subscriptions(self.topic):
            if not (self._qos.reliability == 'best_effort'
                    and subscription.qos.reliability == 'reliable'):
                subscription.deliver(data)  # DDS matches no reliable reader to a BE writer

    def subscription_count(self) -> int:
        return len(self.node.bus.subscriptions(self.topic))


class MemorySubscription(port.Subscription):
    """Deserializes and handles its samples in order on its own thread."""

    def __init__(self, node: MemoryNode, topic: str, cls: type, callback: Callable,
                 qos: QosProfile):
        self.node, self.topic, self.qos, self.dropped = node, topic, qos, 0
        self._cls, self._callback = cls, callback
        depth = qos.depth if qos.history == 'keep_last' else None
        self._queue: deque[bytes] = deque(maxlen=depth)
        self._ready = threading.Condition()
        threading.Thread(target=self._run, name=f'{node.name}:{topic}', daemon=True).start()

    def publisher_count(self) -> int:
        return self.node.bus.publisher_count(self.topic)

    def deliver(self, data: bytes) -> None:
        with self._ready:
            self._queue.append(data)  # keep-last: the oldest queued sample goes
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._queue or self.node.closed)
                if self.node.closed:
                    return
                data = self._queue.popleft()
            try:
                message = self._cls.deserialize(data)
            except Exception as error:
                self.dropped += 1
                self.node.logger.warning(f'dropped a malformed sample on {self.topic}: {error}')
                continue
            try:
                self._callback(message)
            except Exception as error:
                self.dropped += 1
                self.node.logger.error(f'callback on {self.topic} failed: {error!r}')

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()


class MemoryServiceServer(port.ServiceServer):
    def __init__(self, node: MemoryNode, service: str, service_type, handler: Callable):
        self.node, self.service = node, service
        self._type, self._handler = service_type, handler

    def handle(self, request_data: bytes, caller: str = '') -> Future:
        """The serialized response, computed on the serving node's pool."""
        return self.node._pool.submit(self._serve, request_data, caller)

    def _serve(self, request_data: bytes, caller: str) -> bytes:
        request = self._type.Request.deserialize(request_data)
        try:
            with port.serving_caller(caller):
                response = self._handler(request)
        except Exception as error:
            self.node.logger.error(f'service {self.service} handler failed: {error!r}')
            response = self._type.Response()  # success=false where it has one
        return _encode(response)


class MemoryClient(port.Client):
    def __init__(self, node: MemoryNode, service: str, service_type):
        self.node, self.service, self._type = node, service, service_type

    def wait_for_service(self, timeout: float) -> bool:
        return self.node.bus.server(self.service, timeout) is not None

    def call(self, request, timeout: float):
        server = self.node.bus.server(self.service, timeout)
        try:
            if server is None or server.node.closed:
                raise RuntimeError('no server')
            # RuntimeError once its pool is shut; each client is one caller, as on dds.
            reply = server.handle(_encode(request), f'{self.node.name}:{id(self):x}')
        except RuntimeError:
            raise port.ServiceTimeout(f'service {self.service!r} is not available '
                                      f'(no server within {timeout:.1f} s)') from None
        try:
            return self._type.Response.deserialize(reply.result(timeout=max(0.0, timeout)))
        except (TimeoutError, CancelledError):  # slow, or its node shut down meanwhile
            raise port.ServiceTimeout(f'service {self.service!r} did not answer within '
                                      f'{timeout:.1f} s') from None


class MemoryTimer(port.Timer):
    def __init__(self, node: MemoryNode, period_s: float, callback: Callable[[], None]):
        self._cancelled = threading.Event()

        def run() -> None:
            while not (self._cancelled.wait(period_s) or node.closed):
                try:
                    callback()
                except Exception as error:
                    node.logger.error(f'timer callback failed: {error!r}')

        threading.Thread(target=run, name=f'{node.name}:timer', daemon=True).start()

    def cancel(self) -> None:
        self._cancelled.set()


class MemoryNode(PortActions, port.WireTypesNode):
    """A node on `bus`. Its logger propagates to Python's root logger (pytest's caplog sees
    it) instead of printing ROS-style lines of its own."""

    backend = 'memory'

    def __init__(self, name: str, namespace: str = '', *, bus: MemoryBus,
                 parameters_file: str | None = None, qos_profiles: dict | None = None):
        self.name = names.validate_node_name(name)
        self.namespace = names.validate_namespace(namespace)
        qualified = (self.namespace.strip('/').replace('/', '.') + '.' + self.name).lstrip('.')
        self.logger = logging.getLogger(f'colvlm.memory.{qualified}')
        self.bus, self.parameters_file, self.qos_profiles = bus, parameters_file, qos_profiles
        self._types = default_typesupport()
        self._stopped = threading.Event()
        self._subscriptions: list[MemorySubscription] = []
        self._timers: list[MemoryTimer] = []
        self._pool = ThreadPoolExecutor(max_workers=port.SERVICE_THREADS,
                                        thread_name_prefix=f'{name}-service')

    @property
    def closed(self) -> bool:
        return self._stopped.is_set()

    def serialized_size(self, message) -> int:
        return len(_encode(message))

    def create_publisher(self, msg_type: str, topic: str, qos) -> port.Publisher:
        self._types.message(msg_type)  # an unknown type fails here, as on the other backends
        publisher = MemoryPublisher(self, self.resolve_name(topic),
                                    profile(qos, self.qos_profiles))
        self.bus.attach_publisher(publisher)
        return publisher

    def create_subscription(self, msg_type: str, topic: str, callback: Callable,
                            qos) -> port.Subscription:
        subscription = MemorySubscription(self, self.resolve_name(topic),
                                          self.message_type(msg_type), callback,
                                          profile(qos, self.qos_profiles))
        self._subscriptions.append(subscription)
        self.bus.attach_subscription(subscription)
        return subscription

    def create_service(self, srv_type: str, name: str, handler: Callable) -> port.ServiceServer:
        server = MemoryServiceServer(self, self.resolve_name(name), self.service_type(srv_type),
                                     handler)
        self.bus.attach_service(server)
        return server

    def create_client(self, srv_type: str, name: str) -> port.Client:
        return MemoryClient(self, self.resolve_name(name), self.service_type(srv_type))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> port.Timer:
        self._timers.append(MemoryTimer(self, period_s, callback))
        return self._timers[-1]

    def declare_parameters(self, table: ParameterTable, overrides: dict | None = None,
                           base: dict | None = None) -> dict:
        qualified = f'{self.namespace.rstrip("/")}/{self.name}'
        return table.load(self.parameters_file, qualified, overrides, base)

    def spin(self) -> None:
        try:
            self._stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.bus.detach(self)
        for subscription in self._subscriptions:
            subscription.wake()
        for timer in self._timers:  # their threads end now, not a period later
            timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
