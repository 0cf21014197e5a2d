"""The edge node's parameters: one table (name, type, default, description, range) and the
frozen configuration built from it. Defaults match the bundled model's encoder input."""

from __future__ import annotations

from dataclasses import dataclass

from colvlm_edge.global_encoder import GlobalEncoderConfig
from colvlm_edge.roi_crop import CropLimits
from colvlm_edge.token_encoder import TokenLayersConfig
from colvlm_msgs.param_fields import check_fields, from_parameters, parameter, parameter_specs
from colvlm_msgs.params import ParameterSpec, ParameterTable


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

EDGE_PARAMETERS = ParameterTable([
    ParameterSpec('source.uri', 'str', 'synthetic',
                  "frames: 'synthetic', a folder, a video file, a device index, a stream URL, "
                  "a rosbag2 path, or 'topic:NAME' (sensor_msgs Image/CompressedImage)"),
    ParameterSpec('source.fps', 'float', 5.0, 'frames per second read from file sources, Hz',
                  min=0.1, max=240.0),
    ParameterSpec('source.loop', 'bool', False, 'start a folder source again at its end'),
    ParameterSpec('source.bag_topic', 'str', '', "image topic of a bag source; '' = first"),
    ParameterSpec('frame_id', 'str', 'camera', 'TF frame of the camera'),
    ParameterSpec('publish.mode', 'str', 'every_frame', 'when global frames are sent',
                  choices=PUBLISH_MODES),
    ParameterSpec('publish.rate_hz', 'float', 1.0, "global frames per second in 'rate' mode, Hz",
                  min=0.01, max=240.0),
    *parameter_specs(GlobalEncoderConfig),
    ParameterSpec('buffer.max_frames', 'int', 90,
                  'originals of published frames kept for crops, frames', min=1, max=100_000),
    ParameterSpec('buffer.max_bytes', 'int', 512 * 2**20,
                  'originals of published frames kept for crops, bytes', min=1, max=2**40),
    ParameterSpec('buffer.stamp_tolerance_ms', 'float', 0.0,
                  'a crop may use the nearest frame within this, ms', min=0.0, max=10_000.0),
    *parameter_specs(CropLimits),
    ParameterSpec('crop.max_requests', 'int', 10, 'crop requests allowed per window',
                  min=1, max=100_000),
    ParameterSpec('crop.window_s', 'float', 1.0, 'the rate limit window, s', min=0.01,
                  max=3600.0),
    *parameter_specs(TokenLayersConfig),
    *parameter_specs(ViewScoreConfig),
    ParameterSpec('status.period_s', 'float', 10.0, 'how often the uplink status is logged, s',
                  min=0.1, max=3600.0),
])


@dataclass(frozen=True)
class EdgeConfig:
    source: str
    source_fps: float            # Hz
    source_loop: bool
    bag_topic: str
    frame_id: str
    publish_mode: str
    publish_rate_hz: float       # Hz
    encoder: GlobalEncoderConfig
    buffer_max_frames: int
    buffer_max_bytes: int        # bytes
    stamp_tolerance_ns: int      # ns
    crop_limits: CropLimits
    crop_max_requests: int
    crop_window_s: float         # s
    status_period_s: float       # s
    layers: TokenLayersConfig = TokenLayersConfig()
    view: ViewScoreConfig = ViewScoreConfig()

    @classmethod
    def from_values(cls, v: dict) -> EdgeConfig:
        """Build from checked parameter values; cross-field errors name the parameters."""
        try:
            encoder = from_parameters(GlobalEncoderConfig, v)
            limits = from_parameters(CropLimits, v, default_output_size=encoder.size)
            layers = from_parameters(TokenLayersConfig, v)
            view = from_parameters(ViewScoreConfig, v)
        except ValueError as error:
            raise ValueError(f'edge parameters: {error}') from None
        return cls(
            source=v['source.uri'], source_fps=v['source.fps'], source_loop=v['source.loop'],
            bag_topic=v['source.bag_topic'], frame_id=v['frame_id'],
            publish_mode=v['publish.mode'], publish_rate_hz=v['publish.rate_hz'],
            encoder=encoder, buffer_max_frames=v['buffer.max_frames'],
            buffer_max_bytes=v['buffer.max_bytes'],
            stamp_tolerance_ns=int(v['buffer.stamp_tolerance_ms'] * 1e6), crop_limits=limits,
            crop_max_requests=v['crop.max_requests'], crop_window_s=v['crop.window_s'],
            status_period_s=v['status.period_s'], layers=layers, view=view)

