"""The camera style of Glyph-VQA scenes: the clean scene's task (same objects, colour names,
texts and questions) drawn the way a robot's camera sees it.

Every factor is a field of the frozen `CameraStyle`, with the range a scene draws from:

| factor  | fields                                   | what it does                          |
| ------- | ---------------------------------------- | ------------------------------------- |
| color   | color_jitter, white_balance, illumination | each object's colour drawn inside its |
|         |                                          | name's HSV band (colors.py), a global |
|         |                                          | white-balance gain, a gradient/shadow |
| clutter | backgrounds, clutter_items               | photo, colour texture or flat ground, |
|         |                                          | strokes, lines and blobs of any colour |
| fonts   | fonts, italic, stroke, text_rotation,    | any Hershey font, italic, stroke      |
|         | text_height, truetype, typefaces         | width, a small rotation of the text,  |
|         |                                          | its ink height; a share of signs in   |
|         |                                          | TrueType faces                        |
| warp    | warp_degrees                             | perspective tilt of the camera        |
| pose    | shape_rotation, pose_share               | squares and triangles turned in their |
|         |                                          | boxes, either way, in a share of the  |
|         |                                          | scenes (off by default)               |
| blur    | defocus, motion                          | Gaussian defocus, linear motion smear |
| noise   | noise_sigma                              | read + shot noise                     |
| jpeg    | jpeg_quality, png                        | a JPEG round trip, or lossless        |

A factor left out of `factors` draws as the clean style does (exact colours, muted procedural
backgrounds, two fonts, upright shapes, no optics). `pose` is the one factor the default style
leaves out (DEFAULT_FACTORS), so that a seed draws the scenes it drew before pose existed and
the published splits stay as they are; `factors=FACTORS` (`--factors all`) turns it on. Each
factor draws from its own generator (split off the scene's), so the sets
`CameraStyle.only(['blur'], 2)` and `CameraStyle.only([])` (every factor off: clean drawing,
though not the clean style's bytes) of one seed hold the same scenes and differ by the blur
alone: the paired sets of a robustness table (the fonts factor also moves the layout, as signs
change size). `severity` 1..3 narrows each range of the factors on to its first, middle or last
third (JPEG: the lowest qualities are the most severe) and picks harder fonts and backgrounds.
Originals are drawn at 4:3, 16:9, 3:2, 5:4 or 1:1, within 640x480..1024x768. The evidence stays
readable: text ink is 14-32 px tall (text_height, which severity leaves alone) and blur is
capped at 1/14 (defocus sigma) and 1/4 (motion) of the smallest ink height; objects keep their
boxes through the warp."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
import math

import cv2
import numpy as np

from colvlm_bench.glyphvqa import optics
from colvlm_bench.glyphvqa.clutter import draw_clutter, render_camera_background
from colvlm_bench.glyphvqa.colors import band_mask, sample_color
from colvlm_bench.glyphvqa.drawing import (
    COLORS,
    MAX_SIZE,
    MIN_SIZE,
    SHAPES,
    SHAPES_PER_IMAGE,
    SIGNS_PER_IMAGE,
    TEXT_HEIGHT_RANGE,
    Scene,
    SceneObject,
    draw_sign,
    fill_shape,
    ink_color,
    ink_height,
    layout,
)
from colvlm_bench.glyphvqa.lettering import HERSHEY_FONTS, TYPEFACES, make_sign, typeface_files

FACTORS = ('color', 'clutter', 'fonts', 'warp', 'blur', 'noise', 'jpeg', 'pose')
# Every factor but pose, which came later. Their generators come from the scene's seed draw,
# in this order; pose's is spawned from the scene stream's seed, so adding it moved no draw.
DEFAULT_FACTORS = FACTORS[:-1]
SEVERITIES = (1, 2, 3)
BACKGROUNDS = ('photo', 'texture', 'flat', 'procedural')
ASPECT_RATIOS = ((4, 3), (16, 9), (3, 2), (5, 4), (1, 1))
# Per severity: the fonts, italic probability and backgrounds (the categorical parts).
_FONT_LEVELS = (HERSHEY_FONTS[:4], HERSHEY_FONTS[:6], HERSHEY_FONTS[4:])
_ITALIC_LEVELS = (0.0, 0.3, 0.6)
_BACKGROUND_LEVELS = (('texture', 'flat'), ('texture', 'photo'), ('photo',))
_RANGED = {'color': ('white_balance', 'illumination'), 'clutter': ('clutter_items',),
           'fonts': ('stroke', 'text_rotation'), 'warp': ('warp_degrees',),
           'blur': ('defocus', 'motion'), 'noise': ('noise_sigma',), 'jpeg': ('jpeg_quality',),
           'pose': ('shape_rotation',)}
_MAX_BACKGROUND_TRIES = 20
_SAME_COLOR_SHARE = 0.2  # most of an object's box the background may share its colour name

Range = tuple[float, float]


@dataclass(frozen=True)
class CameraStyle:
    """The camera style's factors (FACTORS) and the range each scene draws them from."""

    factors: tuple[str, ...] = DEFAULT_FACTORS  # the rest draw as the clean style
    color_jitter: float = 1.0  # share of a colour band's half-width a draw may stray, 0..1
    white_balance: Range = (0.0, 0.06)  # per-channel gain deviation (hue moves <= 7 deg)
    illumination: Range = (0.0, 0.3)  # darkening depth of the gradient or shadow, 0..1
    backgrounds: tuple[str, ...] = BACKGROUNDS  # drawn with equal chance
    clutter_items: Range = (0, 200)  # strokes, lines and blobs per image
    fonts: tuple[int, ...] = HERSHEY_FONTS
    italic: float = 0.3  # chance of cv2.FONT_ITALIC
    stroke: Range = (0.06, 0.15)  # stroke width / ink height
    text_rotation: Range = (0.0, 6.0)  # degrees, either way
    text_height: Range = TEXT_HEIGHT_RANGE  # the signs' ink height, original px
    # Share of signs lettered in a TrueType face of `typefaces` (families of lettering.TYPEFACES,
    # font files or folders: lettering.typeface_files) instead of a Hershey font. Off by
    # default, so the style's seeds draw what they drew before it.
    truetype: float = 0.0
    typefaces: tuple[str, ...] = ('dejavu',)
    warp_degrees: Range = (0.0, 4.0)  # camera tilt, degrees
    shape_rotation: Range = (0.0, 60.0)  # a square's or triangle's turn, degrees, either way
    # Share of scenes whose squares and triangles are turned (the rest upright). Below 1 each
    # scene draws it first from the pose stream; at 1 nothing is drawn, so posed sets made
    # before the share existed draw what they drew.
    pose_share: float = 1.0
    defocus: Range = (0.0, 1.5)  # Gaussian sigma, px (capped by the text height)
    motion: Range = (0.0, 5.0)  # smear length, px (capped by the text height)
    noise_sigma: Range = (0.0, 8.0)  # grey levels at mid grey
    jpeg_quality: Range = (40, 95)
    png: float = 0.2  # chance of no JPEG round trip (a lossless camera stream)

    def __post_init__(self) -> None:
        unknown = [f for f in self.factors if f not in FACTORS]
        if unknown:
            raise ValueError(f'camera factors must be among {FACTORS}, got {unknown!r}')
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == 'Range' and not (len(value) == 2 and 0 <= value[0] <= value[1]):
                raise ValueError(f'camera {field.name} must be a (low, high) range with '
                                 f'0 <= low <= high, got {value!r}')
        low, high = self.text_height
        if not (low >= 6 and high - low >= 2):
            raise ValueError(f'camera text_height must be a (low, high) range of ink heights '
                             f'with low >= 6 px and high - low >= 2, got {self.text_height!r}')
        for name in ('color_jitter', 'italic', 'png', 'truetype', 'pose_share'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'camera {name} must be in [0, 1], got {getattr(self, name)}')
        if not self.fonts or not self.backgrounds or not set(self.backgrounds) <= set(
                BACKGROUNDS):
            raise ValueError(f'camera fonts must be non-empty and backgrounds among '
                             f'{BACKGROUNDS}, got {self.fonts!r}, {self.backgrounds!r}')
        if not self.typefaces:
            raise ValueError(f'camera typefaces must be a non-empty list of families among '
                             f'{tuple(TYPEFACES)}, font files or folders, got {self.typefaces!r}')
        try:
            typeface_files(self.typefaces)
        except ValueError as error:
            raise ValueError(f'camera typefaces: {error}') from None
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f'camera jpeg_quality must be within 1..100, '
                             f'got {self.jpeg_quality!r}')

    @classmethod
    def only(cls, factors: Iterable[str], severity: int | None = None) -> CameraStyle:
        """The full style with only `factors` on; with `severity` (1..3), each of their
        ranges narrowed to that third."""
        style = cls(factors=tuple(dict.fromkeys(factors)))
        if severity is None:
            return style
        if severity not in SEVERITIES:
            raise ValueError(f'severity must be one of {SEVERITIES}, got {severity!r}')
        level = severity - 1
        categorical = {'color': {'color_jitter': severity / 3.0}, 'jpeg': {'png': 0.0},
                       'fonts': {'fonts': _FONT_LEVELS[level], 'italic': _ITALIC_LEVELS[level]},
                       'clutter': {'backgrounds': _BACKGROUND_LEVELS[level]}}
        changes: dict = {}
        for factor in style.factors:
            changes.update(categorical.get(factor, {}))
            for name in _RANGED[factor]:
                low, high = getattr(style, name)
                k = 2 - level if name == 'jpeg_quality' else level  # low quality is severe
                third = tuple(round(low + (high - low) * j / 3.0, 4) for j in (k, k + 1))
                integer = name in ('jpeg_quality', 'clutter_items')
                changes[name] = tuple(int(round(v)) for v in third) if integer else third
        return replace(style, **changes)

    def to_json(self) -> dict:
        """The style as JSON-ready values (fonts by their OpenCV numbers)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


def resolve_style(style) -> CameraStyle:
    """'camera' -> CameraStyle(); a CameraStyle as is; anything else is a ValueError."""
    if isinstance(style, CameraStyle):
        return style
    if style == 'camera':
        return CameraStyle()
    raise ValueError(f"style must be 'clean', 'camera' or a CameraStyle, got {style!r}")


def render_camera_scene(rng: np.random.Generator, width: int | None, height: int | None,
                        style: CameraStyle) -> Scene:
    """Draw a scene in `style`; deterministic given the generator's state and the photos
    installed (clutter.available_photos)."""
    # One stream for the scene's content and one per factor, so that turning a factor on
    # changes what it draws and nothing else.
    seeds = rng.integers(0, 2**62, size=1 + len(DEFAULT_FACTORS))
    draws = {name: np.random.default_rng(int(seed))
             for name, seed in zip(('scene', *DEFAULT_FACTORS), seeds, strict=True)}
    draws['pose'] = np.random.default_rng([int(seeds[0]), len(FACTORS)])
    scene_rng = draws['scene']
    width, height = _size(scene_rng, width, height)
    on = set(style.factors)
    n_signs = int(scene_rng.integers(SIGNS_PER_IMAGE[0], SIGNS_PER_IMAGE[1] + 1))
    n_shapes = int(scene_rng.integers(SHAPES_PER_IMAGE[0], SHAPES_PER_IMAGE[1] + 1))
    color_names = [list(COLORS)[i]
                   for i in scene_rng.permutation(len(COLORS))[:n_signs + n_shapes]]
    shape_types = [SHAPES[i] for i in scene_rng.permutation(len(SHAPES))[:n_shapes]]
    signs = [make_sign(scene_rng, draws['fonts'], style if 'fonts' in on else None)
             for _ in range(n_signs)]
    shape_boxes, sign_boxes = layout(scene_rng, width, height, [s.size for s in signs],
                                     n_shapes)
    boxes = sign_boxes + shape_boxes
    fills = [sample_color(draws['color'], name, style.color_jitter) if 'color' in on
             else COLORS[name] for name in color_names]
    image, background = _background(draws['clutter'], style, height, width, boxes,
                                    color_names)

    posed = 'pose' in on and (style.pose_share >= 1.0
                              or draws['pose'].random() < style.pose_share)
    angles = [_turn(draws['pose'], style) if posed and shape != 'circle' else 0.0
              for shape in shape_types]
    labels = np.full((height, width), -1, np.int16)  # (H, W) int16 object index
    objects = []
    for index, (box, name, fill) in enumerate(zip(boxes, color_names, fills, strict=True)):
        if index < n_signs:
            text_box = draw_sign(image, box, signs[index], fill, ink_color(fill))
            objects.append(SceneObject('sign', None, name, signs[index].text, box, text_box))
            fill_shape(labels, 'square', box, index, cv2.LINE_8)
        else:
            shape, angle = shape_types[index - n_signs], angles[index - n_signs]
            fill_shape(image, shape, box, fill, cv2.LINE_AA, angle)
            fill_shape(labels, shape, box, index, cv2.LINE_8, angle)
            objects.append(SceneObject('shape', shape, name, None, box, angle=angle))
    smallest_ink = min(ink_height(s.alpha) for s in signs)
    image, objects, labels = _camera(draws, style, image, objects, labels, smallest_ink)
    return Scene(image=image, objects=tuple(objects), background=background, labels=labels)


def _turn(rng: np.random.Generator, style: CameraStyle) -> float:
    """A shape's rotation: a magnitude in shape_rotation, either way."""
    magnitude = float(rng.uniform(*style.shape_rotation))
    return magnitude if rng.random() < 0.5 else -magnitude


def _size(rng: np.random.Generator, width: int | None, height: int | None) -> tuple[int, int]:
    """The given size, or one drawn at one of ASPECT_RATIOS."""
    if width is None or height is None:
        across, down = ASPECT_RATIOS[int(rng.integers(len(ASPECT_RATIOS)))]
        low = max(MIN_SIZE[0], math.ceil(MIN_SIZE[1] * across / down))
        high = min(MAX_SIZE[0], math.floor(MAX_SIZE[1] * across / down))
        width = int(rng.integers(low, high + 1)) if width is None else width
        height = int(round(width * down / across)) if height is None else height
    if not (MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]):
        raise ValueError(f'scene size must be within {MIN_SIZE}..{MAX_SIZE}, '
                         f'got {(width, height)}')
    return width, height


def _background(rng, style: CameraStyle, height: int, width: int, boxes, color_names):
    """A background on which no object's box is mostly its own colour name, with clutter."""
    kinds = style.backgrounds if 'clutter' in style.factors else ('procedural',)
    for _ in range(_MAX_BACKGROUND_TRIES):
        kind = kinds[int(rng.integers(len(kinds)))]
        image, background = render_camera_background(rng, height, width, kind)
        if 'clutter' in style.factors:
            draw_clutter(rng, image, int(rng.integers(style.clutter_items[0],
                                                      style.clutter_items[1] + 1)))
        if all(_distinct(image, box, name) for box, name in zip(boxes, color_names,
                                                                 strict=True)):
            return image, background
    return render_camera_background(rng, height, width, 'procedural')


def _distinct(image: np.ndarray, box, name: str) -> bool:
    x0, y0, x1, y1 = box
    return float(band_mask(image[y0:y1, x0:x1], name).mean()) <= _SAME_COLOR_SHARE


def _camera(draws: dict, style: CameraStyle, image, objects, labels, smallest_ink: int):
    """Lighting, warp, blur, noise and JPEG, in a camera's order, each from its factor's
    generator in `draws`; boxes follow the warp."""
    on = set(style.factors)
    if 'color' in on:
        rng = draws['color']
        image = optics.white_balance(rng, image, rng.uniform(*style.white_balance))
        image = optics.illumination(rng, image, rng.uniform(*style.illumination))
    if 'warp' in on:
        image, objects, labels = _warp(draws['warp'], style, image, objects, labels)
    if 'blur' in on:
        rng = draws['blur']
        defocus = min(rng.uniform(*style.defocus), smallest_ink / 14.0)
        motion = min(rng.uniform(*style.motion), smallest_ink / 4.0)
        image = optics.blur(rng, image, defocus, motion)
    if 'noise' in on:
        rng = draws['noise']
        image = optics.sensor_noise(rng, image, rng.uniform(*style.noise_sigma))
    if 'jpeg' in on and draws['jpeg'].random() >= style.png:
        quality = int(draws['jpeg'].integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1))
        image = optics.jpeg_round_trip(image, quality)
    return image, objects, labels


def _warp(rng, style: CameraStyle, image, objects, labels):
    """Tilt the camera; halve the tilt until every object stays inside the frame."""
    height, width = image.shape[:2]
    degrees = rng.uniform(*style.warp_degrees)
    for _ in range(4):
        homography = optics.perspective(rng, width, height, degrees)
        moved = [_moved(obj, homography, width, height) for obj in objects]
        if all(obj is not None for obj in moved):
            return (optics.apply_warp(image, homography), moved,
                    optics.warp_labels(labels, homography))
        degrees /= 2.0
    return image, objects, labels


def _moved(obj: SceneObject, homography, width: int, height: int) -> SceneObject | None:
    """`obj` with its boxes warped and rounded outwards; None when it leaves the frame."""
    boxes = []
    for box in (obj.box, obj.text_box):
        if box is None:
            boxes.append(None)
            continue
        x0, y0, x1, y1 = optics.warp_box(homography, box)
        rounded = (math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))
        if rounded[0] < 1 or rounded[1] < 1 or rounded[2] > width - 1 or rounded[3] > height - 1:
            return None
        boxes.append(rounded)
    return replace(obj, box=boxes[0], text_box=boxes[1])
