"""Frames from cv2.VideoCapture: a camera device index, a video file or a stream URL.

Files are stamped at their nominal frame rate; devices and streams at capture time.
"""

from __future__ import annotations

from collections.abc import Iterator
import logging
from pathlib import Path
from typing import Optional, Union

import cv2

from colvlm_edge.sources.frame import Frame, FrameSource, IndexClock, LiveClock
from colvlm_msgs.image_codec import DEFAULT_MAX_PIXELS, ImageTooLarge

logger = logging.getLogger(__name__)

# A live camera or stream may fail a read or two (USB hiccup, network jitter) and recover.
MAX_CONSECUTIVE_FAILURES = 10


class VideoSource(FrameSource):
    """cv2.VideoCapture over source: int device index, file path or URL ('rtsp://...').

    fps overrides a file's own frame rate for its stamps; live sources ignore it.
    """

    kind = 'video'

    def __init__(self, source: Union[int, str, Path], frame_id: str = 'camera',
                 fps: Optional[float] = None, start_ns: Optional[int] = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__()
        self.frame_id = frame_id
        self.live = isinstance(source, int) or '://' in str(source)
        if not self.live:
            source = Path(source)
            if not source.is_file():
                raise FileNotFoundError(f'video file {str(source)!r} does not exist')
        self.source = source
        self._capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        name = str(source)
        if not self._capture.isOpened():
            self._capture.release()
            raise ValueError(f'cannot open {name!r} with cv2.VideoCapture: not a video file, '
                             'camera or stream it can read')
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_pixels:
            self._capture.release()
            raise ImageTooLarge(f'video source {name!r} has {width}x{height} frames, over '
                                f'decode.max_pixels {max_pixels}')
        if self.live:
            self._live_clock = LiveClock(start_ns)
        else:
            nominal = self._capture.get(cv2.CAP_PROP_FPS)
            # Some containers report 0 or NaN; 30 fps is the common camera rate.
            nominal = nominal if nominal and nominal == nominal and nominal > 0 else 30.0
            self._index_clock = IndexClock(fps or nominal, start_ns)

    def _frames(self) -> Iterator[Frame]:
        index = 0
        failures = 0
        try:
            while self._capture.isOpened():
                ok, image = self._capture.read()  # (H, W, 3) uint8 BGR
                if not ok or image is None:
                    if not self.live:
                        return
                    failures += 1
                    self.dropped += 1
                    if failures >= MAX_CONSECUTIVE_FAILURES:
                        logger.warning('video source %r: %d reads failed in a row, stopping',
                                       self.source, failures)
                        return
                    continue
                failures = 0
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                stamp = self._live_clock.stamp() if self.live else self._index_clock.stamp(index)
                yield Frame(stamp, image, self.frame_id)
                index += 1
        finally:
            self._capture.release()

    def close(self) -> None:
        super().close()
        self._capture.release()
