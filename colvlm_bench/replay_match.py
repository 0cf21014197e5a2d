"""A data set's `image` entries matched to the frames of a bag, by what the frames show.

A bag recorded while an edge played a data set folder holds that folder's pictures as the
edge sent them: resized and recompressed global frames, in name order, possibly looped,
possibly missing the first ones (a recorder started late). Positions and stamps therefore
say nothing reliable about which picture a frame is, but its content does: each picture is
rendered at the frame's size the ways an edge can (pad, center_crop, resize: the edge's own
render_geometry) and each rendering and each frame are shrunk to a small thumbnail; a picture
is the frame whose thumbnail differs least from one of its renderings, when that mean
difference is under `MATCH_LIMIT` gray levels.
A picture no frame shows is named with its closest difference, so a missed frame is told
apart from a wrong folder. This module knows images, not bags or questions.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from colvlm_edge.global_encoder import render_geometry
from colvlm_msgs.geometry import PREPROCESS_MODES, GlobalGeometry
from colvlm_msgs.image_codec import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image

THUMBNAIL = (32, 24)  # (W, H): coarse enough that recompression and resizing vanish
MATCH_LIMIT = 12.0    # mean absolute difference in gray levels (0..255), per channel
_KEPT_SIDE = 256      # pictures are kept this small: a large data set fits in memory


def thumbnail(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> a float32 thumbnail, averaged over areas (robust to JPEG)."""
    return cv2.resize(image, THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32)


class ImageMatcher:
    """The pictures some questions name, and the bag frame that shows each.

    `offer(key, image)` is given every frame of the image topic in order; afterwards
    `key(path)` is the frame showing `path` (None: none does, `reason(path)` says why),
    `image(key)` its pixels and `size(path)` the picture's own (width, height).
    """

    def __init__(self, paths: list[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._problems: dict[str, str] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        names, kept = [], []
        for path in dict.fromkeys(paths):
            try:
                picture = decode_image(Path(path).read_bytes(), max_pixels)
            except (OSError, ImageDecodeError) as error:
                self._problems[path] = f'cannot read data set image {path!r}: {error}'
                continue
            self._sizes[path] = (picture.shape[1], picture.shape[0])
            names.append(path)
            scale = min(1.0, _KEPT_SIDE / max(picture.shape[:2]))
            kept.append(cv2.resize(picture, None, fx=scale, fy=scale,
                                   interpolation=cv2.INTER_AREA) if scale < 1 else picture)
        self._names = names
        self._pictures = kept
        self._renderings: dict[tuple[int, int], np.ndarray] = {}  # by frame (width, height)
        self._best = np.full(len(names), np.inf)
        self._keys: list[str | None] = [None] * len(names)
        self._images: dict[str, np.ndarray] = {}

    def offer(self, key: str, image: np.ndarray) -> None:
        if not self._names:
            return
        renderings = self._rendered(image.shape[1], image.shape[0])
        distance = np.abs(renderings - thumbnail(image)).mean(axis=(2, 3, 4)).min(axis=1)
        # The first of equal frames wins: a looping edge shows each picture many times.
        better = np.flatnonzero(distance < self._best)
        for index in better:
            self._best[index] = distance[index]
            if distance[index] < MATCH_LIMIT:
                self._keys[index] = key
        if any(self._keys[i] == key for i in better):
            self._images[key] = image
        # Frames no picture points at any more are released (memory of a long bag).
        wanted = set(self._keys)
        for stale in [k for k in self._images if k not in wanted]:
            del self._images[stale]

    def _rendered(self, width: int, height: int) -> np.ndarray:
        """(pictures, modes, H, W, 3) thumbnails of every picture rendered at width x height."""
        if (width, height) not in self._renderings:
            self._renderings[(width, height)] = np.stack([np.stack([
                thumbnail(render_geometry(picture, GlobalGeometry.fit(
                    picture.shape[1], picture.shape[0], width, height, mode)))
                for mode in PREPROCESS_MODES]) for picture in self._pictures])
        return self._renderings[(width, height)]

    def key(self, path: str) -> str | None:
        if path in self._problems or path not in self._names:
            return None
        return self._keys[self._names.index(path)]

    def reason(self, path: str, topic: str) -> str:
        """Why `path` has no frame, in words."""
        if path in self._problems:
            return self._problems[path]
        best = self._best[self._names.index(path)]
        closest = ('the topic has no decodable frame' if not np.isfinite(best)
                   else f'the closest differs by {best:.1f} gray levels, over {MATCH_LIMIT}')
        return (f'no frame of {topic} shows data set image {path!r} ({closest}; a recorder '
                'started after the edge sent it misses it, or the bag is of another folder)')

    def image(self, key: str) -> np.ndarray | None:
        return self._images.get(key)

    def size(self, path: str) -> tuple[int, int] | None:
        """The picture's own (width, height); None when it could not be read."""
        return self._sizes.get(path)
