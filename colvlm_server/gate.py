"""The entropy gate: from one pass's output-token scores, decide whether to ask for more detail.

Scores in, entropies (nats) and a `Decision` out. The gate knows nothing about images, boxes,
models or transports: it never sees a pixel, and which tokens are the answer is the caller's
choice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from colvlm_models.settings import GENERIC
from colvlm_msgs.param_fields import check_fields, parameter

if TYPE_CHECKING:
    from colvlm_msgs.geometry import Box

AGGREGATES = ('mean', 'max', 'first')
METRICS = ('min_entropy', 'shannon', 'renyi')
DECISION_KINDS = ('none', 'crop', 'tiles', 'oracle_crop', 'layers')
POLICY_NAMES = ('global', 'entropy', 'always', 'random', 'hd', 'oracle', 'layers')
# Within this distance of 1 the Renyi formula divides by ~0; its limit is Shannon's.
_RENYI_ONE_TOLERANCE = 1e-6
# Probability rows may be off by this much (half-precision softmax) before they are rejected.
_PROBABILITY_SUM_TOLERANCE = 1e-2


class GateError(ValueError):
    """Scores the gate cannot judge (NaN, inf, wrong shape); the server answers with a status."""


@dataclass(frozen=True, eq=False)
class TokenEntropies:
    """Per-token entropies of one pass's answer tokens."""

    min_entropy: np.ndarray  # (T,) float64 nats, -log max p
    shannon: np.ndarray  # (T,) float64 nats, -sum p log p
    renyi: np.ndarray  # (T,) float64 nats, order `alpha`
    alpha: float


def _scores_array(scores: Any) -> np.ndarray:
    if hasattr(scores, 'detach'):  # a torch tensor; bfloat16 has no numpy dtype
        scores = scores.detach().float().cpu().numpy()
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise GateError(f'scores must be (tokens, vocab), got shape {array.shape}')
    if np.isnan(array).any():
        raise GateError('scores contain NaN')
    return array


def _log_probabilities(scores: Any, probabilities: bool) -> np.ndarray:
    """(T, V) float64 log p, -inf where p = 0, rows validated."""
    array = _scores_array(scores)
    if probabilities:
        if not np.isfinite(array).all() or (array < 0).any():
            raise GateError('probabilities must be finite and non-negative')
        sums = array.sum(axis=1, keepdims=True)  # (T, 1)
        if (np.abs(sums - 1.0) > _PROBABILITY_SUM_TOLERANCE).any():
            raise GateError(f'probabilities must sum to 1 per token, got sums {sums.ravel()}')
        with np.errstate(divide='ignore'):
            return np.log(array / sums)
    # -inf logits are masked vocabulary entries (logits processors); +inf is invalid.
    if np.isposinf(array).any():
        raise GateError('logits contain +inf')
    peak = array.max(axis=1, keepdims=True)  # (T, 1)
    if np.isneginf(peak).any():
        raise GateError('a token has all logits -inf')
    shifted = array - peak
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def token_entropies(scores: Any, alpha: float = 2.0, *,
                    probabilities: bool = False) -> TokenEntropies:
    """Entropies, in nats, of each generated token's distribution over the vocabulary.

    scores: (T, V) or (V,) logits (or probabilities with `probabilities=True`), numpy or torch.
    Pass the answer tokens only, without the EOS step. alpha > 0 is the Renyi order; alpha = 1
    gives Shannon's entropy and alpha = inf the min-entropy.
    """
    if not alpha > 0:
        raise ValueError(f'alpha must be > 0, got {alpha!r}')
    log_p = _log_probabilities(scores, probabilities)  # (T, V) float64
    p = np.exp(log_p)
    min_entropy = -log_p.max(axis=1)  # (T,)
    shannon = -(p * np.where(np.isfinite(log_p), log_p, 0.0)).sum(axis=1)  # (T,)
    if math.isinf(alpha):
        renyi = min_entropy.copy()
    elif abs(alpha - 1.0) < _RENYI_ONE_TOLERANCE:
        renyi = shannon.copy()
    else:
        scaled = alpha * log_p  # log p^alpha
        top = scaled.max(axis=1, keepdims=True)
        log_sum = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
        renyi = log_sum / (1.0 - alpha)
    # Rounding can leave a certain token at -1e-17; entropies are never negative.
    return TokenEntropies(np.maximum(min_entropy, 0.0), np.maximum(shannon, 0.0),
                          np.maximum(renyi, 0.0), float(alpha))


def aggregate(values: Any, how: str) -> float:
    """One number for a pass from its per-token values: 'max', 'mean' or the 'first' token's."""
    if how not in AGGREGATES:
        raise ValueError(f'aggregate must be one of {AGGREGATES}, got {how!r}')
    array = np.asarray(values, dtype=np.float64).ravel()  # (T,)
    if array.size == 0:
        raise GateError('no answer tokens to aggregate')
    if not np.isfinite(array).all():
        raise GateError(f'token entropies must be finite, got {array}')
    if how == 'max':
        return float(array.max())
    if how == 'mean':
        return float(array.mean())
    return float(array[0])


@dataclass(frozen=True)
class GateConfig:
    """The gate's parameters (`gate.*`), declared here once and checked on construction."""

    # Refine when the aggregate is strictly greater. The default is the bundled model's; a
    # model's own is in its colvlm.yaml (colvlm_models.settings), read when it is chosen.
    threshold: float = parameter(
        'gate.threshold', GENERIC['gate.threshold'], 'refine when the aggregated entropy is '
        "above this (default: the model's colvlm.yaml)", unit='nats', min=0.0, max=100.0)
    # 'max': one unsure token is enough to doubt a short answer.
    aggregate: str = parameter('gate.aggregate', 'max', 'how token entropies become one number',
                               choices=AGGREGATES)
    metric: str = parameter('gate.metric', 'min_entropy',
                            'the entropy compared with the threshold', choices=METRICS)
    renyi_alpha: float = parameter('gate.renyi_alpha', 2.0, 'order of the Renyi entropy '
                                   'reported', min=0.01, max=1000.0)
    random_rate: float = parameter('gate.random_rate', 0.5, "refinement probability of policy "
                                   "'random'", min=0.0, max=1.0)
    seed: int = parameter('gate.seed', 0, "seed of policy 'random'", min=0, max=2**32 - 1)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, eq=False)
class GateMetrics:
    """One pass's gate numbers, named as in PassMetrics.msg and Answer.msg."""

    min_entropy: float  # nats, aggregated
    shannon_entropy: float  # nats, aggregated
    renyi_entropy: float  # nats, aggregated
    token_min_entropy: np.ndarray  # (T,) float64 nats
    token_shannon_entropy: np.ndarray  # (T,) float64 nats
    token_renyi_entropy: np.ndarray  # (T,) float64 nats
    renyi_alpha: float
    gate_aggregate: str
    gate_threshold: float  # nats
    metric: str

    def __post_init__(self) -> None:
        for name in ('min_entropy', 'shannon_entropy', 'renyi_entropy'):
            if not math.isfinite(getattr(self, name)):
                raise GateError(f'{name} must be finite, got {getattr(self, name)!r}')

    @property
    def score(self) -> float:
        """The aggregate the threshold is compared with (nats)."""
        return {'min_entropy': self.min_entropy, 'shannon': self.shannon_entropy,
                'renyi': self.renyi_entropy}[self.metric]

    @property
    def exceeds(self) -> bool:
        return self.score > self.gate_threshold

    def pass_fields(self) -> dict[str, Any]:
        """The entropy fields of a PassMetrics message."""
        return {'min_entropy': self.min_entropy, 'shannon_entropy': self.shannon_entropy,
                'renyi_entropy': self.renyi_entropy,
                'token_min_entropy': [float(v) for v in self.token_min_entropy]}

    def answer_fields(self) -> dict[str, Any]:
        """The gate fields of an Answer message."""
        return {'gate_aggregate': self.gate_aggregate, 'gate_threshold': self.gate_threshold,
                'renyi_alpha': self.renyi_alpha}


def summarize(entropies: TokenEntropies, config: GateConfig) -> GateMetrics:
    """Aggregate per-token entropies as the config says."""
    how = config.aggregate
    return GateMetrics(aggregate(entropies.min_entropy, how), aggregate(entropies.shannon, how),
                       aggregate(entropies.renyi, how), entropies.min_entropy,
                       entropies.shannon, entropies.renyi, entropies.alpha, how,
                       config.threshold, config.metric)


def measure(scores: Any, config: GateConfig, *, probabilities: bool = False) -> GateMetrics:
    """Gate metrics straight from (T, V) answer-token logits (or probabilities); no EOS step."""
    return summarize(token_entropies(scores, config.renyi_alpha,
                                     probabilities=probabilities), config)


@dataclass(frozen=True)
class DecisionContext:
    """What a policy may know besides the scores; `target_box` is for evaluation only."""

    target_box: Box | None = None  # ground-truth box, original px


@dataclass(frozen=True)
class Decision:
    refine: bool
    kind: str  # one of DECISION_KINDS; 'none' exactly when refine is false
    reason: str  # one line for logs and Answer.status_message
    box: Box | None = None  # where to crop, when the policy knows it (oracle)

    def __post_init__(self) -> None:
        if self.kind not in DECISION_KINDS:
            raise ValueError(f'decision kind must be one of {DECISION_KINDS}, got {self.kind!r}')
        if self.refine != (self.kind != 'none'):
            raise ValueError(f'refine={self.refine} contradicts kind {self.kind!r}')


class Policy(ABC):
    """Decides, per query, whether and how to refine the global pass."""

    name = ''

    def __init__(self, config: GateConfig) -> None:
        self.config = config

    @abstractmethod
    def decide(self, metrics: GateMetrics | None,
               context: DecisionContext | None = None) -> Decision: ...


class GlobalPolicy(Policy):
    name = 'global'

    def decide(self, metrics, context=None):
        return Decision(False, 'none', 'policy global never refines')


class EntropyPolicy(Policy):
    """Refine when the aggregated entropy is strictly greater than the threshold."""

    name = 'entropy'
    kind = 'crop'

    def decide(self, metrics, context=None):
        if metrics is None:
            raise GateError(f'policy {self.name} needs gate metrics')
        if not math.isfinite(metrics.score):
            raise GateError(f'gate score must be finite, got {metrics.score!r}')
        threshold = self.config.threshold
        exceeds = metrics.score > threshold
        reason = (f'{metrics.metric} {metrics.score:.4f} {">" if exceeds else "<="} threshold '
                  f'{threshold:.4f} nats ({metrics.gate_aggregate} over '
                  f'{len(metrics.token_min_entropy)} tokens)')
        return Decision(exceeds, self.kind if exceeds else 'none', reason)


class LayersPolicy(EntropyPolicy):
    """The entropy rule, answered with more visual-token layers instead of a crop."""

    name = 'layers'
    kind = 'layers'


class AlwaysPolicy(Policy):
    name = 'always'

    def decide(self, metrics, context=None):
        return Decision(True, 'crop', 'policy always refines')


class RandomPolicy(Policy):
    """Refine with probability `random_rate`; one seeded generator, so a run repeats exactly."""

    name = 'random'

    def __init__(self, config: GateConfig) -> None:
        super().__init__(config)
        self._rng = np.random.default_rng(config.seed)

    def decide(self, metrics, context=None):
        draw = float(self._rng.random())  # in [0, 1): rate 0 never refines, rate 1 always
        rate = self.config.random_rate
        if draw < rate:
            return Decision(True, 'crop', f'random draw {draw:.4f} < rate {rate:.4f}')
        return Decision(False, 'none', f'random draw {draw:.4f} >= rate {rate:.4f}')


class HdPolicy(Policy):
    """The high-resolution baseline: the global frame plus 2x2 tiles, for every query."""

    name = 'hd'

    def decide(self, metrics, context=None):
        return Decision(True, 'tiles', 'policy hd always adds tiles')


class OraclePolicy(Policy):
    """Evaluation only: always crop at the ground-truth box, the upper bound for RoI quality."""

    name = 'oracle'

    def decide(self, metrics, context=None):
        box = context.target_box if context is not None else None
        if box is None:
            return Decision(False, 'none', 'policy oracle needs a target box; none given')
        return Decision(True, 'oracle_crop', 'policy oracle crops at the target box', box)


_POLICIES = {cls.name: cls for cls in (GlobalPolicy, EntropyPolicy, AlwaysPolicy, RandomPolicy,
                                       HdPolicy, OraclePolicy, LayersPolicy)}


def make_policy(name: str, config: GateConfig | None = None) -> Policy:
    """The policy called `name` (one of POLICY_NAMES), with a fresh random generator."""
    if name not in _POLICIES:
        raise ValueError(f'policy must be one of {POLICY_NAMES}, got {name!r}')
    return _POLICIES[name](config if config is not None else GateConfig())
