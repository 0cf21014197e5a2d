"""The `--ros-args` subset the `dds` backend honours means what it means to rclpy:
`ros2 run colvlm edge_node --ros-args -p global.quality:=42` sets the same on both."""

from __future__ import annotations

import pytest

from colvlm_msgs.params import (
    ParameterError,
    ParameterSpec,
    ParameterTable,
    RosArguments,
    parse_ros_arguments,
)

TABLE = ParameterTable([
    ParameterSpec('global.quality', 'int', 80, 'quality', min=1, max=100),
    ParameterSpec('source.uri', 'str', 'synthetic', 'frames'),
    ParameterSpec('views.cameras', 'str_array', (), 'cameras'),
])


def test_the_ros_args_subset_is_read_and_the_rest_left_alone():
    argv = ['--config', 'a.yaml', '--ros-args', '-r', '__ns:=/cam0', '-r', '__node:=front',
            '--params-file', '/x/edge.yaml', '-p', 'global.quality:=42',
            '--log-level', 'debug', '-r', 'chatter:=talk', '-p', 'views.cameras:=[a, b]',
            '--', '-p', 'source.uri=ignored']
    assert parse_ros_arguments(argv) == RosArguments(
        params_files=('/x/edge.yaml',),
        overrides=(('global.quality', 42), ('views.cameras', ['a', 'b'])),
        namespace='/cam0', node_name='front')
    assert parse_ros_arguments(['-p', 'x=1']) == RosArguments()


@pytest.mark.parametrize('argv, culprit', [
    (['--ros-args', '-p'], '-p expects a value'),
    (['--ros-args', '-p', 'global.quality=42'], "NAME:=VALUE, got 'global.quality=42'"),
])
def test_bad_ros_args_are_one_line_naming_the_argument(argv, culprit):
    with pytest.raises(ParameterError, match=culprit):
        parse_ros_arguments(argv)


def test_later_params_files_win_and_a_bad_one_is_named(tmp_path):
    first, second = tmp_path / 'first.yaml', tmp_path / 'second.yaml'
    first.write_text('/**:\n  ros__parameters:\n    global: {quality: 50}\n'
                     '    source: {uri: folder}\n')
    second.write_text('edge:\n  ros__parameters:\n    global: {quality: 60}\n')
    assert TABLE.load([first, second], 'edge') == {
        'global.quality': 60, 'source.uri': 'folder', 'views.cameras': ()}
    assert TABLE.load([first, second], 'edge', {'global.quality': 42})['global.quality'] == 42
    second.write_text('/**:\n  ros__parameters:\n    global: {quality: 0}\n')
    with pytest.raises(ParameterError, match=r'second\.yaml: global\.quality must be >= 1'):
        TABLE.load([first, second], 'edge')


def test_a_dds_node_takes_its_name_namespace_and_params_files_from_ros_args(tmp_path):
    from colvlm_msgs.transport import create_node

    config, extra = tmp_path / 'edge.yaml', tmp_path / 'extra.yaml'
    config.write_text('/**:\n  ros__parameters:\n    global: {quality: 50}\n'
                      '    source: {uri: folder}\n')
    extra.write_text('/**:\n  ros__parameters:\n    global: {quality: 70}\n')
    ros = parse_ros_arguments(['--ros-args', '-r', '__ns:=/cam0', '-r', '__node:=front',
                               '--params-file', str(extra), '-p', 'source.uri:=topic:/img'])
    node = create_node('edge', 'camera', backend='dds', parameters_file=str(config),
                       ros_arguments=ros)
    try:
        assert (node.name, node.namespace) == ('front', '/cam0')
        values = node.declare_parameters(TABLE, dict(ros.overrides))
        assert values['global.quality'] == 70 and values['source.uri'] == 'topic:/img'
    finally:
        node.shutdown()


def test_run_node_layers_config_ros_args_and_param_and_knows_what_the_user_set(tmp_path):
    """The shared entry point on the dds backend: --config < --params-file < ROS -p <
    --param, and `user_parameters` holds what a file or override set (where a node learns
    the chosen model before declaring, and a model's own settings go below it all)."""
    import argparse

    from colvlm_msgs.transport.entry import add_node_arguments, run_node

    config, extra = tmp_path / 'edge.yaml', tmp_path / 'extra.yaml'
    config.write_text('/**:\n  ros__parameters:\n    global: {quality: 50}\n')
    extra.write_text('/cam0/front:\n  ros__parameters:\n    source: {uri: folder}\n')
    parser = argparse.ArgumentParser()
    add_node_arguments(parser, 'config/edge.yaml', 'namespace')
    args = parser.parse_args(['--config', str(config), '--transport', 'dds',
                              '--param', 'views.cameras=[a]'])
    args.ros_arguments = parse_ros_arguments([
        '--ros-args', '-r', '__ns:=/cam0', '-r', '__node:=front', '--params-file', str(extra),
        '-p', 'global.quality:=42'])
    seen = {}

    def build(node, overrides):
        seen['where'] = (node.namespace, node.name)
        seen['values'] = node.declare_parameters(
            TABLE, overrides, base={'global.quality': 10, 'source.uri': 'from-model'})
        seen['user'] = node.user_parameters
        raise ValueError('stop here: only the start-up is under test')

    assert run_node('edge', args, 'config/edge.yaml', {}, build) == 2
    assert seen['where'] == ('/cam0', 'front')
    assert seen['values'] == {'global.quality': 42, 'source.uri': 'folder',
                              'views.cameras': ('a',)}
    assert seen['user'] == {'global.quality': 42, 'source.uri': 'folder', 'views.cameras': ['a']}
