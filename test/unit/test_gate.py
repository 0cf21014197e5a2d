"""The entropy gate: hand-computed entropies, aggregation, config checks and every policy."""

import math
from pathlib import Path
import re

import numpy as np
import pytest
import torch

import colvlm_msgs
from colvlm_msgs.geometry import Box
from colvlm_server.gate import (
    POLICY_NAMES,
    AlwaysPolicy,
    Decision,
    DecisionContext,
    GateConfig,
    GateError,
    GateMetrics,
    aggregate,
    make_policy,
    measure,
    summarize,
    token_entropies,
)

P = np.array([0.5, 0.25, 0.25])  # (V,) probabilities of one token
LOG2 = math.log(2.0)


def _metrics(token_min_entropy, config=None):
    """GateMetrics whose three entropies all equal the given per-token values."""
    values = np.asarray(token_min_entropy, dtype=np.float64)
    config = config or GateConfig()
    how = config.aggregate
    return GateMetrics(aggregate(values, how), aggregate(values, how), aggregate(values, how),
                       values, values, values, config.renyi_alpha, how, config.threshold,
                       config.metric)


def _msg_fields(name):
    text = (Path(colvlm_msgs.__file__).parent / 'msg' / f'{name}.msg').read_text()
    fields = set()
    for line in text.splitlines():
        words = line.split('#')[0].split()
        if len(words) >= 2 and '=' not in words[1]:
            fields.add(words[1])
    return fields


def test_hand_computed_entropies():
    result = token_entropies(P, alpha=2.0, probabilities=True)
    assert result.min_entropy == pytest.approx([LOG2])
    assert result.shannon == pytest.approx([1.5 * LOG2])
    assert result.renyi == pytest.approx([-math.log(0.375)])
    assert result.min_entropy.dtype == np.float64 and result.min_entropy.shape == (1,)


@pytest.mark.parametrize('alpha, expected', [
    (1.0, 1.5 * LOG2),
    (math.inf, LOG2),
    (0.5, 2.0 * math.log(math.sqrt(0.5) + 2 * math.sqrt(0.25))),
    (3.0, math.log(0.125 + 2 * 0.25 ** 3) / -2.0),
])
def test_renyi_orders(alpha, expected):
    assert token_entropies(P, alpha, probabilities=True).renyi == pytest.approx([expected])


def test_logits_and_probabilities_agree():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 50)) * 4  # (T, V)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    from_logits = token_entropies(logits + 1e4, alpha=2.0)  # a huge offset must not overflow
    from_probabilities = token_entropies(probabilities, alpha=2.0, probabilities=True)
    for name in ('min_entropy', 'shannon', 'renyi'):
        np.testing.assert_allclose(getattr(from_logits, name),
                                   getattr(from_probabilities, name), rtol=1e-9)


def test_masked_logits_count_as_zero_probability():
    masked = token_entropies(np.array([math.log(2), 0.0, 0.0, -math.inf]))
    assert masked.shannon == pytest.approx([1.5 * LOG2])
    assert masked.renyi == pytest.approx([-math.log(0.375)])


def test_certain_token_has_zero_entropy():
    result = token_entropies(np.array([[0.0, -1e6, -1e6]]))
    assert result.min_entropy[0] == result.shannon[0] == result.renyi[0] == 0.0


def test_torch_input():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert token_entropies(logits).min_entropy == pytest.approx([LOG2])
    assert token_entropies(logits.to(torch.bfloat16)).min_entropy == pytest.approx([LOG2],
                                                                                  rel=1e-2)


@pytest.mark.parametrize('scores, probabilities, message', [
    (np.array([[0.0, math.nan]]), False, 'NaN'),
    (np.array([[0.0, math.inf]]), False, r'\+inf'),
    (np.array([[-math.inf, -math.inf]]), False, 'all logits -inf'),
    (np.array([[0.5, 0.6]]), True, 'sum to 1'),
    (np.array([[1.5, -0.5]]), True, 'non-negative'),
    (np.zeros((2, 3, 4)), False, 'shape'),
])
def test_invalid_scores_raise_gate_error(scores, probabilities, message):
    with pytest.raises(GateError, match=message):
        token_entropies(scores, probabilities=probabilities)


def test_gate_error_is_a_value_error():
    assert issubclass(GateError, ValueError)


def test_aggregation():
    values = np.array([0.2, 0.9, 0.4])  # (T,) nats
    assert aggregate(values, 'max') == pytest.approx(0.9)
    assert aggregate(values, 'mean') == pytest.approx(0.5)
    assert aggregate(values, 'first') == pytest.approx(0.2)
    with pytest.raises(ValueError, match="got 'median'"):
        aggregate(values, 'median')
    with pytest.raises(GateError, match='no answer tokens'):
        aggregate(np.array([]), 'max')
    with pytest.raises(GateError, match='finite'):
        aggregate(np.array([0.1, math.nan]), 'mean')


def test_measure_maps_onto_messages():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.9, 0.05, 0.05]]))  # (T=2, V=3)
    config = GateConfig(threshold=0.3, aggregate='mean', renyi_alpha=2.0)
    metrics = measure(logits, config)
    assert metrics.min_entropy == pytest.approx((LOG2 - math.log(0.9)) / 2)
    assert metrics.token_min_entropy == pytest.approx([LOG2, -math.log(0.9)])
    assert metrics.score == metrics.min_entropy and metrics.exceeds
    pass_fields, answer_fields = metrics.pass_fields(), metrics.answer_fields()
    assert set(pass_fields) <= _msg_fields('PassMetrics')
    assert set(answer_fields) <= _msg_fields('Answer')
    assert answer_fields == {'gate_aggregate': 'mean', 'gate_threshold': 0.3, 'renyi_alpha': 2.0}
    assert isinstance(pass_fields['token_min_entropy'], list)


def test_metric_choice_sets_the_score():
    entropies = token_entropies(P, probabilities=True)
    assert summarize(entropies, GateConfig(metric='shannon')).score == pytest.approx(1.5 * LOG2)
    assert summarize(entropies, GateConfig(metric='renyi')).score == pytest.approx(
        -math.log(0.375))


def test_metrics_refuse_non_finite_aggregates():
    with pytest.raises(GateError, match='min_entropy'):
        GateMetrics(math.nan, 0.0, 0.0, np.zeros(1), np.zeros(1), np.zeros(1), 2.0, 'max', 0.5,
                    'min_entropy')


@pytest.mark.parametrize('kwargs, message', [
    ({'aggregate': 'median'},
     re.escape("gate.aggregate must be one of ('mean', 'max', 'first'), got 'median'")),
    ({'metric': 'gini'}, "gate.metric must be one of .*got 'gini'"),
    ({'threshold': -0.1}, 'gate.threshold must be >= 0.0, got -0.1'),
    ({'threshold': math.inf}, 'gate.threshold must be float, got inf'),
    ({'threshold': math.nan}, 'gate.threshold must be float, got nan'),
    ({'threshold': '0.5'}, "gate.threshold must be float, got '0.5'"),
    ({'renyi_alpha': 0.0}, 'gate.renyi_alpha must be >= 0.01, got 0.0'),
    ({'random_rate': 1.5}, 'gate.random_rate must be <= 1.0, got 1.5'),
    ({'seed': -1}, 'gate.seed must be >= 0, got -1'),
    ({'seed': 1.5}, 'gate.seed must be int, got 1.5'),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**kwargs)


def test_config_normalises_numbers():
    """A sweep's numpy scalars and ints become the declared Python types."""
    config = GateConfig(threshold=1, renyi_alpha=3, random_rate=np.float32(0.25),
                        seed=np.int64(7))
    assert config.threshold == 1.0 and isinstance(config.threshold, float)
    assert config.renyi_alpha == 3.0 and isinstance(config.renyi_alpha, float)
    assert config.random_rate == 0.25 and isinstance(config.random_rate, float)
    assert config.seed == 7 and type(config.seed) is int


def test_threshold_is_strict():
    policy = make_policy('entropy', GateConfig(threshold=0.5))
    at = policy.decide(_metrics([0.5]))
    assert not at.refine and at.kind == 'none' and '<=' in at.reason
    above = policy.decide(_metrics([0.5 + 1e-9, 0.1]))
    assert above.refine and above.kind == 'crop' and '>' in above.reason


def test_entropy_policy_uses_the_aggregate():
    values = [0.1, 0.8]  # max exceeds 0.5, first and mean do not
    gates = {how: GateConfig(threshold=0.5, aggregate=how) for how in ('max', 'mean', 'first')}
    refines = {how: make_policy('entropy', gate).decide(_metrics(values, gate)).refine
               for how, gate in gates.items()}
    assert refines == {'max': True, 'mean': False, 'first': False}


def test_entropy_policy_needs_metrics():
    with pytest.raises(GateError, match='needs gate metrics'):
        make_policy('entropy').decide(None)


def test_layers_policy_asks_for_layers():
    policy = make_policy('layers', GateConfig(threshold=0.2))
    assert policy.decide(_metrics([0.7])).kind == 'layers'
    assert policy.decide(_metrics([0.1])).kind == 'none'


@pytest.mark.parametrize('name, refine, kind', [
    ('global', False, 'none'),
    ('always', True, 'crop'),
    ('hd', True, 'tiles'),
])
def test_fixed_policies(name, refine, kind):
    policy = make_policy(name, GateConfig())
    for values in ([0.0], [5.0]):
        decision = policy.decide(_metrics(values))
        assert (decision.refine, decision.kind) == (refine, kind)
        assert decision.reason


def test_oracle_policy():
    policy = make_policy('oracle')
    target = Box(10, 20, 110, 220)
    decision = policy.decide(_metrics([0.0]), DecisionContext(target_box=target))
    assert (decision.refine, decision.kind, decision.box) == (True, 'oracle_crop', target)
    for context in (None, DecisionContext()):
        missing = policy.decide(_metrics([3.0]), context)
        assert not missing.refine and 'target box' in missing.reason


def test_random_policy_is_deterministic_per_seed():
    def run(seed):
        policy = make_policy('random', GateConfig(random_rate=0.3, seed=seed))
        return [policy.decide(None).refine for _ in range(200)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_random_policy_rate():
    policy = make_policy('random', GateConfig(random_rate=0.3, seed=1))
    rate = np.mean([policy.decide(None).refine for _ in range(5000)])
    assert abs(rate - 0.3) < 0.03
    never = make_policy('random', GateConfig(random_rate=0.0))
    always = make_policy('random', GateConfig(random_rate=1.0))
    assert not any(never.decide(None).refine for _ in range(100))
    assert all(always.decide(None).refine for _ in range(100))


def test_make_policy():
    assert set(POLICY_NAMES) == {make_policy(name).name for name in POLICY_NAMES}
    assert isinstance(make_policy('always'), AlwaysPolicy)
    with pytest.raises(ValueError, match="got 'greedy'"):
        make_policy('greedy', GateConfig())


def test_decision_is_consistent():
    with pytest.raises(ValueError, match='contradicts'):
        Decision(True, 'none', 'x')
    with pytest.raises(ValueError, match='kind'):
        Decision(True, 'zoom', 'x')
