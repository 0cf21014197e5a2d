"""What the server takes from its edges' topics into each camera's stores (held_frames.py),
and what it refuses: a frame, geometry or token layer stamped more than frame.max_ahead_s
ahead of the node's clock (a hostile peer, or an edge whose clock jumped: the newest frame
would otherwise answer every later question), an image over decode.max_pixels (refused from
its header, undecoded), one that does not decode or match its geometry, and what the stores
refuse (over their bytes, more layers than the codec has). Each refusal is counted and
logged as one WARN line naming the camera, at most one line a second per kind, so that a
flood does not flood the log. It knows messages by their fields, not the transport.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
import time

from colvlm_msgs import stamps
from colvlm_msgs.geometry import geometry_from_message
from colvlm_msgs.image_codec import ImageDecodeError, decode_image
from colvlm_msgs.token_codec import EncodedLayer

LOG_PERIOD_S = 1.0  # one WARN line per kind of refusal at most this often


class RefusalLog:
    """Counts refusals of one kind and logs the first in each LOG_PERIOD_S, with how many
    went unlogged before it."""

    def __init__(self, logger, clock: Callable[[], float] = time.monotonic):
        self.count = 0
        self._logger, self._clock = logger, clock
        self._logged_at, self._unlogged = -float('inf'), 0
        self._lock = threading.Lock()

    def refuse(self, line: str) -> None:
        with self._lock:
            self.count += 1
            now = self._clock()
            if now - self._logged_at < LOG_PERIOD_S:
                self._unlogged += 1
                return
            unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        more = f' ({unlogged} more like it not logged)' if unlogged else ''
        self._logger.warning(f'{line}{more}')


class FrameIntake:
    """The server's frame, geometry and token-layer callbacks, for any of its cameras."""

    def __init__(self, max_ahead_s: float, max_pixels: int, logger,
                 now_ns: Callable[[], int], serialized_size: Callable[[object], int]):
        self.max_ahead_s, self.max_pixels = max_ahead_s, max_pixels
        self._now_ns, self._size = now_ns, serialized_size
        self.ahead = RefusalLog(logger)    # stamped too far ahead
        self.dropped = RefusalLog(logger)  # undecodable, mismatched, over a store's bounds

    def image(self, message, link) -> None:
        stamp_ns = stamps.to_ns(message.header.stamp)
        if self._ahead(stamp_ns, link, 'frame'):
            return
        try:
            # (h, w, 3) uint8 BGR; a header over decode.max_pixels is refused undecoded
            image = decode_image(bytes(message.data), self.max_pixels)
        except ImageDecodeError as error:
            self.dropped.refuse(f'frame dropped: {link.camera}: {error}')
            return
        self._add(link.frames.add_image, stamp_ns, image, message.header.frame_id,
                  self._size(message))

    def geometry(self, message, link) -> None:
        stamp_ns = stamps.to_ns(message.header.stamp)
        if not self._ahead(stamp_ns, link, 'frame geometry'):
            self._add(link.frames.add_geometry, stamp_ns, geometry_from_message(message),
                      self._size(message))

    def layer(self, message, link) -> None:
        """Held as it came: the pipeline checks layers against its codecs per query."""
        stamp_ns = stamps.to_ns(message.header.stamp)
        if not self._ahead(stamp_ns, link, 'token layer'):
            self._add(link.layers.add, stamp_ns, EncodedLayer.from_message(message),
                      self._size(message), message.header.frame_id)

    def _ahead(self, stamp_ns: int, link, what: str) -> bool:
        """Whether `stamp_ns` is too far ahead of the clock (refused, counted, logged). A
        clock at 0 (ROS time before the first /clock message) refuses nothing."""
        now_ns = self._now_ns()
        if not self.max_ahead_s or now_ns <= 0 or stamp_ns - now_ns <= self.max_ahead_s * 1e9:
            return False
        self.ahead.refuse(f'{what} of {link.camera} refused: stamped {stamp_ns} ns, '
                          f'{(stamp_ns - now_ns) / 1e9:.1f} s ahead of this clock '
                          f'(frame.max_ahead_s {self.max_ahead_s:g})')
        return True

    def _add(self, add: Callable, *args) -> None:
        try:
            add(*args)
        except ValueError as error:
            self.dropped.refuse(f'frame dropped: {error}')
