"""The nodes' entry point on the `ros` backend (rclpy, where ROS 2 is installed; skipped
elsewhere): a caller's argv reaches rclpy, the value a node uses is the value ROS reports,
and Ctrl-C stops a looping source before the node's endpoints are destroyed."""

from __future__ import annotations

import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (no ROS 2 on this machine)')
pytest.importorskip('colvlm.msg', reason='colvlm interfaces not built (run colcon build)')

from colvlm_bench.processes import ChildProcess  # noqa: E402

# Runs the edge's entry skeleton with an explicit argv and a build that reports what the node
# declared (the value it uses) and what rclpy holds (what `ros2 param get` shows), then stops.
_REPORT = """
import sys
from colvlm_edge.parameters import EDGE_PARAMETERS
from colvlm_msgs.transport.entry import add_node_arguments, main, run_node

def build(node, overrides):
    values = node.declare_parameters(EDGE_PARAMETERS, overrides)
    held = node._node.get_parameter
    print(node.name, node.namespace, values['global.quality'], held('global.quality').value,
          values['source.fps'], held('source.fps').value, flush=True)
    node.shutdown()
    return lambda: None

def run(args):
    return run_node('edge', args, 'config/edge.yaml', {}, build)

sys.exit(main('edge_node', lambda parser: add_node_arguments(parser, 'config/edge.yaml', ''),
              run, sys.argv[1:]))
"""


def _report(dds_env, *argv: str) -> list[str]:
    # sys.argv of the child holds none of argv: only main(argv) can hand them to rclpy.
    result = subprocess.run([sys.executable, '-c', _REPORT.replace('sys.argv[1:]', repr(argv))],
                            env=dds_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_an_explicit_argv_reaches_rclpy(dds_env):
    name, namespace, used, held, fps_used, fps_held = _report(
        dds_env, '--transport', 'ros', '--ros-args', '-r', '__node:=from_argv',
        '-r', '__ns:=/argv_ns', '-p', 'global.quality:=33', '-p', 'source.fps:=7.5')
    assert (name, namespace) == ('from_argv', '/argv_ns')
    assert (used, held, fps_used, fps_held) == ('33', '33', '7.5', '7.5')


def test_colvlm_param_wins_and_rclpy_reports_the_value_used(dds_env):
    # `ros2 run colvlm edge_node -p global.quality=42` (colvlm's flag) beside a ROS `-p`:
    # the node uses 42 and `ros2 param get` must say 42, not the table's 85 or the ROS 50.
    _, _, used, held, _, _ = _report(dds_env, '--transport', 'ros', '-p', 'global.quality=42',
                                     '--ros-args', '-p', 'global.quality:=50')
    assert (used, held) == ('42', '42')


def test_ctrl_c_stops_a_looping_source_before_the_node_is_destroyed(dds_env, tmp_path):
    folder = tmp_path / 'frames'
    folder.mkdir()
    rng = np.random.default_rng(5)
    for index in range(3):
        cv2.imwrite(str(folder / f'{index}.png'),
                    rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    # A fast looping source publishes nearly all the time, so a node destroyed under it
    # (the order before the fix) met the publishing thread in most runs.
    argv = [sys.executable, '-m', 'colvlm_bench.cli', 'edge', '--transport', 'ros', '--source',
            str(folder), '-p', 'source.loop=true', '-p', 'source.fps=200',
            '-p', 'status.period_s=0.5']
    for _ in range(3):
        edge = ChildProcess(argv, dds_env, name='edge')
        try:
            edge.wait_for(r'\bready:', 120)
            edge.wait_for(r'uplink: global [1-9]', 60)  # frames are flowing
        finally:
            code = edge.stop(signal.SIGINT)
        output = edge.text()
        assert code == 0, output
        for word in ('Traceback', 'InvalidHandle', 'failed', 'ERROR'):
            assert word not in output, output


def test_a_message_package_that_is_not_installed_is_one_line_naming_it():
    from colvlm_msgs.interfaces import InterfaceError
    from colvlm_msgs.transport.ros import _interface

    with pytest.raises(InterfaceError, match=r"'no_such_msgs' is not installed") as caught:
        _interface('no_such_msgs/msg/Thing', 'msg')
    assert '\n' not in str(caught.value)
