"""A data set's `image` lines replayed against a bag of the edge's global frames: each picture
found by content (looped, resized, recompressed, the first one missed by the recorder), the
missing one named, and targets that the resized frames cannot be scored against dropped."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from colvlm_bench.replay import BagFrames, FrameRef, read_questions_file
from colvlm_bench.replay_cli import _resolve
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.sources.bag import BagSource
from colvlm_msgs.bag import colvlm_typestore, storage_plugin
from colvlm_msgs.geometry import PREPROCESS_MODES
from colvlm_msgs.image_codec import encode_image

STORE = colvlm_typestore()
TYPES = STORE.types
TOPIC = '/cam/colvlm/global/compressed'


def pictures(count=4):
    """Smooth random scenes (320x180), unlike each other as data set pictures are."""
    rng = np.random.default_rng(7)
    return [cv2.resize(rng.integers(0, 256, (5, 8, 3), dtype=np.uint8), (320, 180),
                       interpolation=cv2.INTER_CUBIC) for _ in range(count)]


def write_data_set(folder, images):
    (folder / 'images').mkdir(parents=True)
    lines = []
    for number, picture in enumerate(images):
        name = f'images/{number:05d}.png'
        cv2.imwrite(str(folder / name), picture)
        lines.append({'id': f'{number:05d}-q0', 'image': name, 'question': 'Which?',
                      'answers': ['x'], 'kind': 'text', 'target': [200, 100, 260, 140]})
    (folder / 'questions.jsonl').write_text(''.join(json.dumps(li) + '\n' for li in lines))
    return folder / 'questions.jsonl'


def write_bag(path, encoded):
    with Writer(path, version=9, storage_plugin=storage_plugin('mcap')) as writer:
        connection = writer.add_connection(TOPIC, 'sensor_msgs/msg/CompressedImage',
                                           typestore=STORE)
        for number, data in enumerate(encoded):
            stamp = TYPES['builtin_interfaces/msg/Time'](sec=100 + number, nanosec=0)
            message = TYPES['sensor_msgs/msg/CompressedImage'](
                header=TYPES['std_msgs/msg/Header'](stamp=stamp, frame_id='cam'),
                format='jpeg', data=np.frombuffer(data, np.uint8).copy())
            writer.write(connection, (100 + number) * 10**9,
                         STORE.serialize_cdr(message, 'sensor_msgs/msg/CompressedImage'))
    return path


def replayed(tmp_path, encoded):
    questions_file = write_data_set(tmp_path / 'data', pictures())
    asked, problems = read_questions_file(questions_file)
    assert problems == []
    with BagSource(write_bag(tmp_path / 'bag', encoded)) as source:
        frames = BagFrames(source, [q.frame for q in asked])
    return asked, frames


@pytest.mark.parametrize('preprocess', PREPROCESS_MODES)
def test_images_are_found_among_looped_global_frames_and_a_missed_one_is_named(
        tmp_path, capsys, preprocess):
    encoder = GlobalEncoder(GlobalEncoderConfig(width=128, height=128, preprocess=preprocess))
    scenes = pictures()
    # The recorder started after the edge sent picture 0; the edge looped over the folder.
    asked, frames = replayed(tmp_path, [encoder.encode(scenes[i]).data
                                        for i in (1, 2, 3, 1, 2, 3)])
    assert asked[0].frame == FrameRef(image=str(tmp_path / 'data' / 'images' / '00000.png'))
    assert [frames.key(q.frame) for q in asked] == [None, 'frame0', 'frame1', 'frame2']
    assert frames.original('frame2').shape == (128, 128, 3)
    questions = _resolve(asked, frames)
    assert [(q.id, q.image, q.target) for q in questions] == [
        ('00001-q0', 'frame0', None), ('00002-q0', 'frame1', None), ('00003-q0', 'frame2', None)]
    err = capsys.readouterr().err
    assert f'no frame of {TOPIC} shows data set image' in err and '00000.png' in err
    assert 'a recorder started after the edge sent it misses it' in err
    assert 'RoI hit cannot be computed for 3 questions' in err and '128x128' in err


def test_a_bag_of_the_originals_keeps_the_targets(tmp_path, capsys):
    asked, frames = replayed(tmp_path, [encode_image(p, 'jpeg', 90) for p in pictures()])
    questions = _resolve(asked, frames)
    assert [(q.image, q.target) for q in questions] == [
        (f'frame{n}', (200, 100, 260, 140)) for n in range(4)]
    assert 'RoI hit' not in capsys.readouterr().err


def test_a_bag_of_another_folder_matches_nothing(tmp_path, capsys):
    others = [255 - p for p in pictures()]
    asked, frames = replayed(tmp_path, [encode_image(p, 'jpeg', 90) for p in others])
    assert _resolve(asked, frames) == []
    err = capsys.readouterr().err
    assert err.count('the closest differs by') == 4


def test_an_image_line_names_one_frame_only(tmp_path):
    path = tmp_path / 'questions.jsonl'
    path.write_text('{"image": "a.png", "frame_index": 0, "question": "Both?"}\n'
                    '{"image": "", "question": "Empty?"}\n')
    questions, problems = read_questions_file(path)
    assert questions == []
    assert "exactly one of 'stamp_ns', 'frame_index' and 'image'" in problems[0]
    assert "'image' must be a non-empty path string" in problems[1]
