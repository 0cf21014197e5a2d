"""Endless Glyph-VQA scenes as frames, for running the pipeline with no camera.

Deterministic given the seed; the scene of the last frame is kept for evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import numpy as np

from colvlm_edge.sources.frame import Frame, FrameSource, IndexClock


class SyntheticSource(FrameSource):
    """Random scenes from colvlm_edge.glyphvqa.render_scene; count=None never ends."""

    kind = 'synthetic'

    def __init__(self, seed: int = 0, width: Optional[int] = None, height: Optional[int] = None,
                 count: Optional[int] = None, fps: float = 30.0, start_ns: Optional[int] = None,
                 frame_id: str = 'camera') -> None:
        super().__init__()
        # Imported here: the scene generator pulls in fonts and drawing code that the other
        # sources never need.
        from colvlm_edge.glyphvqa import render_scene

        self._render_scene = render_scene
        self._rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError(f'count must be an int >= 0 or None, got {count!r}')
        self.count = count
        self.frame_id = frame_id
        self.last_scene = None
        self._clock = IndexClock(fps, start_ns)

    def _frames(self) -> Iterator[Frame]:
        index = 0
        while self.count is None or index < self.count:
            self.last_scene = self._render_scene(self._rng, width=self.width, height=self.height)
            yield Frame(self._clock.stamp(index), self.last_scene.image, self.frame_id)
            index += 1
