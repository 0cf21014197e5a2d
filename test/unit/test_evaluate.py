"""Evaluation helpers: AUROC, the in-process edge's byte counts, metric summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from colvlm_bench.evaluate import (
    FolderFrames,
    InProcessEdge,
    Record,
    auroc,
    auroc_interval,
    summarize,
)
from colvlm_bench.glyphvqa.questions import Question
from colvlm_edge.global_encoder import GlobalEncoderConfig
from colvlm_msgs.constants import Decision
from colvlm_msgs.geometry import Box
from colvlm_msgs.image_codec import decode_image, encode_image
from colvlm_server.gate import GateConfig, measure
from colvlm_server.pipeline import CropUnavailable, PassResult, PipelineResult
from tools.hostile_inputs import png_bomb


def test_auroc_matches_hand_counts():
    # Positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) = 3/4.
    assert auroc([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.75)
    assert auroc([1, 1], [True, False]) == pytest.approx(0.5)  # a tie counts half
    assert auroc([3, 2, 1], [True, True, False]) == pytest.approx(1.0)
    assert math.isnan(auroc([1, 2], [True, True]))


def test_auroc_breaks_ties_across_many_scores_as_pair_counting_does():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.3
    pairs = [(p > n) + 0.5 * (p == n) for p in scores[labels] for n in scores[~labels]]
    assert auroc(scores, labels) == pytest.approx(np.mean(pairs))


def test_auroc_interval_is_wide_on_few_positives_and_narrow_on_many():
    rng = np.random.default_rng(7)
    def sample(n_pos):  # positives score higher on average, with overlap
        scores = np.r_[rng.normal(1.0, 1.0, n_pos), rng.normal(0.0, 1.0, 200)]
        return scores, np.r_[np.ones(n_pos, bool), np.zeros(200, bool)]
    few, many = sample(6), sample(200)
    low_few, high_few = auroc_interval(*few)
    low_many, high_many = auroc_interval(*many)
    assert low_few <= auroc(*few) <= high_few and low_many <= auroc(*many) <= high_many
    assert high_few - low_few > 2 * (high_many - low_many)
    assert auroc_interval(*few) == auroc_interval(*few)  # seeded: the same data, the same interval
    assert auroc_interval([1.0, 2.0], [True, True]) is None


def test_in_process_edge_counts_the_messages_it_would_send():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    edge = InProcessEdge(GlobalEncoderConfig(width=64, height=64))
    frame = edge.frame(original, stamp_ns=5)
    assert frame.image.shape == (64, 64, 3)
    encoded = edge.encoder.encode(original)
    # CompressedImage + FrameGeometry: the payload plus headers, never less than the payload.
    assert frame.wire_bytes > len(encoded.data)
    crop = edge.fetch(frame, Box(600, 400, 700, 500), (64, 64))
    assert crop.applied == Box(600, 400, 640, 480)  # clamped to the image, as the edge does
    assert crop.image.shape == (64, 64, 3) and crop.wire_bytes > 0 and crop.request_bytes > 0
    with pytest.raises(CropUnavailable, match='not buffered'):
        edge.fetch(frame.__class__(frame.image, frame.geometry, 99), Box(0, 0, 10, 10), (64, 64))
    with pytest.raises(CropUnavailable, match='outside'):
        edge.fetch(frame, Box(900, 900, 950, 950), (64, 64))
    assert decode_image(edge.encoder.encode(original).data).shape == (64, 64, 3)


def _record(kind: str, correct: bool, entropy_high: bool, refined: bool, bytes_: int) -> Record:
    logits = np.zeros((1, 4)) if entropy_high else np.array([[30.0, 0, 0, 0]])
    gate = measure(logits, GateConfig())
    first = PassResult('a', gate, 20, 2, 1e6, 5.0)
    decision = Decision.LOCAL_CROP if refined else Decision.GLOBAL
    result = PipelineResult(answer='a', decision=decision,
                            refinement='crop' if refined else 'none', first=first,
                            global_bytes=bytes_)
    question = Question('q', 'i.png', 'What?', ('a',), kind, None)
    return Record(question, result, correct, correct, None)


def test_summary_has_the_documented_keys_and_fractions():
    records = [_record('text', False, True, True, 100), _record('color', True, False, False, 300)]
    metrics = summarize('entropy', records, GateConfig(threshold=0.3))
    for key in ('policy', 'n', 'accuracy', 'accuracy_by_kind', 'uplink_bytes_mean',
                'retransmission_rate', 'roi_hit_rate', 'llm_tokens_mean', 'latency_ms_mean'):
        assert key in metrics
    assert metrics['accuracy'] == 0.5 and metrics['retransmission_rate'] == 0.5
    assert metrics['accuracy_by_kind'] == {'color': 1.0, 'text': 0.0}
    assert metrics['uplink_bytes_mean'] == 200 and metrics['threshold'] == 0.3
    assert metrics['min_entropy_auroc'] == 1.0  # the wrong answer is the unsure one
    # One text question, wrong: no right text answer to rank against, so no interval.
    assert metrics['min_entropy_auroc_text_ci95'] is None and metrics['n_first_right_text'] == 0
    assert metrics['roi_hit_rate'] is None  # no ViCrop box: reported as null, not NaN


def test_auroc_within_each_kind_is_not_the_overall_one():
    # Overall the gate looks perfect only because every text answer is wrong and unsure; within
    # colour it ranks a wrong answer below a right one (0), and presence has one class (null).
    rows = [('text', False, True), ('text', False, True), ('color', True, True),
            ('color', False, False), ('color', True, False), ('presence', True, False)]
    records = [_record(kind, correct, unsure, False, 100) for kind, correct, unsure in rows]
    metrics = summarize('global', records, GateConfig())
    assert metrics['min_entropy_auroc'] > 0.6
    assert metrics['min_entropy_auroc_by_kind'] == {
        'color': pytest.approx(0.25), 'presence': None, 'text': None}


def test_policy_lists_name_layers_explicitly():
    from colvlm_bench.eval_cli import parse_policies
    from colvlm_bench.evaluate import POLICIES

    assert parse_policies('all') == list(POLICIES) and 'layers' not in POLICIES
    assert parse_policies('all,layers') == [*POLICIES, 'layers']
    assert parse_policies('layers, entropy,layers') == ['layers', 'entropy']
    for bad in ('', 'layer', 'entropy,,pixels'):
        with pytest.raises(ValueError, match='--policy must be among'):
            parse_policies(bad)


def test_eval_reads_originals_by_their_header_size_first(tmp_path):
    (tmp_path / 'ok.png').write_bytes(encode_image(np.zeros((12, 16, 3), np.uint8), 'png', 1))
    (tmp_path / 'bomb.png').write_bytes(png_bomb(7000, 7000))  # 49 MP of zeros, ~50 kB
    (tmp_path / 'cut.png').write_bytes((tmp_path / 'ok.png').read_bytes()[:40])
    frames = FolderFrames(tmp_path)
    assert frames.original('ok.png').shape == (12, 16, 3)
    with pytest.raises(OSError, match='bomb.png: .*7000x7000.*over the limit'):
        frames.original('bomb.png')
    with pytest.raises(OSError, match='cut.png'):
        frames.original('cut.png')
    with pytest.raises(OSError):
        frames.original('missing.png')


def test_a_max_drop_counts_points_under_the_always_policy():
    from colvlm_bench.eval_cli import within_drop

    assert within_drop(0.80, 0.81, 1.0) and within_drop(0.805, 0.81, 0.5)
    assert not within_drop(0.79, 0.81, 1.0) and not within_drop(0.80, 0.81, 0.5)
    assert within_drop(0.83, 0.81, 0.0)  # above always is within any drop
    assert not within_drop(None, 0.81, 5.0) and not within_drop(0.8, None, 5.0)
