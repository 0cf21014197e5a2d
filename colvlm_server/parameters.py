"""The server node's parameters: the frozen configuration declares each one on its field
(colvlm_msgs.param_fields) and the node's table is generated from it. The gate threshold is in
nats of the chosen metric."""

from __future__ import annotations

from dataclasses import dataclass

from colvlm_models.accelerate import Acceleration
from colvlm_models.settings import GENERIC, model_settings
from colvlm_models.vlm import DTYPES
from colvlm_msgs.image_codec import CODECS, DEFAULT_MAX_PIXELS, check_quality
from colvlm_msgs.param_fields import (
    check_fields,
    from_parameters,
    group,
    parameter,
    parameter_specs,
)
from colvlm_msgs.params import ParameterTable
from colvlm_server.gate import POLICY_NAMES, GateConfig
from colvlm_server.vicrop import VICROP_METHODS
from colvlm_server.views import ViewsConfig

# 'oracle' needs ground truth: evaluation only.
SERVER_POLICIES = tuple(name for name in POLICY_NAMES if name != 'oracle')
MAX_NEW_TOKENS = 1024  # also the most a Query may ask for

@dataclass(frozen=True)
class ServerConfig:
    """Every server parameter, declared once (name, default, description, unit, range); the
    node's table and docs are generated from it and it checks itself on construction."""

    model: str = parameter('model', 'bundled', "the VLM: 'bundled' (the shipped tiny LLaVA), a "
                           'local folder or a Hugging Face id')
    device: str = parameter('device', 'cpu', "torch device: 'cpu', 'cuda', 'cuda:1', ...")
    dtype: str = parameter('dtype', 'float32', 'weights and activations', choices=DTYPES)
    max_new_tokens: int = parameter('max_new_tokens', 8, 'answer tokens generated at most',
                                    unit='tokens', min=1, max=MAX_NEW_TOKENS)
    acceleration: Acceleration = group(Acceleration)
    policy: str = parameter('policy', 'entropy', 'when to ask the edge for detail, unless a '
                            'query names its own', choices=SERVER_POLICIES)
    gate: GateConfig = group(GateConfig)
    vicrop_layer: int = parameter(
        'vicrop.layer', GENERIC['vicrop.layer'], "0-based decoder layer whose attention "
        "locates the RoI; -1 = auto (default: the model's colvlm.yaml)", min=-1, max=1000)
    vicrop_method: str = parameter(
        'vicrop.method', GENERIC['vicrop.method'], "the RoI map: 'rel_att' (attention "
        "relative to a generic prompt's), 'grad_att' (attention weighted by the answer's "
        "gradient; one more forward and backward pass per crop) or 'att' (the question's "
        'attention alone, for models trained to look at the asked object, as the bundled one '
        "is; 'rel_att' is ViCrop's for pretrained MLLMs; default: the model's colvlm.yaml)",
        choices=VICROP_METHODS)
    default_camera: str = parameter(
        'camera.default', '', "camera namespace answered about, relative to the server's or "
        "absolute; '' = the server's own namespace")
    views: ViewsConfig = group(ViewsConfig)
    frame_max_age_s: float = parameter(
        'frame.max_age_s', 5.0, 'a newest frame older than this is stale (the edge is asked '
        'for its newest); 0 = off', unit='s', min=0.0, max=86400.0)
    fresh_frame_timeout_s: float = parameter(
        'frame.fresh_timeout_s', 2.0, 'wait for a frame asked of the edge (fresh_frame, or '
        'none held fresh) at most this long', unit='s', min=0.01, max=600.0)
    frame_max_ahead_s: float = parameter(
        'frame.max_ahead_s', 2.0, "a frame or token layer stamped more than this ahead of the "
        "server's clock is refused and counted (an edge whose clock jumped, a hostile peer); "
        '0 = off', unit='s', min=0.0, max=86400.0)
    frame_max_held_mb: int = parameter(
        'frame.max_held_mb', 256, 'decoded global frames held per camera at most, complete or '
        'waiting for their geometry; the first arrived go first', unit='MB', min=1, max=65536)
    decode_max_pixels: int = parameter(
        'decode.max_pixels', DEFAULT_MAX_PIXELS, 'largest image (frame or crop) decoded, by the '
        'size its header declares', unit='px', min=1, max=2**31)
    crop_timeout_s: float = parameter('crop.timeout_s', 2.0, 'wait for one crop from the edge '
                                      'at most this long', unit='s', min=0.01, max=600.0)
    crop_codec: str = parameter('crop.codec', 'jpeg', 'codec the edge encodes crops with',
                                choices=CODECS)
    crop_quality: int = parameter('crop.quality', 90, 'crop quality 1..100 (png: level 0..9); '
                                  '0 = the edge default', min=0, max=100)
    layers_codec: str = parameter(
        'layers.codec', '', "token codec artifacts of policy 'layers', comma-separated; '' = "
        'the token_codec_*.npz next to a local model')
    layers_step: int = parameter('layers.step', 1, 'token layers asked of the edge per '
                                 'refinement', unit='layers', min=1, max=255)
    layers_first: int = parameter(
        'layers.first', 2, 'token layers to have before the first pass: fewer that came with a '
        "frame (one lost on the link) are asked of the edge; the edge's layers.proactive",
        unit='layers', min=1, max=255)
    layers_timeout_s: float = parameter(
        'layers.timeout_s', 2.0, 'wait for one layer reply from the edge at most this long',
        unit='s', min=0.01, max=600.0)
    layers_crop: bool = parameter('layers.crop', False, 'after all layers, a still unsure '
                                  'answer asks the edge for an RoI crop')
    layers_max_held_mb: int = parameter(
        'layers.max_held_mb', 16, 'token layers held per camera at most (serialized); the '
        'first arrived frame goes first', unit='MB', min=1, max=4096)
    queue_max_size: int = parameter('queue.max_size', 4, 'queries waiting for the model at '
                                    'most; more are answered busy', min=1, max=10_000)
    question_max_chars: int = parameter('question.max_chars', 500, 'longest question '
                                        'accepted', unit='characters', min=1, max=1_000_000)
    status_period_s: float = parameter('status.period_s', 10.0, 'how often the answer counts '
                                       'are logged', unit='s', min=0.1, max=3600.0)
    diagnostics_warn_age_s: float = parameter(
        'diagnostics.warn_age_s', 3.0, "a camera link's /diagnostics level is WARN once its "
        'newest frame is older than this (edges that publish only on request: 0 = off)',
        unit='s', min=0.0, max=86400.0)
    diagnostics_error_age_s: float = parameter(
        'diagnostics.error_age_s', 15.0, "... and ERROR once it is older than this (or the "
        "edge's services are absent); 0 = off", unit='s', min=0.0, max=86400.0)
    debug_annotated_image: bool = parameter(
        'debug.annotated_image', False, 'also publish each answered global frame with its '
        'ViCrop box and answer drawn on it, on colvlm/annotated/compressed (JPEG; one encode '
        'per answer); the box alone is always on colvlm/roi')

    def __post_init__(self) -> None:
        check_fields(self)
        if self.crop_quality:
            check_quality(self.crop_codec, self.crop_quality, 'crop.quality')
        if not self.device.strip():
            raise ValueError("device must not be empty, got ''")
        if self.vicrop_method == 'grad_att' and self.acceleration.quantize == 'int8':
            raise ValueError("vicrop.method 'grad_att' needs gradients through the decoder, "
                             "which quantize 'int8' removes; set one of them")
        if self.views.several and self.default_camera:
            raise ValueError(f'camera.default {self.default_camera!r} and views.cameras both '
                             'name cameras; set one of them')

    @property
    def attention_layer(self) -> int | None:
        """vicrop.layer as the pipeline takes it: None = chosen from the model's depth."""
        return None if self.vicrop_layer < 0 else self.vicrop_layer

    @classmethod
    def from_values(cls, values: dict) -> ServerConfig:
        """Build from checked parameter values; errors name the parameters."""
        try:
            return from_parameters(cls, values)
        except ValueError as error:
            raise ValueError(f'server parameters: {error}') from None


SERVER_PARAMETERS = ParameterTable(parameter_specs(ServerConfig))


def with_model_settings(values: dict, explicit: frozenset | set = frozenset()) -> dict:
    """`values` with the chosen model's colvlm.yaml (gate.threshold, vicrop.method/layer) for
    each of those a parameter file or override did not set (`explicit`): the model's settings
    rank above the table's defaults and below everything the user wrote."""
    settings = model_settings(values['model'])
    merged = dict(values)
    for name, value in settings.items():
        if name not in explicit:
            merged[name] = SERVER_PARAMETERS.specs[name].check(value, f"model {values['model']}")
    return merged
