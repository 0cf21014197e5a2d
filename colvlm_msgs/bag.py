"""rosbag2 files of colvlm's wire types, through the `rosbags` library (no ROS needed).

`colvlm_typestore()` is a rosbags Jazzy type store that also knows every colvlm interface,
parsed from the same `.msg`/`.srv` files the wire types are built from, so that a bag
carries each type's definition and RIHS01 hash and both `ros2 bag` and `rosbags` read it.
`open_reader` opens a bag or says in one line why it cannot. This module knows files and
types, not topics or nodes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
import yaml

from colvlm_msgs.interfaces import SERVICE_SEPARATOR
from colvlm_msgs.library import default_library
from colvlm_msgs.qos import QosProfile

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
STORAGE_SUFFIXES = {'.mcap': 'mcap', '.db3': 'sqlite3'}
WRITER_VERSION = 9  # rosbag2's metadata version since Jazzy; Humble reads up to 5 (mcap: any)


class BagError(ValueError):
    """A bag that cannot be opened or used; the message is one line naming the bag."""


@lru_cache(maxsize=1)
def colvlm_typestore():
    """A rosbags Jazzy type store that also knows every colvlm interface (shared; read only)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    library = default_library()
    types = {}
    for spec in library.messages.values():
        if spec.package == 'colvlm':
            text = Path(spec.source).read_text(encoding='utf-8')
            types.update(get_types_from_msg(text, spec.name))
    for service in library.services.values():
        request_text, response_text = Path(service.source).read_text(encoding='utf-8').split(
            '\n' + SERVICE_SEPARATOR + '\n')
        for text, half in ((request_text, service.request), (response_text, service.response)):
            # rosbags parses 'pkg/msg/Name' only: parse as a message, file under the srv name.
            parsed = get_types_from_msg(text, half.name.replace('/srv/', '/msg/'))
            types.update({key.replace('/msg/', '/srv/') if key.endswith(half.name.split('/')[-1])
                          else key: value for key, value in parsed.items()})
    store.register(types)
    return store


def storage_plugin(name: str) -> StoragePlugin:
    """The rosbags storage plugin for 'mcap' or 'sqlite3'; BagError naming the value else."""
    if name not in STORAGES:
        raise BagError(f'storage must be one of {tuple(STORAGES)}, got {name!r}')
    return STORAGES[name]


def rosbags_qos(qos: QosProfile) -> Qos:
    """A colvlm QoS profile as the offered QoS a bag's metadata records for `ros2 bag play`."""
    def duration(ms: float) -> QosTime:
        return QosTime(*divmod(int(round(ms * 1e6)), 1_000_000_000))

    return Qos(
        history=QosHistory.KEEP_LAST if qos.history == 'keep_last' else QosHistory.KEEP_ALL,
        depth=qos.depth,
        reliability=(QosReliability.RELIABLE if qos.reliability == 'reliable'
                     else QosReliability.BEST_EFFORT),
        durability=(QosDurability.TRANSIENT_LOCAL if qos.durability == 'transient_local'
                    else QosDurability.VOLATILE),
        deadline=duration(qos.deadline_ms), lifespan=duration(qos.lifespan_ms),
        liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=QosTime(0, 0),
        avoid_ros_namespace_conventions=False)


def _storage_of(path: Path) -> str | None:
    """The storage a bag folder's metadata or a storage file's suffix names (None: unknown)."""
    if path.is_dir():
        try:
            document = yaml.safe_load((path / 'metadata.yaml').read_text(encoding='utf-8'))
            return str(document['rosbag2_bagfile_information']['storage_identifier'])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
            raise BagError(f'bag {str(path)!r}: unreadable metadata.yaml ({error})') from None
    return STORAGE_SUFFIXES.get(path.suffix.lower(), path.suffix or '(no suffix)')


def open_reader(path: str | Path) -> Reader:
    """An open rosbags Reader on a bag folder or storage file, or BagError saying why not.

    Covers a bag that does not exist, a folder without metadata.yaml (not a bag, or a
    recording killed before it was closed), an unknown storage format and a truncated or
    corrupt storage file.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag {str(path)!r} does not exist')
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        raise BagError(f'bag {str(path)!r} has no metadata.yaml: not a rosbag2 folder, or a '
                       'recording that was killed before it closed the bag')
    storage = _storage_of(path)
    if storage not in STORAGES:
        raise BagError(f'bag {str(path)!r} has storage format {storage!r}; colvlm reads '
                       f'{" and ".join(STORAGES)}')
    reader = Reader(path)
    try:
        reader.open()
    except (ReaderError, OSError) as error:
        raise BagError(f'cannot read bag {str(path)!r} (truncated or corrupt?): '
                       f'{error}') from None
    return reader
