"""A test pattern as frames, for running the pipeline with no camera.

Each frame is a flat or two-tone background with a few filled shapes and short text signs in
saturated colours, at 640x480 unless told otherwise: enough for a VLM to have something to
answer about and for a crop to have detail to keep. Deterministic given the seed. It is not
the Glyph-VQA benchmark (that generator lives above the edge, in colvlm_bench); an edge on a
camera board needs nothing but OpenCV to run it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import cv2
import numpy as np

from colvlm_edge.sources.frame import Frame, FrameSource, IndexClock

# BGR; names only matter to a person looking at the frames.
PATTERN_COLORS = ((0, 0, 255), (0, 200, 0), (255, 0, 0), (0, 255, 255), (255, 255, 255),
                  (0, 140, 255), (160, 0, 140))
PATTERN_TEXT = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'


def draw_test_pattern(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 BGR: a muted background, 1-3 shapes and 1-3 text signs."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rng.integers(40, 140, 3)
    image[height // 2:] = (image[height // 2:] * rng.uniform(0.6, 1.0)).astype(np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        color = PATTERN_COLORS[int(rng.integers(len(PATTERN_COLORS)))]
        size = int(rng.integers(60, max(61, min(width, height) // 3)))
        x, y = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + size, y + size), color, -1)
        else:
            cv2.circle(image, (x + size // 2, y + size // 2), size // 2, color, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 4))):
        text = ''.join(rng.choice(list(PATTERN_TEXT), int(rng.integers(1, 4))))
        scale = float(rng.uniform(0.5, 1.0))
        (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        x = int(rng.integers(8, max(9, width - text_w - 24)))
        y = int(rng.integers(8, max(9, height - text_h - 24)))
        color = PATTERN_COLORS[int(rng.integers(len(PATTERN_COLORS)))]
        cv2.rectangle(image, (x, y), (x + text_w + 16, y + text_h + 16), color, -1)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(image, text, (x + 8, y + 8 + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale, ink,
                    2, cv2.LINE_AA)
    return image


class SyntheticSource(FrameSource):
    """Test-pattern frames (`draw_test_pattern`); count=None never ends."""

    kind = 'synthetic'

    def __init__(self, seed: int = 0, width: Optional[int] = None, height: Optional[int] = None,
                 count: Optional[int] = None, fps: float = 30.0, start_ns: Optional[int] = None,
                 frame_id: str = 'camera') -> None:
        super().__init__()
        self._rng = np.random.default_rng(seed)
        self.width, self.height = width or 640, height or 480
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError(f'count must be an int >= 0 or None, got {count!r}')
        self.count = count
        self.frame_id = frame_id
        self._clock = IndexClock(fps, start_ns)

    def _frames(self) -> Iterator[Frame]:
        index = 0
        while self.count is None or index < self.count:
            image = draw_test_pattern(self._rng, self.width, self.height)
            yield Frame(self._clock.stamp(index), image, self.frame_id)
            index += 1
