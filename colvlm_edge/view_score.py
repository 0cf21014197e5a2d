"""The edge's learned view score: how likely it is that the object a question asks about is in
this camera's view, computed from the frame here so that no image crosses to find out.

A `ViewProbe` is a linear per-cell multi-label classifier on the frozen vision tower's tokens
(the model the server runs, as for token layers): for every grid cell, the probability of each
concept, a (colour, kind) pair such as 'red sign' or 'blue circle'. `question_concepts` reads
which colours and kinds a question names; the view score is the highest probability over the
cells and over the concepts the question can mean (a kind without a colour means any colour,
and the other way round), which the fit calibrates to read as the probability that the view
holds the concept (the server compares it with views.min_score). It abstains (None) when the
question names no concept it knows. `python -m tools.fit_view_probe` fits the probe on rendered
Glyph-VQA scenes; one tower pass of the bundled model plus the probe is ~7 ms on one CPU core.

This module knows pixels, concepts and the probe; it knows nothing about topics or services.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
import re
import time

import numpy as np

from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_msgs.constants import first_line

PROBE_FILE = 'view_probe.npz'
SPLIT = 'tower'  # the probe reads the tower's tokens, before the projector


def concept_names(colors, kinds) -> tuple[str, ...]:
    """'colour kind' for every pair, kind-major: 'red sign', 'green sign', ..."""
    return tuple(f'{color} {kind}' for kind in kinds for color in colors)


def question_concepts(question: str, concepts: tuple[str, ...]
                      ) -> tuple[frozenset[str], frozenset[str]] | None:
    """(colours, kinds) of `concepts` ('colour kind' names, as the probe file stores them)
    that the question names, plurals read as singulars; None for neither.

    Whole lower-cased words only, so 'reddish' or 'signal' name nothing.
    """
    words = set(re.findall(r'[a-z]+', question.lower()))
    words |= {word[:-1] for word in words if word.endswith('s')}
    pairs = [name.split(' ') for name in concepts]
    colors = frozenset(color for color, _ in pairs if color in words)
    kinds = frozenset(kind for _, kind in pairs if kind in words)
    return (colors, kinds) if colors or kinds else None


def matching_concepts(question: str, concepts: tuple[str, ...]) -> list[int]:
    """Indices of the 'colour kind' concepts the question can mean; [] when it names none of
    them (a question naming two colours and two kinds means all four pairs)."""
    named = question_concepts(question, concepts)
    if named is None:
        return []
    colors, kinds = named
    return [k for k, name in enumerate(concepts)
            if (not colors or name.split(' ')[0] in colors)
            and (not kinds or name.split(' ')[1] in kinds)]


@dataclass(frozen=True, eq=False)
class ViewProbe:
    """Per-cell concept probabilities from the tower's tokens: sigmoid(tokens @ weights + bias).

    Saved as a small .npz (no pickles): weights, bias, concept names, the id of the model whose
    tower it reads, and the fit's settings and held-out metrics as JSON.
    """

    weights: np.ndarray  # (D, C) float32, D = the tower's channels per token
    bias: np.ndarray  # (C,) float32
    concepts: tuple[str, ...]  # C names, 'colour kind'
    model: str = ''  # id of the model it was fitted on, for the record
    metrics: str = '{}'  # JSON: the fit's settings and held-out metrics

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.bias.shape != (self.weights.shape[1],) or \
                len(self.concepts) != self.weights.shape[1]:
            raise ValueError(f'weights {self.weights.shape}, bias {self.bias.shape} and '
                             f'{len(self.concepts)} concepts do not agree')
        if not (np.isfinite(self.weights).all() and np.isfinite(self.bias).all()):
            raise ValueError('weights or bias are not all finite')
        odd = [name for name in self.concepts if len(name.split(' ')) != 2]
        if odd:
            raise ValueError(f"concept names must be 'colour kind', got {odd[0]!r}")

    @property
    def token_dim(self) -> int:
        """D, the channels per token the probe reads."""
        return int(self.weights.shape[0])

    def cell_probabilities(self, tokens: np.ndarray) -> np.ndarray:
        """(N, C) probability of each concept in each of N cells, from (N, D) tokens."""
        logits = tokens.astype(np.float32) @ self.weights + self.bias
        # Clipped so that exp cannot overflow; sigmoid(+-60) is 0 or 1 in float32 anyway.
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))

    def save(self, path: str | Path) -> None:
        np.savez(path, weights=self.weights.astype(np.float32),
                 bias=self.bias.astype(np.float32), concepts=np.array(self.concepts),
                 model=np.array(self.model), metrics=np.array(self.metrics))

    @classmethod
    def load(cls, path: str | Path) -> ViewProbe:
        """ValueError with one line naming the file for anything missing or inconsistent."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f'no view probe at {path}; fit one with '
                             'python -m tools.fit_view_probe')
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in _PROBE_KEYS if key not in data.files]
                if missing:
                    raise ValueError(f'no {", ".join(missing)} in it')
                weights, bias = data['weights'], data['bias']
                if weights.dtype.kind != 'f' or bias.dtype.kind != 'f':
                    raise ValueError(f'weights ({weights.dtype}) and bias ({bias.dtype}) '
                                     'must be floats')
                return cls(weights.astype(np.float32), bias.astype(np.float32),
                           tuple(str(c) for c in data['concepts'].reshape(-1)),
                           str(data['model']), str(data['metrics']))
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f'view probe {path}: {first_line(error, with_type=False)}'
                             ) from None

    def fit_record(self) -> dict:
        """The fit's settings and metrics, {} when the file has none readable."""
        try:
            record = json.loads(self.metrics)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}


_PROBE_KEYS = ('weights', 'bias', 'concepts', 'model', 'metrics')


@dataclass(frozen=True)
class ViewScore:
    """One view's score for one question."""

    score: float | None  # 0..1; None = the question names no concept the probe knows
    concept: str  # the concept that scored highest, e.g. 'red sign'; '' when abstaining
    seconds: float  # s, wall time of the call: tower (unless cached) + probe + max


class ViewScorer:
    """Scores originals for questions, one tower pass per frame: the last frame's cell
    probabilities are kept under the `key` the caller gives (a stamp, a file name), so more
    questions about the same frame cost only the max over the concepts."""

    def __init__(self, backend, probe: ViewProbe, encoder: GlobalEncoder) -> None:
        self.backend, self.probe, self.encoder = backend, probe, encoder
        self._cached: tuple[object, np.ndarray] | None = None  # (key, (N, C) probabilities)

    def probabilities(self, original: np.ndarray, key=None) -> np.ndarray:
        """(N, C) cell probabilities of the original's global frame (the pixels the server
        would see), from the cache when `key` is not None and matches the last frame's."""
        cached = self._cached  # one read: another thread may replace it meanwhile
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        pixels, _ = self.encoder.render(original)  # (h, w, 3) uint8 BGR
        tokens = self.backend.visual_tokens(pixels, SPLIT)  # (N, D) float32
        probabilities = self.probe.cell_probabilities(tokens)
        self._cached = (key, probabilities)
        return probabilities

    def score(self, original: np.ndarray, question: str, key=None) -> ViewScore:
        """The view score of `original` (H, W, 3) uint8 BGR for `question`: the highest
        probability over cells and the concepts it can mean; None when it names none."""
        started = time.perf_counter()
        columns = matching_concepts(question, self.probe.concepts)
        if not columns:
            return ViewScore(None, '', time.perf_counter() - started)
        best = self.probabilities(original, key)[:, columns].max(axis=0)  # (len(columns),)
        top = int(best.argmax())
        return ViewScore(float(best[top]), self.probe.concepts[columns[top]],
                         time.perf_counter() - started)


def load_view_scorer(model: str = 'bundled', probe_path: str = '', device: str = 'cpu',
                     encoder_config: GlobalEncoderConfig | None = None, *,
                     backend=None) -> ViewScorer:
    """The scorer for `model` (or an already loaded `backend` of it, to share one tower with
    the token layers) with its probe ('' = view_probe.npz next to the model). The encoder
    config must be the edge's `global.*` (what the server sees); None = the model's input
    size, padded. ValueError with one line when the probe is missing, unreadable or reads
    another width of token than the model gives."""
    from colvlm_models.vlm import ModelLoadError, TransformersVlm, resolve_model

    path = Path(probe_path) if probe_path else Path(resolve_model(model)) / PROBE_FILE
    probe = ViewProbe.load(path)
    if backend is None:
        try:
            backend = TransformersVlm(model, device=device, attention=False, progress=False)
        except (ModelLoadError, RuntimeError) as error:
            raise ValueError(f'view.model: {error}') from None
    width, height = backend.image_size
    dim = backend.visual_tokens(np.zeros((height, width, 3), np.uint8), SPLIT).shape[1]
    if dim != probe.token_dim:
        raise ValueError(f'view probe {path} reads {probe.token_dim} channels per token, '
                         f'model {model!r} gives {dim} at split {SPLIT!r}')
    encoder_config = encoder_config or GlobalEncoderConfig(width=width, height=height)
    return ViewScorer(backend, probe, GlobalEncoder(encoder_config))
