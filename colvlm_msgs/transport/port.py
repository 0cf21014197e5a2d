"""The transport port: the little a colvlm node needs from a middleware.

Node logic is written against `Node` and never imports rclpy or cyclonedds. Three backends
implement it: `ros` (rclpy), `dds` (Cyclone DDS speaking rmw_cyclonedds' wire) and `memory`
(nodes of one process on a shared bus, for tests). Threading contract, the same on all:
callbacks may run on threads other than the caller's and concurrently with each other (one
subscription's callbacks in order, one at a time); a service handler may block (for example
on a client call to another node), and a node runs SERVICE_THREADS handlers at once: one
whose handlers wait long (the server's asks) keeps at most half of them waiting;
`Client.call` blocks its caller and must not be called from a subscription callback that
the reply depends on. An action server runs each goal's `execute` on a thread of its own
(it may block); an action client's feedback callbacks run like a subscription's.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
import contextlib
import logging
import threading
import time

from colvlm_msgs import names
from colvlm_msgs.params import ParameterTable
from colvlm_msgs.qos import QosProfile

# Service handlers a node runs at once, on every backend (the ros backend's executor threads).
SERVICE_THREADS = 32


class ServiceTimeout(TimeoutError):
    """A service call got no reply within its timeout."""


class Publisher(abc.ABC):
    topic: str                              # fully qualified name

    @abc.abstractmethod
    def publish(self, message) -> None: ...

    @abc.abstractmethod
    def subscription_count(self) -> int:
        """Matched subscriptions now; lets a publisher skip work nobody will receive."""


class Subscription(abc.ABC):
    topic: str
    dropped: int                            # samples that failed to decode or to handle

    def publisher_count(self) -> int:
        """Matched publishers now (an action client waits for its server's, as rcl's does);
        -1 where the backend does not say."""
        return -1


class ServiceServer(abc.ABC):
    service: str


class Client(abc.ABC):
    service: str

    @abc.abstractmethod
    def wait_for_service(self, timeout: float) -> bool:
        """True once a server is matched, False after `timeout` seconds."""

    @abc.abstractmethod
    def call(self, request, timeout: float):
        """The response, or ServiceTimeout naming the service after `timeout` seconds."""


class Timer(abc.ABC):
    @abc.abstractmethod
    def cancel(self) -> None: ...


class GoalHandle(abc.ABC):
    """One accepted goal, as its action server's `execute` sees it."""

    goal_id: bytes                          # 16 bytes: the client's UUID for it
    goal: object                            # the action's Goal message
    cancel_requested: threading.Event       # set once a cancel request for it was accepted

    @abc.abstractmethod
    def publish_feedback(self, feedback) -> None:
        """Send the action's Feedback message to the goal's client."""

    @abc.abstractmethod
    def canceled(self) -> None:
        """End the goal CANCELED (with the result `execute` returns) rather than SUCCEEDED;
        only after a cancel request was accepted."""


class ActionServer(abc.ABC):
    action: str                             # fully qualified name


class ClientGoal(abc.ABC):
    """A goal sent by an ActionClient."""

    goal_id: bytes
    accepted: bool

    @abc.abstractmethod
    def result(self, timeout: float) -> tuple[int, object]:
        """(action_msgs/GoalStatus status, Result) once the goal ended; ServiceTimeout."""

    @abc.abstractmethod
    def cancel(self, timeout: float) -> int:
        """Ask the server to cancel the goal: CancelGoal's return_code; ServiceTimeout."""


class ActionClient(abc.ABC):
    action: str

    @abc.abstractmethod
    def wait_for_server(self, timeout: float) -> bool: ...

    @abc.abstractmethod
    def send_goal(self, goal, timeout: float,
                  feedback: Callable | None = None) -> ClientGoal:
        """Send `goal`; `feedback(message)` gets its Feedback messages. ServiceTimeout when
        the server did not say within `timeout` whether it accepts the goal."""


class Node(abc.ABC):
    """One named node in a namespace; owns its endpoints and timers."""

    backend: str                            # 'ros' | 'dds' | 'memory'
    name: str
    namespace: str                          # '/' or '/a/b'
    logger: logging.Logger
    # What the parameter files and overrides set, by name (entry.run_node fills it before
    # `build`): a node reads the model chosen before declaring the model's own settings.
    user_parameters: dict = {}

    @abc.abstractmethod
    def message_type(self, name: str) -> type:
        """The message class for 'pkg/msg/Name' on this backend."""

    @abc.abstractmethod
    def service_type(self, name: str):
        """An object with `.Request` and `.Response` classes for 'pkg/srv/Name'."""

    @abc.abstractmethod
    def create_publisher(self, msg_type: str, topic: str,
                         qos: str | QosProfile) -> Publisher: ...

    @abc.abstractmethod
    def create_subscription(self, msg_type: str, topic: str, callback: Callable,
                            qos: str | QosProfile) -> Subscription: ...

    @abc.abstractmethod
    def create_service(self, srv_type: str, name: str,
                       handler: Callable) -> ServiceServer:
        """`handler(request) -> response`; it should answer failures in the response."""

    @abc.abstractmethod
    def create_client(self, srv_type: str, name: str) -> Client: ...

    @abc.abstractmethod
    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer: ...

    @abc.abstractmethod
    def declare_parameters(self, table: ParameterTable, overrides: dict | None = None,
                           base: dict | None = None) -> dict[str, object]:
        """Declare every parameter of `table`; return their checked values by name.

        Precedence: table defaults < `base` (a chosen model's own settings) < parameter
        files < `overrides`."""

    @abc.abstractmethod
    def serialized_size(self, message) -> int:
        """Bytes the message takes on the wire (CDR, encapsulation header included)."""

    @abc.abstractmethod
    def resolve_name(self, name: str) -> str:
        """The fully qualified form of a topic or service name."""

    @abc.abstractmethod
    def spin(self) -> None:
        """Serve callbacks until `shutdown()` (or Ctrl-C)."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop serving and release the node's endpoints. Safe to call twice."""

    def now_ns(self) -> int:
        """Wall-clock time in ns, the clock stamps are taken from."""
        return time.time_ns()

    # Actions: not abstract, so that a Node without them still builds.
    def action_type(self, name: str):
        """An object with `.Goal`, `.Result` and `.Feedback` classes for 'pkg/action/Name'."""
        raise NotImplementedError(f'the {self.backend} backend has no actions')

    def create_action_server(self, action_type: str, name: str,
                             execute: Callable) -> ActionServer:
        """`execute(goal_handle) -> Result` for each goal accepted (every goal with a new id);
        it should return soon after `goal_handle.cancel_requested` is set. A goal whose
        `execute` raises ends ABORTED."""
        raise NotImplementedError(f'the {self.backend} backend has no actions')

    def create_action_client(self, action_type: str, name: str) -> ActionClient:
        raise NotImplementedError(f'the {self.backend} backend has no actions')


class WireTypesNode(Node):
    """A node whose message classes are colvlm's own (colvlm_msgs.typesupport), not a
    middleware's: the dds and memory backends. A subclass sets `_types` to a typesupport."""

    _types = None

    def message_type(self, name: str) -> type:
        return self._types.message(name).cls

    def service_type(self, name: str):
        return self._types.service(name)

    def resolve_name(self, name: str) -> str:
        return names.resolve(name, self.namespace, self.name)


_serving = threading.local()


def caller_id() -> str:
    """Who sent the request this thread is serving, for per-client limits: the client's request
    writer GUID on dds, the calling client on the in-memory transport, '' where the backend
    does not say (rclpy's service callbacks are not given the request header)."""
    return getattr(_serving, 'caller', '')


@contextlib.contextmanager
def serving_caller(caller: str) -> Iterator[None]:
    """Backends wrap a service handler in this so that `caller_id()` names its client."""
    previous = getattr(_serving, 'caller', '')
    _serving.caller = caller
    try:
        yield
    finally:
        _serving.caller = previous
