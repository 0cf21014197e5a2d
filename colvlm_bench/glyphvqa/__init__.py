"""Glyph-VQA: a synthetic VQA benchmark whose answers hide in detail lost by downscaling.

Scenes of small text signs and large shapes, questions about them, and data sets on disk;
`render_scene(rng, style='camera')` draws the camera-like style (camera.py).
"""

from colvlm_bench.glyphvqa.background import BACKGROUND_KINDS, render_background
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_bench.glyphvqa.questions import (
    ALL_KINDS,
    COLOR_TEMPLATE,
    COUNT_TEMPLATE,
    EVAL_KINDS,
    GROUNDING_TEMPLATE,
    PRESENCE_TEMPLATE,
    TEXT_TEMPLATE,
    TRAIN_KINDS,
    Question,
    grid_cell_name,
    is_correct,
    normalize_answer,
    questions_for_scene,
)
from colvlm_bench.glyphvqa.scene import (
    COLORS,
    SHAPES,
    TEXT_ALPHABET,
    Scene,
    SceneObject,
    ink_color,
    label_map,
    render_scene,
)

__all__ = [
    'ALL_KINDS', 'BACKGROUND_KINDS', 'COLORS', 'COLOR_TEMPLATE', 'COUNT_TEMPLATE', 'EVAL_KINDS',
    'GROUNDING_TEMPLATE', 'PRESENCE_TEMPLATE', 'SHAPES', 'TEXT_ALPHABET', 'TEXT_TEMPLATE',
    'TRAIN_KINDS', 'Question', 'Scene', 'SceneObject', 'grid_cell_name', 'ink_color',
    'is_correct', 'label_map', 'load_dataset', 'normalize_answer', 'questions_for_scene',
    'render_background', 'render_scene', 'write_dataset',
]
