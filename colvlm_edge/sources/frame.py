"""What every frame source yields, the base they share, and how they stamp frames.

A source is an iterator of `Frame`s with strictly increasing stamps; it does not pace itself
(the node's timer or the camera does) and knows nothing about buffers or encoders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import time
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One camera image and when it was taken."""

    stamp_ns: int  # ns; strictly increasing within one source
    image: np.ndarray  # (H, W, 3) uint8 BGR
    frame_id: str  # the camera's TF frame


class FrameSource:
    """Base of the sources: an iterator over `_frames()`, closable, usable in `with`."""

    kind = 'source'

    def __init__(self) -> None:
        self.dropped = 0  # frames skipped because they could not be read or decoded
        self.refused = 0  # images refused undecoded: their header declares over max_pixels
        self._iterator: Optional[Iterator[Frame]] = None

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __iter__(self) -> FrameSource:
        return self

    def __next__(self) -> Frame:
        if self._iterator is None:
            self._iterator = self._frames()
        return next(self._iterator)

    def close(self) -> None:
        """Release what the source holds (devices, files); iteration then ends."""
        if self._iterator is not None and hasattr(self._iterator, 'close'):
            self._iterator.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1e6:
        raise ValueError(f'fps must be a number in (0, 1e6], got {fps!r}')
    return float(fps)


class IndexClock:
    """stamp(i) = start_ns + i / fps: replayed frames keep their nominal spacing.

    start_ns defaults to the wall clock at the first stamp (the first frame read, not the
    source's creation), so stamps look like ROS time in headers and are not older than the
    frames: a frame asked for "after this query" is not waited for in vain.
    """

    def __init__(self, fps: float, start_ns: Optional[int] = None) -> None:
        self.period_ns = 1e9 / check_fps(fps)
        if start_ns is not None and (isinstance(start_ns, bool)
                                     or not isinstance(start_ns, (int, np.integer))
                                     or start_ns < 0):
            raise ValueError(f'start_ns must be an int >= 0 (ns), got {start_ns!r}')
        self.start_ns = None if start_ns is None else int(start_ns)

    def stamp(self, index: int) -> int:
        if self.start_ns is None:
            self.start_ns = time.time_ns()
        # period_ns >= 1000, so rounding cannot make two indices share a stamp.
        return self.start_ns + round(index * self.period_ns)


class LiveClock:
    """Capture stamps for live sources: a wall-clock anchor plus monotonic time elapsed.

    Monotonic deltas keep stamps increasing when NTP steps the wall clock.
    """

    def __init__(self, start_ns: Optional[int] = None) -> None:
        self._anchor_ns = time.time_ns() if start_ns is None else int(start_ns)
        self._monotonic_ns = time.monotonic_ns()
        self._last = -1

    def stamp(self) -> int:
        now = self._anchor_ns + time.monotonic_ns() - self._monotonic_ns
        self._last = max(now, self._last + 1)
        return self._last
