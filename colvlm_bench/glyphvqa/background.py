"""Procedural backgrounds for Glyph-VQA scenes: gradients, noise textures and clutter.

Backgrounds only use muted colours (low saturation, mid brightness), so no background pixel
can be mistaken for one of the saturated object colours; they know nothing about objects.
"""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND_KINDS = ('gradient', 'noise', 'clutter')


def muted_colors(rng: np.random.Generator, count: int) -> np.ndarray:
    """`(count, 3) uint8 BGR` greyish colours: mid grey plus a small tint, so far from
    white and from every saturated object colour."""
    grey = rng.integers(70, 181, size=(count, 1))
    tint = rng.integers(-30, 31, size=(count, 3))
    return np.clip(grey + tint, 30, 210).astype(np.uint8)


def muted_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """One colour of `muted_colors`, as a BGR tuple for OpenCV drawing calls."""
    return tuple(int(c) for c in muted_colors(rng, 1)[0])


def render_background(rng: np.random.Generator, height: int, width: int,
                      kind: str | None = None) -> tuple[np.ndarray, str]:
    """Return a `(height, width, 3) uint8 BGR` background and the kind drawn."""
    if kind is None:
        kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind == 'gradient':
        image = _gradient(rng, height, width)
    elif kind == 'noise':
        image = _noise_texture(rng, height, width)
    elif kind == 'clutter':
        # Clutter sits on one of the other two, so it never has a flat base either.
        base = _gradient if rng.random() < 0.5 else _noise_texture
        image = _clutter(rng, base(rng, height, width))
    else:
        raise ValueError(f'background kind must be one of {BACKGROUND_KINDS}, got {kind!r}')
    return image, kind


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    start = np.array(muted_color(rng), np.float32)  # (3,) BGR
    end = np.array(muted_color(rng), np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    xs = np.arange(width, dtype=np.float32)[None, :] * np.float32(np.cos(angle))  # (1, W)
    ys = np.arange(height, dtype=np.float32)[:, None] * np.float32(np.sin(angle))  # (H, 1)
    along = xs + ys  # (H, W) float32
    along = (along - along.min()) / max(float(along.max() - along.min()), 1.0)  # in [0, 1]
    image = start + along[..., None] * (end - start)  # (H, W, 3) float32
    return _add_grain(rng, image, amplitude=6)


def _noise_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    # Value noise: a coarse grid of muted colours, smoothly upsampled, plus finer octaves.
    image = np.zeros((height, width, 3), np.float32)
    weight_total = 0.0
    for octave, weight in enumerate((1.0, 0.5, 0.25)):
        cell = int(rng.integers(60, 160)) >> octave
        grid_h, grid_w = max(2, height // cell + 2), max(2, width // cell + 2)
        grid = muted_colors(rng, grid_h * grid_w).astype(np.float32).reshape(grid_h, grid_w, 3)
        image += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight_total += weight
    return _add_grain(rng, image / weight_total, amplitude=10)


def _clutter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    n_items = int(rng.integers(60, 260))
    for _ in range(n_items):
        color = muted_color(rng)
        x, y = int(rng.integers(width)), int(rng.integers(height))
        if rng.random() < 0.6:
            length = rng.uniform(5.0, 40.0)
            angle = rng.uniform(0.0, np.pi)
            end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
            cv2.line(image, (x, y), end, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            axes = (int(rng.integers(2, 8)), int(rng.integers(2, 8)))
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, color, -1,
                        cv2.LINE_AA)
    return image


def _add_grain(rng: np.random.Generator, image: np.ndarray, amplitude: int) -> np.ndarray:
    grain = rng.integers(-amplitude, amplitude + 1, size=image.shape[:2], dtype=np.int16)
    image += grain[..., None]  # (H, W, 1) int16 luminance grain
    return np.clip(image, 0, 255).astype(np.uint8)
