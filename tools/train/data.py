"""Training data for the tiny LLaVA: Glyph-VQA scenes rendered from seeded streams and seen
as the edge would send them (resize/pad, JPEG round trip), with per-cell labels for the tower's
heads; synthetic text pages for the read stage; a pool of recent scenes to draw samples from.

Contract: scene n of stream s under seed k is a function of (k, s, n, style) alone, so a run
resumes and repeats; nothing here knows about models, prompts or losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from colvlm_bench.glyphvqa.camera import CameraStyle
from colvlm_bench.glyphvqa.cli import dataset_style
from colvlm_bench.glyphvqa.lettering import truetype_ink, typeface_files
from colvlm_bench.glyphvqa.scene import (
    COLORS,
    FONTS,
    SHAPES,
    TEXT_ALPHABET,
    Scene,
    label_map,
    render_scene,
)
from colvlm_edge.global_encoder import CLIP_MEAN_BGR, render_geometry
from colvlm_msgs.geometry import GlobalGeometry
from colvlm_msgs.image_codec import decode_image, encode_image
from colvlm_server.vicrop import DEFAULT_SCALES, tile_boxes

KIND_CLASSES = ('background', 'sign', *SHAPES)
COLOR_CLASSES = ('none', *COLORS)
SLOTS = 3  # characters per sign text
END = len(TEXT_ALPHABET)  # slot class for "no character here"
MIN_READABLE_PX = 6.0  # text ink height in a view below which its characters are not a label
IGNORE = -100
# Each stage draws from its own seeded stream; the ids stay fixed as stages are added.
STREAMS = {'tower': 0, 'align': 1, 'joint': 2, 'read': 3, 'bind': 4}
PAGE_TEXT_PX = (8, 32)  # character heights on the read stage's text pages, view px
STYLES = ('clean', 'camera', 'mix')  # scene looks: the renderer's two, or half each


@dataclass
class View:
    pixels: np.ndarray  # (S, S, 3) uint8 BGR, after the JPEG round trip
    kind: np.ndarray  # (G, G) int64 class of KIND_CLASSES
    color: np.ndarray  # (G, G) int64 class of COLOR_CLASSES
    text: np.ndarray  # (G, G, SLOTS) int64 character class, END, or IGNORE
    local: np.ndarray  # (G, G) int64 the character under the cell, or IGNORE


class SceneViews:
    """One rendered scene and the ways it can be seen: global, crops, tiles."""

    def __init__(self, scene: Scene, size: int, grid: int, quality: int) -> None:
        self.scene, self.size, self.grid, self.quality = scene, size, grid, quality
        self.labels = label_map(scene)  # (H, W) int16 object index, -1 background
        self.global_view = self.view((0, 0, scene.width, scene.height))

    def view(self, cut: tuple[int, int, int, int]) -> View:
        """The cut (x0, y0, x1, y1) original px as the edge would send it, with cell labels."""
        x0, y0, x1, y1 = cut
        geometry = GlobalGeometry.fit(x1 - x0, y1 - y0, self.size, self.size, 'pad')
        pixels = render_geometry(self.scene.image[y0:y1, x0:x1], geometry, CLIP_MEAN_BGR)
        pixels = decode_image(encode_image(np.ascontiguousarray(pixels), 'jpeg', self.quality))
        width, height = geometry.resized_size
        labels = cv2.resize(self.labels[y0:y1, x0:x1], (width, height),
                            interpolation=cv2.INTER_NEAREST)
        ox, oy = int(geometry.offset_x), int(geometry.offset_y)
        canvas = np.full((self.size, self.size), -1, np.int16)
        canvas[oy:oy + height, ox:ox + width] = labels
        return self._cell_labels(pixels, canvas, (x0, y0), geometry)

    def _cell_labels(self, pixels: np.ndarray, canvas: np.ndarray, origin: tuple[int, int],
                     geometry: GlobalGeometry) -> View:
        scale = geometry.scale_y
        objects = self.scene.objects
        cell = self.size // self.grid
        onehot = (canvas[..., None] == np.arange(len(objects))).astype(np.int32)  # (S, S, K)
        counts = onehot.reshape(self.grid, cell, self.grid, cell, -1).sum(axis=(1, 3))
        totals = np.maximum(onehot.sum(axis=(0, 1)), 1)  # (K,) px of each object in view
        best = counts.argmax(axis=-1)  # (G, G)
        best_count = counts.max(axis=-1)
        present = (best_count >= 0.12 * cell * cell) | (best_count >= 0.4 * totals[best])
        present &= best_count > 0
        kind = np.zeros((self.grid, self.grid), np.int64)
        color = np.zeros_like(kind)
        text = np.full((self.grid, self.grid, SLOTS), IGNORE, np.int64)
        local = np.full((self.grid, self.grid), IGNORE, np.int64)
        centres = (np.arange(self.grid) + 0.5) * cell  # view px
        for index, obj in enumerate(objects):
            mask = present & (best == index)
            if not mask.any():
                continue
            kind[mask] = KIND_CLASSES.index('sign' if obj.kind == 'sign' else obj.shape)
            color[mask] = COLOR_CLASSES.index(obj.color)
            if obj.kind == 'sign':
                ink = obj.text_box[3] - obj.text_box[1]
                if ink * scale >= MIN_READABLE_PX:
                    chars = [TEXT_ALPHABET.index(c) for c in obj.text]
                    text[mask] = chars + [END] * (SLOTS - len(chars))
                    self._local_chars(local, obj, chars, origin, geometry, centres, cell)
        return View(pixels, kind, color, text, local)

    @staticmethod
    def _local_chars(local, obj, chars, origin, geometry, centres, cell) -> None:
        """The character under each cell centre on the text's line (fonts taken as evenly
        spaced): a local target that convolutions learn first and the slots build on."""
        tx0, ty0, tx1, ty1 = obj.text_box
        x0 = (tx0 - origin[0]) * geometry.scale_x + geometry.offset_x
        x1 = (tx1 - origin[0]) * geometry.scale_x + geometry.offset_x
        y0 = (ty0 - origin[1]) * geometry.scale_y + geometry.offset_y
        y1 = (ty1 - origin[1]) * geometry.scale_y + geometry.offset_y
        rows = np.nonzero((centres >= y0 - cell / 2) & (centres <= y1 + cell / 2))[0]
        cols = np.nonzero((centres >= x0) & (centres < x1))[0]
        if len(rows) == 0 or len(cols) == 0:
            return
        slot = ((centres[cols] - x0) / max(x1 - x0, 1e-6) * len(chars)).astype(int)
        for row in rows:
            local[row, cols] = np.asarray(chars)[np.clip(slot, 0, len(chars) - 1)]

    def crop_around(self, rng: np.random.Generator, box: tuple[int, int, int, int] | None,
                    scales: tuple[float, float] = (DEFAULT_SCALES[0], DEFAULT_SCALES[-1]),
                    ) -> View:
        """A square of side encoder size x U(scales) original px (ViCrop's 1..2 by default)
        holding `box`, or anywhere."""
        width, height = self.scene.width, self.scene.height
        side = int(round(self.size * float(rng.uniform(*scales))))
        side = min(side, width, height)
        if box is None:
            x0 = int(rng.integers(0, width - side + 1))
            y0 = int(rng.integers(0, height - side + 1))
        else:
            bx0, by0, bx1, by1 = box
            # Centre jittered by up to a quarter side, as an attention peak is off by a cell.
            cx = (bx0 + bx1) / 2 + rng.uniform(-0.25, 0.25) * side
            cy = (by0 + by1) / 2 + rng.uniform(-0.25, 0.25) * side
            x0 = int(np.clip(round(cx - side / 2), 0, width - side))
            y0 = int(np.clip(round(cy - side / 2), 0, height - side))
        return self.view((x0, y0, x0 + side, y0 + side))

    def tiles(self) -> list[View]:
        return [self.view(tuple(int(v) for v in (b.x0, b.y0, b.x1, b.y1)))
                for b in tile_boxes(self.scene.width, self.scene.height)]


def text_page(rng: np.random.Generator, size: int, grid: int, quality: int,
              camera: CameraStyle | None = None) -> View:
    """A view full of text lines in one ink on one background, characters drawn one by one so
    that the character under every cell centre is known; other cells and labels IGNORE. With a
    `camera` style whose `truetype` share is on, that share of the lines is lettered in one of
    its typefaces instead of a clean Hershey font."""
    truetype = camera.truetype if camera else 0.0
    faces = typeface_files(camera.typefaces) if truetype > 0 else ()
    background = rng.integers(0, 256, 3)
    dark = background.mean() > 128
    ink = tuple(int(v) for v in (rng.integers(0, 70, 3) if dark else rng.integers(186, 256, 3)))
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:] = background
    local = np.full((grid, grid), IGNORE, np.int64)
    centres = (np.arange(grid) + 0.5) * (size / grid)
    y = int(rng.integers(0, 12))
    while True:
        height = int(rng.integers(PAGE_TEXT_PX[0], PAGE_TEXT_PX[1] + 1))
        if y + height > size:
            break
        font = FONTS[int(rng.integers(len(FONTS)))]
        scale, thickness = height / 21.0, max(1, round(height / 10))
        # Drawn only with TrueType on, so the pages without it are the ones they always were.
        face = (faces[int(rng.integers(len(faces)))]
                if truetype > 0 and rng.random() < truetype else None)
        rows = np.nonzero((centres >= y) & (centres < y + height))[0]
        x = int(rng.integers(-height // 2, size // 5))
        while x < size:
            char = int(rng.integers(len(TEXT_ALPHABET)))
            if face is None:
                (width, _), _ = cv2.getTextSize(TEXT_ALPHABET[char], font, scale, thickness)
                cv2.putText(pixels, TEXT_ALPHABET[char], (x, y + height), font, scale, ink,
                            thickness, cv2.LINE_AA)
            else:
                width = _paste_glyph(pixels, TEXT_ALPHABET[char], face, x, y, height, ink)
            cols = np.nonzero((centres >= x) & (centres < x + width))[0]
            local[rows[:, None], cols[None, :]] = char
            x += width + int(rng.integers(1, max(2, height // 3)))
        y += height + int(rng.integers(3, 20))
    pixels = decode_image(encode_image(pixels, 'jpeg', quality))
    nothing = np.full((grid, grid), IGNORE, np.int64)
    return View(pixels, nothing, nothing.copy(),
                np.full((grid, grid, SLOTS), IGNORE, np.int64), local)


def camera_style(args) -> CameraStyle | None:
    """The camera-like scenes' style the flags ask for: None (CameraStyle() as it is) unless
    --truetype letters some signs in TrueType faces, --text-height sizes them otherwise or
    --factors picks the factors (--pose-share the share of posed scenes); ValueError naming a bad
    flag (the dataset command's checks)."""
    text_height = getattr(args, 'text_height', None)
    factors = getattr(args, 'factors', None)
    pose_share = getattr(args, 'pose_share', None)
    if not args.truetype and text_height is None and factors is None and pose_share is None:
        return None
    return dataset_style('camera', factors, None, args.truetype or None, args.typefaces,
                         text_height, pose_share)


def _paste_glyph(pixels: np.ndarray, char: str, face: str, x: int, y: int, height: int,
                 ink: tuple[int, ...]) -> int:
    """Blend `char` in TrueType `face`, its ink `height` px tall, with its ink's bottom at
    y + height and its left at x (clipped to the page); its width in px."""
    alpha = truetype_ink(char, face, height)
    h, w = alpha.shape
    size_y, size_x = pixels.shape[:2]
    x0, x1, y0, y1 = max(x, 0), min(x + w, size_x), max(y, 0), min(y + h, size_y)
    if x0 < x1 and y0 < y1:
        cover = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None].astype(np.float32) / 255.0
        region = pixels[y0:y1, x0:x1].astype(np.float32)
        pixels[y0:y1, x0:x1] = np.rint(region * (1 - cover)
                                       + np.float32(ink) * cover).astype(np.uint8)
    return w


class ScenePool:
    """A ring of recent scenes, each reused by several samples; scene n is seeded by n alone."""

    def __init__(self, seed: int, stage: int, capacity: int, size: int, grid: int,
                 style: str = 'clean', camera: CameraStyle | None = None) -> None:
        if style not in STYLES:
            raise ValueError(f'style must be one of {STYLES}, got {style!r}')
        self.seed, self.stage, self.capacity = seed, stage, capacity
        self.size, self.grid, self.style = size, grid, style
        self.camera = camera  # the camera-like scenes' style; None: CameraStyle()
        self.slots: list[SceneViews | None] = [None] * capacity
        self.rendered = 0

    def scene_style(self, index: int) -> str:
        """The renderer's style for scene `index`: 'mix' alternates, so exactly half of the
        scenes are camera-like and a scene's style does not depend on the random stream."""
        if self.style == 'mix':
            return 'camera' if index % 2 else 'clean'
        return self.style

    def _render(self, index: int) -> SceneViews:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7919, self.stage, index]))
        style = self.scene_style(index)
        # 'clean' is the renderer's default: leaving the keyword out keeps the clean streams
        # bit-equal with the ones the bundled model was trained on.
        scene = (render_scene(rng) if style == 'clean' else
                 render_scene(rng, style=self.camera or style))
        return SceneViews(scene, self.size, self.grid, int(rng.integers(50, 96)))

    def advance_to(self, scenes: int) -> None:
        """Hold scenes [scenes - capacity, scenes): the state after `scenes` renders."""
        start = max(self.rendered, scenes - self.capacity)
        for index in range(start, scenes):
            self.slots[index % self.capacity] = self._render(index)
        self.rendered = scenes

    def sample(self, rng: np.random.Generator) -> SceneViews:
        filled = min(self.rendered, self.capacity)
        return self.slots[int(rng.integers(0, filled))]

