"""The edge node: wires the frame buffer, global encoder and RoI crop to a transport port.

It publishes global frames (with their FrameGeometry) on `colvlm/global/*`, serves
`colvlm/crop_roi` and `colvlm/request_frame`, and counts every serialized byte it sends.
Given a token-layer encoder it also publishes the first layers of each frame's visual tokens
on `colvlm/token_layers` and serves the rest from a per-stamp cache on
`colvlm/request_layers`. Given a view scorer it serves `colvlm/score_view`: how relevant the
newest frame is to a question, computed here so that a server choosing among cameras sends
only the views it needs. Failures answer `success=false` with a one-line status and never
stop the node. Crops and frame requests are rate limited per client (colvlm_edge.rate_limit);
the node's health goes to `/diagnostics` every second (colvlm_edge.health).
"""

from __future__ import annotations

import threading

import numpy as np

from colvlm_edge.frame_buffer import FrameBuffer, FrameNotFound
from colvlm_edge.global_encoder import GlobalEncoder
from colvlm_edge.health import EdgeDiagnostics, SourceHealth, status_line
from colvlm_edge.parameters import EdgeConfig
from colvlm_edge.rate_limit import request_limiters
from colvlm_edge.roi_crop import CropRejected, crop_cost, crop_roi
from colvlm_edge.sources import Frame, image_from_ros
from colvlm_edge.token_encoder import LayerCache, LayerRequestError, TokenLayerEncoder
from colvlm_edge.wire import (
    UplinkCounter,
    fill_crop_response,
    global_frame_messages,
    token_layer_message,
)
from colvlm_msgs import stamps
from colvlm_msgs.constants import first_line
from colvlm_msgs.image_codec import ImageTooLarge
from colvlm_msgs.transport.port import Node, caller_id


class EdgeNode:
    """The camera side of colvlm on one transport node."""

    def __init__(self, node: Node, config: EdgeConfig,
                 tokens: TokenLayerEncoder | None = None, scorer=None):
        self.node, self.config = node, config
        self.tokens = tokens  # None: no token layers, whatever layers.enabled says
        self.scorer = scorer  # a view_score.ViewScorer; None: no colvlm/score_view
        self.layer_cache = LayerCache(config.layers.cache_frames)
        self.send_global = config.layers.send_global or tokens is None
        self.buffer = FrameBuffer(config.buffer_max_frames, config.buffer_max_bytes)
        self._newest: Frame | None = None  # the newest frame read, published or not
        self.encoder = GlobalEncoder(config.encoder)
        self.limiter, self.frame_limiter = request_limiters(  # per client: crops, frames
            config.crop_max_requests, config.crop_window_s, config.crop_max_pixels_per_s,
            config.crop_limits.max_output_width * config.crop_limits.max_output_height)
        self.uplink = UplinkCounter()
        self.dropped_frames = 0       # frames refused here (see also source.dropped)
        self.refused_images = 0       # images over decode.max_pixels (see also source.refused)
        self.source = None            # the frame source, when the node reads one
        self.health = SourceHealth(config.source)
        self._last_publish_ns = 0
        self._publish_lock = threading.Lock()
        self._image_type = node.message_type('sensor_msgs/msg/CompressedImage')
        self._geometry_type = node.message_type('colvlm/msg/FrameGeometry')
        self._crop_type = node.service_type('colvlm/srv/CropRoi')
        self._frame_type = node.service_type('colvlm/srv/RequestFrame')
        self._images = node.create_publisher('sensor_msgs/msg/CompressedImage',
                                             'colvlm/global/compressed', 'frames')
        self._geometries = node.create_publisher('colvlm/msg/FrameGeometry',
                                                 'colvlm/global/geometry', 'frame_info')
        node.create_service('colvlm/srv/CropRoi', 'colvlm/crop_roi', self.serve_crop)
        node.create_service('colvlm/srv/RequestFrame', 'colvlm/request_frame',
                            self.serve_frame_request)
        if tokens is not None:
            self._layer_type = node.message_type('colvlm/msg/TokenLayer')
            self._layers_service_type = node.service_type('colvlm/srv/RequestLayers')
            self._layers = node.create_publisher('colvlm/msg/TokenLayer', 'colvlm/token_layers',
                                                 'token_layers')
            node.create_service('colvlm/srv/RequestLayers', 'colvlm/request_layers',
                                self.serve_layer_request)
        if scorer is not None:
            self._score_type = node.service_type('colvlm/srv/ScoreView')
            node.create_service('colvlm/srv/ScoreView', 'colvlm/score_view', self.serve_score)
        node.create_timer(config.status_period_s, self.log_status)
        self.diagnostics = EdgeDiagnostics(node, self.health, self.figures, config.frame_id)

    # Frames in
    def on_frame(self, frame: Frame) -> None:
        """Hold the newest original; publish its global frame if the publish mode says so.

        The buffer keeps the originals of published frames only, the ones a crop can name: at
        30 fps with a frame a second published, buffer.max_frames frames are as many seconds,
        not a thirtieth of that."""
        try:
            self.buffer.check(frame.stamp_ns, frame.image)
        except ValueError as error:
            self.dropped_frames += 1
            self.node.logger.warning(f'frame {frame.stamp_ns} dropped: {error}')
            return
        self._newest = frame  # for colvlm/request_frame
        self.health.frame()
        mode = self.config.publish_mode
        due = mode == 'every_frame' or (
            mode == 'rate' and frame.stamp_ns - self._last_publish_ns
            >= 1e9 / self.config.publish_rate_hz)
        if due:
            self.publish(frame.stamp_ns, frame.image, frame.frame_id)

    def on_image_message(self, message) -> None:
        """A sensor_msgs Image/CompressedImage from a ROS topic source."""
        try:
            image = image_from_ros(message, self.config.decode_max_pixels)
        except ImageTooLarge as error:
            self.refused_images += 1
            self.node.logger.warning(f'frame refused: {error}')
            return
        except ValueError as error:
            self.dropped_frames += 1
            self.node.logger.warning(f'undecodable frame dropped: {error}')
            return
        stamp_ns = stamps.to_ns(message.header.stamp) or self.node.now_ns()
        self.on_frame(Frame(stamp_ns, image, message.header.frame_id or self.config.frame_id))

    # Frames out
    def publish(self, stamp_ns: int, image: np.ndarray, frame_id: str) -> None:
        encoded = self.encoder.encode(image)  # (H, W, 3) uint8 BGR in, encoded file out
        self.buffer.put(stamp_ns, image)  # before the frame is out: a crop may follow at once
        message, info = global_frame_messages(self._image_type, self._geometry_type, encoded,
                                              stamp_ns, frame_id)
        with self._publish_lock:
            # Geometry first: the server needs it to use the frame.
            self._geometries.publish(info)
            if self.send_global:
                self._images.publish(message)
            self._last_publish_ns = stamp_ns
        self.uplink.add('global', self.node.serialized_size(info) + (
            self.node.serialized_size(message) if self.send_global else 0))
        if self.tokens is not None:
            self.publish_layers(stamp_ns, image, frame_id)

    def publish_layers(self, stamp_ns: int, image: np.ndarray, frame_id: str) -> None:
        """Encode the frame's visual tokens, keep all layers, send the first ones."""
        pixels, _ = self.encoder.render(image)  # (h, w, 3) uint8 BGR, the global frame's
        try:
            layers = self.tokens.encode(pixels)
        except Exception as error:  # the model failed on this frame: no layers, keep going
            self.node.logger.warning(f'frame {stamp_ns}: no token layers: {first_line(error)}')
            return
        self.layer_cache.put(stamp_ns, layers, frame_id)
        for layer in layers[:self.config.layers.proactive]:
            message = token_layer_message(self._layer_type, layer, stamp_ns, frame_id)
            self._layers.publish(message)
            self.uplink.add('layers', self.node.serialized_size(message))

    # Services
    def serve_crop(self, request):
        response = self._crop_type.Response()
        cost = crop_cost(request.output_width, request.output_height, self.config.crop_limits)
        if not self.limiter.allow(caller_id(), cost):
            response.status_message = self.limiter.refusal()
            return response
        stamp_ns = stamps.to_ns(request.frame_stamp)
        try:
            found_ns, original = self.buffer.get(stamp_ns, self.config.stamp_tolerance_ns)
            roi = request.roi
            result = crop_roi(
                original, (roi.x_offset, roi.y_offset, roi.width, roi.height),
                margin=request.margin,
                output_size=(request.output_width, request.output_height),
                codec=request.codec or None,
                # 0 means "the edge's default" on the wire (a valid png level otherwise).
                quality=request.quality or None, limits=self.config.crop_limits)
        except (FrameNotFound, CropRejected) as error:
            response.status_message = str(error)
            return response
        fill_crop_response(response, result, found_ns, self.config.frame_id)
        self.uplink.add('crop', self.node.serialized_size(response))
        return response

    def serve_frame_request(self, request):
        response = self._frame_type.Response()
        if not self.frame_limiter.allow(caller_id()):
            response.status_message = self.frame_limiter.refusal()
            return response
        newer_than = stamps.to_ns(request.newer_than)
        newest = self._newest
        if newest is None or newest.stamp_ns <= newer_than:
            response.status_message = 'no frame newer than the requested stamp yet'
            return response
        stamp_ns = newest.stamp_ns
        self.publish(stamp_ns, newest.image, newest.frame_id)
        response.success = True
        stamps.fill(response.frame_stamp, stamp_ns)
        return response

    def serve_layer_request(self, request):
        response = self._layers_service_type.Response()
        stamp_ns = stamps.to_ns(request.frame_stamp)
        first, last = int(request.first_layer), int(request.last_layer)
        try:
            layers, frame_id = self.layer_cache.serve(self.tokens.codec, stamp_ns, first, last,
                                                      request.codec_id)
        except LayerRequestError as error:
            response.status_message = str(error)
            return response
        response.layers = [token_layer_message(self._layer_type, layer, stamp_ns, frame_id)
                           for layer in layers]
        response.success = True
        response.status_message = f'layers {first}..{last} of {self.tokens.codec.layer_count}'
        self.uplink.add('layers', self.node.serialized_size(response))
        return response

    def serve_score(self, request):
        """Score the newest frame read for the question; nothing of the image is sent."""
        response = self._score_type.Response()
        newest = self._newest
        if newest is None:
            response.status_message = 'no frame read yet'
            return response
        if not request.question.strip():
            response.status_message = 'empty question'
            return response
        try:
            scored = self.scorer.score(newest.image, request.question, key=newest.stamp_ns)
        except Exception as error:  # the model failed on this frame: say so, keep serving
            response.status_message = f'frame {newest.stamp_ns}: no score: {first_line(error)}'
            self.node.logger.warning(response.status_message)
            return response
        stamps.fill(response.frame_stamp, newest.stamp_ns)
        response.success = True
        response.abstained = scored.score is None
        response.score = 0.0 if scored.score is None else float(scored.score)
        response.concept = scored.concept
        response.score_ms = scored.seconds * 1e3
        self.uplink.add('score', self.node.serialized_size(response))
        return response

    def figures(self) -> dict:
        """What the status line and /diagnostics report, by name."""
        return {
            'source': self.health.state, 'fps': self.health.fps(), 'frames': self.health.frames,
            'dropped frames': self.dropped_frames + getattr(self.source, 'dropped', 0),
            'refused images': self.refused_images + getattr(self.source, 'refused', 0),
            'crops refused': self.limiter.refused, 'frames refused': self.frame_limiter.refused,
            'buffer frames': self.buffer.frames, 'buffer bytes': self.buffer.bytes,
            'uplink B/s': round(self.uplink.bytes_per_s())}

    def log_status(self) -> None:
        self.node.logger.info(status_line(self.uplink.summary(), self.figures(),
                                          self.buffer.evictions, self.health.cause))
