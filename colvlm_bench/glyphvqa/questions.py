"""Glyph-VQA questions: fixed templates asked about a scene, with their answers and the box
of the evidence, and the answer normalisation used to score predictions.

Evaluation uses the `text`, `color` and `presence` kinds only; `grounding` and `count` are
training-only. This module knows scenes, not files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
import re

import numpy as np

from colvlm_bench.glyphvqa.scene import COLORS, SHAPES, Scene, SceneObject

TEXT_TEMPLATE = 'What is written on the {color} sign?'
COLOR_TEMPLATE = 'What color is the {shape}?'
PRESENCE_TEMPLATE = 'Is there a {color} {shape}?'
GROUNDING_TEMPLATE = 'Where is the {color} sign?'
COUNT_TEMPLATE = 'How many signs are there?'

EVAL_KINDS = ('text', 'color', 'presence')
TRAIN_KINDS = ('grounding', 'count')
ALL_KINDS = EVAL_KINDS + TRAIN_KINDS

# 3x3 grid cells by (row, column) of an object's centre; the middle row and column drop out.
GRID_NAMES = (('top left', 'top', 'top right'),
              ('left', 'center', 'right'),
              ('bottom left', 'bottom', 'bottom right'))

_PUNCTUATION = re.compile(r'[^\w\s]|_')


@dataclass(frozen=True)
class Question:
    """One line of `questions.jsonl`; `image` is relative to the data set folder."""

    id: str
    image: str
    question: str
    answers: tuple[str, ...]
    kind: str  # one of ALL_KINDS
    target: tuple[int, int, int, int] | None  # evidence box in original pixels

    def to_json(self) -> dict:
        """The JSON object written for this question (lists instead of tuples)."""
        return {'id': self.id, 'image': self.image, 'question': self.question,
                'answers': list(self.answers), 'kind': self.kind,
                'target': None if self.target is None else list(self.target)}


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, trim and collapse inner whitespace."""
    return ' '.join(_PUNCTUATION.sub('', text.lower()).split())


def is_correct(prediction: str, answers: Iterable[str]) -> bool:
    """Whether the normalised prediction equals any normalised reference answer."""
    return normalize_answer(prediction) in {normalize_answer(a) for a in answers}


def grid_cell_name(obj: SceneObject, width: int, height: int) -> str:
    """The 3x3 grid cell name ('top left', 'center', ...) holding the object's centre."""
    x, y = obj.centroid
    column = min(2, int(3 * x / width))
    row = min(2, int(3 * y / height))
    return GRID_NAMES[row][column]


def questions_for_scene(scene: Scene, rng: np.random.Generator, image_name: str, *,
                        kinds: Sequence[str] = EVAL_KINDS,
                        per_image: int | None = None) -> list[Question]:
    """All questions of `kinds` about `scene`, or `per_image` of them drawn at random.

    Presence questions come in pairs: one per shape in the image and as many hard negatives
    (an absent colour/shape combination whose colour or shape occurs elsewhere).
    Ids are `<image stem>-q<k>`.
    """
    unknown = [kind for kind in kinds if kind not in ALL_KINDS]
    if unknown:
        raise ValueError(f'question kinds must be among {ALL_KINDS}, got {unknown!r}')
    if per_image is not None and per_image < 1:
        raise ValueError(f'per_image must be at least 1, got {per_image}')
    drafts: list[tuple[str, str, tuple[str, ...], tuple[int, int, int, int] | None]] = []
    if 'text' in kinds:
        drafts += [('text', TEXT_TEMPLATE.format(color=sign.color), (sign.text.lower(),),
                    sign.box) for sign in scene.signs]
    if 'color' in kinds:
        drafts += [('color', COLOR_TEMPLATE.format(shape=shape.shape), (shape.color,),
                    shape.box) for shape in scene.shapes]
    if 'presence' in kinds:
        drafts += _presence_drafts(scene, rng)
    if 'grounding' in kinds:
        drafts += [('grounding', GROUNDING_TEMPLATE.format(color=sign.color),
                    (grid_cell_name(sign, scene.width, scene.height),), sign.box)
                   for sign in scene.signs]
    if 'count' in kinds:
        drafts.append(('count', COUNT_TEMPLATE, (str(len(scene.signs)),), None))

    if per_image is not None and per_image < len(drafts):
        chosen = np.sort(rng.choice(len(drafts), size=per_image, replace=False))
        drafts = [drafts[i] for i in chosen]
    stem = PurePosixPath(image_name).stem
    return [Question(f'{stem}-q{k}', image_name, text, answers, kind, target)
            for k, (kind, text, answers, target) in enumerate(drafts)]


def _presence_drafts(scene: Scene, rng: np.random.Generator):
    positives = [('presence', PRESENCE_TEMPLATE.format(color=s.color, shape=s.shape), ('yes',),
                  s.box) for s in scene.shapes]
    present = {(s.color, s.shape) for s in scene.shapes}
    colors_in_image = {obj.color for obj in scene.objects}
    shapes_in_image = {s.shape for s in scene.shapes}
    # Hard negatives only: a model that just spots a colour or a shape must still fail them.
    # Every image has one, so there are always at least six (other colours on its shape).
    hard = [(color, shape) for color in COLORS for shape in SHAPES
            if (color, shape) not in present
            and (color in colors_in_image or shape in shapes_in_image)]
    picks = rng.choice(len(hard), size=len(positives), replace=False)
    negatives = [('presence', PRESENCE_TEMPLATE.format(color=hard[i][0], shape=hard[i][1]),
                  ('no',), None) for i in picks]
    # Interleave so that a truncated list stays balanced.
    return [draft for pair in zip(positives, negatives, strict=True) for draft in pair]
