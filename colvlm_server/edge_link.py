"""The server's link to one edge: the newest global frames and token layers it sent, and
crops and further layers fetched from its `colvlm/crop_roi` and `colvlm/request_layers`.

A frame is usable once both halves (the image and its FrameGeometry, same stamp) arrived; a
layered frame once any of its token layers did. The crop and layer sources turn a lost or
refusing edge into `CropUnavailable` / `LayersUnavailable`, with the reason.
"""

from __future__ import annotations

import math
import threading

from colvlm_msgs import stamps
from colvlm_msgs.geometry import Box, GlobalGeometry, fill_roi, roi_box
from colvlm_msgs.image_codec import ImageDecodeError, decode_image
from colvlm_msgs.token_codec import EncodedLayer
from colvlm_msgs.transport.port import Node, ServiceTimeout
from colvlm_server.parameters import ServerConfig
from colvlm_server.pipeline import Crop, CropUnavailable, Frame
from colvlm_server.token_layers import LayeredFrame, LayerFetch, LayersUnavailable

FRAMES_KEPT = 8  # newest complete frames a query may name by stamp


class FrameStore:
    """The newest global frames of one camera, each image paired with its geometry by stamp."""

    def __init__(self, camera: str, keep: int = FRAMES_KEPT):
        self.camera, self._keep = camera, keep
        self._changed = threading.Condition()
        self._images: dict[int, tuple] = {}      # stamp -> (image, frame_id, bytes)
        self._geometries: dict[int, tuple] = {}  # stamp -> (GlobalGeometry, bytes)
        self._frames: dict[int, tuple[Frame, str]] = {}  # stamp -> (frame, frame_id)
        self.completed = 0

    def add_image(self, stamp_ns: int, image, frame_id: str, size: int) -> None:
        with self._changed:
            if stamp_ns in self._geometries:
                self._complete(stamp_ns, (image, frame_id, size), self._geometries.pop(stamp_ns))
            else:
                _keep_newest(self._images, stamp_ns, (image, frame_id, size), self._keep)

    def add_geometry(self, stamp_ns: int, geometry: GlobalGeometry, size: int) -> None:
        with self._changed:
            if stamp_ns in self._images:
                self._complete(stamp_ns, self._images.pop(stamp_ns), (geometry, size))
            else:
                _keep_newest(self._geometries, stamp_ns, (geometry, size), 4 * self._keep)

    def _complete(self, stamp_ns: int, image_part: tuple, geometry_part: tuple) -> None:
        image, frame_id, image_bytes = image_part  # (h, w, 3) uint8 BGR
        geometry, geometry_bytes = geometry_part
        if image.shape[:2] != (geometry.global_height, geometry.global_width) \
                or not (geometry.scale_x > 0 and geometry.scale_y > 0):
            raise ValueError(f'frame {stamp_ns}: image {image.shape[1]}x{image.shape[0]} does '
                             f'not match its geometry ({geometry})')
        frame = Frame(image, geometry, stamp_ns, self.camera, image_bytes + geometry_bytes)
        _keep_newest(self._frames, stamp_ns, (frame, frame_id), self._keep)
        self.completed += 1
        self._changed.notify_all()

    def latest(self) -> tuple[Frame, str] | None:
        with self._changed:
            return self._frames[max(self._frames)] if self._frames else None

    def get(self, stamp_ns: int) -> tuple[Frame, str] | None:
        with self._changed:
            return self._frames.get(stamp_ns)

    def wait_for(self, stamp_ns: int, timeout: float) -> tuple[Frame, str] | None:
        with self._changed:
            self._changed.wait_for(lambda: stamp_ns in self._frames, max(0.0, timeout))
            return self._frames.get(stamp_ns)

    def geometry(self, stamp_ns: int) -> GlobalGeometry | None:
        """The FrameGeometry of `stamp_ns`, with or without its image."""
        with self._changed:
            if stamp_ns in self._frames:
                return self._frames[stamp_ns][0].geometry
            held = self._geometries.get(stamp_ns)
            return held[0] if held else None


class LayerStore:
    """The token layers an edge sent unasked, per frame stamp, for the newest frames."""

    def __init__(self, camera: str, keep: int = FRAMES_KEPT):
        self.camera, self._keep = camera, keep
        self._changed = threading.Condition()
        self._frames: dict[int, tuple[list[EncodedLayer], int, str]] = {}  # layers, B, frame_id

    def add(self, stamp_ns: int, layer: EncodedLayer, size: int, frame_id: str) -> None:
        with self._changed:
            layers, total, _ = self._frames.get(stamp_ns, ([], 0, frame_id))
            _keep_newest(self._frames, stamp_ns, (layers + [layer], total + size, frame_id),
                         self._keep)
            self._changed.notify_all()

    def _frame(self, stamp_ns: int) -> tuple[LayeredFrame, str]:
        layers, total, frame_id = self._frames[stamp_ns]
        return LayeredFrame(stamp_ns, tuple(layers), self.camera, total), frame_id

    def latest(self) -> tuple[LayeredFrame, str] | None:
        with self._changed:
            return self._frame(max(self._frames)) if self._frames else None

    def get(self, stamp_ns: int) -> tuple[LayeredFrame, str] | None:
        with self._changed:
            return self._frame(stamp_ns) if stamp_ns in self._frames else None

    def wait_for(self, stamp_ns: int, timeout: float) -> tuple[LayeredFrame, str] | None:
        with self._changed:
            self._changed.wait_for(lambda: stamp_ns in self._frames, max(0.0, timeout))
            return self._frame(stamp_ns) if stamp_ns in self._frames else None


def _keep_newest(table: dict, stamp_ns: int, value, limit: int) -> None:
    table[stamp_ns] = value
    while len(table) > limit:
        del table[min(table)]


class EdgeCropSource:
    """Crops from the edge's `colvlm/crop_roi`, counted as serialized on the wire."""

    def __init__(self, node: Node, service: str, config: ServerConfig):
        self.node, self.config = node, config
        self._type = node.service_type('colvlm/srv/CropRoi')
        self._client = node.create_client('colvlm/srv/CropRoi', service)

    def fetch(self, frame: Frame, box: Box, output_size: tuple[int, int]) -> Crop:
        geometry = frame.geometry
        x0, y0 = max(0, math.floor(box.x0)), max(0, math.floor(box.y0))
        x1 = min(geometry.original_width, math.ceil(box.x1))
        y1 = min(geometry.original_height, math.ceil(box.y1))
        request = self._type.Request(output_width=int(output_size[0]),
                                     output_height=int(output_size[1]),
                                     codec=self.config.crop_codec,
                                     quality=self.config.crop_quality)
        stamps.fill(request.frame_stamp, frame.stamp_ns)
        fill_roi(request.roi, x0, y0, x1, y1)
        try:
            response = self._client.call(request, timeout=self.config.crop_timeout_s)
        except ServiceTimeout as error:
            raise CropUnavailable(str(error)) from None
        if not response.success:
            raise CropUnavailable(f'the edge refused: {response.status_message}')
        try:
            # (h, w, 3) uint8 BGR
            image = decode_image(bytes(response.image.data), self.config.decode_max_pixels)
        except ImageDecodeError as error:
            raise CropUnavailable(f'undecodable crop: {error}') from None
        return Crop(image, roi_box(response.applied_roi), self.node.serialized_size(response),
                    self.node.serialized_size(request))


class EdgeLayerSource:
    """Further token layers from the edge's `colvlm/request_layers`, counted as serialized."""

    def __init__(self, node: Node, service: str, config: ServerConfig):
        self.node, self.config = node, config
        self._type = node.service_type('colvlm/srv/RequestLayers')
        self._client = node.create_client('colvlm/srv/RequestLayers', service)

    def fetch(self, frame: LayeredFrame, first: int, last: int, codec_id: str) -> LayerFetch:
        request = self._type.Request(first_layer=first, last_layer=last, codec_id=codec_id)
        stamps.fill(request.frame_stamp, frame.stamp_ns)
        try:
            response = self._client.call(request, timeout=self.config.layers_timeout_s)
        except ServiceTimeout as error:
            raise LayersUnavailable(str(error)) from None
        if not response.success:
            raise LayersUnavailable(f'the edge refused: {response.status_message}')
        return LayerFetch([EncodedLayer.from_message(m) for m in response.layers],
                          self.node.serialized_size(response),
                          self.node.serialized_size(request))
