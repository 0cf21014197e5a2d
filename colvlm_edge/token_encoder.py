"""The edge's half of the token-layer path: the model's vision tower (and, by parameter, its
projector) turns a global frame's pixels into visual tokens, and the shared codec turns those
into progressively refinable layers, kept per stamp for `colvlm/request_layers`.

The model is the server's model, loaded here for its image side only (the language model is
loaded with it by transformers and never run). It knows nothing about topics or services.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
import threading

import numpy as np

from colvlm_msgs.param_fields import check_fields, parameter
from colvlm_msgs.token_codec import SPLITS, EncodedLayer, TokenCodec, artifact_name


@dataclass(frozen=True)
class TokenLayersConfig:
    """The edge's `layers.*` parameters."""

    enabled: bool = parameter(
        'layers.enabled', False, "also send each published frame's visual tokens as token "
        "layers (the server's policy 'layers')")
    model: str = parameter(
        'layers.model', 'bundled', "the VLM whose vision tower runs here, the server's: "
        "'bundled', a local folder or a Hugging Face id")
    codec: str = parameter('layers.codec', '', "token codec artifact; '' = "
                           'token_codec_<split>.npz next to the model')
    split: str = parameter(
        'layers.split', 'tower', "where the model is cut: 'tower' (the server runs the "
        "projector) or 'projector'", choices=SPLITS)
    device: str = parameter('layers.device', 'cpu', 'torch device of the vision tower')
    proactive: int = parameter(
        'layers.proactive', 2, 'layers sent with each frame, coarsest first; the rest on '
        'request', unit='layers', min=1, max=255)
    cache_frames: int = parameter(
        'layers.cache_frames', 16, 'newest frames whose layers colvlm/request_layers serves',
        unit='frames', min=1, max=100_000)
    send_global: bool = parameter(
        'layers.send_global', True, 'also publish the compressed global image; false = '
        'FrameGeometry and token layers only')

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.send_global and not self.enabled:
            raise ValueError('layers.send_global may be false only with layers.enabled true: '
                             'the edge would send nothing')


class TokenLayerEncoder:
    """Pixels -> visual tokens -> all layers of one frame."""

    def __init__(self, backend, codec: TokenCodec) -> None:
        self.backend, self.codec = backend, codec

    def encode(self, pixels: np.ndarray) -> list[EncodedLayer]:
        """All layers of a global frame's pixels (h, w, 3) uint8 BGR, layer 0 first."""
        tokens = self.backend.visual_tokens(pixels, self.codec.split)  # (N, D) float32
        return self.codec.encode(tokens)


def load_token_encoder(config: TokenLayersConfig) -> TokenLayerEncoder:
    """The model and codec `config` names; ValueError with one line when either is missing,
    does not load, or does not match the other."""
    from colvlm_models.vlm import ModelLoadError, TransformersVlm, resolve_model

    path = Path(config.codec) if config.codec else \
        Path(resolve_model(config.model)) / artifact_name(config.split)
    if not path.is_file():
        raise ValueError(f'layers.codec: no token codec at {path}; fit one with '
                         f'python -m tools.fit_token_codec --model {config.model}')
    codec = TokenCodec.load(path)
    if codec.split != config.split:
        raise ValueError(f'layers.split is {config.split!r} but the codec {path} was fitted '
                         f'at split {codec.split!r}')
    if config.proactive > codec.layer_count:
        raise ValueError(f'layers.proactive {config.proactive} is more than the '
                         f'{codec.layer_count} layers of codec {codec.codec_id}')
    try:
        backend = TransformersVlm(config.model, device=config.device, attention=False,
                                  progress=False)
    except (ModelLoadError, RuntimeError) as error:
        raise ValueError(f'layers.model: {error}') from None
    width = backend.visual_tokens(np.zeros((backend.image_size[1], backend.image_size[0], 3),
                                           np.uint8), config.split).shape[1]
    if width != codec.token_dim:
        raise ValueError(f'codec {path} expects {codec.token_dim} channels per token, model '
                         f'{config.model!r} gives {width} at split {config.split!r}')
    return TokenLayerEncoder(backend, codec)


class LayerCache:
    """The layers of the newest frames, by stamp, for colvlm/request_layers."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self._lock = threading.Lock()
        self._frames: OrderedDict[int, tuple[list[EncodedLayer], str]] = OrderedDict()

    def put(self, stamp_ns: int, layers: list[EncodedLayer], frame_id: str) -> None:
        with self._lock:
            self._frames[stamp_ns] = (layers, frame_id)
            self._frames.move_to_end(stamp_ns)
            while len(self._frames) > self.max_frames:
                self._frames.popitem(last=False)

    def get(self, stamp_ns: int) -> tuple[list[EncodedLayer], str] | None:
        with self._lock:
            return self._frames.get(stamp_ns)

    def serve(self, codec: TokenCodec, stamp_ns: int, first: int, last: int,
              codec_id: str) -> tuple[list[EncodedLayer], str]:
        """(layers first..last, frame_id) of frame `stamp_ns`, as colvlm/request_layers
        answers; LayerRequestError naming what is wrong with the request otherwise."""
        if codec_id != codec.codec_id:
            raise LayerRequestError(f"codec_id {codec_id!r} does not match this edge's "
                                    f'{codec.codec_id!r}')
        if not 0 <= first <= last < codec.layer_count:
            raise LayerRequestError(f'layers {first}..{last} are not a range within '
                                    f'0..{codec.layer_count - 1}')
        held = self.get(stamp_ns)
        if held is None:
            raise LayerRequestError(f'no token layers for frame {stamp_ns} (the newest '
                                    f'{self.max_frames} are kept)')
        layers, frame_id = held
        return layers[first:last + 1], frame_id


class LayerRequestError(ValueError):
    """A colvlm/request_layers request the edge cannot serve; one line saying why."""
