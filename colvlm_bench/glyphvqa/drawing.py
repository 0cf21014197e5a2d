"""Glyph-VQA's drawing: the scene types, the task's vocabulary and the clean style's
renderer, with the primitives (signs, shapes, layout) the camera style draws with too.
Import scenes from scene.py, which picks the style; this module never imports a style.

A scene knows what it drew and where; it knows nothing about questions or files. Scenes are
deterministic given the generator (and the OpenCV release, whose fonts may differ).
Boxes are `(x0, y0, x1, y1)` in original pixels, with `x1`, `y1` exclusive.
Two styles: 'clean' (exact colours on muted backgrounds, drawn here, unchanged since the
bundled model was trained) and 'camera' (camera.py: colour bands, clutter and photos, all
Hershey fonts, lighting, warp, blur, noise, JPEG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from colvlm_bench.glyphvqa.background import render_background

# One table of exact BGR values; object colours are saturated, backgrounds are muted.
COLORS: dict[str, tuple[int, int, int]] = {
    'red': (0, 0, 255),
    'green': (0, 200, 0),
    'blue': (255, 0, 0),
    'yellow': (0, 255, 255),
    'white': (255, 255, 255),
    'orange': (0, 140, 255),
    'purple': (160, 0, 140),
}
SHAPES = ('circle', 'square', 'triangle')
TEXT_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'
# The words a model's tokenizer needs whole for this task (colvlm_models.tiny_vlm).
TASK_WORDS = (*COLORS, *SHAPES)
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX)

MIN_SIZE = (640, 480)  # (width, height) of the smallest original
MAX_SIZE = (1024, 768)
TEXT_HEIGHT_RANGE = (14, 32)  # ink height of the sign text, original pixels
SHAPE_SIZE_RANGE = (80, 300)  # side or diameter, original pixels
SIGNS_PER_IMAGE = (1, 3)
SHAPES_PER_IMAGE = (1, 3)
TEXT_LENGTH = (1, 3)
BORDER = 8  # minimum distance from an object to the image edge
SPACING = 16  # minimum gap between two objects' boxes
_INK_THRESHOLD = 128  # anti-aliased ink counts as ink from half coverage on


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: a sign (text on a filled rectangle) or a filled shape."""

    kind: str  # 'sign' | 'shape'
    shape: str | None  # 'circle' | 'square' | 'triangle' for shapes, None for signs
    color: str  # a key of COLORS
    text: str | None  # 1-3 characters of TEXT_ALPHABET for signs, None for shapes
    box: tuple[int, int, int, int]  # sign rectangle, or the square a shape is inscribed in
    text_box: tuple[int, int, int, int] | None = None  # ink bounds of a sign's text
    angle: float = 0.0  # a shape's rotation in its box, degrees anticlockwise (camera pose)

    @property
    def name(self) -> str:
        """How questions refer to the object, e.g. 'red sign' or 'blue circle'."""
        return f'{self.color} {self.shape or "sign"}'

    @property
    def centroid(self) -> tuple[float, float]:
        """(x, y) of the area centre: the box centre, or the triangle's centroid."""
        if self.shape == 'triangle':
            xs, ys = shape_polygon('triangle', self.box, self.angle).T
            return float(xs.mean()), float(ys.mean())
        x0, y0, x1, y1 = self.box
        return (x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0


@dataclass(frozen=True, eq=False)
class Scene:
    """A rendered original and the objects drawn on it, in drawing order."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    objects: tuple[SceneObject, ...]
    background: str = 'gradient'
    # (H, W) int16 object index, -1 background, when the drawing was warped after the fact
    # (camera style); None: label_map redraws it from the boxes.
    labels: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def signs(self) -> tuple[SceneObject, ...]:
        return tuple(obj for obj in self.objects if obj.kind == 'sign')

    @property
    def shapes(self) -> tuple[SceneObject, ...]:
        return tuple(obj for obj in self.objects if obj.kind == 'shape')


def render_clean_scene(rng: np.random.Generator, width: int | None = None,
                       height: int | None = None) -> Scene:
    """Draw a clean-style scene; deterministic given the generator's state."""
    if width is None:
        width = int(rng.integers(MIN_SIZE[0], MAX_SIZE[0] + 1))
    if height is None:
        height = int(rng.integers(MIN_SIZE[1], MAX_SIZE[1] + 1))
    if not (MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]):
        raise ValueError(f'scene size must be within {MIN_SIZE}..{MAX_SIZE}, '
                         f'got {(width, height)}')
    image, background = render_background(rng, height, width)

    n_signs = int(rng.integers(SIGNS_PER_IMAGE[0], SIGNS_PER_IMAGE[1] + 1))
    n_shapes = int(rng.integers(SHAPES_PER_IMAGE[0], SHAPES_PER_IMAGE[1] + 1))
    color_names = [list(COLORS)[i] for i in rng.permutation(len(COLORS))[:n_signs + n_shapes]]
    shape_types = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:n_shapes]]
    signs = [_make_sign(rng) for _ in range(n_signs)]
    shape_boxes, sign_boxes = layout(rng, width, height, [s.size for s in signs], n_shapes)

    objects = []
    for sign, box, color in zip(signs, sign_boxes, color_names[:n_signs], strict=True):
        text_box = draw_sign(image, box, sign, COLORS[color], ink_color(color))
        objects.append(SceneObject('sign', None, color, sign.text, box, text_box))
    for shape, box, color in zip(shape_types, shape_boxes, color_names[n_signs:], strict=True):
        fill_shape(image, shape, box, COLORS[color], cv2.LINE_AA)
        objects.append(SceneObject('shape', shape, color, None, box))
    return Scene(image=image, objects=tuple(objects), background=background)


def label_map(scene: Scene, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Per-pixel object index, -1 on background: `(height, width) int16`, default full size.

    Drawn at full resolution and resampled by nearest neighbour, so that every resolution
    agrees with the original's geometry.
    """
    if scene.labels is not None:
        labels = scene.labels
    else:
        labels = np.full((scene.height, scene.width), -1, np.int16)  # (H, W) int16
        for index, obj in enumerate(scene.objects):
            fill_shape(labels, obj.shape or 'square', obj.box, index, cv2.LINE_8, obj.angle)
    height = scene.height if height is None else height
    width = scene.width if width is None else width
    if (height, width) != labels.shape:
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return labels


def ink_color(color) -> tuple[int, int, int]:
    """Black or white, whichever has the higher WCAG contrast against `color` (a name of
    COLORS or a BGR triple)."""
    linear = [(c / 255.0) ** 2.2 for c in (COLORS[color] if isinstance(color, str) else color)]
    luminance = 0.0722 * linear[0] + 0.7152 * linear[1] + 0.2126 * linear[2]
    black_contrast = (luminance + 0.05) / 0.05
    white_contrast = 1.05 / (luminance + 0.05)
    return (0, 0, 0) if black_contrast >= white_contrast else (255, 255, 255)


class SignDraft(NamedTuple):
    """A sign before placement: its text, ink coverage and margins around the ink."""

    text: str
    alpha: np.ndarray  # (h, w) uint8 ink coverage, cropped to the ink
    margin_x: int
    margin_y: int

    @property
    def size(self) -> tuple[int, int]:
        return self.alpha.shape[1] + 2 * self.margin_x, self.alpha.shape[0] + 2 * self.margin_y


def _make_sign(rng: np.random.Generator) -> SignDraft:
    """Pick a text, font and size so that the ink height lands in TEXT_HEIGHT_RANGE."""
    length = int(rng.integers(TEXT_LENGTH[0], TEXT_LENGTH[1] + 1))
    text = ''.join(TEXT_ALPHABET[i] for i in rng.integers(len(TEXT_ALPHABET), size=length))
    font = FONTS[int(rng.integers(len(FONTS)))]
    low, high = TEXT_HEIGHT_RANGE
    for _ in range(100):
        # One px inside the range: the rescaled ink height can round either way.
        target = int(rng.integers(low + 1, high))
        thickness = max(1, round(target / 10))
        # Fonts differ between OpenCV releases, so measure the ink instead of trusting
        # getTextSize, and rescale once; the ink height is close to linear in the scale.
        scale = target / 21.0
        alpha = text_alpha(text, font, scale, thickness)
        scale *= target / ink_height(alpha)
        alpha = text_alpha(text, font, scale, thickness)
        measured = ink_height(alpha)
        if low <= measured <= high:
            break
    else:
        raise RuntimeError(f'could not size {text!r} to an ink height in {TEXT_HEIGHT_RANGE}')
    margin_x = int(round(measured * rng.uniform(0.3, 0.8))) + 2
    margin_y = int(round(measured * rng.uniform(0.25, 0.6))) + 2
    return SignDraft(text, alpha, margin_x, margin_y)


def text_alpha(text: str, font: int, scale: float, thickness: int) -> np.ndarray:
    """Render `text` alone and crop to its ink: `(h, w) uint8` coverage, 255 = full ink."""
    (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, thickness)
    pad = thickness + text_h // 2 + 4
    canvas = np.zeros((text_h + baseline + 2 * pad, text_w + 2 * pad), np.uint8)
    cv2.putText(canvas, text, (pad, pad + text_h), font, scale, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def ink_height(alpha: np.ndarray) -> int:
    """Rows from the first to the last with ink in them; 0 when none has any."""
    rows = np.nonzero((alpha >= _INK_THRESHOLD).any(axis=1))[0]
    return int(rows.max() - rows.min() + 1) if rows.size else 0


def layout(rng: np.random.Generator, width: int, height: int,
            sign_sizes: list[tuple[int, int]], n_shapes: int):
    """Rejection-sample non-overlapping boxes; shape sizes are redrawn when a layout fails."""
    for _ in range(1000):
        sizes = sorted((int(s) for s in rng.integers(SHAPE_SIZE_RANGE[0],
                                                     SHAPE_SIZE_RANGE[1] + 1, size=n_shapes)),
                       reverse=True)  # largest first: they are the hardest to fit
        boxes: list[tuple[int, int, int, int]] = []
        for box_w, box_h in [(s, s) for s in sizes] + sign_sizes:
            box = _place(rng, width, height, box_w, box_h, boxes)
            if box is None:
                break
            boxes.append(box)
        else:
            return boxes[:n_shapes], boxes[n_shapes:]
    raise RuntimeError(f'could not lay out {n_shapes} shapes and {len(sign_sizes)} signs '
                       f'in {width}x{height}')


def _place(rng: np.random.Generator, width: int, height: int, box_w: int, box_h: int,
           boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    if box_w > width - 2 * BORDER or box_h > height - 2 * BORDER:
        return None
    for _ in range(100):
        x0 = int(rng.integers(BORDER, width - BORDER - box_w + 1))
        y0 = int(rng.integers(BORDER, height - BORDER - box_h + 1))
        box = (x0, y0, x0 + box_w, y0 + box_h)
        if all(_gap(box, other) >= SPACING for other in boxes):
            return box
    return None


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Chebyshev gap between two boxes in pixels; negative when they overlap."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3])


def draw_sign(image: np.ndarray, box: tuple[int, int, int, int], sign: SignDraft,
              fill: tuple[int, int, int],
              ink: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Fill the sign with `fill` (BGR), blend its `ink` in at the margins, and return the
    text box."""
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = fill
    alpha = sign.alpha
    tx0, ty0 = x0 + sign.margin_x, y0 + sign.margin_y
    text_box = (tx0, ty0, tx0 + alpha.shape[1], ty0 + alpha.shape[0])
    region = image[ty0:text_box[3], tx0:text_box[2]].astype(np.float32)  # (h, w, 3)
    coverage = alpha.astype(np.float32)[..., None] / 255.0  # (h, w, 1) in [0, 1]
    ink = np.array(ink, np.float32)
    image[ty0:text_box[3], tx0:text_box[2]] = np.rint(region * (1.0 - coverage)
                                                      + ink * coverage).astype(np.uint8)
    return text_box


def shape_polygon(shape: str, box: tuple[int, int, int, int], angle: float = 0.0) -> np.ndarray:
    """The (n, 2) float x, y corners of a square or triangle in `box`, turned `angle` degrees
    anticlockwise, scaled down until it fits the box again and centred in it (a square at 45
    degrees is a diamond touching the box's four sides, a turned triangle touches two opposite
    sides). At 0 degrees: the box itself, or the triangle with its base on the box's bottom
    edge and its apex at the top centre."""
    x0, y0, x1, y1 = box
    right, bottom = x1 - 1, y1 - 1  # the last pixel row and column inside the box
    if shape == 'square':
        corners = [(x0, y0), (right, y0), (right, bottom), (x0, bottom)]
    elif shape == 'triangle':
        corners = [(x0, bottom), (right, bottom), ((x0 + right) // 2, y0)]
    else:
        raise ValueError(f'only squares and triangles have corners, got {shape!r}')
    points = np.array(corners, np.float64)  # (n, 2) x, y
    if angle % 360.0 == 0.0:
        return points
    centre = np.array([(x0 + right) / 2.0, (y0 + bottom) / 2.0])
    theta = np.deg2rad(angle)
    # Anticlockwise on screen, where y points down.
    turn = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    points = (points - centre) @ turn.T
    low, high = points.min(axis=0), points.max(axis=0)  # the turned shape's bounds
    scale = min(1.0, float(np.min((centre - (x0, y0)) * 2 / np.maximum(high - low, 1e-9))))
    return (points - (low + high) / 2.0) * scale + centre


def fill_shape(canvas: np.ndarray, shape: str, box: tuple[int, int, int, int],
               value, line_type: int, angle: float = 0.0) -> None:
    """Fill `shape` inside `box` on `canvas` with `value` (a BGR tuple or a label), squares
    and triangles turned `angle` degrees (shape_polygon)."""
    x0, y0, x1, y1 = box
    if shape == 'square' and angle % 360.0 == 0.0:
        canvas[y0:y1, x0:x1] = value
    elif shape == 'circle':
        # Odd diameters keep the disc inside the box, even with anti-aliasing.
        radius = (min(x1 - x0, y1 - y0) - 1) // 2
        center = (x0 + (x1 - x0 - 1) // 2, y0 + (y1 - y0 - 1) // 2)
        cv2.circle(canvas, center, radius, value, -1, line_type)
    elif shape in ('square', 'triangle'):
        # Integer corners as before for unturned triangles; sub-pixel ones for turned shapes.
        points = shape_polygon(shape, box, angle)
        if angle % 360.0 == 0.0:
            cv2.fillPoly(canvas, [points.astype(np.int32)], value, line_type)
        else:
            shift = 4  # fractional bits: 1/16 px corners
            cv2.fillPoly(canvas, [np.rint(points * (1 << shift)).astype(np.int32)], value,
                         line_type, shift=shift)
    else:
        raise ValueError(f'shape must be one of {SHAPES}, got {shape!r}')
