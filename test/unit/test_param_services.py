"""ROS 2's parameter services on the `dds` backend: what `ros2 param list/get/describe` ask
and read-only refusals of `ros2 param set`, over real DDS; `ros2 param` itself where ROS 2
is installed (skipped elsewhere)."""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys

import pytest

from colvlm_bench.processes import ChildProcess
from colvlm_edge.parameters import EDGE_PARAMETERS
from colvlm_msgs.library import default_library
from colvlm_msgs.params import ParameterSpec, ParameterTable
from colvlm_msgs.transport.dds import DdsNode
from colvlm_msgs.transport.param_services import (
    DOUBLE,
    INTEGER,
    NOT_SET,
    STRING_ARRAY,
    list_names,
)
from colvlm_msgs.type_hash import rihs01

TABLE = ParameterTable([
    ParameterSpec('global.quality', 'int', 85, 'JPEG quality', min=1, max=100),
    ParameterSpec('gate.threshold', 'float', 0.5, 'nats', min=0.0, max=10.0),
    ParameterSpec('views.cameras', 'str_array', (), 'cameras'),
    ParameterSpec('model', 'str', 'bundled', 'model'),
])
NAMES = ['a', 'a.b', 'a.b.c', 'ab', 'x.y']


def test_list_names_follows_prefixes_and_depth():
    assert list_names(NAMES, [], 0) == (NAMES, ['a', 'a.b', 'x'])
    assert list_names(NAMES, [], 1) == (['a', 'ab'], [])
    assert list_names(NAMES, ['a'], 0) == (['a', 'a.b', 'a.b.c'], ['a', 'a.b'])
    assert list_names(NAMES, ['a'], 2) == (['a', 'a.b'], ['a'])  # 'ab' is not under 'a'
    assert list_names(NAMES, ['nothing'], 0) == ([], [])


@pytest.fixture
def served(dds_env):
    """A dds node declaring TABLE (one override) and a second node calling it over DDS."""
    node = DdsNode('edge', 'param_test')
    client_node = DdsNode('param_client', 'param_test')
    try:
        node.declare_parameters(TABLE, {'global.quality': 42})

        def call(service: str, **fields):
            kind = f'rcl_interfaces/srv/{service}'
            name = ''.join(f'_{c.lower()}' if c.isupper() else c for c in service)
            client = client_node.create_client(kind, f'/param_test/edge/{name.lstrip("_")}')
            request = client_node.service_type(kind).Request(**fields)
            return client.call(request, timeout=30.0)

        call.parameter = client_node.message_type('rcl_interfaces/msg/Parameter')
        yield call
    finally:
        client_node.shutdown()
        node.shutdown()


def test_a_dds_node_lists_gets_and_describes_its_parameters(served):
    listed = served('ListParameters', prefixes=[], depth=0).result
    assert sorted(listed.names) == sorted(TABLE.specs)
    assert sorted(listed.prefixes) == ['gate', 'global', 'views']
    values = served('GetParameters', names=['global.quality', 'gate.threshold',
                                            'views.cameras', 'nope']).values
    assert [v.type for v in values] == [INTEGER, DOUBLE, STRING_ARRAY, NOT_SET]
    assert (values[0].integer_value, values[1].double_value) == (42, 0.5)
    assert list(values[2].string_array_value) == []
    assert list(served('GetParameterTypes', names=['gate.threshold']).types) == [DOUBLE]
    quality, = served('DescribeParameters', names=['global.quality']).descriptors
    assert (quality.name, quality.type, quality.description) == ('global.quality', INTEGER,
                                                                 'JPEG quality')
    assert quality.read_only
    assert [(r.from_value, r.to_value) for r in quality.integer_range] == [(1, 100)]


def test_a_dds_node_refuses_every_set_as_read_only(served):
    parameter = served.parameter
    refused, unknown = served('SetParameters', parameters=[
        parameter(name='global.quality'), parameter(name='nope')]).results
    assert not refused.successful and 'read-only' in refused.reason
    assert not unknown.successful and 'not declared' in unknown.reason
    atomic = served('SetParametersAtomically', parameters=[parameter(name='model')]).result
    assert not atomic.successful and 'read-only' in atomic.reason
    # Nothing changed.
    value, = served('GetParameters', names=['global.quality']).values
    assert value.integer_value == 42


def _jazzy_share() -> Path | None:
    """The share folder of an installed rcl_interfaces (a sourced ROS 2), or None."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix and (Path(prefix) / 'share' / 'rcl_interfaces' / 'srv').is_dir():
            return Path(prefix) / 'share'
    return None


@pytest.mark.skipif(_jazzy_share() is None, reason='no ROS 2 rcl_interfaces installed')
def test_parameter_service_type_hashes_match_the_installed_ros2():
    library = default_library()
    share = _jazzy_share()
    for name, service in library.services.items():
        if not name.startswith('rcl_interfaces/'):
            continue
        generated = json.loads((share / f'{name}.json').read_text())
        hashes = {h['type_name']: h['hash_string'] for h in generated['type_hashes']}
        assert rihs01(service.request, library) == hashes[f'{name}_Request'], name
        assert rihs01(service.response, library) == hashes[f'{name}_Response'], name


def _ros2(env: dict, *args: str) -> str:
    result = subprocess.run(['ros2', *args], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f'ros2 {" ".join(args)}: {result.stdout}{result.stderr}'
    return result.stdout


@pytest.mark.skipif(shutil.which('ros2') is None, reason='ros2cli is not installed (no ROS 2)')
def test_ros2_param_sees_a_dds_backend_edge(dds_env):
    edge = ChildProcess([sys.executable, '-m', 'colvlm_bench.cli', 'edge', '--transport', 'dds',
                         '--source', 'synthetic', '-p', 'global.quality=42'], dds_env,
                        name='edge')
    try:
        edge.wait_for(r'\bready:', 120)
        listed = _ros2(dds_env, 'param', 'list', '/edge', '--no-daemon').split()
        assert sorted(listed) == sorted(EDGE_PARAMETERS.specs)
        assert _ros2(dds_env, 'param', 'get', '/edge', 'global.quality',
                     '--no-daemon').strip() == 'Integer value is: 42'
        described = _ros2(dds_env, 'param', 'describe', '/edge', 'global.quality',
                          '--no-daemon')
        assert 'Read only: true' in described and 'Max value: 100' in described
        refused = subprocess.run(['ros2', 'param', 'set', '/edge', 'global.quality', '50',
                                  '--no-daemon'], env=dds_env, capture_output=True, text=True,
                                 timeout=120)
        assert 'read-only' in refused.stdout + refused.stderr
    finally:
        assert edge.stop(signal.SIGINT) == 0, edge.tail()
