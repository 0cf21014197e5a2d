"""The edge's outgoing messages, built in one place for the node and for in-process use, and
the count of what it sent (`UplinkCounter`).

`colvlm eval` runs an edge in the same process (no middleware) and must count the same
serialized bytes the node sends, so both fill their messages here. Classes are passed in:
the node's transport supplies them, evaluation takes the `dds` ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
import threading
import time

from colvlm_edge.global_encoder import EncodedGlobal
from colvlm_edge.roi_crop import CropResult
from colvlm_msgs import stamps
from colvlm_msgs.geometry import fill_geometry_message, fill_roi
from colvlm_msgs.token_codec import EncodedLayer


def global_frame_messages(image_type: type, geometry_type: type, encoded: EncodedGlobal,
                          stamp_ns: int, frame_id: str):
    """(CompressedImage, FrameGeometry) for one encoded global frame, sharing one header."""
    message = image_type(format=encoded.format, data=list(encoded.data))
    stamps.fill(message.header.stamp, stamp_ns)
    message.header.frame_id = frame_id
    info = fill_geometry_message(geometry_type(), encoded.geometry)
    info.header = message.header
    return message, info


def fill_crop_response(response, result: CropResult, stamp_ns: int, frame_id: str):
    """A successful CropRoi response carrying `result`; returns `response`."""
    response.success = True
    response.status_message = result.message
    response.clamped = result.clamped
    response.image.format = result.format
    response.image.data = list(result.data)
    stamps.fill(response.image.header.stamp, stamp_ns)
    response.image.header.frame_id = frame_id
    x, y, w, h = result.applied_box
    fill_roi(response.applied_roi, x, y, x + w, y + h)
    response.original_width, response.original_height = result.original_size
    return response


def token_layer_message(layer_type: type, layer: EncodedLayer, stamp_ns: int, frame_id: str):
    """A colvlm/msg/TokenLayer carrying `layer` of the frame `stamp_ns`."""
    message = layer_type(
        codec_id=layer.codec_id, layer_index=layer.layer_index, layer_count=layer.layer_count,
        token_count=layer.token_count, token_dim=layer.token_dim,
        coefficient_count=layer.coefficient_count, bits=layer.bits, scale=layer.scale,
        zero_point=layer.zero_point, payload=list(layer.payload))
    stamps.fill(message.header.stamp, stamp_ns)
    message.header.frame_id = frame_id
    return message


class UplinkCounter:
    """Serialized bytes and messages sent, per kind ('global', 'crop', 'layers'), and the
    rate of all of them over the last RATE_WINDOW_S."""

    RATE_WINDOW_S = 5.0  # s; as the source's frame rate

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._recent: deque[tuple[float, int]] = deque()  # (clock time, bytes) in the window
        self.bytes: dict[str, int] = {}
        self.messages: dict[str, int] = {}

    def add(self, kind: str, size: int) -> None:
        with self._lock:
            self.bytes[kind] = self.bytes.get(kind, 0) + size
            self.messages[kind] = self.messages.get(kind, 0) + 1
            self._recent.append((self._clock(), size))
            self._forget()

    def bytes_per_s(self) -> float:
        """Bytes sent per second over the last RATE_WINDOW_S (every kind together)."""
        with self._lock:
            self._forget()
            return sum(size for _, size in self._recent) / self.RATE_WINDOW_S

    def _forget(self) -> None:
        since = self._clock() - self.RATE_WINDOW_S
        while self._recent and self._recent[0][0] < since:
            self._recent.popleft()

    def summary(self) -> str:
        with self._lock:
            parts = [f'{kind} {self.messages[kind]} msgs {self.bytes[kind]} B'
                     for kind in sorted(self.bytes)]
        return ', '.join(parts) or 'nothing sent'
