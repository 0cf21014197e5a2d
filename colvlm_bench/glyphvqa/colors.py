"""Colour names as bands in HSV, for the camera style: draw a colour inside a name's band and
tell which band a pixel is nearest to.

A band is a hue interval (degrees, may wrap through 0), a saturation and a value interval
(both in [0, 1]); white is the one band without a hue. Neighbouring hue bands leave margins
of at least 13 degrees, so a white-balance shift and an illumination change (which leaves hue
and saturation alone) never carry a draw over to another name. This module knows colours,
not scenes.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class ColorBand(NamedTuple):
    """The HSV region a colour name covers: hue in degrees (None: any hue), s and v in [0, 1]."""

    hue: tuple[float, float] | None
    saturation: tuple[float, float]
    value: tuple[float, float]


# Every clean colour (scene.COLORS) lies inside its own band; the test checks it.
COLOR_BANDS: dict[str, ColorBand] = {
    'red': ColorBand((-8.0, 8.0), (0.75, 1.0), (0.65, 1.0)),
    'orange': ColorBand((21.0, 34.0), (0.8, 1.0), (0.8, 1.0)),
    'yellow': ColorBand((51.0, 61.0), (0.7, 1.0), (0.8, 1.0)),
    'green': ColorBand((100.0, 140.0), (0.6, 1.0), (0.45, 0.85)),
    'blue': ColorBand((215.0, 245.0), (0.75, 1.0), (0.6, 1.0)),
    'purple': ColorBand((280.0, 305.0), (0.6, 1.0), (0.45, 0.8)),
    'white': ColorBand(None, (0.0, 0.08), (0.88, 1.0)),
}
# How far a pixel may stray along each axis before the next band is as near: a hue step of
# 30 degrees counts like a saturation step of 0.3 or a value step of 2 (value is what
# illumination changes, so it hardly tells names apart: a shaded orange is still orange).
_SCALES = (30.0, 0.3, 2.0)


def sample_color(rng: np.random.Generator, name: str, jitter: float) -> tuple[int, int, int]:
    """A BGR colour inside `name`'s band: the band centre, moved by up to `jitter` (0..1) of
    the band's half-width along each axis."""
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f'colour jitter must be in [0, 1], got {jitter}')
    band = COLOR_BANDS[name]
    hue = 0.0 if band.hue is None else _draw(rng, band.hue, jitter)
    saturation = _draw(rng, band.saturation, jitter)
    value = _draw(rng, band.value, jitter)
    return hsv_to_bgr(hue, saturation, value)


def hsv_to_bgr(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    """HSV (degrees, [0, 1], [0, 1]) to a BGR uint8 triple."""
    hsv = np.array([[[hue % 360.0, saturation, value]]], np.float32)  # (1, 1, 3)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]  # float32 in [0, 1]
    return tuple(int(round(float(c) * 255.0)) for c in bgr)


def band_distances(bgr: np.ndarray) -> dict[str, np.ndarray]:
    """Per colour name, the scaled distance of each pixel of `bgr` (..., 3) uint8 to its band
    (0 inside it)."""
    pixels = np.asarray(bgr, np.uint8).reshape(-1, 1, 3)  # (N, 1, 3)
    hsv = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)[:, 0]  # (N, 3)
    hue, saturation, value = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    distances = {}
    for name, band in COLOR_BANDS.items():
        total = (_outside(saturation, band.saturation) / _SCALES[1]
                 + _outside(value, band.value) / _SCALES[2])
        if band.hue is not None:
            total = total + _hue_outside(hue, band.hue) / _SCALES[0]
        distances[name] = total.reshape(np.shape(bgr)[:-1])
    return distances


def nearest_color_name(bgr) -> str:
    """The colour name whose band is nearest to one BGR pixel."""
    distances = band_distances(np.asarray(bgr, np.uint8).reshape(1, 3))
    return min(distances, key=lambda name: float(distances[name][0]))


def nearest_color_map(bgr: np.ndarray) -> np.ndarray:
    """`(...)` int index into COLOR_BANDS of each pixel's nearest band."""
    distances = band_distances(bgr)
    return np.argmin(np.stack(list(distances.values())), axis=0)


def band_mask(bgr: np.ndarray, name: str, slack: float = 0.1) -> np.ndarray:
    """`(...)` bool: the pixels of `bgr` (..., 3) uint8 inside `name`'s band widened by `slack`
    (of saturation and value, and 100x as many degrees of hue): what a viewer would call that
    colour, value included."""
    pixels = np.asarray(bgr, np.uint8).reshape(-1, 1, 3)  # (N, 1, 3)
    hsv = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)[:, 0]  # (N, 3)
    band = COLOR_BANDS[name]
    inside = ((_outside(hsv[:, 1], band.saturation) <= slack)
              & (_outside(hsv[:, 2], band.value) <= slack))
    if band.hue is not None:
        inside &= _hue_outside(hsv[:, 0], band.hue) <= 100.0 * slack
    return inside.reshape(np.shape(bgr)[:-1])


def _draw(rng: np.random.Generator, interval: tuple[float, float], jitter: float) -> float:
    low, high = interval
    centre, half = (low + high) / 2.0, (high - low) / 2.0
    return float(centre + half * jitter * rng.uniform(-1.0, 1.0))


def _outside(values: np.ndarray, interval: tuple[float, float]) -> np.ndarray:
    low, high = interval
    return np.maximum(0.0, np.maximum(low - values, values - high))


def _hue_outside(hue: np.ndarray, interval: tuple[float, float]) -> np.ndarray:
    """Circular distance in degrees from `hue` to the interval; 0 inside."""
    low, high = interval
    centre, half = (low + high) / 2.0, (high - low) / 2.0
    offset = np.abs((hue - centre + 180.0) % 360.0 - 180.0)
    return np.maximum(0.0, offset - half)
