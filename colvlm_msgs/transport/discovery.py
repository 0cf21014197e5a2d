"""ROS 2 discovery settings turned into Cyclone DDS configuration, as rmw_cyclonedds does.

Both sides must use the same settings to find each other. ROS_AUTOMATIC_DISCOVERY_RANGE:
LOCALHOST (the loopback interface, unicast to 127.0.0.1, no multicast), SUBNET (default),
OFF, SYSTEM_DEFAULT; ROS_STATIC_PEERS adds unicast peers; ROS_DOMAIN_ID picks the domain.
CYCLONEDDS_URI is applied after ours, so it can override anything.

Also the ROS graph's types (`ros_discovery_info`), which differ by distribution under one type
name: Humble's rmw_dds_common/msg/Gid is `char[24]` (rmw_cyclonedds fills the 16-byte DDS
GUID and zeros) and its endpoints carry no `typehash=`; Iron and later have `char[16]`.
ROS_DISTRO picks the layout.
"""

from __future__ import annotations

from functools import lru_cache
import os

from colvlm_msgs.interfaces import parse_message
from colvlm_msgs.library import InterfaceLibrary, default_library
from colvlm_msgs.typesupport import TypeSupport, default_typesupport

RANGES = ('LOCALHOST', 'SUBNET', 'OFF', 'SYSTEM_DEFAULT')
MAX_DOMAIN_ID = 232          # the largest id whose ports stay in range with Cyclone's defaults
GID24_DISTROS = ('foxy', 'galactic', 'humble')  # RMW_GID_STORAGE_SIZE 24 before Iron
GRAPH_TYPES = ('rmw_dds_common/msg/Gid', 'rmw_dds_common/msg/NodeEntitiesInfo',
               'rmw_dds_common/msg/ParticipantEntitiesInfo')


def domain_id_from_environment(environ=os.environ) -> int:
    text = environ.get('ROS_DOMAIN_ID', '').strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) > MAX_DOMAIN_ID:
        raise ValueError(f'ROS_DOMAIN_ID must be an integer 0..{MAX_DOMAIN_ID}, got {text!r}')
    return int(text)


def discovery_range(environ=os.environ) -> str:
    value = environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', '').strip().upper()
    if environ.get('ROS_LOCALHOST_ONLY', '').strip() == '1':
        return 'LOCALHOST'
    if not value:
        return 'SUBNET'
    if value not in RANGES:
        raise ValueError(f'ROS_AUTOMATIC_DISCOVERY_RANGE must be one of {RANGES}, got {value!r}')
    return value


def discovery_config(environ=os.environ) -> str | None:
    """The Cyclone DDS configuration string for the current environment (None: defaults)."""
    mode = discovery_range(environ)
    peers = [p.strip() for p in environ.get('ROS_STATIC_PEERS', '').split(';') if p.strip()]
    user = environ.get('CYCLONEDDS_URI', '').strip()
    if mode == 'SYSTEM_DEFAULT':
        return user or None
    general = discovery = ''
    if mode == 'LOCALHOST':
        general = ('<General><Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces>'
                   '<AllowMulticast>false</AllowMulticast></General>')
        peers = ['127.0.0.1'] + peers
    elif mode == 'OFF':
        general = '<General><AllowMulticast>false</AllowMulticast></General>'
        peers = []
        discovery = ('<ParticipantIndex>none</ParticipantIndex>'
                     f'<Tag>ros_discovery_off_{os.getpid()}</Tag>')
    if mode != 'OFF':
        discovery = '<ParticipantIndex>auto</ParticipantIndex>' \
                    '<MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>'
    if peers:
        discovery += '<Peers>' + ''.join(f'<Peer address="{p}"/>' for p in peers) + '</Peers>'
    xml = f'<CycloneDDS><Domain>{general}<Discovery>{discovery}</Discovery></Domain></CycloneDDS>'
    return f'{xml},{user}' if user else xml


def gid_size(environ=os.environ) -> int:
    """Bytes of a graph GID for ROS_DISTRO: 24 on Humble and older, 16 after (or unset)."""
    return 24 if environ.get('ROS_DISTRO', '').strip().lower() in GID24_DISTROS else 16


def gid_data(guid: bytes, size: int) -> list[int]:
    """A 16-byte DDS GUID as rmw_cyclonedds stores it in a GID of `size` bytes."""
    return list(guid) + [0] * (size - len(guid))


@lru_cache(maxsize=2)
def graph_types(size: int) -> TypeSupport:
    """The rmw_dds_common types of `ros_discovery_info` with GIDs of `size` bytes."""
    if size == 16:
        return default_typesupport()
    jazzy = default_library()
    library = InterfaceLibrary()
    for name in GRAPH_TYPES[1:]:
        library.add(jazzy.message(name))
    library.add(parse_message(f'char[{size}] data  # the GUID, then zeros',
                              GRAPH_TYPES[0], f'<{size}-byte Gid>'))
    library.validate()
    return TypeSupport(library)
