"""colvlm_msgs.bag: colvlm's types in a rosbags type store, and bags that cannot be opened."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader, Writer

from colvlm_msgs.bag import (
    BagError,
    colvlm_typestore,
    open_reader,
    rosbags_qos,
    storage_plugin,
)
from colvlm_msgs.library import default_library
from colvlm_msgs.qos import profile
from colvlm_msgs.typesupport import default_typesupport

S = 1_000_000_000


def write_bag(path, storage='mcap', count=30):
    """A bag of `count` 40 kB CompressedImage messages: big enough to truncate mid-data."""
    store = colvlm_typestore()
    types = store.types
    rng = np.random.default_rng(0)
    with Writer(path, version=9, storage_plugin=storage_plugin(storage)) as writer:
        connection = writer.add_connection('/cam/image/compressed',
                                           'sensor_msgs/msg/CompressedImage', typestore=store)
        for index in range(count):
            message = types['sensor_msgs/msg/CompressedImage'](
                header=types['std_msgs/msg/Header'](
                    stamp=types['builtin_interfaces/msg/Time'](sec=index, nanosec=0),
                    frame_id='cam'),
                format='png', data=rng.integers(0, 256, 40_000).astype(np.uint8))
            writer.write(connection, index * S,
                         store.serialize_cdr(message, 'sensor_msgs/msg/CompressedImage'))
    return path


def storage_file(bag):
    (found,) = [p for p in bag.iterdir() if p.suffix in ('.mcap', '.db3')]
    return found


def test_typestore_knows_every_colvlm_interface_with_our_hashes():
    store = colvlm_typestore()
    support = default_typesupport()
    library = default_library()
    for name in library.messages:
        assert store.hash_rihs01(name) == support.message(name).type_hash, name
    for name in library.services:
        service = support.service(name)
        assert store.hash_rihs01(f'{name}_Request') == service.request_hash
        assert store.hash_rihs01(f'{name}_Response') == service.response_hash
    definition, _ = store.generate_msgdef('colvlm/msg/Answer', ros_version=2)
    # The definition a bag embeds names the nested types too (rosbags spells them pkg/Name).
    assert 'PassMetrics first_pass' in definition and 'MSG: colvlm/PassMetrics' in definition


def test_offered_qos_follows_the_named_profiles():
    frames, answers = rosbags_qos(profile('frames')), rosbags_qos(profile('answers'))
    assert frames.reliability == QosReliability.BEST_EFFORT and frames.depth == 2
    assert answers.reliability == QosReliability.RELIABLE and answers.depth == 1000
    assert rosbags_qos(profile('status')).durability == QosDurability.TRANSIENT_LOCAL


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_whole_bag_opens_and_a_truncated_one_is_named(tmp_path, storage):
    bag = write_bag(tmp_path / 'bag', storage)
    reader = open_reader(bag)
    assert sum(1 for _ in reader.messages()) == 30
    reader.close()
    data = storage_file(bag)
    with open(data, 'r+b') as stream:
        stream.truncate(data.stat().st_size // 2)
    with pytest.raises(BagError, match=r"cannot read bag '.*bag' \(truncated or corrupt\?\)"):
        open_reader(bag)


def test_bags_that_cannot_be_opened_say_why_in_one_line(tmp_path):
    with pytest.raises(BagError, match='does not exist'):
        open_reader(tmp_path / 'missing')
    killed = write_bag(tmp_path / 'killed', count=2)
    (killed / 'metadata.yaml').unlink()  # what a recorder killed before closing leaves
    with pytest.raises(BagError, match='no metadata.yaml.*killed'):
        open_reader(killed)
    other = write_bag(tmp_path / 'other', count=2)
    metadata = other / 'metadata.yaml'
    metadata.write_text(metadata.read_text().replace('storage_identifier: mcap',
                                                     'storage_identifier: lz4store'))
    with pytest.raises(BagError, match="storage format 'lz4store'; colvlm reads mcap and "
                                       'sqlite3'):
        open_reader(other)
    odd = tmp_path / 'recording.bag9'
    odd.write_bytes(b'\0' * 64)
    with pytest.raises(BagError, match="storage format '.bag9'"):
        open_reader(odd)
    with pytest.raises(BagError, match="storage must be one of .*got 'lz4'"):
        storage_plugin('lz4')
    assert issubclass(BagError, ValueError)  # the CLIs catch it with their bad input


def test_a_storage_file_opens_directly(tmp_path):
    bag = write_bag(tmp_path / 'bag', count=3)
    reader = open_reader(storage_file(bag))
    assert isinstance(reader, Reader) and reader.message_count == 3
    reader.close()
