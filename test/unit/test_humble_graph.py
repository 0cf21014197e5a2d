"""ros_discovery_info in Humble's layout (24-byte GIDs) when ROS_DISTRO says humble, checked
against the rosbags Humble type store; Jazzy's layout otherwise."""

from __future__ import annotations

import pytest
from rosbags.typesys import Stores, get_typestore

from colvlm_msgs.transport.discovery import GRAPH_TYPES, gid_data, gid_size, graph_types

GUID = bytes(range(1, 17))  # a participant's 16-byte DDS GUID


@pytest.mark.parametrize('distro, size', [('humble', 24), ('Humble ', 24), ('galactic', 24),
                                          ('jazzy', 16), ('rolling', 16), ('', 16)])
def test_ros_distro_picks_the_gid_size(distro, size):
    assert gid_size({'ROS_DISTRO': distro}) == size
    assert gid_size({}) == 16


@pytest.mark.parametrize('store, size', [(Stores.ROS2_HUMBLE, 24), (Stores.ROS2_JAZZY, 16)])
def test_graph_types_match_the_distributions_definitions(store, size):
    reference = get_typestore(store).fielddefs
    library = graph_types(size).library
    for name in GRAPH_TYPES:
        ours = [(f.name, f.type.array_size if f.type.array == 'fixed' else None)
                for f in library.message(name).fields]
        theirs = [(field, definition[1][1] if definition[0].name == 'ARRAY' else None)
                  for field, definition in reference[name][1]]
        assert ours == theirs, name
    assert library.message('rmw_dds_common/msg/Gid').fields[0].type.array_size == size


def humble_info():
    types = graph_types(24)
    info = types.message('rmw_dds_common/msg/ParticipantEntitiesInfo').cls
    node = types.message('rmw_dds_common/msg/NodeEntitiesInfo').cls
    gid = types.message('rmw_dds_common/msg/Gid').cls
    reader, writer = bytes(range(100, 116)), bytes(range(200, 216))
    return info(gid=gid(data=gid_data(GUID, 24)), node_entities_info_seq=[node(
        node_namespace='/cam0', node_name='server',
        reader_gid_seq=[gid(data=gid_data(reader, 24))],
        writer_gid_seq=[gid(data=gid_data(writer, 24))])])


def test_humble_graph_message_is_what_humbles_rmw_reads():
    store = get_typestore(Stores.ROS2_HUMBLE)
    data = humble_info().serialize(use_version_2=False)
    decoded = store.deserialize_cdr(data, 'rmw_dds_common/msg/ParticipantEntitiesInfo')
    # rmw_cyclonedds (humble) copies the GUID into the GID and zeros the rest.
    assert bytes(decoded.gid.data) == GUID + bytes(8)
    [entry] = decoded.node_entities_info_seq
    assert (entry.node_namespace, entry.node_name) == ('/cam0', 'server')
    assert bytes(entry.reader_gid_seq[0].data) == bytes(range(100, 116)) + bytes(8)
    assert bytes(entry.writer_gid_seq[0].data) == bytes(range(200, 216)) + bytes(8)
    assert bytes(store.serialize_cdr(decoded, 'rmw_dds_common/msg/ParticipantEntitiesInfo')) \
        == data
