"""colvlm_bench.replay: the questions file, Query topics, and the bag frames they name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from colvlm_bench.replay import (
    BagFrames,
    FrameRef,
    read_bag_queries,
    read_questions_file,
)
from colvlm_edge.sources.bag import BagSource
from colvlm_msgs.bag import BagError, colvlm_typestore, open_reader, storage_plugin
from colvlm_msgs.image_codec import encode_image

S = 1_000_000_000
STORE = colvlm_typestore()
TYPES = STORE.types


def time_msg(ns):
    return TYPES['builtin_interfaces/msg/Time'](sec=ns // S, nanosec=ns % S)


def image(value):
    return np.full((6, 8, 3), value, np.uint8)  # (H, W, 3) uint8 BGR


def write_bag(path, frames, queries=(), storage='mcap'):
    """frames: [(stamp_ns, value or None for an undecodable one)]; queries: [Query kwargs]."""
    with Writer(path, version=9, storage_plugin=storage_plugin(storage)) as writer:
        images = writer.add_connection('/cam/image/compressed',
                                       'sensor_msgs/msg/CompressedImage', typestore=STORE)
        for stamp_ns, value in frames:
            data = b'not an image' if value is None else encode_image(image(value), 'png', 1)
            message = TYPES['sensor_msgs/msg/CompressedImage'](
                header=TYPES['std_msgs/msg/Header'](stamp=time_msg(stamp_ns), frame_id='cam'),
                format='png', data=np.frombuffer(data, np.uint8).copy())
            writer.write(images, stamp_ns,
                         STORE.serialize_cdr(message, 'sensor_msgs/msg/CompressedImage'))
        if queries:
            topic = writer.add_connection('/cam/colvlm/query', 'colvlm/msg/Query',
                                          typestore=STORE)
            for log_ns, fields in queries:
                query = TYPES['colvlm/msg/Query'](
                    header=TYPES['std_msgs/msg/Header'](stamp=time_msg(fields.pop('asked', 0)),
                                                        frame_id=''),
                    query_id=fields.get('query_id', ''), question=fields['question'],
                    camera='', frame_stamp=time_msg(fields.get('frame_stamp', 0)),
                    fresh_frame=False, policy='', max_new_tokens=0)
                writer.write(topic, log_ns, STORE.serialize_cdr(query, 'colvlm/msg/Query'))
    return path


def test_questions_file_lines_that_do_not_parse_are_named_and_skipped(tmp_path):
    path = tmp_path / 'questions.jsonl'
    lines = [
        {'frame_index': 0, 'question': 'What color is the circle?', 'answers': ['red'],
         'kind': 'color', 'target': [1, 2, 5, 6], 'id': 'a'},
        '{"frame_index": 1, "question": "oops"',                               # 2: JSON
        {'stamp_ns': 5, 'frame_index': 1, 'question': 'Both?'},                 # 3
        {'frame_index': -1, 'question': 'Negative?'},                           # 4
        {'frame_index': 1, 'question': '  '},                                   # 5
        {'frame_index': 1, 'question': 'Typo?', 'answer': ['x']},               # 6
        {'frame_index': 1, 'question': 'Box?', 'target': [5, 5, 1, 1]},         # 7
        {'frame_index': 1, 'question': 'Again?', 'id': 'a'},                    # 8
        '',                                                                      # 9: blank
        {'stamp_ns': 12 * S, 'question': 'Unscored?'},                          # 10
        [1, 2],                                                                  # 11
    ]
    path.write_text(''.join((line if isinstance(line, str) else json.dumps(line)) + '\n'
                            for line in lines))
    questions, problems = read_questions_file(path)
    assert [q.question for q in questions] == ['What color is the circle?', 'Unscored?']
    first, unscored = questions
    assert (first.answers, first.kind, first.target, first.frame) == (
        ('red',), 'color', (1, 2, 5, 6), FrameRef(index=0))
    assert (unscored.id, unscored.answers, unscored.kind) == ('line10', (), 'other')
    assert unscored.frame == FrameRef(stamp_ns=12 * S) and unscored.origin == f'{path}:10'
    assert [p.split(': ', 1)[0] for p in problems] == [f'{path}:{n}'
                                                       for n in (2, 3, 4, 5, 6, 7, 8, 11)]
    by_line = dict(p.split(': ', 1) for p in problems)
    assert 'not valid JSON' in by_line[f'{path}:2']
    assert "exactly one of 'stamp_ns', 'frame_index' and 'image'" in by_line[f'{path}:3']
    assert "'frame_index' must be an integer >= 0, got -1" in by_line[f'{path}:4']
    assert "unknown key 'answer'" in by_line[f'{path}:6']
    assert "'target' must be" in by_line[f'{path}:7']
    assert "duplicate id 'a'" in by_line[f'{path}:8']
    assert 'expected a JSON object, got list' in by_line[f'{path}:11']
    assert all(p.endswith('; line skipped') and '\n' not in p for p in problems)


def test_bag_frames_keep_what_is_asked_by_index_and_stamp(tmp_path):
    frames = [(10 * S, 10), (11 * S, None), (12 * S, 30), (13 * S, 40)]
    bag = write_bag(tmp_path / 'bag', frames)
    refs = {
        'index0': FrameRef(index=0),
        'index2': FrameRef(index=2),       # after an undecodable message: it keeps its place
        'index1': FrameRef(index=1),       # the undecodable one itself
        'index9': FrameRef(index=9),
        'exact12': FrameRef(stamp_ns=12 * S, exact=True),
        'exact12.5': FrameRef(stamp_ns=12 * S + S // 2, exact=True),
        'between': FrameRef(stamp_ns=12 * S + S // 2),
        'after_all': FrameRef(stamp_ns=99 * S),
        'at_first': FrameRef(stamp_ns=10 * S),
        'before_all': FrameRef(stamp_ns=9 * S),
        'over_bad': FrameRef(stamp_ns=11 * S + 1),  # the newest decodable one is frame 0
    }
    with BagSource(bag) as source:
        provider = BagFrames(source, list(refs.values()))
    assert provider.count == 4 and provider.topic == '/cam/image/compressed'
    keys = {name: provider.key(ref) for name, ref in refs.items()}
    assert keys == {'index0': 'frame0', 'index2': 'frame2', 'index1': None, 'index9': None,
                    'exact12': 'frame2', 'exact12.5': None, 'between': 'frame2',
                    'after_all': 'frame3', 'at_first': 'frame0', 'before_all': None,
                    'over_bad': 'frame0'}
    assert provider.original('frame2')[0, 0, 0] == 30
    assert provider.original('frame3')[0, 0, 0] == 40
    with pytest.raises(OSError, match='frame1 of /cam/image/compressed was not read'):
        provider.original('frame1')


def test_queries_from_a_bag_topic(tmp_path):
    queries = [(20 * S, {'query_id': 'q-a', 'question': 'Is there a red star?',
                         'frame_stamp': 12 * S}),
               (21 * S, {'question': 'What is written on the blue sign?', 'asked': 13 * S}),
               (22 * S, {'query_id': 'q-c', 'question': '   '}),
               (23 * S, {'query_id': 'q-d', 'question': 'At log time?'})]
    bag = write_bag(tmp_path / 'bag', [(12 * S, 1), (13 * S, 2)], queries, storage='sqlite3')
    reader = open_reader(bag)
    try:
        questions, problems = read_bag_queries(reader, str(bag))
    finally:
        reader.close()
    assert [q.id for q in questions] == ['q-a', 'query1', 'q-d']
    assert [q.frame for q in questions] == [FrameRef(stamp_ns=12 * S, exact=True),
                                            FrameRef(stamp_ns=13 * S),
                                            FrameRef(stamp_ns=23 * S)]
    assert all(q.answers == () for q in questions)  # a Query carries no reference answer
    assert problems == ['/cam/colvlm/query#2: empty question; skipped']


def test_a_bag_without_a_query_topic_says_so(tmp_path):
    bag = write_bag(tmp_path / 'bag', [(12 * S, 1)])
    reader = open_reader(bag)
    try:
        with pytest.raises(BagError, match=r'has no colvlm/msg/Query topic \(pass --questions'):
            read_bag_queries(reader, str(bag))
        with pytest.raises(BagError, match="no topic '/other' of type colvlm/msg/Query"):
            read_bag_queries(reader, str(bag), '/other')
    finally:
        reader.close()
