"""What the server's token-layer path works with: a frame known by its layers, where further
layers come from, the codecs it can decode, and which arrived layers are usable.

A `LayeredFrame` is what the edge sent for one frame on `colvlm/token_layers` (the coarse
layers it sends unasked); a `LayerSource` fetches more (the edge's `colvlm/request_layers` in
the node, an in-process edge in evaluation). The pipeline decodes with the codec whose id the
layers name. Nothing here touches a model or a transport.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from colvlm_msgs.geometry import GlobalGeometry
from colvlm_msgs.token_codec import SPLITS, EncodedLayer, LayerError, TokenCodec, artifact_name


class LayersUnavailable(Exception):
    """The edge could not deliver the layers asked for; the message says why in one line."""


@dataclass(frozen=True, eq=False)
class LayeredFrame:
    """A frame as the token-layer path holds it: the layers that arrived with it."""

    stamp_ns: int  # the original's stamp, which names it at the edge
    layers: tuple[EncodedLayer, ...]  # as they arrived, any order, possibly bad
    camera: str = ''
    wire_bytes: int = 0  # serialized bytes of those layer messages on the uplink
    geometry: GlobalGeometry | None = None  # for an RoI crop; None = no crop possible
    problem: str = ''  # one line about what went wrong while collecting; '' = nothing

    @property
    def codec_id(self) -> str:
        return self.layers[0].codec_id if self.layers else ''


@dataclass(frozen=True)
class LayerFetch:
    layers: list[EncodedLayer]  # in layer order, as the edge replied
    wire_bytes: int  # serialized bytes of the reply (uplink)
    request_bytes: int = 0  # serialized bytes of the request (downlink)


class LayerSource(Protocol):
    def fetch(self, frame: LayeredFrame, first: int, last: int, codec_id: str) -> LayerFetch:
        """Layers first..last (0-based, inclusive) of `frame`; raises LayersUnavailable."""


@dataclass(frozen=True)
class LayerOptions:
    """How the pipeline's token-layer path refines."""

    codecs: Mapping[str, TokenCodec] = field(default_factory=dict)  # codec_id -> codec
    step: int = 1  # layers asked for per refinement
    crop: bool = False  # after all layers, ask the edge for an RoI crop when still unsure
    # Layers to have before the first pass (the edge's layers.proactive): fewer that came
    # with a frame, one lost on the link, are asked for before the gate is trusted.
    first: int = 1

    def __post_init__(self) -> None:
        for name in ('step', 'first'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'layers {name} must be an int >= 1, got {value!r}')

    @property
    def layer_count(self) -> int:
        """The most layers a codec splits a frame into; 0 without codecs."""
        return max((codec.layer_count for codec in self.codecs.values()), default=0)


def load_codecs(paths: Sequence[str | Path]) -> dict[str, TokenCodec]:
    """codec_id -> codec for each artifact; ValueError naming a file that is not one."""
    codecs = {}
    for path in paths:
        codec = TokenCodec.load(path)
        codecs[codec.codec_id] = codec
    return codecs


def model_codec_paths(model_dir: str | Path) -> list[Path]:
    """The codec artifacts shipped next to a local model (none for a hub id)."""
    folder = Path(model_dir)
    return [folder / artifact_name(s) for s in SPLITS if (folder / artifact_name(s)).is_file()]


def usable_prefix(codec: TokenCodec, layers: Sequence[EncodedLayer]) -> tuple[list, str]:
    """(layers 0..k, problem): the longest run from layer 0 of valid layers among those that
    arrived, and one line about the first problem seen ('' when none). An exact repeat of a
    layer (a frame sent twice) is no problem; a different layer under the same index is."""
    by_index: dict[int, EncodedLayer] = {}
    problem = ''
    for layer in layers:
        try:
            codec.check(layer)
        except LayerError as error:
            problem = problem or str(error)
            continue
        seen = by_index.setdefault(layer.layer_index, layer)
        if seen is not layer and (seen.payload, seen.scale, seen.zero_point, seen.token_count) \
                != (layer.payload, layer.scale, layer.zero_point, layer.token_count):
            problem = problem or f'layer {layer.layer_index} arrived twice with different contents'
    prefix: list[EncodedLayer] = []
    while len(prefix) in by_index:
        candidate = prefix + [by_index[len(prefix)]]
        try:
            codec.check_sequence(candidate)
        except LayerError as error:
            problem = problem or str(error)
            break
        prefix = candidate
    later = sorted(i for i in by_index if i > len(prefix))
    if later and not problem:
        problem = f'layer {len(prefix)} is missing (got {", ".join(map(str, sorted(by_index)))})'
    return prefix, problem


def extend_from(codec: TokenCodec, have: Sequence[EncodedLayer],
                arrived: Sequence[EncodedLayer]) -> list[EncodedLayer]:
    """`have` (layers 0..k) continued by the arrived layers k+1, k+2, ... that fit it: once
    a missing layer has been fetched, those that came after the gap are used, not fetched."""
    by_index: dict[int, EncodedLayer] = {}
    for layer in arrived:
        by_index.setdefault(layer.layer_index, layer)
    have = list(have)
    while len(have) in by_index:
        candidate = [*have, by_index[len(have)]]
        try:
            codec.check_sequence(candidate)
        except LayerError:
            break
        have = candidate
    return have


def check_fetched(codec: TokenCodec, have: Sequence[EncodedLayer], fetched: LayerFetch,
                  first: int, last: int) -> None:
    """LayersUnavailable unless the reply is exactly layers first..last, valid, and of the
    same frame shape as the layers already held."""
    indices = [layer.layer_index for layer in fetched.layers]
    if indices != list(range(first, last + 1)):
        raise LayersUnavailable(f'asked for layers {first}..{last}, the edge sent '
                                f'[{", ".join(map(str, indices))}]')
    try:
        codec.check_sequence([*have, *fetched.layers])
    except LayerError as error:
        raise LayersUnavailable(f'the edge sent bad layers: {error}') from None
