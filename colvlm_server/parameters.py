"""The server node's parameters: one table (name, type, default, description, range) and the
frozen configuration built from it. The gate threshold is in nats of the chosen metric."""

from __future__ import annotations

from dataclasses import dataclass

from colvlm_models.accelerate import QUANTIZE, SPECULATIVE, Acceleration
from colvlm_models.settings import GENERIC, model_settings
from colvlm_models.vlm import DTYPES
from colvlm_msgs.image_codec import CODECS, DEFAULT_MAX_PIXELS, check_quality
from colvlm_msgs.params import ParameterSpec, ParameterTable
from colvlm_server.gate import AGGREGATES, METRICS, POLICY_NAMES, GateConfig
from colvlm_server.vicrop import VICROP_METHODS
from colvlm_server.views import FALLBACKS, SELECTIONS, ViewsConfig

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
    ParameterSpec('quantize', 'str', 'none', "'int8': dynamic int8 weights of the decoder's "
                  'Linear layers (CPU; lossy)', choices=QUANTIZE),
    ParameterSpec('tokens.keep_ratio', 'float', 1.0, 'share of image tokens the language model '
                  'keeps, ranked by attention (FastV; lossy below 1); 1 = all', min=0.01,
                  max=1.0),
    ParameterSpec('tokens.select_layer', 'int', 0, '0-based decoder layer whose last-position '
                  'attention ranks the image tokens', min=0, max=1000),
    ParameterSpec('decode.speculative', 'str', 'none', 'speculative greedy decoding (answers '
                  "unchanged): 'prompt_lookup' or a 'draft' model", choices=SPECULATIVE),
    ParameterSpec('decode.draft_model', 'str', '', "draft of decode.speculative 'draft': a "
                  "local folder or hub id; '' = the '<model>-draft' folder beside the model"),
    ParameterSpec('decode.max_pixels', 'int', DEFAULT_MAX_PIXELS,
                  'largest image (frame or crop) decoded, by the size its header declares, px',
                  min=1, max=2**31),
    ParameterSpec('decode.draft_tokens', 'int', 3, 'tokens proposed per verification, tokens',
                  min=1, max=64),
    ParameterSpec('policy', 'str', 'entropy', 'when to ask the edge for detail, unless a '
                  'query names its own', choices=SERVER_POLICIES),
    ParameterSpec('gate.threshold', 'float', GENERIC['gate.threshold'],
                  "refine when the aggregated entropy is above this, nats (default: the "
                  "model's colvlm.yaml)", min=0.0, max=100.0),
    ParameterSpec('gate.aggregate', 'str', 'max', 'how token entropies become one number',
                  choices=AGGREGATES),
    ParameterSpec('gate.metric', 'str', 'min_entropy', 'the entropy compared with the '
                  'threshold', choices=METRICS),
    ParameterSpec('gate.renyi_alpha', 'float', 2.0, 'order of the Renyi entropy reported',
                  min=0.01, max=1000.0),
    ParameterSpec('gate.random_rate', 'float', 0.5, "refinement probability of policy "
                  "'random'", min=0.0, max=1.0),
    ParameterSpec('gate.seed', 'int', 0, "seed of policy 'random'", min=0, max=2**32 - 1),
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
    ParameterSpec('views.cameras', 'str_array', [],
                  'several cameras: their namespaces, relative or absolute; a query naming no '
                  'camera is answered from the views selected for it; [] = camera.default'),
    ParameterSpec('views.select', 'str', 'auto',
                  "how views are chosen: 'lexical' (view names in the question), 'learned' "
                  "(each edge's colvlm/score_view), 'auto' (lexical, else learned), 'all'",
                  choices=SELECTIONS),
    ParameterSpec('views.max_selected', 'int', 1, 'views sent per query at most, views',
                  min=1, max=64),
    ParameterSpec('views.min_score', 'float', 0.5,
                  'a learned score below this does not select its view', min=0.0, max=1.0),
    ParameterSpec('views.fallback', 'str', 'all',
                  "when nothing selects a view: 'all' views or the 'first'",
                  choices=FALLBACKS),
    ParameterSpec('views.strip_names', 'bool', True,
                  "the model gets the question without the view it names ('... (left "
                  "camera)'): the bundled model never saw camera names"),
    ParameterSpec('views.score_timeout_s', 'float', 1.0,
                  "wait for the edges' view scores at most this long, s", min=0.01,
                  max=600.0),
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
    decode_max_pixels: int = DEFAULT_MAX_PIXELS  # px; larger frames and crops are refused

    @classmethod
    def from_values(cls, v: dict) -> ServerConfig:
        """Build from checked parameter values; cross-field errors name the parameters."""
        try:
            gate = GateConfig(threshold=v['gate.threshold'], aggregate=v['gate.aggregate'],
                              metric=v['gate.metric'], renyi_alpha=v['gate.renyi_alpha'],
                              random_rate=v['gate.random_rate'], seed=v['gate.seed'])
            if v['crop.quality']:
                check_quality(v['crop.codec'], v['crop.quality'], 'crop.quality')
            acceleration = Acceleration(
                keep_ratio=v['tokens.keep_ratio'], select_layer=v['tokens.select_layer'],
                speculative=v['decode.speculative'], draft_model=v['decode.draft_model'],
                draft_tokens=v['decode.draft_tokens'], quantize=v['quantize'])
            views = ViewsConfig(
                cameras=tuple(v['views.cameras']), select=v['views.select'],
                max_selected=v['views.max_selected'], min_score=v['views.min_score'],
                fallback=v['views.fallback'], score_timeout_s=v['views.score_timeout_s'],
                strip_names=v['views.strip_names'])
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
            vicrop_method=v['vicrop.method'], decode_max_pixels=v['decode.max_pixels'])


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
