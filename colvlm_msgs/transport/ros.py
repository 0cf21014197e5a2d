"""The `ros` backend: a thin rclpy adapter with no logic of its own.

Callbacks run on a MultiThreadedExecutor spinning in a background thread from the moment
the node exists, all in one reentrant callback group, so a service handler may block on a
client call as the port allows. Messages are the classes rosidl generated for `colvlm` and
the standard packages; parameters are declared with their descriptions and ranges and
checked by the same table the `dds` backend uses. The node's `parameters_file` (`--config`)
gives the declared values, so what rclpy holds from `--ros-args` (`-p`, `--params-file`, a
launch file's `parameters=`) wins over it, as on the `dds` backend.
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
import signal
import threading

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message

from colvlm_msgs import names
from colvlm_msgs.interfaces import InterfaceError
from colvlm_msgs.library import normalize_name
from colvlm_msgs.params import ParameterTable
from colvlm_msgs.qos import QosProfile, profile
from colvlm_msgs.transport import port
from colvlm_msgs.transport.param_services import AT_START_UP

_EMPTY_ARRAY_TYPES = {
    'int_array': Parameter.Type.INTEGER_ARRAY, 'float_array': Parameter.Type.DOUBLE_ARRAY,
    'str_array': Parameter.Type.STRING_ARRAY,
}


def to_rclpy_qos(qos: QosProfile) -> QoSProfile:
    result = QoSProfile(
        depth=qos.depth,
        history=HistoryPolicy.KEEP_LAST if qos.history == 'keep_last' else HistoryPolicy.KEEP_ALL,
        reliability=(ReliabilityPolicy.RELIABLE if qos.reliability == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if qos.durability == 'transient_local'
                    else DurabilityPolicy.VOLATILE),
    )
    if qos.deadline_ms:
        result.deadline = Duration(nanoseconds=int(qos.deadline_ms * 1e6))
    if qos.lifespan_ms:
        result.lifespan = Duration(nanoseconds=int(qos.lifespan_ms * 1e6))
    return result


def _interface(name: str, kind: str):
    package, _, short = normalize_name(name, kind).split('/')
    try:
        module = importlib.import_module(f'{package}.{kind}')
    except ModuleNotFoundError:
        # One line for the node's start-up error, not an import traceback (a workspace built
        # without one of package.xml's exec_depends, e.g. visualization_msgs).
        raise InterfaceError(
            f'{name}: the ROS 2 package {package!r} is not installed in this environment '
            f"(install ros-<distro>-{package.replace('_', '-')} or build it into the "
            f'workspace)') from None
    return getattr(module, short)


def _ignore_interrupts() -> None:
    """Once stopping, further SIGINT/SIGTERM are moot. A terminal's Ctrl-C reaches `ros2
    launch` and its nodes alike and launch then sends its own SIGINT: that second one cut
    shutdown() short with a KeyboardInterrupt traceback (launch's SIGKILL remains the backstop
    of a shutdown that hangs)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


class _Logger:
    """rclpy's logger behind the logging.Logger methods node code uses."""

    def __init__(self, logger):
        self._logger = logger

    def debug(self, message: str) -> None:
        self._logger.debug(message)

    def info(self, message: str) -> None:
        self._logger.info(message)

    def warning(self, message: str) -> None:
        self._logger.warning(message)

    def error(self, message: str) -> None:
        self._logger.error(message)


class RosPublisher(port.Publisher):
    def __init__(self, publisher, topic: str):
        self._publisher, self.topic = publisher, topic

    def publish(self, message) -> None:
        self._publisher.publish(message)

    def subscription_count(self) -> int:
        return self._publisher.get_subscription_count()


class RosSubscription(port.Subscription):
    def __init__(self, topic: str):
        self.topic, self.dropped = topic, 0


class RosServiceServer(port.ServiceServer):
    def __init__(self, service: str):
        self.service = service


class RosTimer(port.Timer):
    def __init__(self, timer):
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancel()


class RosClient(port.Client):
    def __init__(self, client, service: str):
        self._client, self.service = client, service

    def wait_for_service(self, timeout: float) -> bool:
        return self._client.wait_for_service(timeout_sec=timeout)

    def call(self, request, timeout: float):
        if not self._client.wait_for_service(timeout_sec=timeout):
            raise port.ServiceTimeout(f'service {self.service!r} is not available '
                                      f'(no server within {timeout:.1f} s)')
        done = threading.Event()
        future = self._client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            self._client.remove_pending_request(future)
            raise port.ServiceTimeout(f'service {self.service!r} did not answer within '
                                      f'{timeout:.1f} s')
        return future.result()


class RosNode(port.Node):
    backend = 'ros'

    def __init__(self, name: str, namespace: str = '', parameters_file: str | None = None,
                 argv: list[str] | None = None):
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            # `argv` (sys.argv's shape) is honoured only by the context this node starts: one
            # already running was given its arguments by whoever started it.
            rclpy.init(args=argv)
        self.name = names.validate_node_name(name)
        self.namespace = names.validate_namespace(namespace)
        self.parameters_file = parameters_file
        self._node = rclpy.create_node(self.name, namespace=self.namespace)
        # `--ros-args -r __ns:=... -r __node:=...` (how launch_ros places a node) win over
        # the arguments: names resolve against what rcl actually made.
        self.name = self._node.get_name()
        self.namespace = self._node.get_namespace()
        self.logger = _Logger(self._node.get_logger())
        self._group = ReentrantCallbackGroup()
        # Service handlers may block (an ask waits for its answer): as many as the other backends.
        self._executor = MultiThreadedExecutor(num_threads=port.SERVICE_THREADS)
        self._executor.add_node(self._node)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._executor.spin, name=f'{name}-executor',
                                        daemon=True)
        self._thread.start()

    def message_type(self, name: str) -> type:
        return _interface(name, 'msg')

    def service_type(self, name: str):
        return _interface(name, 'srv')

    def action_type(self, name: str):
        return _interface(name, 'action')

    def create_action_server(self, action_type: str, name: str,
                             execute: Callable) -> port.ActionServer:
        from colvlm_msgs.transport.ros_actions import RosActionServer
        return RosActionServer(self._node, self.action_type(action_type), name, execute,
                               self._group, self.logger)

    def create_action_client(self, action_type: str, name: str) -> port.ActionClient:
        from colvlm_msgs.transport.ros_actions import RosActionClient
        return RosActionClient(self._node, self.action_type(action_type), name, self._group)

    def resolve_name(self, name: str) -> str:
        names.resolve(name, self.namespace, self.name)  # the same checks as the dds backend
        return self._node.resolve_topic_name(name)      # rcl's expansion, remappings applied

    def serialized_size(self, message) -> int:
        return len(serialize_message(message))

    def now_ns(self) -> int:
        # The node's clock honours use_sim_time, so replayed bags keep their stamps.
        return self._node.get_clock().now().nanoseconds

    def create_publisher(self, msg_type: str, topic: str, qos) -> port.Publisher:
        publisher = self._node.create_publisher(
            self.message_type(msg_type), topic, to_rclpy_qos(profile(qos)),
            callback_group=self._group)
        return RosPublisher(publisher, self.resolve_name(topic))

    def create_subscription(self, msg_type: str, topic: str, callback: Callable,
                            qos) -> port.Subscription:
        subscription = RosSubscription(self.resolve_name(topic))

        def guarded(message) -> None:
            try:
                callback(message)
            except Exception as error:
                subscription.dropped += 1
                self.logger.error(f'callback on {subscription.topic} failed: {error!r}')

        self._node.create_subscription(self.message_type(msg_type), topic, guarded,
                                       to_rclpy_qos(profile(qos)), callback_group=self._group)
        return subscription

    def create_service(self, srv_type: str, name: str, handler: Callable) -> port.ServiceServer:
        full = self.resolve_name(name)

        def serve(request, response):
            try:
                return handler(request)
            except Exception as error:
                self.logger.error(f'service {full} handler failed: {error!r}')
                return response  # the default response: success=false where it has one

        self._node.create_service(self.service_type(srv_type), name, serve,
                                  qos_profile=to_rclpy_qos(profile('services')),
                                  callback_group=self._group)
        return RosServiceServer(full)

    def create_client(self, srv_type: str, name: str) -> port.Client:
        client = self._node.create_client(self.service_type(srv_type), name,
                                          qos_profile=to_rclpy_qos(profile('services')),
                                          callback_group=self._group)
        return RosClient(client, self.resolve_name(name))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> port.Timer:
        return RosTimer(self._node.create_timer(period_s, callback, callback_group=self._group))

    def declare_parameters(self, table: ParameterTable, overrides: dict | None = None,
                           base: dict | None = None) -> dict:
        # The file is read by the table (checked, naming the file), not handed to rcl as
        # --params-file: declared values rank below every ROS argument, and rcl's YAML
        # parser refuses what the table accepts (an empty list has no type for it).
        # --param overrides (colvlm's own flags) win over the ROS arguments too: declared with
        # ignore_override, so rclpy holds what the node uses (`ros2 param get` shows it).
        overrides = overrides or {}
        starting = table.load(self.parameters_file,
                              f'{self.namespace.rstrip("/")}/{self.name}', overrides, base)
        values = {}
        for name, spec in table.specs.items():
            # Read once at start-up, so read-only: `ros2 param set` is refused by rclpy
            # ("Trying to set a read-only parameter") instead of reporting a change that
            # the node would never apply. Launch files and -p still set them at declaration.
            descriptor = ParameterDescriptor(description=spec.description,
                                             dynamic_typing=True, read_only=True,
                                             additional_constraints=AT_START_UP)
            if spec.type == 'int' and spec.min is not None and spec.max is not None:
                descriptor.integer_range = [IntegerRange(
                    from_value=int(spec.min), to_value=int(spec.max), step=0)]
            if spec.type == 'float' and spec.min is not None and spec.max is not None:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
            default = starting[name]
            default = list(default) if isinstance(default, tuple) else default
            if default == [] and spec.type in _EMPTY_ARRAY_TYPES:
                # An empty list has no type of its own: declare the type, statically (rclpy
                # refuses dynamic typing with a type given); unset, it reads as None.
                default = _EMPTY_ARRAY_TYPES[spec.type]
                descriptor.dynamic_typing = False
            value = self._node.declare_parameter(name, default, descriptor,
                                                 ignore_override=name in overrides).value
            values[name] = [] if value is None and spec.type in _EMPTY_ARRAY_TYPES else value
        # The launch file's parameters arrive through rclpy; the table checks them the same way.
        return table.resolve(values, f'node {self.resolve_name(self.name)}', overrides)

    def spin(self) -> None:
        try:
            self._stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            _ignore_interrupts()
            self.shutdown()

    def shutdown(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._executor.shutdown()
        # Jazzy's Executor.shutdown() returns without waiting for the spinning thread; a node
        # destroyed (or a process exiting) under it aborts in C++ ("terminate called without
        # an active exception"), so wait for the spin loop to leave first.
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10.0)
        self._node.destroy_node()
        if self._owns_context:
            rclpy.try_shutdown()
