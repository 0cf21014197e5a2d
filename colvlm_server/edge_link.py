"""The server's link to one edge: crops and further token layers fetched from its
`colvlm/crop_roi` and `colvlm/request_layers` (what it sent unasked is held in
held_frames.py). The crop and layer sources turn a lost or refusing edge into
`CropUnavailable` / `LayersUnavailable`, with the reason.
"""

from __future__ import annotations

import math

from colvlm_msgs import stamps
from colvlm_msgs.geometry import Box, fill_roi, roi_box
from colvlm_msgs.image_codec import ImageDecodeError, decode_image
from colvlm_msgs.token_codec import EncodedLayer
from colvlm_msgs.transport.port import Node, ServiceTimeout
from colvlm_server.parameters import ServerConfig
from colvlm_server.pipeline import Crop, CropUnavailable, Frame
from colvlm_server.token_layers import LayeredFrame, LayerFetch, LayersUnavailable


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
