"""colvlm's dds wire types serialize byte for byte as ROS 2 does (rosbags as the reference)."""

from __future__ import annotations

import random
import struct

from cdr_reference import random_message, reference_typestore, spec_of, to_rosbags
import pytest

from colvlm_msgs.library import default_library
from colvlm_msgs.type_hash import rihs01
from colvlm_msgs.typesupport import HEADER_GUID, HEADER_SEQUENCE, default_typesupport

LIBRARY = default_library()
SUPPORT = default_typesupport()
MESSAGES = sorted(LIBRARY.messages)
SERVICE_HALVES = sorted(f'{name}_{half}' for name in LIBRARY.services
                        for half in ('Request', 'Response'))


@pytest.fixture(scope='module')
def store():
    return reference_typestore()


def cls_for(name: str) -> type:
    if '/srv/' in name:
        service_name, _, half = name.rpartition('_')
        return getattr(SUPPORT.service(service_name), half)
    return SUPPORT.message(name).cls


def ours(message) -> bytes:
    return message.serialize(use_version_2=False)


@pytest.mark.parametrize('name', MESSAGES + SERVICE_HALVES)
def test_default_values_serialize_like_rosbags(name, store):
    message = cls_for(name)()
    assert ours(message) == bytes(store.serialize_cdr(to_rosbags(message, name, store), name))


@pytest.mark.parametrize('name', MESSAGES + SERVICE_HALVES)
@pytest.mark.parametrize('seed', range(3))
def test_random_values_serialize_like_rosbags(name, seed, store):
    message = random_message(name, random.Random(seed), cls_for)
    reference = bytes(store.serialize_cdr(to_rosbags(message, name, store), name))
    assert ours(message) == reference
    assert plain(type(message).deserialize(reference)) == plain(message)


def plain(value):
    """Fields as nested lists and dicts: Cyclone DDS decodes a fixed array of 8-bit integers
    (rmw_dds_common's Gid) as bytes where the message was built from a list."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, list):
        return [plain(item) for item in value]
    if hasattr(value, '__dataclass_fields__'):
        return {name: plain(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


@pytest.mark.parametrize('name', ['sensor_msgs/msg/CompressedImage', 'colvlm/msg/TokenLayer',
                                  'colvlm/srv/RequestLayers_Response', 'colvlm/msg/Answer'])
def test_large_payloads_serialize_like_rosbags(name, store):
    message = random_message(name, random.Random(7), cls_for, size=1500)
    if hasattr(message, 'data'):
        message.data = list(random.Random(1).randbytes(1_000_000))
    reference = bytes(store.serialize_cdr(to_rosbags(message, name, store), name))
    assert ours(message) == reference
    assert len(reference) > 4000


@pytest.mark.parametrize('service', sorted(LIBRARY.services))
def test_service_wire_types_are_request_header_then_body(service, store):
    """rmw_cyclonedds: encapsulation, {uint64 guid; int64 seq}, then the body's CDR."""
    types = SUPPORT.service(service)
    for half, wire in (('Request', types.request_wire), ('Response', types.response_wire)):
        name = f'{service}_{half}'
        body = random_message(name, random.Random(3), cls_for)
        fields = {field.name: getattr(body, field.name) for field in spec_of(name).fields}
        sample = wire(**{HEADER_GUID: 0x0123456789ABCDEF, HEADER_SEQUENCE: 42}, **fields)
        reference = bytes(store.serialize_cdr(to_rosbags(body, name, store), name))
        expected = reference[:4] + struct.pack('<Qq', 0x0123456789ABCDEF, 42) + reference[4:]
        assert ours(sample) == expected


@pytest.mark.parametrize('name', MESSAGES + SERVICE_HALVES)
def test_type_hashes_match_rosbags(name, store):
    assert rihs01(spec_of(name), LIBRARY) == store.hash_rihs01(name)


def test_dds_type_names_follow_rmw_cyclonedds():
    assert SUPPORT.message('colvlm/msg/Query').dds_name == 'colvlm::msg::dds_::Query_'
    assert SUPPORT.message('std_msgs/Header').dds_name == 'std_msgs::msg::dds_::Header_'
    crop = SUPPORT.service('colvlm/srv/CropRoi')
    assert crop.request_dds_name == 'colvlm::srv::dds_::CropRoi_Request_'
    assert crop.response_dds_name == 'colvlm::srv::dds_::CropRoi_Response_'


def test_classes_default_and_take_keywords_like_rclpy():
    answer_type = SUPPORT.message('colvlm/msg/Answer').cls
    answer = answer_type(answer='red')
    assert answer.answer == 'red' and answer.status == answer_type.STATUS_OK == 0
    assert answer.first_pass.token_min_entropy == [] and answer.roi.width == 0
    assert answer_type.STATUS_BUSY == 5 and answer_type.DECISION_LOCAL_CROP == 2
    # Mutable defaults are not shared between instances.
    other = answer_type()
    answer.first_pass.token_min_entropy.append(1.0)
    assert other.first_pass.token_min_entropy == []
