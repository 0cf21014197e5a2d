"""The token-layer codec: a frame's visual tokens as progressively refinable layers.

Both ends share it (numpy only). A fitted PCA basis (mean and a full, ordered orthonormal set
of principal directions) turns each token into coefficients; layer k carries the next group
of coefficients of every token, coarsest (highest variance) first, uniformly quantized with
its own scale and zero point. Layer 0 alone decodes to a coarse reconstruction, each further
layer adds detail, and all layers give the tokens back up to the quantization step (the basis
is complete, so nothing is left out). The basis is fitted once from calibration tokens and
never touches the model: training-free as far as the VLM is concerned.

`codec_id` hashes the basis and the layer plan, so an edge and a server holding different
artifacts cannot decode each other's layers by accident. Decoding checks every layer (codec
id, order, gaps, duplicates, sizes, payload length) and raises `LayerError` with one line
naming what is wrong. It knows nothing about models, topics or stamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import hashlib
import json
import math
from pathlib import Path

import numpy as np

FORMAT = 'colvlm-token-pca-1'
SPLITS = ('tower', 'projector')  # where the edge cuts the model: the projector's input or output
MAX_BITS = 16


def artifact_name(split: str) -> str:
    """The file name of a model's codec for `split`, stored in the model's folder."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    return f'token_codec_{split}.npz'


class LayerError(ValueError):
    """Layers that cannot be decoded; the message names the layer and what is wrong."""


@dataclass(frozen=True, eq=False)
class EncodedLayer:
    """One layer as TokenLayer.msg carries it (without the header)."""

    codec_id: str
    layer_index: int  # 0-based
    layer_count: int  # layers of the full encoding
    token_count: int  # visual tokens of the frame
    token_dim: int  # channels per token
    coefficient_count: int  # coefficients per token in this layer
    bits: int  # per quantized coefficient
    scale: float  # float32: dequantized = (q - zero_point) * scale
    zero_point: float  # float32, quantized units
    payload: bytes  # token_count * coefficient_count values, row-major, MSB-first bit packed

    @classmethod
    def from_message(cls, message) -> EncodedLayer:
        """From a colvlm/msg/TokenLayer (any transport's class)."""
        return cls(str(message.codec_id), int(message.layer_index), int(message.layer_count),
                   int(message.token_count), int(message.token_dim),
                   int(message.coefficient_count), int(message.bits), float(message.scale),
                   float(message.zero_point), bytes(message.payload))


def payload_size(values: int, bits: int) -> int:
    """Bytes that `values` numbers of `bits` bits each take, packed."""
    return math.ceil(values * bits / 8)


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """(n,) unsigned ints < 2**bits -> ceil(n * bits / 8) bytes, MSB first."""
    if bits == 8:
        return values.astype(np.uint8).tobytes()
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    planes = ((values.astype(np.uint32)[:, None] >> shifts) & 1).astype(np.uint8)  # (n, bits)
    return np.packbits(planes.ravel()).tobytes()


def unpack_bits(payload: bytes, count: int, bits: int) -> np.ndarray:
    """The inverse of pack_bits: (count,) uint32."""
    raw = np.frombuffer(payload, np.uint8)
    if bits == 8:
        return raw[:count].astype(np.uint32)
    planes = np.unpackbits(raw, count=count * bits).reshape(count, bits).astype(np.uint32)
    return planes @ (np.uint32(1) << np.arange(bits - 1, -1, -1, dtype=np.uint32))


def quantize(values: np.ndarray, bits: int) -> tuple[np.ndarray, np.float32, np.float32]:
    """(q, scale, zero_point): values ~ (q - zero_point) * scale, |error| <= scale / 2
    (plus float32 rounding); the range is the values' own min..max."""
    levels = 2 ** bits - 1
    low, high = float(values.min()), float(values.max())
    scale = np.float32((high - low) / levels if high > low else 1.0)
    zero_point = np.float32(-low / scale)
    q = np.clip(np.rint(values / scale + zero_point), 0, levels).astype(np.uint32)
    return q, scale, zero_point


class TokenCodec:
    """A fitted basis and layer plan; encodes (N, D) tokens and decodes layer prefixes."""

    def __init__(self, mean: np.ndarray, components: np.ndarray,
                 layer_coefficients: Sequence[int], layer_bits: Sequence[int], *,
                 split: str = 'tower', info: dict | None = None) -> None:
        self.mean = np.asarray(mean, np.float32)  # (D,) token mean
        self.components = np.asarray(components, np.float32)  # (D, D) rows: directions
        dim = self.mean.shape[0] if self.mean.ndim == 1 else -1
        if self.components.shape != (dim, dim):
            raise ValueError(f'components must be ({dim}, {dim}) for a mean of shape '
                             f'{self.mean.shape}, got {self.components.shape}')
        gram = self.components @ self.components.T
        if not np.allclose(gram, np.eye(dim), atol=1e-3):
            raise ValueError('components must be orthonormal rows')
        self.layer_coefficients = tuple(int(c) for c in layer_coefficients)
        self.layer_bits = tuple(int(b) for b in layer_bits)
        if len(self.layer_coefficients) != len(self.layer_bits) or not 1 <= len(
                self.layer_bits) <= 255:
            raise ValueError(f'layer_coefficients and layer_bits must have the same length '
                             f'1..255, got {len(self.layer_coefficients)} and '
                             f'{len(self.layer_bits)}')
        if min(self.layer_coefficients) < 1 or sum(self.layer_coefficients) != dim:
            raise ValueError(f'layer_coefficients must be >= 1 each and sum to the token dim '
                             f'{dim}, got {self.layer_coefficients}')
        if not all(1 <= b <= MAX_BITS for b in self.layer_bits):
            raise ValueError(f'layer_bits must be in 1..{MAX_BITS}, got {self.layer_bits}')
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        self.split = split
        self.info = dict(info or {})
        self.starts = np.concatenate([[0], np.cumsum(self.layer_coefficients)]).astype(int)
        digest = hashlib.sha256()
        for array in (self.mean, self.components, np.asarray(self.layer_coefficients),
                      np.asarray(self.layer_bits)):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(split.encode())
        self.codec_id = f'pca{self.layer_count}-{split}-{dim}-{digest.hexdigest()[:12]}'

    @property
    def token_dim(self) -> int:
        return self.mean.shape[0]

    @property
    def layer_count(self) -> int:
        return len(self.layer_bits)

    # -- fitting and storage ----------------------------------------------------------------
    @classmethod
    def fit(cls, tokens: np.ndarray, layer_coefficients: Sequence[int],
            layer_bits: Sequence[int], *, split: str = 'tower',
            info: dict | None = None) -> TokenCodec:
        """PCA of calibration tokens (M, D), M >= D recommended; directions by falling
        variance, each sign fixed so that its largest entry is positive (reproducible)."""
        tokens = np.asarray(tokens, np.float64)
        if tokens.ndim != 2 or tokens.shape[0] < 2:
            raise ValueError(f'tokens must be (M >= 2, D), got {tokens.shape}')
        mean = tokens.mean(axis=0)
        # Eigenvectors of the covariance: complete (D of them) even when M < D.
        variances, vectors = np.linalg.eigh(np.cov(tokens - mean, rowvar=False))
        order = np.argsort(variances)[::-1]
        components = vectors[:, order].T  # (D, D)
        signs = np.sign(components[np.arange(len(components)),
                                   np.abs(components).argmax(axis=1)])
        components *= signs[:, None]
        explained = np.clip(variances[order], 0.0, None)
        total = float(explained.sum()) or 1.0
        starts = np.concatenate([[0], np.cumsum(layer_coefficients)]).astype(int)
        info = dict(info or {})
        info['explained_variance_by_layer'] = [
            round(float(explained[start:end].sum()) / total, 6)
            for start, end in zip(starts[:-1], starts[1:], strict=True)]
        return cls(mean, components, layer_coefficients, layer_bits, split=split, info=info)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        meta = dict(self.info, format=FORMAT, split=self.split, codec_id=self.codec_id)
        with path.open('wb') as file:
            np.savez(file, mean=self.mean, components=self.components,
                     layer_coefficients=np.asarray(self.layer_coefficients, np.int32),
                     layer_bits=np.asarray(self.layer_bits, np.int32),
                     meta=np.asarray(json.dumps(meta, sort_keys=True)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TokenCodec:
        """An artifact written by save(); ValueError naming the file when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data['meta']))
                if meta.get('format') != FORMAT:
                    raise ValueError(f'format {meta.get("format")!r}, expected {FORMAT!r}')
                codec = cls(data['mean'], data['components'], data['layer_coefficients'],
                            data['layer_bits'], split=meta.get('split', ''), info=meta)
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f'token codec {path}: {error}') from None
        if meta.get('codec_id') not in (None, codec.codec_id):
            raise ValueError(f'token codec {path}: stored codec_id {meta["codec_id"]!r} does '
                             f'not match its contents ({codec.codec_id!r})')
        return codec

    # -- encoding ---------------------------------------------------------------------------
    def coefficients(self, tokens: np.ndarray) -> np.ndarray:
        """(N, D) tokens -> (N, D) principal coefficients, float32."""
        tokens = np.asarray(tokens, np.float32)
        if tokens.ndim != 2 or tokens.shape[1] != self.token_dim:
            raise ValueError(f'tokens must be (N, {self.token_dim}), got {tokens.shape}')
        return (tokens - self.mean) @ self.components.T

    def encode(self, tokens: np.ndarray) -> list[EncodedLayer]:
        """All layers of one frame's tokens (N, D) float32, layer 0 first."""
        coefficients = self.coefficients(tokens)
        layers = []
        for index, bits in enumerate(self.layer_bits):
            block = coefficients[:, self.starts[index]:self.starts[index + 1]]  # (N, c)
            q, scale, zero_point = quantize(block.ravel(), bits)
            layers.append(EncodedLayer(
                self.codec_id, index, self.layer_count, block.shape[0], self.token_dim,
                block.shape[1], bits, float(scale), float(zero_point), pack_bits(q, bits)))
        return layers

    def quantization_bound(self, layers: Sequence[EncodedLayer]) -> float:
        """Largest L2 error per token that quantizing `layers` can cause: the basis is
        orthonormal, so it is sqrt(sum over coefficients of (scale / 2) ** 2)."""
        return math.sqrt(sum(layer.coefficient_count * (layer.scale / 2.0) ** 2
                             for layer in layers))

    # -- decoding ---------------------------------------------------------------------------
    def check(self, layer: EncodedLayer) -> None:
        """LayerError when `layer` does not belong to this codec or is malformed."""
        name = f'layer {layer.layer_index}'
        if layer.codec_id != self.codec_id:
            raise LayerError(f'{name} has codec_id {layer.codec_id!r}, this decoder has '
                             f'{self.codec_id!r}')
        if not 0 <= layer.layer_index < self.layer_count:
            raise LayerError(f'{name} is outside 0..{self.layer_count - 1}')
        expected = {'layer_count': self.layer_count, 'token_dim': self.token_dim,
                    'coefficient_count': self.layer_coefficients[layer.layer_index],
                    'bits': self.layer_bits[layer.layer_index]}
        for field, value in expected.items():
            if getattr(layer, field) != value:
                raise LayerError(f'{name} has {field} {getattr(layer, field)}, expected {value}')
        if layer.token_count < 1:
            raise LayerError(f'{name} has token_count {layer.token_count}')
        if not (math.isfinite(layer.scale) and layer.scale > 0
                and math.isfinite(layer.zero_point)):
            raise LayerError(f'{name} has scale {layer.scale!r} and zero_point '
                             f'{layer.zero_point!r}; both must be finite, scale > 0')
        size = payload_size(layer.token_count * layer.coefficient_count, layer.bits)
        if len(layer.payload) != size:
            raise LayerError(f'{name} payload is {len(layer.payload)} bytes, expected {size}')

    def check_sequence(self, layers: Sequence[EncodedLayer]) -> None:
        """LayerError unless `layers` are this codec's layers 0..k, each once, in order, of
        one frame (same token count)."""
        if not layers:
            raise LayerError('no layers')
        indices = [layer.layer_index for layer in layers]
        for layer in layers:
            self.check(layer)
        if len(set(indices)) != len(indices):
            twice = sorted({i for i in indices if indices.count(i) > 1})
            raise LayerError(f'layer {twice[0]} is duplicated (got {_listed(indices)})')
        if indices != sorted(indices):
            raise LayerError(f'layers out of order: {_listed(indices)}')
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))
        if missing:
            raise LayerError(f'layer {missing[0]} is missing (got {_listed(indices)})')
        counts = {layer.token_count for layer in layers}
        if len(counts) > 1:
            raise LayerError(f'layers disagree on token_count: {sorted(counts)}')

    def decode(self, layers: Sequence[EncodedLayer]) -> np.ndarray:
        """(N, D) float32 tokens from layers 0..k (k < layer_count); the coefficients of the
        layers not given are taken as zero, i.e. the token mean along those directions."""
        self.check_sequence(layers)
        tokens = layers[0].token_count
        coefficients = np.zeros((tokens, self.token_dim), np.float32)
        for layer in layers:
            count = tokens * layer.coefficient_count
            q = unpack_bits(layer.payload, count, layer.bits).astype(np.float32)
            block = (q - np.float32(layer.zero_point)) * np.float32(layer.scale)
            start = self.starts[layer.layer_index]
            coefficients[:, start:start + layer.coefficient_count] = block.reshape(tokens, -1)
        return coefficients @ self.components + self.mean


def _listed(indices: Sequence[int]) -> str:
    return ', '.join(str(i) for i in indices)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over tokens of the cosine similarity of rows of (N, D) a and b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean((a * b).sum(axis=1) / np.maximum(norms, 1e-12)))
