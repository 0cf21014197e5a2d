"""Create a node on the `ros` (rclpy) or `dds` (Cyclone DDS) backend.

`auto` picks `ros` when rclpy imports and `dds` otherwise; COLVLM_TRANSPORT=ros|dds|auto
or the `backend` argument forces it. The third backend, `memory` (nodes of one process on a
shared MemoryBus, for tests), is built directly: MemoryNode(name, namespace, bus=bus).
"""

from __future__ import annotations

import importlib.util
import os

from colvlm_msgs.transport.port import (  # noqa: F401 (the port's public names)
    Client,
    Node,
    Publisher,
    ServiceServer,
    ServiceTimeout,
    Subscription,
    Timer,
)

BACKENDS = ('auto', 'ros', 'dds')


def choose_backend(requested: str | None = None) -> str:
    requested = (requested or os.environ.get('COLVLM_TRANSPORT') or 'auto').strip().lower()
    if requested not in BACKENDS:
        raise ValueError(f'transport must be one of {BACKENDS}, got {requested!r}')
    if requested != 'auto':
        return requested
    return 'ros' if importlib.util.find_spec('rclpy') is not None else 'dds'


def create_node(name: str, namespace: str = '', *, backend: str | None = None,
                parameters_file: str | None = None, domain_id: int | None = None,
                ros_arguments=None, argv: list[str] | None = None) -> Node:
    """A started node; call `spin()` to serve and `shutdown()` to stop.

    `parameters_file` is applied on both backends, below any the `--ros-args` name. rclpy
    reads the `--ros-args` of `argv` (default sys.argv) itself; the `dds` backend takes the
    `__ns`, `__node` and `--params-file` of `ros_arguments` (a params.RosArguments) here, as rcl
    would.
    """
    chosen = choose_backend(backend)
    if chosen == 'ros':
        from colvlm_msgs.transport.ros import RosNode
        return RosNode(name, namespace, parameters_file=parameters_file, argv=argv)
    from colvlm_msgs.transport.dds import DdsNode
    files = [parameters_file] if parameters_file else []
    if ros_arguments is not None:
        files += list(ros_arguments.params_files)
        name = ros_arguments.node_name or name
        namespace = ros_arguments.namespace or namespace
    return DdsNode(name, namespace, domain_id=domain_id, parameters_file=files or None)


def without_ros_arguments(argv: list[str]) -> list[str]:
    """argv less its ROS arguments: each `--ros-args ...` up to a lone `--` or the end.

    `ros2 run` and launch append `--ros-args -r __ns:=/cam -p name:=value`; rclpy reads those
    from sys.argv itself, and a node's own parser must not mistake `-p` for its `--param`.
    """
    kept, inside = [], False
    for argument in argv:
        if argument == '--ros-args':
            inside = True
        elif inside and argument == '--':
            inside = False
        elif not inside:
            kept.append(argument)
    return kept
