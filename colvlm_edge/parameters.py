"""The edge node's parameters: one table (name, type, default, description, range) and the
frozen configuration built from it. Defaults match the bundled model's encoder input."""

from __future__ import annotations

from dataclasses import dataclass

from colvlm_edge.global_encoder import GlobalEncoderConfig
from colvlm_edge.roi_crop import CropLimits
from colvlm_edge.token_encoder import TokenLayersConfig
from colvlm_msgs.geometry import PREPROCESS_MODES
from colvlm_msgs.image_codec import CODECS, DEFAULT_MAX_PIXELS
from colvlm_msgs.params import ParameterSpec, ParameterTable
from colvlm_msgs.token_codec import SPLITS


@dataclass(frozen=True)
class ViewScoreConfig:
    """The edge's `view.*` parameters."""

    enabled: bool = False
    model: str = 'bundled'
    probe: str = ''  # artifact path; '' = view_probe.npz next to the model
    device: str = 'cpu'

    def __post_init__(self) -> None:
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
    ParameterSpec('decode.max_pixels', 'int', DEFAULT_MAX_PIXELS,
                  'largest source image decoded, by the size its header declares, px',
                  min=1, max=2**31),
    ParameterSpec('frame_id', 'str', 'camera', 'TF frame of the camera'),
    ParameterSpec('publish.mode', 'str', 'every_frame', 'when global frames are sent',
                  choices=PUBLISH_MODES),
    ParameterSpec('publish.rate_hz', 'float', 1.0, "global frames per second in 'rate' mode, Hz",
                  min=0.01, max=240.0),
    ParameterSpec('global.width', 'int', 128, 'encoder input width, px', min=16, max=4096),
    ParameterSpec('global.height', 'int', 128, 'encoder input height, px', min=16, max=4096),
    ParameterSpec('global.preprocess', 'str', 'pad', 'how the original becomes the encoder input',
                  choices=PREPROCESS_MODES),
    ParameterSpec('global.codec', 'str', 'jpeg', 'codec of global frames', choices=CODECS),
    ParameterSpec('global.quality', 'int', 85, 'jpeg/webp quality 1..100 (png: level 0..9)',
                  min=0, max=100),
    ParameterSpec('global.byte_budget', 'int', 0,
                  'bytes per global frame; the highest quality that fits is used; 0 = off',
                  min=0, max=100_000_000),
    ParameterSpec('global.min_quality', 'int', 10, 'lowest quality the byte budget may pick',
                  min=1, max=100),
    ParameterSpec('buffer.max_frames', 'int', 90,
                  'originals of published frames kept for crops, frames', min=1, max=100_000),
    ParameterSpec('buffer.max_bytes', 'int', 512 * 2**20,
                  'originals of published frames kept for crops, bytes', min=1, max=2**40),
    ParameterSpec('buffer.stamp_tolerance_ms', 'float', 0.0,
                  'a crop may use the nearest frame within this, ms', min=0.0, max=10_000.0),
    ParameterSpec('crop.max_output_width', 'int', 1344, 'largest crop output width, px',
                  min=16, max=8192),
    ParameterSpec('crop.max_output_height', 'int', 1344, 'largest crop output height, px',
                  min=16, max=8192),
    ParameterSpec('crop.codec', 'str', 'jpeg', 'codec of crops when the request names none',
                  choices=CODECS),
    ParameterSpec('crop.quality', 'int', 90, 'quality of crops when the request names none',
                  min=0, max=100),
    ParameterSpec('crop.max_requests', 'int', 10,
                  'crop (and request_frame) requests allowed per window, per client',
                  min=1, max=100_000),
    ParameterSpec('crop.max_pixels_per_s', 'int', 4_000_000,
                  'crop output pixels served per second, per client (at least one largest '
                  'crop at a time), px/s', min=1, max=2**40),
    ParameterSpec('crop.window_s', 'float', 1.0, 'the rate limit window, s', min=0.01,
                  max=3600.0),
    ParameterSpec('layers.enabled', 'bool', False,
                  "also send each published frame's visual tokens as token layers (the "
                  "server's policy 'layers')"),
    ParameterSpec('layers.model', 'str', 'bundled',
                  "the VLM whose vision tower runs here, the server's: 'bundled', a local "
                  'folder or a Hugging Face id'),
    ParameterSpec('layers.codec', 'str', '',
                  "token codec artifact; '' = token_codec_<split>.npz next to the model"),
    ParameterSpec('layers.split', 'str', 'tower',
                  "where the model is cut: 'tower' (the server runs the projector) or "
                  "'projector'", choices=SPLITS),
    ParameterSpec('layers.device', 'str', 'cpu', 'torch device of the vision tower'),
    ParameterSpec('layers.proactive', 'int', TokenLayersConfig.proactive,
                  'layers sent with each frame, coarsest first; the rest on request, layers',
                  min=1, max=255),
    ParameterSpec('layers.cache_frames', 'int', 16,
                  'newest frames whose layers colvlm/request_layers serves, frames', min=1,
                  max=100_000),
    ParameterSpec('layers.send_global', 'bool', True,
                  'also publish the compressed global image; false = FrameGeometry and token '
                  'layers only'),
    ParameterSpec('view.enabled', 'bool', False,
                  'serve colvlm/score_view: how relevant the newest frame is to a question, '
                  "before any image is sent (a server's views.select)"),
    ParameterSpec('view.model', 'str', 'bundled',
                  "the VLM whose vision tower scores views: 'bundled', a local folder or a "
                  'Hugging Face id (shared with layers.model when the same)'),
    ParameterSpec('view.probe', 'str', '',
                  "view probe artifact; '' = view_probe.npz next to the model"),
    ParameterSpec('view.device', 'str', 'cpu', 'torch device of the view scorer'),
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
    crop_max_pixels_per_s: int   # px/s, per client
    status_period_s: float       # s
    decode_max_pixels: int = DEFAULT_MAX_PIXELS  # px; larger source images are refused
    layers: TokenLayersConfig = TokenLayersConfig()
    view: ViewScoreConfig = ViewScoreConfig()

    @classmethod
    def from_values(cls, v: dict) -> EdgeConfig:
        """Build from checked parameter values; cross-field errors name the parameters."""
        try:
            encoder = GlobalEncoderConfig(
                width=v['global.width'], height=v['global.height'],
                preprocess=v['global.preprocess'], codec=v['global.codec'],
                quality=v['global.quality'], byte_budget=v['global.byte_budget'],
                min_quality=v['global.min_quality'])
            limits = CropLimits(
                max_output_width=v['crop.max_output_width'],
                max_output_height=v['crop.max_output_height'],
                default_output_size=(v['global.width'], v['global.height']),
                default_codec=v['crop.codec'], default_quality=v['crop.quality'])
            layers = TokenLayersConfig(
                enabled=v['layers.enabled'], model=v['layers.model'], codec=v['layers.codec'],
                split=v['layers.split'], device=v['layers.device'],
                proactive=v['layers.proactive'], cache_frames=v['layers.cache_frames'],
                send_global=v['layers.send_global'])
            view = ViewScoreConfig(enabled=v['view.enabled'], model=v['view.model'],
                                   probe=v['view.probe'], device=v['view.device'])
        except ValueError as error:
            raise ValueError(f'edge parameters: {_parameter_name(str(error))}') from None
        return cls(
            source=v['source.uri'], source_fps=v['source.fps'], source_loop=v['source.loop'],
            bag_topic=v['source.bag_topic'], frame_id=v['frame_id'],
            publish_mode=v['publish.mode'], publish_rate_hz=v['publish.rate_hz'],
            encoder=encoder, buffer_max_frames=v['buffer.max_frames'],
            buffer_max_bytes=v['buffer.max_bytes'],
            stamp_tolerance_ns=int(v['buffer.stamp_tolerance_ms'] * 1e6), crop_limits=limits,
            crop_max_requests=v['crop.max_requests'], crop_window_s=v['crop.window_s'],
            crop_max_pixels_per_s=v['crop.max_pixels_per_s'],
            status_period_s=v['status.period_s'], layers=layers, view=view,
            decode_max_pixels=v['decode.max_pixels'])


# The config classes name their own fields; say which parameter that is.
_FIELD_TO_PARAMETER = {
    'byte_budget': 'global.byte_budget', 'min_quality': 'global.min_quality',
    'quality': 'global.quality', 'codec': 'global.codec', 'preprocess': 'global.preprocess',
    'default_codec': 'crop.codec', 'default_quality': 'crop.quality',
    'default_output_size': 'global.width/height', 'max_output_width': 'crop.max_output_width',
    'max_output_height': 'crop.max_output_height', 'split': 'layers.split',
    'proactive': 'layers.proactive', 'cache_frames': 'layers.cache_frames',
    'send_global': 'layers.send_global',
}


def _parameter_name(message: str) -> str:
    field, _, rest = message.partition(' ')
    return f'{_FIELD_TO_PARAMETER.get(field, field)} {rest}'
