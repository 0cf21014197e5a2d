"""Full-resolution originals kept by stamp, so that a crop request can be served later.

Bounded by frame count and by bytes, evicting the oldest stamp first; safe to call from the
camera callback and the crop service on different threads. It knows nothing about where the
frames come from or how they are encoded.
"""

from __future__ import annotations

import bisect
import threading
from typing import Optional

import numpy as np


class FrameNotFound(KeyError):
    """No buffered frame matches the requested stamp; the message says why."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; a status message should read as plain text.
        return str(self.args[0]) if self.args else ''


class FrameBuffer:
    """Originals keyed by stamp (int ns), at most max_frames of them and max_bytes in all.

    put() takes the array without copying (a 1080p copy per frame at 30 fps is wasted memory
    bandwidth): the caller must not write to it afterwards. get() and latest() hand back
    read-only views of the stored arrays.
    """

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        for name, value in (('max_frames', max_frames), ('max_bytes', max_bytes)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        self.max_frames = int(max_frames)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._stamps: list[int] = []  # sorted ascending, ns
        self._images: dict[int, np.ndarray] = {}
        self._bytes = 0
        self._evictions = 0
        self._first_stamp: Optional[int] = None  # oldest stamp ever put
        self._newest_evicted: Optional[int] = None  # every evicted stamp is <= this

    @property
    def frames(self) -> int:
        """Frames held now."""
        with self._lock:
            return len(self._stamps)

    @property
    def bytes(self) -> int:
        """Bytes of image data held now (sum of ndarray.nbytes)."""
        with self._lock:
            return self._bytes

    @property
    def evictions(self) -> int:
        """Frames dropped so far to stay within the bounds."""
        with self._lock:
            return self._evictions

    def __len__(self) -> int:
        return self.frames

    def check(self, stamp_ns: int, image: np.ndarray) -> int:
        """The stamp, if put() would take (stamp_ns, image); ValueError saying why not."""
        stamp_ns = _check_stamp(stamp_ns)
        if not isinstance(image, np.ndarray):
            raise ValueError(f'image must be a numpy array, got {type(image).__name__}')
        if image.nbytes > self.max_bytes:
            raise ValueError(f'image of {image.nbytes} bytes {image.shape} is larger than '
                             f'max_bytes={self.max_bytes}')
        return stamp_ns

    def put(self, stamp_ns: int, image: np.ndarray) -> None:
        """Keep image under stamp_ns (replacing a frame with the same stamp), then evict."""
        stamp_ns = self.check(stamp_ns, image)
        view = image.view()
        view.flags.writeable = False
        with self._lock:
            old = self._images.get(stamp_ns)
            if old is not None:
                self._bytes -= old.nbytes
            else:
                bisect.insort(self._stamps, stamp_ns)
            self._images[stamp_ns] = view
            self._bytes += view.nbytes
            if self._first_stamp is None or stamp_ns < self._first_stamp:
                self._first_stamp = stamp_ns
            while len(self._stamps) > self.max_frames or self._bytes > self.max_bytes:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        stamp = self._stamps.pop(0)
        self._bytes -= self._images.pop(stamp).nbytes
        self._evictions += 1
        if self._newest_evicted is None or stamp > self._newest_evicted:
            self._newest_evicted = stamp

    def get(self, stamp_ns: int, tolerance_ns: int = 0) -> tuple[int, np.ndarray]:
        """(stamp, image) of the frame nearest stamp_ns within tolerance_ns (earlier on ties).

        Raises FrameNotFound saying whether the stamp was evicted or never seen.
        """
        stamp_ns = _check_stamp(stamp_ns)
        if isinstance(tolerance_ns, bool) or not isinstance(tolerance_ns, (int, np.integer)) \
                or tolerance_ns < 0:
            raise ValueError(f'tolerance_ns must be an int >= 0, got {tolerance_ns!r}')
        with self._lock:
            index = bisect.bisect_left(self._stamps, stamp_ns)
            candidates = self._stamps[max(0, index - 1):index + 1]
            if candidates:
                nearest = min(candidates, key=lambda stamp: (abs(stamp - stamp_ns), stamp))
                if abs(nearest - stamp_ns) <= tolerance_ns:
                    return nearest, self._images[nearest]
            raise FrameNotFound(self._why_missing(stamp_ns, tolerance_ns))

    def _why_missing(self, stamp_ns: int, tolerance_ns: int) -> str:
        within = f' within {tolerance_ns} ns' if tolerance_ns else ''
        if not self._stamps:
            kept = 'the buffer is empty'
        else:
            kept = f'kept: {len(self._stamps)} frames, {self._stamps[0]}..{self._stamps[-1]}'
        if self._newest_evicted is not None and self._first_stamp is not None \
                and self._first_stamp <= stamp_ns <= self._newest_evicted:
            return (f'frame {stamp_ns}{within} was evicted (older than the oldest kept frame; '
                    f'{kept})')
        return f'frame {stamp_ns}{within} was never seen ({kept})'

    def latest(self) -> Optional[tuple[int, np.ndarray]]:
        """(stamp, image) of the newest frame, or None when the buffer is empty."""
        with self._lock:
            if not self._stamps:
                return None
            stamp = self._stamps[-1]
            return stamp, self._images[stamp]

    def stamps(self) -> list[int]:
        """The stamps held now, ascending."""
        with self._lock:
            return list(self._stamps)

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._images.clear()
            self._bytes = 0


def _check_stamp(stamp_ns: int) -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
        raise ValueError(f'stamp_ns must be an int (nanoseconds), got {stamp_ns!r}')
    return int(stamp_ns)
