"""One path in for parameters: `--config` reaches the node's parameters on the `ros` backend
(rclpy, where ROS 2 is installed; skipped elsewhere), below what `--ros-args` sets."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (no ROS 2 on this machine)')

from colvlm_msgs.params import ParameterSpec, ParameterTable  # noqa: E402
from colvlm_msgs.transport import create_node  # noqa: E402

TABLE = ParameterTable([
    ParameterSpec('gate.threshold', 'float', 0.5, 'nats', min=0.0),
    ParameterSpec('model', 'str', 'bundled', 'model'),
    ParameterSpec('views.cameras', 'str_array', (), 'cameras'),
    ParameterSpec('queue.max_size', 'int', 4, 'waiting queries', min=1, max=64),
])

CONFIG = """/**:
  ros__parameters:
    gate:
      threshold: 0.0055
    views:
      cameras: [front, left]
    queue:
      max_size: 9
"""


def _declared(tmp_path, ros_args: list[str], overrides: dict | None = None) -> dict:
    config = tmp_path / 'server.yaml'
    config.write_text(CONFIG)
    rclpy.init(args=['server_node', '--ros-args', *ros_args])
    try:
        node = create_node('server', 'ros_params_test', backend='ros',
                           parameters_file=str(config))
        try:
            values = node.declare_parameters(TABLE, overrides)
            held = {name: node._node.get_parameter(name).value for name in TABLE.specs}
            return {'values': values, 'held': held}
        finally:
            node.shutdown()
    finally:
        rclpy.try_shutdown()


def test_config_file_values_reach_the_rclpy_node(tmp_path):
    got = _declared(tmp_path, [])
    assert got['values'] == {'gate.threshold': 0.0055, 'model': 'bundled',
                             'views.cameras': ('front', 'left'), 'queue.max_size': 9}
    # rclpy itself holds them (what `ros2 param get` shows), not only the returned dict.
    assert got['held']['gate.threshold'] == 0.0055
    assert list(got['held']['views.cameras']) == ['front', 'left']
    assert got['held']['queue.max_size'] == 9


def test_ros_arguments_win_over_the_config_file_and_param_wins_over_both(tmp_path):
    extra = tmp_path / 'extra.yaml'
    extra.write_text('/**:\n  ros__parameters:\n    model: from-params-file\n')
    got = _declared(tmp_path, ['--params-file', str(extra), '-p', 'queue.max_size:=12'],
                    overrides={'gate.threshold': 0.25})
    assert got['values']['model'] == 'from-params-file'
    assert got['values']['queue.max_size'] == 12
    assert got['values']['gate.threshold'] == 0.25
    assert got['held']['gate.threshold'] == 0.25  # --param reaches rclpy too
    assert got['values']['views.cameras'] == ('front', 'left')


def test_a_model_base_ranks_below_the_config_file_and_rclpy_holds_it(tmp_path):
    config = tmp_path / 'server.yaml'
    config.write_text(CONFIG)
    rclpy.init(args=['server_node'])
    try:
        node = create_node('server', 'ros_params_test', backend='ros',
                           parameters_file=str(config))
        try:
            values = node.declare_parameters(
                TABLE, base={'gate.threshold': 0.125, 'model': 'from-model'})
            assert values['gate.threshold'] == 0.0055 and values['model'] == 'from-model'
            assert node._node.get_parameter('model').value == 'from-model'
        finally:
            node.shutdown()
    finally:
        rclpy.try_shutdown()


def test_a_bad_config_value_names_the_file_and_key(tmp_path):
    config = tmp_path / 'bad.yaml'
    config.write_text('/**:\n  ros__parameters:\n    queue:\n      max_size: 0\n')
    rclpy.init(args=['server_node'])
    try:
        node = create_node('server', 'ros_params_test', backend='ros',
                           parameters_file=str(config))
        try:
            with pytest.raises(ValueError, match=r'bad\.yaml: queue\.max_size must be >= 1'):
                node.declare_parameters(TABLE)
        finally:
            node.shutdown()
    finally:
        rclpy.try_shutdown()
