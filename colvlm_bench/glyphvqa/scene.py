"""Glyph-VQA scenes: 1-3 text signs and 1-3 large shapes, each in its own colour, on a
background, drawn at full resolution with their exact boxes kept.

A scene knows what it drew and where; it knows nothing about questions or files. Scenes are
deterministic given the generator (and the OpenCV release, whose fonts may differ).
Boxes are `(x0, y0, x1, y1)` in original pixels, with `x1`, `y1` exclusive.
Two styles: 'clean' (exact colours on muted backgrounds, drawing.py, unchanged since the
bundled model was first trained) and 'camera' (camera.py: colour bands, clutter and photos, all
Hershey fonts, lighting, warp, blur, noise, JPEG). The types and drawing primitives live in
drawing.py, below both styles; they are named here too, where callers have always found them.
"""

from __future__ import annotations

import numpy as np

from colvlm_bench.glyphvqa.camera import CameraStyle, render_camera_scene, resolve_style
from colvlm_bench.glyphvqa.drawing import (
    BORDER,
    COLORS,
    FONTS,
    MAX_SIZE,
    MIN_SIZE,
    SHAPE_SIZE_RANGE,
    SHAPES,
    SHAPES_PER_IMAGE,
    SIGNS_PER_IMAGE,
    SPACING,
    TASK_WORDS,
    TEXT_ALPHABET,
    TEXT_HEIGHT_RANGE,
    TEXT_LENGTH,
    Scene,
    SceneObject,
    SignDraft,
    draw_sign,
    fill_shape,
    ink_color,
    ink_height,
    label_map,
    layout,
    render_clean_scene,
    text_alpha,
)

__all__ = [
    'BORDER', 'COLORS', 'FONTS', 'MAX_SIZE', 'MIN_SIZE', 'SHAPES', 'SHAPES_PER_IMAGE',
    'SHAPE_SIZE_RANGE', 'SIGNS_PER_IMAGE', 'SPACING', 'Scene', 'SceneObject', 'SignDraft',
    'TASK_WORDS', 'TEXT_ALPHABET', 'TEXT_HEIGHT_RANGE', 'TEXT_LENGTH', 'draw_sign',
    'fill_shape', 'ink_color', 'ink_height', 'label_map', 'layout', 'render_scene',
    'text_alpha',
]


def render_scene(rng: np.random.Generator, width: int | None = None,
                 height: int | None = None, *, style: str | CameraStyle = 'clean') -> Scene:
    """Draw a random scene; deterministic given the generator's state.

    `style` is 'clean', 'camera' (camera.CameraStyle() with every factor on) or a
    camera.CameraStyle. The clean style draws exactly what it drew before styles existed.
    """
    if isinstance(style, str) and style == 'clean':
        return render_clean_scene(rng, width, height)
    return render_camera_scene(rng, width, height, resolve_style(style))
