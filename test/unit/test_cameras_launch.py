"""launch/cameras.launch.py: it parses and declares what it uses; with launch installed (ROS 2
machines), it starts one edge per camera, publishing on request and scoring views, and a
server whose views.cameras names them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch' / 'cameras.launch.py'


def test_cameras_launch_declares_what_it_uses():
    tree = ast.parse(LAUNCH.read_text(), str(LAUNCH))
    declared = [node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, 'id', '') == 'DeclareLaunchArgument']
    assert len(declared) == len(set(declared))
    used = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', '') in ('value', 'LaunchConfiguration')
            and node.args and isinstance(node.args[0], ast.Constant)}
    assert used == set(declared) == {'cameras', 'sources', 'namespace', 'edge_config',
                                     'server_config', 'transport'}


def test_one_edge_per_camera_and_a_server_choosing_among_them(monkeypatch):
    """The real launch resolves the arguments; the Node actions are recorded, not run."""
    pytest.importorskip('launch_ros')
    import importlib.util

    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location('cameras_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, 'Node', lambda **kwargs: kwargs)
    description = module.generate_launch_description()
    context = LaunchContext()
    for action in description.entities:
        if isinstance(action, DeclareLaunchArgument):
            context.launch_configurations[action.name] = 'file.yaml'
    context.launch_configurations.update(cameras='front,left', sources='/a,/b',
                                         namespace='robot', transport='dds')
    opaque = next(a for a in description.entities if isinstance(a, OpaqueFunction))
    edges, (server,) = opaque.execute(context)[:2], opaque.execute(context)[2:]
    assert [e['namespace'] for e in edges] == ['robot/front', 'robot/left']
    assert all(e['executable'] == 'edge_node' for e in edges)
    assert edges[1]['parameters'][1] == {'publish.mode': 'on_request', 'view.enabled': True,
                                         'frame_id': 'left', 'source.uri': '/b'}
    # One path in: no second copy of the settings as colvlm command-line flags.
    assert all('arguments' not in node for node in [*edges, server])
    assert (server['executable'], server['namespace']) == ('server_node', 'robot')
    assert server['parameters'][1] == {'views.cameras': ['/robot/front', '/robot/left']}
    context.launch_configurations.update(cameras='front')
    with pytest.raises(ValueError, match='name two or more'):
        opaque.execute(context)
