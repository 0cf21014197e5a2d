"""Names, QoS profiles, parameters and discovery settings: pure, no middleware."""

from __future__ import annotations

import pytest

from colvlm_msgs import names
from colvlm_msgs.params import ParameterError, ParameterSpec, ParameterTable
from colvlm_msgs.qos import QosError, default_profiles, load_profiles, profile, qos_file
from colvlm_msgs.transport import choose_backend
from colvlm_msgs.transport.discovery import discovery_config, domain_id_from_environment


@pytest.mark.parametrize('name, namespace, expected', [
    ('colvlm/answer', '/cam0', '/cam0/colvlm/answer'),
    ('colvlm/answer', '', '/colvlm/answer'),
    ('colvlm/answer', 'cam0/', '/cam0/colvlm/answer'),
    ('/absolute', '/cam0', '/absolute'),
    ('~/status', '/cam0', '/cam0/edge/status'),
])
def test_names_resolve_like_ros2(name, namespace, expected):
    assert names.resolve(name, namespace, 'edge') == expected


def test_dds_spelling_of_names_follows_rmw_cyclonedds():
    assert names.dds_topic('/cam0/colvlm/global/compressed') == 'rt/cam0/colvlm/global/compressed'
    assert names.dds_service_topics('/cam0/colvlm/crop_roi') == (
        'rq/cam0/colvlm/crop_roiRequest', 'rr/cam0/colvlm/crop_roiReply')


@pytest.mark.parametrize('bad', ['a//b', '1topic', 'bad-name', 'x/'])
def test_bad_names_are_refused_naming_them(bad):
    with pytest.raises(ValueError, match='name'):
        names.resolve(bad, '/', 'node')


def test_shipped_qos_profiles_are_named_by_intent():
    profiles = default_profiles()
    assert profiles['frames'].reliability == 'best_effort'
    assert profiles['frames'].durability == 'volatile' and profiles['frames'].depth <= 5
    for name in ('queries', 'answers', 'services'):
        assert profiles[name].reliability == 'reliable'
    with pytest.raises(QosError, match="unknown QoS profile 'nope'"):
        profile('nope')


def test_qos_file_comes_from_the_environment(tmp_path):
    assert qos_file({}) == qos_file({'COLVLM_QOS_FILE': ' '}) and qos_file({}).name == 'qos.yaml'
    own = tmp_path / 'mine.yaml'
    own.write_text('profiles: {}\n')
    assert qos_file({'COLVLM_QOS_FILE': str(own)}) == own
    shipped = qos_file({'COLVLM_QOS_FILE': 'config/qos-lossy.yaml'})  # by its shipped name
    assert shipped.is_file() and shipped.name == 'qos-lossy.yaml'
    with pytest.raises(QosError, match="COLVLM_QOS_FILE='nope.yaml': no such file"):
        qos_file({'COLVLM_QOS_FILE': 'nope.yaml'})


def test_lossy_qos_profiles_keep_every_name_and_only_make_frames_reliable():
    default = load_profiles(qos_file({}))
    lossy = load_profiles(qos_file({'COLVLM_QOS_FILE': 'config/qos-lossy.yaml'}))
    assert set(lossy) == set(default)
    assert lossy['frames'].reliability == 'reliable' and lossy['frames'].depth == 1
    assert {name: p for name, p in lossy.items() if name != 'frames'} == \
        {name: p for name, p in default.items() if name != 'frames'}


@pytest.mark.parametrize('body, message', [
    ('reliability: sometimes', "profiles.p.reliability must be one of ('reliable', "
                               "'best_effort'), got 'sometimes'"),
    ('depth: 0', 'profiles.p.depth must be an integer >= 1, got 0'),
    ('depth: many', "profiles.p.depth must be an integer >= 1, got 'many'"),
    ('lifespan_ms: -1', 'profiles.p.lifespan_ms must be a number >= 0, got -1'),
    ('colour: red', "profiles.p has unknown key 'colour' (known: reliability, durability, "
                    'history, depth, deadline_ms, lifespan_ms)'),
])
def test_bad_qos_yaml_names_file_key_and_value(tmp_path, body, message):
    path = tmp_path / 'qos.yaml'
    path.write_text(f'profiles:\n  p:\n    {body}\n')
    with pytest.raises(QosError) as error:
        load_profiles(path)
    assert str(error.value) == f'{path}: {message}'


def test_broken_qos_yaml_is_one_line(tmp_path):
    path = tmp_path / 'qos.yaml'
    path.write_text('profiles: [unclosed\n')
    with pytest.raises(QosError, match='not valid YAML') as error:
        load_profiles(path)
    assert '\n' not in str(error.value)


TABLE = ParameterTable([
    ParameterSpec('gate.threshold', 'float', 0.5, 'nats', min=0.0, max=20.0),
    ParameterSpec('gate.aggregate', 'str', 'max', 'how', choices=('max', 'mean', 'first')),
    ParameterSpec('global.jpeg_quality', 'int', 80, 'quality', min=1, max=100),
    ParameterSpec('cameras', 'str_array', ('front',), 'namespaces'),
    ParameterSpec('debug', 'bool', False, 'more logs'),
])


def test_parameters_layer_defaults_file_and_overrides(tmp_path):
    path = tmp_path / 'server.yaml'
    path.write_text('/**:\n  ros__parameters:\n    gate:\n      threshold: 1\n'
                    'server:\n  ros__parameters:\n    global.jpeg_quality: 90\n'
                    'other_node:\n  ros__parameters:\n    debug: 3\n')
    values = TABLE.load(path, 'server', overrides={'gate.aggregate': 'mean'})
    assert values == {'gate.threshold': 1.0, 'gate.aggregate': 'mean',
                      'global.jpeg_quality': 90, 'cameras': ('front',), 'debug': False}


@pytest.mark.parametrize('yaml_text, message', [
    ('gate: {threshold: -1}', 'gate.threshold must be >= 0.0, got -1.0'),
    ('gate: {aggregate: median}', "gate.aggregate must be one of ('max', 'mean', 'first'), "
                                  "got 'median'"),
    ('global: {jpeg_quality: 101}', 'global.jpeg_quality must be <= 100, got 101'),
    ('global: {jpeg_quality: 9.5}', 'global.jpeg_quality must be int, got 9.5'),
    ('debug: yes-please', "debug must be bool, got 'yes-please'"),
    ('cameras: front', "cameras must be str_array, got 'front'"),
    ('gate: {treshold: 1}', "unknown parameter 'gate.treshold'"),
])
def test_bad_parameter_values_name_file_key_and_value(tmp_path, yaml_text, message):
    path = tmp_path / 'server.yaml'
    path.write_text(f'/**:\n  ros__parameters:\n    {yaml_text}\n')
    with pytest.raises(ParameterError) as error:
        TABLE.load(path, 'server')
    assert str(error.value) == f'{path}: {message}'


def test_missing_parameter_file_is_one_line(tmp_path):
    with pytest.raises(ParameterError, match='parameter file not found'):
        TABLE.load(tmp_path / 'missing.yaml', 'server')


def test_discovery_settings_map_like_rmw_cyclonedds():
    localhost = discovery_config({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'})
    assert '<AllowMulticast>false</AllowMulticast>' in localhost
    assert '<NetworkInterface address="127.0.0.1"/>' in localhost
    assert '<Peer address="127.0.0.1"/>' in localhost
    subnet = discovery_config({'ROS_STATIC_PEERS': '10.0.0.2;10.0.0.3'})
    assert 'AllowMulticast' not in subnet and '<Peer address="10.0.0.3"/>' in subnet
    assert discovery_config({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SYSTEM_DEFAULT'}) is None
    user = discovery_config({'CYCLONEDDS_URI': 'file:///etc/cyclone.xml'})
    assert user.endswith(',file:///etc/cyclone.xml')
    assert 'LOCALHOST' not in discovery_config({'ROS_LOCALHOST_ONLY': '1'}) and \
        '127.0.0.1' in discovery_config({'ROS_LOCALHOST_ONLY': '1'})
    with pytest.raises(ValueError, match='ROS_AUTOMATIC_DISCOVERY_RANGE must be one of'):
        discovery_config({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'EVERYWHERE'})


def test_domain_id_comes_from_the_environment():
    assert domain_id_from_environment({}) == 0
    assert domain_id_from_environment({'ROS_DOMAIN_ID': '42'}) == 42
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID must be an integer 0..232, got 'x'"):
        domain_id_from_environment({'ROS_DOMAIN_ID': 'x'})


def test_backend_choice(monkeypatch):
    monkeypatch.setenv('COLVLM_TRANSPORT', 'dds')
    assert choose_backend() == 'dds'
    assert choose_backend('ros') == 'ros'
    with pytest.raises(ValueError, match='transport must be one of'):
        choose_backend('zenoh')


def test_ros_arguments_are_left_to_rclpy():
    from colvlm_msgs.transport import without_ros_arguments

    argv = ['--config', 'a.yaml', '--ros-args', '-r', '__ns:=/cam', '-p', 'global.quality:=50',
            '--', '-p', 'x=1', '--ros-args', '--params-file', 'b.yaml']
    assert without_ros_arguments(argv) == ['--config', 'a.yaml', '-p', 'x=1']
    assert without_ros_arguments(['-p', 'x=1']) == ['-p', 'x=1']
