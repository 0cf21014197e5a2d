"""Glyph-VQA generator: spec constraints on many scenes, questions, files and the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from colvlm_bench.cli import main
from colvlm_bench.glyphvqa import (
    ALL_KINDS,
    COLORS,
    EVAL_KINDS,
    SHAPES,
    TEXT_ALPHABET,
    Scene,
    ink_color,
    is_correct,
    label_map,
    load_dataset,
    normalize_answer,
    questions_for_scene,
    render_scene,
    write_dataset,
)
from colvlm_bench.glyphvqa.questions import GRID_NAMES

N_SCENES = 40


@pytest.fixture(scope='module')
def scenes() -> list[Scene]:
    rendered = [render_scene(np.random.default_rng(seed)) for seed in range(N_SCENES)]
    # The size extremes, where layouts are tightest and loosest.
    rendered.append(render_scene(np.random.default_rng(1000), 640, 480))
    rendered.append(render_scene(np.random.default_rng(1001), 1024, 768))
    return rendered


def _ink_mask(scene: Scene, obj) -> np.ndarray:
    """`(h, w) bool`: sign pixels nearer to the ink colour than to the sign colour."""
    x0, y0, x1, y1 = obj.box
    region = scene.image[y0:y1, x0:x1].astype(np.int32)  # (h, w, 3)
    to_ink = np.abs(region - np.array(ink_color(obj.color))).sum(axis=2)
    to_sign = np.abs(region - np.array(COLORS[obj.color])).sum(axis=2)
    return to_ink < to_sign


def test_render_scene_is_deterministic_per_seed():
    first = render_scene(np.random.default_rng(7))
    again = render_scene(np.random.default_rng(7))
    other = render_scene(np.random.default_rng(8))
    assert first.objects == again.objects
    assert np.array_equal(first.image, again.image)
    assert first.objects != other.objects


def test_scene_sizes_counts_and_colours(scenes):
    for scene in scenes:
        assert scene.image.dtype == np.uint8 and scene.image.shape == (scene.height,
                                                                       scene.width, 3)
        assert 640 <= scene.width <= 1024 and 480 <= scene.height <= 768
        assert 1 <= len(scene.signs) <= 3 and 1 <= len(scene.shapes) <= 3
        shape_types = [obj.shape for obj in scene.shapes]
        assert len(set(shape_types)) == len(shape_types) and set(shape_types) <= set(SHAPES)
        colors = [obj.color for obj in scene.objects]
        assert len(set(colors)) == len(colors) and set(colors) <= set(COLORS)


def test_render_scene_rejects_sizes_outside_the_range():
    with pytest.raises(ValueError, match='scene size'):
        render_scene(np.random.default_rng(0), 320, 240)


def test_colour_table_is_distinct_and_saturated():
    assert len(set(COLORS.values())) == len(COLORS) == 7
    assert COLORS['white'] == (255, 255, 255)
    for name, bgr in COLORS.items():
        # Saturated: far from every muted background colour (a grey within +-30).
        assert name == 'white' or (min(bgr) == 0 and max(bgr) >= 140), name
        for other, other_bgr in COLORS.items():
            distance = sum(abs(a - b) for a, b in zip(bgr, other_bgr, strict=True))
            assert name == other or distance >= 100, (name, other)
    assert ink_color('white') == ink_color('yellow') == (0, 0, 0)
    assert ink_color('blue') == ink_color('purple') == (255, 255, 255)


def test_objects_do_not_overlap_and_fit_in_the_image(scenes):
    for scene in scenes:
        boxes = [obj.box for obj in scene.objects]
        for index, (x0, y0, x1, y1) in enumerate(boxes):
            assert 0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height
            for ox0, oy0, ox1, oy1 in boxes[index + 1:]:
                assert x1 <= ox0 or ox1 <= x0 or y1 <= oy0 or oy1 <= y0


def test_shapes_are_large_filled_and_in_their_colour(scenes):
    for scene in scenes:
        for obj in scene.shapes:
            x0, y0, x1, y1 = obj.box
            assert x1 - x0 == y1 - y0 and 80 <= x1 - x0 <= 300
            assert obj.text is None and obj.text_box is None
            x, y = (int(round(v)) for v in obj.centroid)
            assert tuple(scene.image[y, x]) == COLORS[obj.color], obj


def test_signs_carry_short_text_of_the_right_height(scenes):
    for scene in scenes:
        for obj in scene.signs:
            assert obj.shape is None and 1 <= len(obj.text) <= 3
            assert set(obj.text) <= set(TEXT_ALPHABET)
            x0, y0, x1, y1 = obj.box
            assert tuple(scene.image[y0, x0]) == COLORS[obj.color]
            assert tuple(scene.image[y1 - 1, x1 - 1]) == COLORS[obj.color]
            ink = _ink_mask(scene, obj)
            rows = np.nonzero(ink.any(axis=1))[0]
            columns = np.nonzero(ink.any(axis=0))[0]
            assert 14 <= rows.max() - rows.min() + 1 <= 32, obj
            # The ink stays inside the text box, which sits inside the sign with a margin.
            tx0, ty0, tx1, ty1 = obj.text_box
            assert x0 < tx0 and y0 < ty0 and tx1 < x1 and ty1 < y1
            assert tx0 <= x0 + columns.min() and x0 + columns.max() < tx1
            assert ty0 <= y0 + rows.min() and y0 + rows.max() < ty1


def test_label_map_marks_each_object_at_any_resolution(scenes):
    scene = scenes[0]
    labels = label_map(scene)
    assert labels.dtype == np.int16 and labels.shape == (scene.height, scene.width)
    assert (labels == -1).any()
    for index, obj in enumerate(scene.objects):
        x, y = (int(round(v)) for v in obj.centroid)
        assert labels[y, x] == index
        x0, y0, x1, y1 = obj.box
        outside = np.ones_like(labels, dtype=bool)
        outside[y0:y1, x0:x1] = False
        assert not (labels[outside] == index).any()
    small = label_map(scene, 24, 32)
    assert small.dtype == np.int16 and small.shape == (24, 32)
    assert set(np.unique(small)) <= set(range(-1, len(scene.objects)))


def test_questions_are_consistent_with_the_scene(scenes):
    for seed, scene in enumerate(scenes):
        rng = np.random.default_rng(seed)
        questions = questions_for_scene(scene, rng, 'images/00007.png', kinds=ALL_KINDS)
        by_color = {obj.color: obj for obj in scene.objects}
        by_shape = {obj.shape: obj for obj in scene.shapes}
        present = {(obj.color, obj.shape) for obj in scene.shapes}
        assert len({q.id for q in questions}) == len(questions)
        for q in questions:
            assert q.image == 'images/00007.png' and q.id.startswith('00007-')
            words = q.question.rstrip('?').split()
            if q.kind == 'text':
                sign = by_color[words[-2]]
                assert q.question == f'What is written on the {sign.color} sign?'
                assert q.answers == (sign.text.lower(),) and q.target == sign.box
            elif q.kind == 'color':
                shape = by_shape[words[-1]]
                assert q.answers == (shape.color,) and q.target == shape.box
            elif q.kind == 'presence':
                color, shape = words[-2], words[-1]
                assert q.question == f'Is there a {color} {shape}?'
                if q.answers == ('yes',):
                    assert (color, shape) in present and q.target == by_color[color].box
                else:
                    assert q.answers == ('no',) and q.target is None
                    assert (color, shape) not in present
                    assert color in by_color or shape in by_shape  # a hard negative
            elif q.kind == 'grounding':
                assert q.target == by_color[words[-2]].box
                assert q.answers[0] in {name for row in GRID_NAMES for name in row}
            else:
                assert q.question == 'How many signs are there?' and q.target is None
                assert q.answers == (str(len(scene.signs)),)
        kinds = [q.kind for q in questions]
        presence = [q.answers[0] for q in questions if q.kind == 'presence']
        assert presence.count('yes') == presence.count('no') == len(scene.shapes)
        assert kinds.count('text') == kinds.count('grounding') == len(scene.signs)
        assert kinds.count('color') == len(scene.shapes) and kinds.count('count') == 1


def test_questions_default_to_evaluation_kinds_and_can_be_subsampled(scenes):
    scene = scenes[1]
    default = questions_for_scene(scene, np.random.default_rng(0), 'images/a.jpg')
    assert {q.kind for q in default} == set(EVAL_KINDS)
    two = questions_for_scene(scene, np.random.default_rng(0), 'images/a.jpg', per_image=2)
    assert len(two) == 2 and [q.id for q in two] == ['a-q0', 'a-q1']
    with pytest.raises(ValueError, match='kinds'):
        questions_for_scene(scene, np.random.default_rng(0), 'a.png', kinds=('ocr',))


@pytest.mark.parametrize('prediction, answers, expected', [
    ('Yes.', ['yes'], True),
    ('  RED ', ['red'], True),
    ('top-left', ['top left'], False),
    ('Top   Left!', ['top left'], True),
    ("'A7'", ['a7'], True),
    ('a 7', ['a7'], False),
    ('blue', ['red', 'Blue'], True),
    ('', ['no'], False),
])
def test_is_correct(prediction, answers, expected):
    assert is_correct(prediction, answers) is expected


def test_normalize_answer():
    assert normalize_answer('  The ANSWER:\tis,  "B2"!  ') == 'the answer is b2'
    assert normalize_answer('x_y') == 'xy'


def test_dataset_round_trips_and_is_deterministic(tmp_path):
    first = write_dataset(tmp_path / 'a', 3, seed=5)
    second = write_dataset(tmp_path / 'b', 2, seed=5)
    questions = load_dataset(first)
    lines = (first / 'questions.jsonl').read_text().splitlines()
    assert [json.loads(line) for line in lines] == [q.to_json() for q in questions]
    assert {q.kind for q in questions} == set(EVAL_KINDS)
    assert sorted(p.name for p in (first / 'images').iterdir()) == [
        '00000.png', '00001.png', '00002.png']
    # Image i depends only on (seed, i): a smaller set is a prefix of a larger one.
    assert (first / 'images/00001.png').read_bytes() == (second / 'images/00001.png').read_bytes()
    assert load_dataset(second) == [q for q in questions if not q.image.endswith('00002.png')]
    for q in questions:
        height, width = cv2.imread(str(first / q.image)).shape[:2]
        assert q.target is None or (q.target[2] <= width and q.target[3] <= height)


def test_write_dataset_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError):
        write_dataset(tmp_path, 1, seed=0)
    write_dataset(tmp_path, 1, seed=0, image_format='jpg', overwrite=True)
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'
    assert [q.image for q in load_dataset(tmp_path)][0] == 'images/00000.jpg'


def test_load_dataset_accepts_other_sets_in_the_format(tmp_path):
    (tmp_path / 'images').mkdir()
    cv2.imwrite(str(tmp_path / 'images/cat.jpg'), np.zeros((40, 50, 3), np.uint8))
    record = {'id': 'x', 'image': 'images/cat.jpg', 'question': 'Is there a cat?',
              'answers': ['yes', 'yeah'], 'kind': 'presence', 'target': [1, 2, 30, 40],
              'source': 'extra fields are ignored'}
    (tmp_path / 'questions.jsonl').write_text(json.dumps(record) + '\n\n')
    [question] = load_dataset(tmp_path)
    assert question.answers == ('yes', 'yeah') and question.target == (1, 2, 30, 40)


GOOD = {'id': 'q1', 'image': 'images/a.png', 'question': 'What color is the circle?',
        'answers': ['red'], 'kind': 'color', 'target': [0, 0, 10, 10]}


@pytest.mark.parametrize('change, field', [
    ({'kind': 'ocr'}, 'kind'),
    ({'image': 'images/missing.png'}, 'image'),
    ({'image': '../a.png'}, 'image'),
    ({'target': [0, 0, 10]}, 'target'),
    ({'target': [10, 0, 5, 10]}, 'target'),
    ({'target': [0.5, 0, 10, 10]}, 'target'),
    ({'answers': []}, 'answers'),
    ({'answers': 'red'}, 'answers'),
    ({'question': ''}, 'question'),
    ({'question': None}, 'question'),  # None drops the field
    ({'id': 'q0'}, 'id'),  # a duplicate of the first line's id
])
def test_load_dataset_names_line_and_field(tmp_path, change, field):
    (tmp_path / 'images').mkdir()
    cv2.imwrite(str(tmp_path / 'images/a.png'), np.zeros((10, 10, 3), np.uint8))
    bad = {key: value for key, value in {**GOOD, **change}.items() if value is not None}
    lines = [json.dumps({**GOOD, 'id': 'q0'}), json.dumps(bad)]
    (tmp_path / 'questions.jsonl').write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=rf"questions\.jsonl:2: field '{field}'"):
        load_dataset(tmp_path)


def test_load_dataset_reports_bad_json_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match='questions.jsonl'):
        load_dataset(tmp_path)
    (tmp_path / 'questions.jsonl').write_text('{"id": \n')
    with pytest.raises(ValueError, match=r'questions\.jsonl:1: not valid JSON'):
        load_dataset(tmp_path)


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / 'glyph'
    assert main(['dataset', 'glyphvqa', str(out), '--n-images', '2', '--seed', '3']) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.count('\n') == 0 and str(out) in summary and '2 images' in summary
    assert len(list((out / 'images').glob('*.png'))) == 2
    assert {q.kind for q in load_dataset(out)} == set(EVAL_KINDS)


@pytest.mark.parametrize('extra', [['--n-images', '0'], ['--n-images', '1']])
def test_cli_rejects_bad_input(tmp_path, capsys, extra):
    out = tmp_path / 'glyph'
    if extra[-1] == '1':
        out.mkdir()
        (out / 'keep.txt').write_text('x')
    assert main(['dataset', 'glyphvqa', str(out), *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith('colvlm dataset:') and '\n' not in error
    assert not (out / 'questions.jsonl').exists()


def test_cli_arguments_are_checked_by_argparse(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(['dataset', 'coco', str(tmp_path / 'x')])
    assert exit_info.value.code == 2
