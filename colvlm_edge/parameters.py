"""The edge node's parameters: the frozen configuration declares each one on its field
(colvlm_msgs.param_fields) and the node's table is generated from it. Defaults match the
bundled model's encoder input."""

from __future__ import annotations

from dataclasses import dataclass, replace

from colvlm_edge.global_encoder import GlobalEncoderConfig
from colvlm_edge.roi_crop import CropLimits
from colvlm_edge.token_encoder import TokenLayersConfig
from colvlm_msgs.image_codec import DEFAULT_MAX_PIXELS
from colvlm_msgs.param_fields import (
    check_fields,
    from_parameters,
    group,
    parameter,
    parameter_specs,
)
from colvlm_msgs.params import ParameterTable


@dataclass(frozen=True)
class ViewScoreConfig:
    """The edge's `view.*` parameters."""

    enabled: bool = parameter(
        'view.enabled', False, 'serve colvlm/score_view: how relevant the newest frame is to '
        "a question, before any image is sent (a server's views.select)")
    model: str = parameter(
        'view.model', 'bundled', "the VLM whose vision tower scores views: 'bundled', a local "
        'folder or a Hugging Face id (shared with layers.model when the same)')
    probe: str = parameter('view.probe', '', "view probe artifact; '' = view_probe.npz next to "
                           'the model')
    device: str = parameter('view.device', 'cpu', 'torch device of the view scorer')

    def __post_init__(self) -> None:
        check_fields(self)
        if self.enabled and not self.model.strip():
            raise ValueError("view.model must name a model when view.enabled, got ''")


PUBLISH_MODES = ('every_frame', 'rate', 'on_request')

@dataclass(frozen=True)
class EdgeConfig:
    """Every edge parameter, declared once (name, default, description, unit, range); the
    node's table and docs are generated from it and it checks itself on construction."""

    source: str = parameter(
        'source.uri', 'synthetic', "frames: 'synthetic', a folder, a video file, a device "
        "index, a stream URL, a rosbag2 path, or 'topic:NAME' (sensor_msgs Image/"
        'CompressedImage)')
    source_fps: float = parameter('source.fps', 5.0, 'frames per second read from file '
                                  'sources', unit='Hz', min=0.1, max=240.0)
    source_loop: bool = parameter('source.loop', False, 'start a folder source again at its '
                                  'end')
    bag_topic: str = parameter('source.bag_topic', '', "image topic of a bag source; '' = "
                               'first')
    decode_max_pixels: int = parameter(
        'decode.max_pixels', DEFAULT_MAX_PIXELS, 'largest source image decoded, by the size '
        'its header declares', unit='px', min=1, max=2**31)
    frame_id: str = parameter('frame_id', 'camera', 'TF frame of the camera')
    publish_mode: str = parameter('publish.mode', 'every_frame', 'when global frames are sent',
                                  choices=PUBLISH_MODES)
    publish_rate_hz: float = parameter('publish.rate_hz', 1.0, "global frames per second in "
                                       "'rate' mode", unit='Hz', min=0.01, max=240.0)
    encoder: GlobalEncoderConfig = group(GlobalEncoderConfig)
    buffer_max_frames: int = parameter('buffer.max_frames', 90, 'originals of published frames '
                                       'kept for crops', unit='frames', min=1, max=100_000)
    buffer_max_bytes: int = parameter('buffer.max_bytes', 512 * 2**20, 'originals of published '
                                      'frames kept for crops', unit='bytes', min=1, max=2**40)
    stamp_tolerance_ms: float = parameter(
        'buffer.stamp_tolerance_ms', 0.0, 'a crop may use the nearest frame within this',
        unit='ms', min=0.0, max=10_000.0)
    # Its default output size is always the global frame's (set below).
    crop_limits: CropLimits = group(CropLimits)
    crop_max_requests: int = parameter(
        'crop.max_requests', 10, 'crop (and request_frame) requests allowed per window, per '
        'client', min=1, max=100_000)
    crop_max_pixels_per_s: int = parameter(
        'crop.max_pixels_per_s', 4_000_000, 'crop output pixels served per second, per client '
        '(at least one largest crop at a time)', unit='px/s', min=1, max=2**40)
    crop_window_s: float = parameter('crop.window_s', 1.0, 'the rate limit window', unit='s',
                                     min=0.01, max=3600.0)
    layers: TokenLayersConfig = group(TokenLayersConfig)
    view: ViewScoreConfig = group(ViewScoreConfig)
    status_period_s: float = parameter('status.period_s', 10.0, 'how often the uplink status '
                                       'is logged', unit='s', min=0.1, max=3600.0)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.crop_limits.default_output_size != self.encoder.size:
            object.__setattr__(self, 'crop_limits', replace(
                self.crop_limits, default_output_size=self.encoder.size))

    @property
    def stamp_tolerance_ns(self) -> int:
        return int(self.stamp_tolerance_ms * 1e6)

    @classmethod
    def from_values(cls, values: dict) -> EdgeConfig:
        """Build from checked parameter values; errors name the parameters."""
        try:
            return from_parameters(cls, values)
        except ValueError as error:
            raise ValueError(f'edge parameters: {error}') from None


EDGE_PARAMETERS = ParameterTable(parameter_specs(EdgeConfig))
