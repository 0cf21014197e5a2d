#!/usr/bin/env python3
"""Write the sample that `colvlm replay sample --questions sample` replays.

    python -m tools.make_sample_bag [--out samples/glyphvqa-replay] [--n-images 8]

Renders a Glyph-VQA data set (seed 2718281: no training, calibration, held-out, demo or test
stream uses it) and writes into OUT:
  bag/             rosbag2 (mcap; --storage sqlite3) with the scenes on
                   /camera/image_raw/compressed (sensor_msgs/msg/CompressedImage, lossless PNG,
                   so replay sees the very pixels `colvlm eval` reads from the data set) and
                   every question on /camera/colvlm/query (colvlm/msg/Query, frame_stamp = its
                   scene); custom_data `colvlm.sample` says how it was made.
  questions.jsonl  the same questions with frame_index, answers, kind, target and id.
Frames are SPACING_S * (questions per scene + 1) apart, each scene's queries SPACING_S apart
after it, so `ros2 bag play` does not outrun a server on a CPU. The same arguments write the
same messages.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import shutil
import sys
import tempfile

import cv2
import numpy as np

from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_msgs import stamps
from colvlm_msgs.bag import (
    WRITER_VERSION,
    colvlm_typestore,
    rosbags_qos,
    storage_plugin,
)
from colvlm_msgs.image_codec import encode_image
from colvlm_msgs.qos import profile

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SEED = 2718281
IMAGE_TOPIC = '/camera/image_raw/compressed'
QUERY_TOPIC = '/camera/colvlm/query'
START_NS = 1_767_225_600 * stamps.NS_PER_S  # 2026-01-01T00:00:00Z: fixed, so bytes repeat
SPACING_S = 0.5


def write_sample(out: Path, n_images: int, seed: int, storage: str) -> tuple[int, int]:
    """Write bag/ and questions.jsonl into `out`; (frames, questions) written."""
    from rosbags.rosbag2 import Writer

    store = colvlm_typestore()
    types = store.types
    with tempfile.TemporaryDirectory() as scratch:
        data = write_dataset(Path(scratch) / 'data', n_images, seed)
        questions = load_dataset(data)
        images = {name: cv2.imread(str(data / name), cv2.IMREAD_COLOR)  # (H, W, 3) uint8 BGR
                  for name in dict.fromkeys(q.image for q in questions)}
    names = list(images)
    per_image = max(sum(q.image == name for q in questions) for name in names)
    period_ns = int((per_image + 1) * SPACING_S * stamps.NS_PER_S)
    spacing_ns = int(SPACING_S * stamps.NS_PER_S)

    def header(stamp_ns: int):
        return types['std_msgs/msg/Header'](
            stamp=stamps.fill(types['builtin_interfaces/msg/Time'](sec=0, nanosec=0), stamp_ns),
            frame_id='camera')

    writer = Writer(out / 'bag', version=WRITER_VERSION, storage_plugin=storage_plugin(storage))
    writer.set_custom_data('colvlm.sample', json.dumps(
        {'generator': 'tools/make_sample_bag.py', 'dataset': 'glyphvqa', 'seed': seed,
         'n_images': n_images, 'image_topic': IMAGE_TOPIC, 'query_topic': QUERY_TOPIC,
         # The scenes are drawn by OpenCV: only the same version remakes them byte for byte.
         'opencv': cv2.__version__}))
    lines = []
    with writer:
        image_connection = writer.add_connection(
            IMAGE_TOPIC, 'sensor_msgs/msg/CompressedImage', typestore=store,
            offered_qos_profiles=[rosbags_qos(profile('frames'))])
        query_connection = writer.add_connection(
            QUERY_TOPIC, 'colvlm/msg/Query', typestore=store,
            offered_qos_profiles=[rosbags_qos(profile('queries'))])
        for index, name in enumerate(names):
            frame_ns = START_NS + index * period_ns
            png = np.frombuffer(encode_image(images[name], 'png', 9), np.uint8)
            image = types['sensor_msgs/msg/CompressedImage'](
                header=header(frame_ns), format='bgr8; png compressed bgr8', data=png.copy())
            writer.write(image_connection, frame_ns,
                         store.serialize_cdr(image, 'sensor_msgs/msg/CompressedImage'))
            asked = [q for q in questions if q.image == name]
            for number, question in enumerate(asked, start=1):
                asked_ns = frame_ns + number * spacing_ns
                query = types['colvlm/msg/Query'](
                    header=header(asked_ns), query_id=question.id, question=question.question,
                    camera='', frame_stamp=stamps.fill(
                        types['builtin_interfaces/msg/Time'](sec=0, nanosec=0), frame_ns),
                    fresh_frame=False, policy='', max_new_tokens=0)
                writer.write(query_connection, asked_ns,
                             store.serialize_cdr(query, 'colvlm/msg/Query'))
                record = question.to_json()
                del record['image']
                lines.append({'frame_index': index, **record})
    (out / 'questions.jsonl').write_text(''.join(json.dumps(line) + '\n' for line in lines),
                                         encoding='utf-8')
    return len(names), len(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip())
    parser.add_argument('--out', type=Path, default=ROOT / 'samples' / 'glyphvqa-replay')
    parser.add_argument('--n-images', type=int, default=8)
    parser.add_argument('--seed', type=int, default=SAMPLE_SEED)
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    args = parser.parse_args()
    if args.n_images < 1:
        parser.error(f'--n-images must be at least 1, got {args.n_images}')
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / 'bag', ignore_errors=True)  # the writer creates only new bags
    frames, questions = write_sample(args.out, args.n_images, args.seed, args.storage)
    size = sum(p.stat().st_size for p in (args.out / 'bag').iterdir())
    print(f'wrote {args.out}: {frames} frames and {questions} questions, bag {size / 1e6:.2f} MB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
