"""launch/edge.launch.py and server.launch.py: one Node action per node, every setting on the
one path both backends read (`parameters` -> --ros-args --params-file), none twice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[2] / 'launch'


def _nodes(monkeypatch, name: str, **arguments) -> list[dict]:
    pytest.importorskip('launch_ros', reason='launch_ros is not installed (no ROS 2 here)')
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), LAUNCH / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, 'Node', lambda **kwargs: kwargs)
    description = module.generate_launch_description()
    context = LaunchContext()
    for action in description.entities:
        if isinstance(action, DeclareLaunchArgument):
            context.launch_configurations[action.name] = ''
    context.launch_configurations.update(config='my.yaml', namespace='cam0', transport='dds',
                                         **arguments)
    opaques = [a for a in description.entities if isinstance(a, OpaqueFunction)]
    assert len(opaques) == 1
    return opaques[0].execute(context)


@pytest.mark.parametrize('name, option, parameter, given', [
    ('server.launch.py', 'model', 'model', 'org/some-vlm'),
    ('edge.launch.py', 'source', 'source.uri', '/data/frames'),
])
def test_one_node_whose_parameters_carry_the_file_and_the_given_override(
        monkeypatch, name, option, parameter, given):
    (node,) = _nodes(monkeypatch, name)
    assert node['parameters'] == ['my.yaml'] and node['namespace'] == 'cam0'
    assert 'arguments' not in node
    assert node['additional_env']['COLVLM_TRANSPORT'] == 'dds'
    (node,) = _nodes(monkeypatch, name, **{option: given})
    assert node['parameters'] == ['my.yaml', {parameter: given}]


def test_loop_and_fps_reach_the_edge_as_typed_parameters(monkeypatch):
    (node,) = _nodes(monkeypatch, 'edge.launch.py', source='/data/frames', loop='true',
                     fps='2.5')
    assert node['parameters'] == ['my.yaml', {'source.uri': '/data/frames'},
                                  {'source.loop': True}, {'source.fps': 2.5}]
    with pytest.raises(ValueError, match="loop:='sometimes' must be true or false"):
        _nodes(monkeypatch, 'edge.launch.py', loop='sometimes')
