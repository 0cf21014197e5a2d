"""`colvlm replay` over the shipped sample bag with the bundled model: the same numbers as
`colvlm eval` on the data set the bag was made from, and one clear line for each bad input."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer
import yaml

from colvlm_bench.cli import main as colvlm_main
from colvlm_bench.glyphvqa.dataset import QUESTIONS_FILE, write_dataset
from colvlm_msgs.bag import colvlm_typestore
from colvlm_msgs.resources import find

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = find('samples/glyphvqa-replay')
PER_FRAME = 2  # questions per sample frame the comparison uses: every frame, 16 in all
POLICIES = 'global,entropy'


def sample_info() -> dict:
    metadata = yaml.safe_load((SAMPLE / 'bag' / 'metadata.yaml').read_text())
    return json.loads(metadata['rosbag2_bagfile_information']['custom_data']['colvlm.sample'])


def first_per_frame(lines: list[dict]) -> list[dict]:
    kept, seen = [], {}
    for line in lines:
        seen[line['frame_index']] = seen.get(line['frame_index'], 0) + 1
        if seen[line['frame_index']] <= PER_FRAME:
            kept.append(line)
    return kept


def bag_images(bag: Path) -> list[bytes]:
    """The encoded image of every CompressedImage message in `bag`, in log order."""
    store = colvlm_typestore()
    with Reader(bag) as reader:
        return [np.asarray(store.deserialize_cdr(raw, c.msgtype).data).tobytes()
                for c, _, raw in reader.messages()
                if c.msgtype == 'sensor_msgs/msg/CompressedImage']


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """`colvlm eval` on the regenerated data set and `colvlm replay` on the sample bag, over
    the same questions (the first few of every frame)."""
    info = sample_info()
    root = tmp_path_factory.mktemp('replay')
    data = write_dataset(root / 'data', info['n_images'], info['seed'])
    chosen = first_per_frame(read_jsonl(SAMPLE / 'questions.jsonl'))
    ids = {line['id'] for line in chosen}
    # The data set keeps its own lines (image paths), limited to the same questions.
    kept = [line for line in read_jsonl(data / QUESTIONS_FILE) if line['id'] in ids]
    # The very images in the bag (lossless PNG), so the comparison does not depend on this
    # machine's OpenCV drawing the regenerated scenes exactly as the one that made the bag.
    # The same for the targets: another OpenCV measures the regenerated text differently.
    frames = bag_images(SAMPLE / 'bag')
    sample_line = {line['id']: line for line in chosen}
    for line in kept:
        (data / line['image']).write_bytes(frames[sample_line[line['id']]['frame_index']])
        line['target'] = sample_line[line['id']].get('target', line.get('target'))
    (data / QUESTIONS_FILE).write_text(''.join(json.dumps(line) + '\n' for line in kept))
    questions = root / 'questions.jsonl'
    questions.write_text(''.join(json.dumps(line) + '\n' for line in chosen))
    common = ['--policy', POLICIES, '--no-progress', '--model', 'bundled']
    assert colvlm_main(['eval', str(data), '--out', str(root / 'eval'), *common]) == 0
    assert colvlm_main(['replay', 'sample', '--questions', str(questions), '--out',
                        str(root / 'replay'), *common]) == 0
    return root, len(chosen)


def test_replay_reproduces_eval_on_the_same_questions(runs):
    root, count = runs
    evaluated = json.loads((root / 'eval' / 'metrics.json').read_text())
    replayed = json.loads((root / 'replay' / 'metrics.json').read_text())
    assert [m['policy'] for m in replayed] == POLICIES.split(',')
    for eval_metrics, replay_metrics in zip(evaluated, replayed, strict=True):
        assert replay_metrics.keys() == eval_metrics.keys()
        assert replay_metrics['n'] == replay_metrics['n_scored'] == count
        for key in eval_metrics:
            if key != 'latency_ms_mean':  # wall time; everything else is deterministic
                assert replay_metrics[key] == eval_metrics[key], key
    by_question = {(r['id'], r['policy']): r for r in read_jsonl(root / 'eval' / 'records.jsonl')}
    records = read_jsonl(root / 'replay' / 'records.jsonl')
    assert len(records) == len(by_question) == 2 * count
    for record in records:
        expected = by_question[(record['id'], record['policy'])]
        for key in ('answer', 'correct', 'first_answer', 'decision', 'uplink_bytes', 'roi',
                    'min_entropy', 'kind'):
            assert record[key] == expected[key], (record['id'], key)
    for name in ('accuracy_vs_uplink.png', 'accuracy_vs_compute.png'):
        assert (root / 'replay' / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_questions_from_the_bags_query_topic(runs, tmp_path, capsys):
    root, _ = runs
    out = tmp_path / 'out'
    assert colvlm_main(['replay', 'sample', '--policy', 'global', '--limit', '10', '--out',
                        str(out), '--no-progress']) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    # Queries carry no reference answers: answered, not scored.
    assert (metrics['n'], metrics['n_scored'], metrics['accuracy']) == (10, 0, None)
    assert metrics['status_counts'] == {'ok': 10}
    records = read_jsonl(out / 'records.jsonl')
    sample = read_jsonl(SAMPLE / 'questions.jsonl')[:10]
    assert [(r['id'], r['question']) for r in records] == [(q['id'], q['question'])
                                                          for q in sample]
    evaluated = {r['id']: r['answer'] for r in read_jsonl(root / 'eval' / 'records.jsonl')
                 if r['policy'] == 'global'}
    common = [r for r in records if r['id'] in evaluated]
    assert common and all(r['answer'] == evaluated[r['id']] for r in common)
    assert 'accuracy not scored' in capsys.readouterr().out


def test_a_bad_questions_line_is_named_and_the_rest_runs(tmp_path, capsys):
    questions = tmp_path / 'questions.jsonl'
    questions.write_text('{"frame_index": 0, "question": \n'
                         '{"frame_index": 0, "question": "Is there a red star?", '
                         '"answers": ["no"], "kind": "presence"}\n'
                         '{"frame_index": 99, "question": "Which frame?"}\n')
    out = tmp_path / 'out'
    assert colvlm_main(['replay', 'sample', '--questions', str(questions), '--policy', 'global',
                        '--out', str(out), '--no-progress']) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(f'{questions}:1: not valid JSON' in line for line in err)
    assert any(f'{questions}:3: ' in line and 'no frame_index 99 (8 messages)' in line
               for line in err)
    metrics = json.loads((out / 'metrics.json').read_text())
    assert (metrics['n'], metrics['n_scored']) == (1, 1)
    assert list(metrics['accuracy_by_kind']) == ['presence']


def copy_sample(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE / 'bag', tmp_path / 'bag'))


def truncated(tmp_path: Path) -> Path:
    bag = copy_sample(tmp_path)
    data = bag / 'bag.mcap'
    with open(data, 'r+b') as stream:
        stream.truncate(data.stat().st_size * 2 // 3)
    return bag


def unknown_storage(tmp_path: Path) -> Path:
    bag = copy_sample(tmp_path)
    metadata = bag / 'metadata.yaml'
    metadata.write_text(metadata.read_text().replace('storage_identifier: mcap',
                                                     'storage_identifier: lz4store'))
    return bag


def no_image_topic(tmp_path: Path) -> Path:
    store = colvlm_typestore()
    bag = tmp_path / 'bag'
    with Writer(bag, version=9) as writer:  # sqlite3
        connection = writer.add_connection('/camera/colvlm/query', 'colvlm/msg/Query',
                                           typestore=store)
        query = store.types['colvlm/msg/Query'](
            header=store.types['std_msgs/msg/Header'](
                stamp=store.types['builtin_interfaces/msg/Time'](sec=1, nanosec=0),
                frame_id=''),
            query_id='q', question='Is there a red star?', camera='',
            frame_stamp=store.types['builtin_interfaces/msg/Time'](sec=0, nanosec=0),
            fresh_frame=False, policy='', max_new_tokens=0)
        writer.write(connection, 1, store.serialize_cdr(query, 'colvlm/msg/Query'))
    return bag


@pytest.mark.parametrize('make, culprit', [
    (lambda tmp: tmp / 'no-such-bag', 'does not exist'),
    (truncated, '(truncated or corrupt?): File end magic is invalid'),
    (no_image_topic, 'has no image topic'),
    (unknown_storage, "storage format 'lz4store'"),
])
def test_a_bad_bag_stops_with_one_line_and_no_output(tmp_path, capsys, make, culprit):
    bag = make(tmp_path)
    out = tmp_path / 'out'
    code = colvlm_main(['replay', str(bag), '--questions', str(SAMPLE / 'questions.jsonl'),
                        '--out', str(out), '--no-progress'])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith('colvlm replay: ')
    assert culprit in lines[0] and str(bag) in lines[0]
    assert not (out / 'metrics.json').exists() and not out.exists()


def test_sample_bag_is_small_read_by_rosbags_and_remade_by_its_tool(tmp_path):
    size = sum(p.stat().st_size for p in (SAMPLE / 'bag').iterdir())
    assert size <= 10 * 2**20
    info = sample_info()
    done = subprocess.run([sys.executable, '-m', 'tools.make_sample_bag', '--out',
                           str(tmp_path), '--n-images', str(info['n_images']), '--seed',
                           str(info['seed'])], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]

    def messages(bag: Path) -> list[tuple]:
        with Reader(bag) as reader:
            return [(c.topic, c.msgtype, c.digest, t, bytes(raw))
                    for c, t, raw in reader.messages()]

    shipped, remade = messages(SAMPLE / 'bag'), messages(tmp_path / 'bag')
    store = colvlm_typestore()
    assert [m[:4] for m in shipped] == [m[:4] for m in remade]  # topics, types, times
    queries = [m for m in shipped if m[1] == 'colvlm/msg/Query']
    assert queries and queries == [m for m in remade if m[1] == 'colvlm/msg/Query']
    if info['opencv'] == cv2.__version__:
        assert (tmp_path / 'questions.jsonl').read_text() == \
            (SAMPLE / 'questions.jsonl').read_text()
        assert shipped == remade
    else:
        # Another OpenCV draws and measures text a little differently (anti-aliasing, font
        # metrics), so only what does not depend on its drawing is compared.
        def asked(path: Path) -> list[tuple]:
            return [(q['id'], q['frame_index'], q['question'], q['answers'])
                    for q in read_jsonl(path)]
        assert asked(tmp_path / 'questions.jsonl') == asked(SAMPLE / 'questions.jsonl')
    image = store.deserialize_cdr(shipped[0][4], 'sensor_msgs/msg/CompressedImage')
    assert shipped[0][:2] == ('/camera/image_raw/compressed', 'sensor_msgs/msg/CompressedImage')
    assert image.format == 'bgr8; png compressed bgr8' and np.asarray(image.data)[:4].tobytes() \
        == b'\x89PNG'
    assert {m[1] for m in shipped} == {'sensor_msgs/msg/CompressedImage', 'colvlm/msg/Query'}


def test_a_bag_of_global_frames_replays_the_data_sets_own_questions(tmp_path, capsys):
    # As `ros2 bag record /colvlm/global/compressed` while the edge played the folder: global
    # frames (resized, JPEG), looped, the first one missed by a recorder started late.
    from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
    from colvlm_msgs.bag import storage_plugin

    data = write_dataset(tmp_path / 'data', 3, sample_info()['seed'])
    lines = read_jsonl(data / QUESTIONS_FILE)
    images = sorted({line['image'] for line in lines})
    encoder = GlobalEncoder(GlobalEncoderConfig())
    store = colvlm_typestore()
    with Writer(tmp_path / 'bag', version=9, storage_plugin=storage_plugin('mcap')) as writer:
        connection = writer.add_connection('/colvlm/global/compressed',
                                           'sensor_msgs/msg/CompressedImage', typestore=store)
        for number, name in enumerate(images[1:] + images[1:]):
            picture = cv2.imread(str(data / name), cv2.IMREAD_COLOR)
            message = store.types['sensor_msgs/msg/CompressedImage'](
                header=store.types['std_msgs/msg/Header'](
                    stamp=store.types['builtin_interfaces/msg/Time'](sec=number + 1, nanosec=0),
                    frame_id='camera'),
                format='jpeg', data=np.frombuffer(encoder.encode(picture).data, np.uint8).copy())
            writer.write(connection, (number + 1) * 10**9,
                         store.serialize_cdr(message, 'sensor_msgs/msg/CompressedImage'))
    out = tmp_path / 'out'
    assert colvlm_main(['replay', str(tmp_path / 'bag'), '--questions',
                        str(data / QUESTIONS_FILE), '--policy', 'global', '--out', str(out),
                        '--no-progress', '--model', 'bundled']) == 0
    captured = capsys.readouterr()
    shown = [line for line in lines if line['image'] != images[0]]
    metrics = json.loads((out / 'metrics.json').read_text())
    assert (metrics['n'], metrics['n_scored']) == (len(shown), len(shown))
    assert metrics['roi_hit_rate'] is None and metrics['status_counts'] == {'ok': len(shown)}
    assert '2 of 3 data set images found' in captured.out
    assert 'RoI hit' not in captured.out  # the per-policy line prints no 0.0% for it
    targeted = sum(line['target'] is not None for line in shown)
    assert targeted and f'RoI hit cannot be computed for {targeted} questions' in captured.err
    assert captured.err.count(f"{images[0]}' (") == len(lines) - len(shown)
