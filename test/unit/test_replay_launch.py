"""launch/replay.launch.py without ROS 2: it parses, declares its arguments once each, plays
the bag with ros2 bag play, and its default bag is the shipped sample."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch' / 'replay.launch.py'


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def test_replay_launch_declares_what_it_uses():
    tree = ast.parse(LAUNCH.read_text(), str(LAUNCH))
    declared = [call.args[0].value for call in calls(tree, 'DeclareLaunchArgument')]
    assert len(declared) == len(set(declared))
    assert set(declared) == {'bag', 'rate', 'namespace', 'image_topic', 'query_topic',
                             'edge_config', 'server_config', 'model', 'transport',
                             'use_sim_time', 'linger'}
    used = set()
    for call in calls(tree, 'arg') + calls(tree, 'LaunchConfiguration'):
        if call.args and isinstance(call.args[0], ast.Constant):
            used.add(call.args[0].value)
    assert used == set(declared)  # nothing declared unused, nothing used undeclared
    (play,) = calls(tree, 'ExecuteProcess')
    command = next(k.value for k in play.keywords if k.arg == 'cmd')
    assert [e.value for e in command.elts[:3]] == ['ros2', 'bag', 'play']
    text = LAUNCH.read_text()
    assert "executable='edge_node'" in text and "executable='server_node'" in text


def test_default_bag_is_the_shipped_sample():
    tree = ast.parse(LAUNCH.read_text(), str(LAUNCH))
    joins = [call for call in calls(tree, 'PathJoinSubstitution')
             if 'samples' in ast.unparse(call)]
    (join,) = joins
    parts = [e.value for e in join.args[0].elts if isinstance(e, ast.Constant)]
    assert (ROOT.joinpath(*parts) / 'metadata.yaml').is_file()


def _script(path: Path, body: str) -> None:
    path.write_text('#!/bin/bash\n' + body)
    path.chmod(0o755)


def test_play_waits_for_the_server_and_the_launch_ends_after_it(tmp_path, monkeypatch):
    """The real launch and launch_ros (ROS 2 machines only) with stand-in executables that
    log how they were started: the nodes get their parameters, `ros2 bag play` starts only
    after the server's ready line, with the query topic remapped, and `linger` ends it."""
    pytest.importorskip('launch_ros')
    from launch import LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    prefix, log = tmp_path / 'prefix', tmp_path / 'log'
    share = prefix / 'share' / 'colvlm'
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'colvlm').touch()
    (share / 'config').mkdir(parents=True)
    (prefix / 'lib' / 'colvlm').mkdir(parents=True)
    log.mkdir()
    for name in ('edge', 'server'):
        (share / 'config' / f'{name}.yaml').write_text((ROOT / 'config' / f'{name}.yaml')
                                                       .read_text())
    keep_params = 'for f in "$@"; do case $f in *launch_params*) cat "$f";; esac; done'
    wait = "trap 'exit 0' INT TERM; while true; do sleep 0.1; done\n"
    _script(prefix / 'lib' / 'colvlm' / 'edge_node',
            f'{keep_params} > {log}/edge.params\n{wait}')
    _script(prefix / 'lib' / 'colvlm' / 'server_node',
            f'{keep_params} > {log}/server.params\nsleep 1; date +%s.%N > {log}/ready\n'
            f'echo "[INFO] [0.0] [cam0.server]: ready: model bundled" >&2\n{wait}')
    (tmp_path / 'bin').mkdir()
    _script(tmp_path / 'bin' / 'ros2', f'date +%s.%N > {log}/play.time\n'
                                       f'echo "$@" > {log}/play.args\nsleep 0.5\n')
    monkeypatch.setenv('AMENT_PREFIX_PATH', f'{prefix}:{os.environ.get("AMENT_PREFIX_PATH", "")}')
    monkeypatch.setenv('PATH', f'{tmp_path / "bin"}:{os.environ["PATH"]}')
    service = LaunchService()
    service.include_launch_description(IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH)),
        launch_arguments={'linger': '0.5', 'namespace': 'cam0', 'rate': '2.0',
                          'bag': str(tmp_path / 'some_bag')}.items()))
    assert service.run() == 0  # returns once `linger` after the play ended
    assert (log / 'play.args').read_text().split() == [
        'bag', 'play', str(tmp_path / 'some_bag'), '--rate', '2.0', '--clock', '50',
        '--disable-keyboard-controls', '--remap', '/camera/colvlm/query:=/cam0/colvlm/query']
    assert float((log / 'play.time').read_text()) >= float((log / 'ready').read_text())
    edge = (log / 'edge.params').read_text()
    assert 'source.uri: topic:/camera/image_raw/compressed' in edge
    assert 'use_sim_time: true' in edge and '/cam0/edge:' in edge
    assert 'use_sim_time: true' in (log / 'server.params').read_text()
