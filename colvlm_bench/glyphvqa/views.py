"""Multi-view Glyph-VQA: every scene seen by several cameras, each question's evidence in one.

Scene `index` of a set renders one image per view with the single-view `render_scene`, each
view from its own stream `SeedSequence([seed, index, k + 1])` (k = the view's number, so
renaming the views keeps the images). A picker stream `SeedSequence([seed, index])` chooses
the evidence view at random and draws the questions about that view's scene with the
single-view templates. The other views are distractors, which must not make a question
ambiguous or change its answer:
- `text` (and `grounding`) about the {color} sign: no distractor has a sign of that colour;
- `color` of the {shape}: no distractor has that shape;
- `presence` of a {color} {shape}: no distractor has a {shape} of that {color}, so a 'yes' is
  seen only in the evidence view and a 'no' is 'no' in every view.
`count` questions cannot be kept to one view (every scene has signs) and are refused.

How it is enforced (deterministic per seed): the picker first chooses a core of one question
of each kind (of `per_scene` kinds at random when `per_scene` is smaller). A distractor view
is drawn again from its own stream, at most MAX_DRAWS times, while it conflicts with a core
question; a RuntimeError names the scene and view if it never fits (a core always fits some
scene, so this is a guard, not an expected outcome). Then every other question of the
evidence scene joins when the accepted distractors leave it unique (`per_scene` None), or
enough of them, drawn at random, to make `per_scene`. Requiring all template questions
instead would make most distractors unrenderable (a colour question about each of three
shapes leaves no shape for a distractor, and a render costs about 35 ms), so a scene has at
least one question of each kind and at most as many as the single-view writer asks.

`questions.jsonl` lines are the single-view lines (`image` is the evidence view's image,
`target` is in its original pixels) plus `views` ({name: image}, in camera order) and `view`
(the evidence view's name), so `load_dataset` still reads them as a single-view set of the
evidence images. This module knows scenes, view names and files; nothing about models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
import json
from pathlib import Path, PurePosixPath
import re
from typing import NamedTuple

import cv2
import numpy as np

from colvlm_bench.glyphvqa.dataset import (
    IMAGES_DIR,
    QUESTIONS_FILE,
    FieldError,
    check_image_path,
    imwrite_params,
    prepare_output,
    read_questions,
    write_questions,
)
from colvlm_bench.glyphvqa.questions import (
    ALL_KINDS,
    COLOR_TEMPLATE,
    EVAL_KINDS,
    GROUNDING_TEMPLATE,
    PRESENCE_TEMPLATE,
    TEXT_TEMPLATE,
    Question,
    questions_for_scene,
)
from colvlm_bench.glyphvqa.scene import COLORS, SHAPES, Scene, render_scene

DEFAULT_VIEWS = ('front', 'left', 'right', 'rear')
MAX_DRAWS = 100  # scenes drawn per distractor view; about 5 are needed on average
_VIEW_NAME = re.compile(r'[a-z0-9_]+')

# What a question asks about, read back from its text with the templates themselves.
_SIGN_COLOR = {template.format(color=color): color
               for template in (TEXT_TEMPLATE, GROUNDING_TEMPLATE) for color in COLORS}
_SHAPE = {COLOR_TEMPLATE.format(shape=shape): shape for shape in SHAPES}
_COLORED_SHAPE = {PRESENCE_TEMPLATE.format(color=color, shape=shape): (color, shape)
                  for color in COLORS for shape in SHAPES}


@dataclass(frozen=True)
class ViewQuestion:
    """One line of a multi-view set: the evidence view's Question and every view's image."""

    question: Question  # `image` is the evidence view's image, `target` in its pixels
    views: tuple[tuple[str, str], ...]  # (view name, image relative to the folder), file order
    view: str  # the evidence view's name

    def image_of(self, view: str) -> str:
        """The image of `view`, relative to the data set folder; KeyError for another name."""
        return dict(self.views)[view]


class ViewScenes(NamedTuple):
    """Scene `index` of a multi-view set, before it is written."""

    scenes: dict[str, Scene]  # view name -> scene, in view order
    view: str  # the evidence view's name
    questions: list[Question]  # about scenes[view]; their `image` is images[view]
    images: dict[str, str]  # view name -> image path relative to the folder


def check_view_names(views: Sequence[str]) -> tuple[str, ...]:
    """The view names as a tuple; ValueError naming the first empty, bad or repeated one."""
    if isinstance(views, str):
        raise ValueError(f'views must be a sequence of names, got the string {views!r}')
    names = tuple(views)
    if not names:
        raise ValueError('views: name at least one view')
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f'view name {name!r} is empty or not a string')
        if not _VIEW_NAME.fullmatch(name):
            raise ValueError(f'view name {name!r} must be lower-case letters, digits and _')
        if name in seen:
            raise ValueError(f'view name {name!r} is given twice')
        seen.add(name)
    return names


def conflict(scene: Scene, question: Question) -> str:
    """'' when `scene`, as a distractor view, leaves `question` unique; else what clashes."""
    if question.kind in ('text', 'grounding'):
        color = _SIGN_COLOR[question.question]
        if any(sign.color == color for sign in scene.signs):
            return f'a {color} sign'
    elif question.kind == 'color':
        shape = _SHAPE[question.question]
        if any(obj.shape == shape for obj in scene.shapes):
            return f'a {shape}'
    elif question.kind == 'presence':
        color, shape = _COLORED_SHAPE[question.question]
        if any((obj.color, obj.shape) == (color, shape) for obj in scene.shapes):
            return f'a {color} {shape}'
    else:
        raise ValueError(f'{question.kind!r} questions cannot be kept to one view')
    return ''


def conflicts(scene: Scene, questions: Sequence[Question]) -> str:
    """The first clash of `scene` as a distractor with any of `questions`, or ''."""
    return next((why for why in (conflict(scene, q) for q in questions) if why), '')


def render_views(seed: int, index: int, views: Sequence[str] = DEFAULT_VIEWS, *,
                 image_format: str = 'png', kinds: Sequence[str] = EVAL_KINDS,
                 per_scene: int | None = None) -> ViewScenes:
    """Scene `index` of the set for `seed`: a scene per view, the evidence view and its
    questions (ids `<index>_<view>-q<k>`). Deterministic in all arguments."""
    names = _check_options(views, kinds, per_scene)
    picker = np.random.default_rng(np.random.SeedSequence([seed, index]))
    evidence = names[int(picker.integers(len(names)))]
    # k + 1: SeedSequence ignores trailing zeros, so [seed, index, 0] is the picker's stream.
    streams = {name: np.random.default_rng(np.random.SeedSequence([seed, index, k + 1]))
               for k, name in enumerate(names)}
    images = {name: f'{IMAGES_DIR}/{index:05d}_{name}.{image_format}' for name in names}
    scenes = {evidence: render_scene(streams[evidence])}
    drafts = questions_for_scene(scenes[evidence], picker, images[evidence], kinds=kinds)

    core = []
    for kind in kinds:
        of_kind = [k for k, question in enumerate(drafts) if question.kind == kind]
        if of_kind:  # always, as every scene has a sign and a shape; kept for safety
            core.append(of_kind[int(picker.integers(len(of_kind)))])
    if per_scene is not None and per_scene < len(core):
        core = [int(k) for k in picker.choice(core, size=per_scene, replace=False)]

    core_questions = [drafts[k] for k in core]
    for name in names:
        if name != evidence:
            scenes[name] = _distractor(streams[name], core_questions, index, name)

    distractors = [scene for name, scene in scenes.items() if name != evidence]
    extras = [k for k in range(len(drafts)) if k not in core
              and not any(conflict(scene, drafts[k]) for scene in distractors)]
    if per_scene is not None and per_scene - len(core) < len(extras):
        extras = [int(k) for k in picker.choice(extras, size=per_scene - len(core),
                                                replace=False)]
    stem = PurePosixPath(images[evidence]).stem
    questions = [replace(drafts[k], id=f'{stem}-q{j}')
                 for j, k in enumerate(sorted(core + extras))]
    return ViewScenes({name: scenes[name] for name in names}, evidence, questions, images)


def write_views_dataset(out_dir: str | Path, n_scenes: int, seed: int, *,
                        views: Sequence[str] = DEFAULT_VIEWS, image_format: str = 'png',
                        kinds: Sequence[str] = EVAL_KINDS, per_scene: int | None = None,
                        jpeg_quality: int = 95, overwrite: bool = False) -> Path:
    """Render `n_scenes` multi-view scenes and their questions into `out_dir`; return it.

    Scene i depends only on the seed, i and the number of views, so a small set is a prefix
    of a larger one. Raises FileExistsError when `out_dir` is a non-empty folder and
    `overwrite` is false; with `overwrite`, only `images/` and `questions.jsonl` are replaced.
    """
    names = _check_options(views, kinds, per_scene)
    if n_scenes < 1:
        raise ValueError(f'n_scenes must be at least 1, got {n_scenes}')
    params = imwrite_params(image_format, jpeg_quality)
    out = prepare_output(out_dir, overwrite)
    records = []
    for index in range(n_scenes):
        scene = render_views(seed, index, names, image_format=image_format, kinds=kinds,
                             per_scene=per_scene)
        for name, image in scene.images.items():
            if not cv2.imwrite(str(out / image), scene.scenes[name].image, params):
                raise OSError(f'could not write {out / image}')
        records += [dict(question.to_json(), views=scene.images, view=scene.view)
                    for question in scene.questions]
    write_questions(out, records)
    return out


def is_views_dataset(folder: str | Path) -> bool:
    """Whether `folder/questions.jsonl` exists and its first question names its views."""
    path = Path(folder) / QUESTIONS_FILE
    if not path.is_file():
        return False
    with open(path, encoding='utf-8') as stream:
        first = next((line for line in stream if line.strip()), '')
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False  # not this module's to explain: the loaders name the line
    return isinstance(record, dict) and 'views' in record


def load_views_dataset(folder: str | Path) -> list[ViewQuestion]:
    """Read and validate a multi-view `folder/questions.jsonl`: the single-view fields as
    `load_dataset` does, then `views` (the same names on every line, every image a file) and
    `view` (one of them, whose image is `image`).

    Raises ValueError naming the file, line and field of the first bad line.
    """
    folder = Path(folder)
    known_images: set[str] = set()
    first_names: list[tuple[str, ...]] = []  # the first line's view names, once read

    def convert(question: Question, record: dict) -> ViewQuestion:
        if 'views' not in record:
            raise FieldError('views', 'missing (not a multi-view line)')
        views = record['views']
        if not isinstance(views, dict) or not views:
            raise FieldError('views', f'expected a non-empty {{name: image}} object, '
                                      f'got {views!r}')
        try:
            names = check_view_names(list(views))
        except ValueError as error:
            raise FieldError('views', str(error)) from None
        if first_names and names != first_names[0]:
            raise FieldError('views', f'names {list(names)} differ from those of the first '
                                      f'line, {list(first_names[0])}')
        if not first_names:
            first_names.append(names)
        for name, image in views.items():
            if not isinstance(image, str) or not image.strip():
                raise FieldError(f'views.{name}', f'expected a non-empty string, got {image!r}')
            if image not in known_images:
                check_image_path(folder, image, f'views.{name}')
                known_images.add(image)
        if 'view' not in record:
            raise FieldError('view', 'missing')
        view = record['view']
        if not isinstance(view, str) or view not in views:
            raise FieldError('view', f'{view!r} is not one of the views {list(names)}')
        if views[view] != question.image:
            raise FieldError('image', f'{question.image!r} is not the image of view {view!r}, '
                                      f'{views[view]!r}')
        return ViewQuestion(question, tuple(views.items()), view)

    return read_questions(folder, convert)


def _check_options(views: Sequence[str], kinds: Sequence[str],
                   per_scene: int | None) -> tuple[str, ...]:
    names = check_view_names(views)
    unknown = [kind for kind in kinds if kind not in ALL_KINDS]
    if unknown:
        raise ValueError(f'question kinds must be among {ALL_KINDS}, got {unknown!r}')
    if 'count' in kinds:
        raise ValueError("'count' questions cannot be kept to one view: every scene has signs")
    if not kinds:
        raise ValueError('kinds: name at least one question kind')
    if per_scene is not None and per_scene < 1:
        raise ValueError(f'per_scene must be at least 1, got {per_scene}')
    return names


def _distractor(stream: np.random.Generator, questions: Sequence[Question], index: int,
                view: str) -> Scene:
    """The first scene of `stream` that leaves every question unique to the evidence view."""
    for _ in range(MAX_DRAWS):
        scene = render_scene(stream)
        why = conflicts(scene, questions)
        if not why:
            return scene
    raise RuntimeError(f'scene {index}: view {view!r} still shows {why} after {MAX_DRAWS} '
                       f'draws; ask fewer questions a scene (per_scene) or use fewer views')
