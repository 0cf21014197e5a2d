"""The server node's parameters: one table (name, type, default, description, range) and the
frozen configuration built from it. The gate threshold is in nats of the chosen metric."""

from __future__ import annotations

from dataclasses import dataclass

from colvlm_models.accelerate import Acceleration
from colvlm_models.settings import GENERIC, model_settings
from colvlm_models.vlm import DTYPES
from colvlm_msgs.image_codec import CODECS, check_quality
from colvlm_msgs.param_fields import from_parameters, parameter_specs
from colvlm_msgs.params import ParameterSpec, ParameterTable
from colvlm_server.gate import POLICY_NAMES, GateConfig
from colvlm_server.vicrop import VICROP_METHODS
from colvlm_server.views import ViewsConfig

# 'oracle' needs ground truth: evaluation only.
SERVER_POLICIES = tuple(name for name in POLICY_NAMES if name != 'oracle')
MAX_NEW_TOKENS = 1024  # also the most a Query may ask for

SERVER_PARAMETERS = ParameterTable([
    ParameterSpec('model', 'str', 'bundled',
                  "the VLM: 'bundled' (the shipped tiny LLaVA), a local folder or a Hugging "
                  'Face id'),
    ParameterSpec('device', 'str', 'cpu', "torch device: 'cpu', 'cuda', 'cuda:1', ..."),
    ParameterSpec('dtype', 'str', 'float32', 'weights and activations', choices=DTYPES),
    ParameterSpec('max_new_tokens', 'int', 8, 'answer tokens generated at most, tokens',
                  min=1, max=MAX_NEW_TOKENS),
    *parameter_specs(Acceleration),
    ParameterSpec('policy', 'str', 'entropy', 'when to ask the edge for detail, unless a '
                  'query names its own', choices=SERVER_POLICIES),
    *parameter_specs(GateConfig),
    ParameterSpec('vicrop.layer', 'int', GENERIC['vicrop.layer'],
                  "0-based decoder layer whose attention locates the RoI; -1 = auto (default: "
                  "the model's colvlm.yaml)", min=-1,
                  max=1000),
    ParameterSpec('vicrop.method', 'str', GENERIC['vicrop.method'],
                  "the RoI map: 'rel_att' (attention relative to a generic prompt's), "
                  "'grad_att' (attention weighted by the answer's gradient; one more forward "
                  "and backward pass per crop) or 'att' (the question's attention alone, for "
                  'models trained to look at the asked object, as the bundled one is; '
                  "'rel_att' is ViCrop's for pretrained MLLMs; default: the model's "
                  'colvlm.yaml)', choices=VICROP_METHODS),
    ParameterSpec('camera.default', 'str', '',
                  "camera namespace answered about, relative to the server's or absolute; "
                  "'' = the server's own namespace"),
    *parameter_specs(ViewsConfig),
    ParameterSpec('frame.max_age_s', 'float', 5.0,
                  'a newest frame older than this is stale, s; 0 = off', min=0.0,
                  max=86400.0),
    ParameterSpec('frame.fresh_timeout_s', 'float', 2.0,
                  'a fresh_frame query waits for its frame at most this long, s', min=0.01,
                  max=600.0),
    ParameterSpec('crop.timeout_s', 'float', 2.0, 'wait for one crop from the edge at most '
                  'this long, s', min=0.01, max=600.0),
    ParameterSpec('crop.codec', 'str', 'jpeg', 'codec the edge encodes crops with',
                  choices=CODECS),
    ParameterSpec('crop.quality', 'int', 90,
                  'crop quality 1..100 (png: level 0..9); 0 = the edge default', min=0,
                  max=100),
    ParameterSpec('layers.codec', 'str', '',
                  "token codec artifacts of policy 'layers', comma-separated; '' = the "
                  'token_codec_*.npz next to a local model'),
    ParameterSpec('layers.step', 'int', 1, 'token layers asked of the edge per refinement, '
                  'layers', min=1, max=255),
    ParameterSpec('layers.timeout_s', 'float', 2.0, 'wait for one layer reply from the edge at '
                  'most this long, s', min=0.01, max=600.0),
    ParameterSpec('layers.crop', 'bool', False, 'after all layers, a still unsure answer asks '
                  'the edge for an RoI crop'),
    ParameterSpec('queue.max_size', 'int', 4,
                  'queries waiting for the model at most; more are answered busy', min=1,
                  max=10_000),
    ParameterSpec('question.max_chars', 'int', 500, 'longest question accepted, characters',
                  min=1, max=1_000_000),
    ParameterSpec('status.period_s', 'float', 10.0, 'how often the answer counts are logged, s',
                  min=0.1, max=3600.0),
])


@dataclass(frozen=True)
class ServerConfig:
    model: str
    device: str
    dtype: str
    max_new_tokens: int          # tokens
    policy: str
    gate: GateConfig
    vicrop_layer: int | None     # None = chosen from the model's depth
    default_camera: str
    frame_max_age_s: float       # s; 0 = off
    fresh_frame_timeout_s: float  # s
    crop_timeout_s: float        # s
    crop_codec: str
    crop_quality: int            # 0 = the edge default
    queue_max_size: int
    question_max_chars: int      # characters
    status_period_s: float       # s
    layers_codec: str = ''       # comma-separated artifact paths; '' = next to the model
    layers_step: int = 1         # layers per refinement
    layers_timeout_s: float = 2.0  # s
    layers_crop: bool = False
    acceleration: Acceleration = Acceleration()
    views: ViewsConfig = ViewsConfig()
    vicrop_method: str = GENERIC['vicrop.method']  # one of VICROP_METHODS

    @classmethod
    def from_values(cls, v: dict) -> ServerConfig:
        """Build from checked parameter values; cross-field errors name the parameters."""
        try:
            gate = from_parameters(GateConfig, v)
            if v['crop.quality']:
                check_quality(v['crop.codec'], v['crop.quality'], 'crop.quality')
            acceleration = from_parameters(Acceleration, v)
            views = from_parameters(ViewsConfig, v)
        except ValueError as error:
            raise ValueError(f'server parameters: {error}') from None
        if not v['device'].strip():
            raise ValueError("server parameters: device must not be empty, got ''")
        if v['vicrop.method'] == 'grad_att' and acceleration.quantize == 'int8':
            raise ValueError("server parameters: vicrop.method 'grad_att' needs gradients "
                             "through the decoder, which quantize 'int8' removes; set one of "
                             'them')
        if views.several and v['camera.default']:
            raise ValueError(f"server parameters: camera.default {v['camera.default']!r} and "
                             'views.cameras both name cameras; set one of them')
        return cls(
            model=v['model'], device=v['device'], dtype=v['dtype'],
            max_new_tokens=v['max_new_tokens'], policy=v['policy'], gate=gate,
            vicrop_layer=None if v['vicrop.layer'] < 0 else v['vicrop.layer'],
            default_camera=v['camera.default'], frame_max_age_s=v['frame.max_age_s'],
            fresh_frame_timeout_s=v['frame.fresh_timeout_s'], crop_timeout_s=v['crop.timeout_s'],
            crop_codec=v['crop.codec'], crop_quality=v['crop.quality'],
            queue_max_size=v['queue.max_size'], question_max_chars=v['question.max_chars'],
            status_period_s=v['status.period_s'], layers_codec=v['layers.codec'],
            layers_step=v['layers.step'], layers_timeout_s=v['layers.timeout_s'],
            layers_crop=v['layers.crop'], acceleration=acceleration, views=views,
            vicrop_method=v['vicrop.method'])


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
