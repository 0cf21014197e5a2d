"""`colvlm replay` over a sqlite3 bag laid out as Humble's rosbag2 writes one (metadata
version 5, database schema 3 with ros_distro 'humble', no type definitions or hashes), its
messages serialized by the rosbags Humble type store: the same answers as over the shipped
sample bag it was copied from.

rosbags' Writer writes only Jazzy's layouts (metadata 8 and 9), so the Humble bag is written
here table by table after rosbag2's Humble sources (sqlite_storage.cpp, metadata_io.cpp).
"""

from __future__ import annotations

import json
from pathlib import Path
import sqlite3

from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
import yaml

from colvlm_bench.cli import main as colvlm_main
from colvlm_msgs.bag import colvlm_typestore
from colvlm_msgs.library import default_library
from colvlm_msgs.resources import find

SAMPLE_BAG = find('samples/glyphvqa-replay') / 'bag'
QUESTIONS = 6  # the sample's first Query messages, answered by the bundled model
# `ros2 bag record` on Humble stores each publisher's offered QoS as this YAML text.
HUMBLE_QOS = ('- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n'
              '    sec: 2147483647\n    nsec: 4294967295\n  lifespan:\n    sec: 2147483647\n'
              '    nsec: 4294967295\n  liveliness: 1\n  liveliness_lease_duration:\n'
              '    sec: 2147483647\n    nsec: 4294967295\n  avoid_ros_namespace_conventions: '
              'false\n')
SCHEMA = """
CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL,
                      metadata TEXT NOT NULL);
CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                    serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,
                      timestamp INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
"""


def humble_typestore():
    """rosbags' Humble types plus colvlm's own, as a Humble build of colvlm has them."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    query = default_library().message('colvlm/msg/Query')
    store.register(get_types_from_msg(Path(query.source).read_text(encoding='utf-8'),
                                      query.name))
    return store


def write_humble_bag(folder: Path, messages: list[tuple[str, str, int, bytes]]) -> Path:
    """A Humble rosbag2 sqlite3 bag of (topic, type, log time ns, CDR bytes) messages."""
    folder.mkdir()
    topics = list(dict.fromkeys((topic, msgtype) for topic, msgtype, _, _ in messages))
    times = [ns for _, _, ns, _ in messages]
    start, duration = min(times), max(times) - min(times)
    name = f'{folder.name}_0.db3'
    metadata = {'rosbag2_bagfile_information': {
        'version': 5, 'storage_identifier': 'sqlite3',
        'duration': {'nanoseconds': duration},
        'starting_time': {'nanoseconds_since_epoch': start},
        'message_count': len(messages),
        'topics_with_message_count': [
            {'topic_metadata': {'name': topic, 'type': msgtype, 'serialization_format': 'cdr',
                                'offered_qos_profiles': HUMBLE_QOS},
             'message_count': sum(1 for m in messages if m[0] == topic)}
            for topic, msgtype in topics],
        'compression_format': '', 'compression_mode': '', 'relative_file_paths': [name],
        'files': [{'path': name, 'starting_time': {'nanoseconds_since_epoch': start},
                   'duration': {'nanoseconds': duration}, 'message_count': len(messages)}]}}
    text = yaml.safe_dump(metadata, sort_keys=False)
    database = sqlite3.connect(folder / name)
    with database:
        database.executescript(SCHEMA)
        database.execute('INSERT INTO schema VALUES (3, ?)', ('humble',))
        database.execute('INSERT INTO metadata (metadata_version, metadata) VALUES (5, ?)',
                         (text,))
        database.executemany('INSERT INTO topics (id, name, type, serialization_format, '
                             'offered_qos_profiles) VALUES (?, ?, ?, ?, ?)',
                             [(i + 1, t, m, 'cdr', HUMBLE_QOS) for i, (t, m) in enumerate(topics)])
        ids = {topic: i + 1 for i, (topic, _) in enumerate(topics)}
        database.executemany('INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)',
                             [(ids[t], ns, raw) for t, _, ns, raw in messages])
    database.close()
    (folder / 'metadata.yaml').write_text(text, encoding='utf-8')
    return folder


def humble_copy_of_the_sample(folder: Path) -> Path:
    """The sample bag's frames and first Query messages, re-serialized by Humble's types."""
    jazzy, humble = colvlm_typestore(), humble_typestore()
    messages, queries = [], 0
    with Reader(SAMPLE_BAG) as reader:
        for connection, log_ns, raw in reader.messages():
            if connection.msgtype == 'colvlm/msg/Query':
                queries += 1
                if queries > QUESTIONS:
                    continue
            message = jazzy.deserialize_cdr(raw, connection.msgtype)
            humble_raw = bytes(humble.serialize_cdr(message, connection.msgtype))
            assert humble_raw == bytes(raw)  # no type here changed between the two
            messages.append((connection.topic, connection.msgtype, log_ns, humble_raw))
    return write_humble_bag(folder, messages)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_replay_reads_a_humble_sqlite3_bag_as_the_sample(tmp_path):
    bag = humble_copy_of_the_sample(tmp_path / 'humble')
    with Reader(bag) as reader:  # what a Humble bag lacks, rosbags does without
        assert all(c.msgdef.data == '' for c in reader.connections)
    common = ['--policy', 'global', '--no-progress', '--model', 'bundled', '--limit',
              str(QUESTIONS)]
    assert colvlm_main(['replay', str(bag), '--out', str(tmp_path / 'humble-out'),
                        *common]) == 0
    assert colvlm_main(['replay', str(SAMPLE_BAG), '--out', str(tmp_path / 'jazzy-out'),
                        *common]) == 0
    from_humble = read_jsonl(tmp_path / 'humble-out' / 'records.jsonl')
    from_sample = read_jsonl(tmp_path / 'jazzy-out' / 'records.jsonl')
    assert len(from_humble) == QUESTIONS and all(r['status'] == 'ok' for r in from_humble)
    keys = ('id', 'question', 'answer', 'decision', 'uplink_bytes', 'status')
    assert [[r.get(k) for k in keys] for r in from_humble] == \
        [[r.get(k) for k in keys] for r in from_sample]
