"""The multi-view Glyph-VQA variant: one image per camera, each question's evidence in one
view, distractor views that cannot change an answer, and its loader's errors."""

import json
import re

import cv2
import pytest

from colvlm_bench.cli import main as colvlm
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_bench.glyphvqa.questions import EVAL_KINDS
from colvlm_bench.glyphvqa.scene import MAX_SIZE, MIN_SIZE
from colvlm_bench.glyphvqa.views import (
    check_view_names,
    is_views_dataset,
    load_views_dataset,
    render_views,
    write_views_dataset,
)

# A render costs about 35 ms and a distractor about five of them: three views keep it quick.
VIEWS = ('front', 'left', 'right')
N_SCENES = 3
SEED = 31


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_views_dataset(tmp_path_factory.mktemp('views') / 'data', N_SCENES, SEED,
                               views=VIEWS)


def test_every_scene_has_an_image_per_view_and_its_evidence_in_one(data):
    items = load_views_dataset(data)
    assert is_views_dataset(data)
    assert len({item.question.id for item in items}) == len(items)
    scenes = {}
    for item in items:
        assert [name for name, _ in item.views] == list(VIEWS)
        assert item.view in VIEWS and item.image_of(item.view) == item.question.image
        scenes.setdefault(item.views, set()).add(item.question.kind)
    assert len(scenes) == N_SCENES
    # Every scene asks every kind, about one evidence view.
    assert all(kinds == set(EVAL_KINDS) for kinds in scenes.values())
    images = sorted((data / 'images').iterdir())
    assert [image.name for image in images] == sorted(
        f'{index:05d}_{view}.png' for index in range(N_SCENES) for view in VIEWS)
    for image in images:
        height, width = cv2.imread(str(image)).shape[:2]
        assert MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]
    for item in items:
        height, width = cv2.imread(str(data / item.question.image)).shape[:2]
        if item.question.target is not None:
            x0, y0, x1, y1 = item.question.target
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    # A single-view reader reads the same questions, about the evidence images.
    assert load_dataset(data) == [item.question for item in items]


def test_the_same_seed_writes_the_same_set_and_another_seed_does_not(data, tmp_path):
    again = write_views_dataset(tmp_path / 'again', N_SCENES, SEED, views=VIEWS)
    assert (again / 'questions.jsonl').read_bytes() == (data / 'questions.jsonl').read_bytes()
    for image in (data / 'images').iterdir():
        assert (again / 'images' / image.name).read_bytes() == image.read_bytes()
    other = render_views(SEED + 1, 0, VIEWS)
    first = render_views(SEED, 0, VIEWS)
    assert [q.to_json() for q in other.questions] != [q.to_json() for q in first.questions]


_TEXT = re.compile(r'What is written on the (\w+) sign\?')
_COLOR = re.compile(r'What color is the (\w+)\?')
_PRESENCE = re.compile(r'Is there a (\w+) (\w+)\?')


@pytest.mark.parametrize('seed', [5, 6, 7])
def test_only_the_evidence_view_answers_a_question(seed):
    """Checked on the scene objects, independently of the writer's own conflict test:
    10 scenes a seed, 30 in all."""
    asked = 0
    for index in range(10):
        scene = render_views(seed, index, VIEWS)
        evidence = scene.scenes[scene.view]
        others = [s for name, s in scene.scenes.items() if name != scene.view]
        assert list(scene.scenes) == list(VIEWS) and scene.view in VIEWS
        for question in scene.questions:
            asked += 1
            assert question.image == scene.images[scene.view]
            if match := _TEXT.fullmatch(question.question):
                color = match[1]
                [sign] = [o for o in evidence.signs if o.color == color]
                assert question.answers == (sign.text.lower(),) and question.target == sign.box
                assert not any(o.color == color for other in others for o in other.signs)
            elif match := _COLOR.fullmatch(question.question):
                shape_name = match[1]
                [shape] = [o for o in evidence.shapes if o.shape == shape_name]
                assert question.answers == (shape.color,) and question.target == shape.box
                assert not any(o.shape == shape_name for other in others for o in other.shapes)
            else:
                color, shape_name = _PRESENCE.fullmatch(question.question).groups()
                here = [o for o in evidence.shapes if (o.color, o.shape) == (color, shape_name)]
                assert question.answers == (('yes',) if here else ('no',))
                assert question.target == (here[0].box if here else None)
                assert not any((o.color, o.shape) == (color, shape_name)
                               for other in others for o in other.shapes)
    assert asked >= 30


def test_per_scene_caps_the_questions_and_keeps_kinds_apart():
    for index in range(3):
        one = render_views(3, index, ('a', 'b'), per_scene=1)
        assert len(one.questions) == 1 and one.questions[0].id == f'{index:05d}_{one.view}-q0'
        two = render_views(3, index, ('a', 'b'), per_scene=2, image_format='jpg')
        assert len({q.kind for q in two.questions}) == 2
        assert all(q.image.endswith('.jpg') for q in two.questions)


@pytest.mark.parametrize('views, culprit', [
    (('front', 'Front'), "'Front'"),
    (('front', 'front'), "'front' is given twice"),
    (('front', ''), "''"),
    (('front', 'left view'), "'left view'"),
    ('front', "'front'"),
    ((), 'at least one'),
])
def test_bad_view_names_are_named(views, culprit):
    with pytest.raises(ValueError, match=re.escape(culprit)):
        check_view_names(views)
    with pytest.raises(ValueError, match=re.escape(culprit)):
        render_views(0, 0, views)


def test_count_questions_are_refused(tmp_path):
    with pytest.raises(ValueError, match='count'):
        write_views_dataset(tmp_path / 'x', 1, 0, kinds=('text', 'count'))
    assert not (tmp_path / 'x').exists()


def _rewrite(data, tmp_path, change, line=1):
    """A copy of the set whose line `line` (0-based) went through `change`."""
    folder = tmp_path / 'bad'
    folder.mkdir()
    (folder / 'images').symlink_to(data / 'images')
    records = [json.loads(text) for text in (data / 'questions.jsonl').read_text().splitlines()]
    change(records[line])
    (folder / 'questions.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    return folder


def _other_view(record):
    return next(name for name in record['views'] if name != record['view'])


@pytest.mark.parametrize('change, field, problem', [
    (lambda r: r.pop('views'), 'views', 'missing'),
    (lambda r: r.update(views=[]), 'views', 'expected a non-empty'),
    (lambda r: r.update(view='up'), 'view', "'up' is not one of the views"),
    (lambda r: r.pop('view'), 'view', 'missing'),
    (lambda r: r['views'].update(left='images/missing.png'), 'views.left', 'no such file'),
    (lambda r: r['views'].update(left='../x.png'), 'views.left', 'inside the data set'),
    (lambda r: r.update(views={('Left' if k == 'left' else k): v
                               for k, v in r['views'].items()}), 'views', "'Left'"),
    (lambda r: r.update(views=dict(reversed(r['views'].items()))), 'views', 'differ'),
    (lambda r: r.update(image=r['views'][_other_view(r)]), 'image', 'is not the image of'),
])
def test_a_bad_line_names_the_file_line_and_field(data, tmp_path, change, field, problem):
    folder = _rewrite(data, tmp_path, change)
    with pytest.raises(ValueError) as error:
        load_views_dataset(folder)
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith(f'{folder / "questions.jsonl"}:2: field {field!r}: ')
    assert problem in message


def test_single_view_folders_are_not_views_folders(tmp_path):
    assert not is_views_dataset(tmp_path / 'absent')
    single = write_dataset(tmp_path / 'single', 1, 0)
    assert not is_views_dataset(single)
    with pytest.raises(ValueError, match=r"questions\.jsonl:1: field 'views': missing"):
        load_views_dataset(single)


def test_the_cli_writes_a_loadable_views_set(tmp_path, capsys):
    out = tmp_path / 'mv'
    assert colvlm(['dataset', 'glyphvqa', str(out), '--n-images', '2', '--seed', '4',
                   '--views', 'front,rear', '--format', 'jpg']) == 0
    summary = capsys.readouterr().out
    items = load_views_dataset(out)
    assert summary.count('\n') == 1 and str(out) in summary
    assert f'2 scenes x 2 views (front,rear), {len(items)} questions' in summary
    assert len(list((out / 'images').glob('*.jpg'))) == 4
    assert all(dict(item.views).keys() == {'front', 'rear'} for item in items)


@pytest.mark.parametrize('views, culprit', [('front,Rear', "'Rear'"), ('front,,rear', "''"),
                                            ('front,front', "'front' is given twice")])
def test_the_cli_names_a_bad_view(tmp_path, capsys, views, culprit):
    out = tmp_path / 'mv'
    assert colvlm(['dataset', 'glyphvqa', str(out), '--n-images', '1', '--views', views]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith('colvlm dataset: --views:') and culprit in error
    assert '\n' not in error and not out.exists()


def test_the_single_view_cli_is_unchanged(tmp_path, capsys):
    out = tmp_path / 'single'
    assert colvlm(['dataset', 'glyphvqa', str(out), '--n-images', '2', '--seed', '3']) == 0
    summary = capsys.readouterr().out.strip()
    expected = write_dataset(tmp_path / 'expected', 2, 3)
    assert (out / 'questions.jsonl').read_bytes() == \
        (expected / 'questions.jsonl').read_bytes()
    assert sorted(p.name for p in (out / 'images').iterdir()) == ['00000.png', '00001.png']
    assert re.fullmatch(rf'wrote {re.escape(str(out))}: 2 images, \d+ questions '
                        r'\(color \d+, presence \d+, text \d+\)', summary)
    assert not is_views_dataset(out)
