"""The run skeleton both nodes' command lines share: a node from --config and -p, one line
and exit status 2 for a bad start, SIGINT/SIGTERM ending the spin, a clean stop.

`run_node` knows nothing of what a node does: the caller's `build(node, overrides)` declares
the parameters and builds the node's logic (loading models first), returning a `stop()` to
call once spinning ends; it raises ValueError, FileNotFoundError or RuntimeError for a bad
start. `main` is what `ros2 run` calls: its `--ros-args` (`-p name:=value`, `--params-file`,
`-r __ns:=`, `-r __node:=`) mean the same on both backends: rclpy reads them on `ros`, this
module on `dds`. Precedence: table defaults < --config < --params-file < -p (ROS) < --param.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import signal
import sys
import threading

from colvlm_msgs.transport.port import Node

# What a bad configuration, a missing file or a model that does not load raise at start-up.
START_ERRORS = (ValueError, FileNotFoundError, RuntimeError)


def add_node_arguments(parser: argparse.ArgumentParser, default_config: str,
                       namespace_help: str) -> None:
    """--config, --namespace, --transport and -p/--param, as both nodes take them."""
    parser.add_argument('--config', help=f'parameter YAML (default: the shipped '
                        f'{default_config})')
    parser.add_argument('--namespace', default='', help=namespace_help)
    parser.add_argument('--transport', choices=('auto', 'ros', 'dds'), default=None,
                        help='middleware backend (default: COLVLM_TRANSPORT or auto)')
    parser.add_argument('-p', '--param', action='append', default=[], metavar='NAME=VALUE',
                        help='override one parameter, value in YAML syntax; repeatable')


def run_node(verb: str, args: argparse.Namespace, default_config: str, overrides: dict,
             build: Callable[[Node, dict], Callable[[], None]]) -> int:
    """Create node `verb` (parameters from args.config or `default_config`, then -p, then
    `overrides`), `build` it and spin until SIGINT/SIGTERM; the exit status."""
    from colvlm_msgs.params import RosArguments, parse_overrides
    from colvlm_msgs.resources import find
    from colvlm_msgs.transport import create_node

    ros_arguments = getattr(args, 'ros_arguments', None) or RosArguments()
    try:
        values = {**dict(ros_arguments.overrides), **parse_overrides(args.param), **overrides}
        config_path = args.config or str(find(default_config))
        node = create_node(verb, args.namespace, backend=args.transport,
                           parameters_file=config_path, ros_arguments=ros_arguments,
                           argv=getattr(args, 'argv', None))
    except (ValueError, FileNotFoundError) as error:
        print(f'colvlm {verb}: {error}', file=sys.stderr)
        return 2
    try:
        node.user_parameters = _user_values(
            node, [config_path, *ros_arguments.params_files], values)
        stop = build(node, values)
    except START_ERRORS as error:
        node.logger.error(str(error))
        node.shutdown()
        return 2
    stop = _once(stop)

    def interrupt(signum, frame) -> None:
        # The node's own threads (a source publishing, queued answers) end first, while its
        # endpoints live: stopped after spin() they met a destroyed node (rclpy's InvalidHandle).
        stop()
        raise KeyboardInterrupt

    # launch stops nodes with SIGINT, then SIGTERM: both end spin() and shut down cleanly,
    # SIGINT also where it was ignored at start (a shell's background job, an init script).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    try:
        node.spin()
    finally:
        stop()
    return 0


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """`action`, run by the first call only (a signal's and spin's end both call it)."""
    started = threading.Event()

    def run() -> None:
        if not started.is_set():
            started.set()
            action()

    return run


def _user_values(node: Node, files: list[str], overrides: dict) -> dict:
    """What `files` (as they apply to `node`, a later one winning) and `overrides` set."""
    from colvlm_msgs.params import read_yaml

    qualified = f'{node.namespace.rstrip("/")}/{node.name}'
    values = {}
    for path in files:
        values.update(read_yaml(path, qualified))
    return {**values, **overrides}


def main(prog: str, add_arguments: Callable, run: Callable, argv: list[str] | None) -> int:
    """Parse argv (its --ros-args part apart: ROS's `-p` is not colvlm's --param) and run."""
    from colvlm_msgs.params import ParameterError, parse_ros_arguments
    from colvlm_msgs.transport import without_ros_arguments

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    args, _unknown = parser.parse_known_args(without_ros_arguments(argv))
    args.argv = [prog, *argv]  # what rclpy reads (sys.argv's shape), the caller's if given
    try:
        args.ros_arguments = parse_ros_arguments(argv)
    except ParameterError as error:
        print(f'{prog}: {error}', file=sys.stderr)
        return 2
    return run(args)
