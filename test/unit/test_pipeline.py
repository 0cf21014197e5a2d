"""The two-stage pipeline's decisions, with a scripted backend (a unit test of the logic;
the transformers backend is tested on real model classes in test_vlm_backend.py)."""

from __future__ import annotations

import numpy as np
import pytest

from colvlm_models.vlm import Generation, VlmBackend
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.geometry import Box, GlobalGeometry
from colvlm_server.gate import GateConfig, make_policy
from colvlm_server.pipeline import (
    Crop,
    CropUnavailable,
    Frame,
    TwoStagePipeline,
    oracle_box,
)

GRID = (4, 4)


def _logits(confident: bool, tokens: int = 2, vocab: int = 8) -> np.ndarray:
    logits = np.zeros((tokens, vocab), np.float32)
    if confident:
        logits[:, 0] = 20.0  # p(max) ~ 1: min-entropy ~ 0
    return logits


class ScriptedBackend(VlmBackend):
    """Answers 'glob' unsure from one image and 'crop' sure from two or more."""

    model_id, num_layers, image_size, grid = 'scripted', 4, (64, 64), GRID

    def __init__(self, attention_peak=(1, 2), nan=False):
        self.calls: list[int] = []
        self.peak = attention_peak
        self.nan = nan

    def generate(self, images, question, *, attention_layer=None):
        self.calls.append(len(images))
        several = len(images) > 1
        logits = _logits(several)
        if self.nan:
            logits[0, 0] = np.nan
        attention = None
        if attention_layer is not None:
            attention = np.full((2, GRID[0] * GRID[1]), 0.01)
            attention[:, self.peak[0] * GRID[1] + self.peak[1]] = 1.0
        return Generation('crop' if several else 'glob', logits, 10 + 16 * len(images),
                          16 * len(images), 3, 1e6, 0.001, attention)

    def image_attention(self, image, prompt, layer):
        return np.full((2, GRID[0] * GRID[1]), 0.05)


class RecordingEdge:
    def __init__(self, fail: str | None = None):
        self.boxes: list[Box] = []
        self.fail = fail

    def fetch(self, frame, box, output_size):
        if self.fail:
            raise CropUnavailable(self.fail)
        self.boxes.append(box)
        return Crop(np.zeros((output_size[1], output_size[0], 3), np.uint8), box, 1000, 50)


def _frame() -> Frame:
    geometry = GlobalGeometry.fit(640, 480, 64, 64, 'pad')
    return Frame(np.zeros((64, 64, 3), np.uint8), geometry, 7, 'cam', 2000)


def test_confident_global_answer_is_kept_without_a_crop():
    backend = ScriptedBackend()
    pipeline = TwoStagePipeline(backend, GateConfig(threshold=5.0))
    edge = RecordingEdge()
    result = pipeline.answer('q?', _frame(), edge, make_policy('entropy', pipeline.gate))
    assert (result.answer, result.decision, result.status) == ('glob', Decision.GLOBAL, Status.OK)
    assert edge.boxes == [] and backend.calls == [1]
    assert result.uplink_bytes == 2000 and result.second is None


def test_unsure_answer_crops_where_attention_points_and_counts_bytes():
    backend = ScriptedBackend(attention_peak=(1, 2))
    pipeline = TwoStagePipeline(backend, GateConfig(threshold=0.5))
    edge = RecordingEdge()
    result = pipeline.answer('q?', _frame(), edge, make_policy('entropy', pipeline.gate))
    assert (result.answer, result.decision, result.refinement) == (
        'crop', Decision.LOCAL_CROP, 'crop')
    assert backend.calls == [1, 2]
    # Cell (row 1, col 2) of a 4x4 grid over 64 px covers global x 32..48, y 16..32; the
    # 640x480 original is padded to 640x640 (offset 80 px), so the peak centre is near
    # x 400, y 160 in original pixels. The chosen box must contain it.
    box = edge.boxes[0]
    assert box.x0 <= 400 <= box.x1 and box.y0 <= 160 <= box.y1
    assert result.roi == box and result.roi_result is not None
    assert (result.crop_bytes, result.downlink_bytes, result.uplink_bytes) == (1000, 50, 3000)
    assert result.first.gate.min_entropy > 0.5 and result.second.gate.min_entropy < 0.01
    assert result.llm_tokens == (26 + 3) + (42 + 3)



class SinkBackend(ScriptedBackend):
    """The generic prompt looks where the question does (as a model trained to look at
    objects does for a prompt it never saw), and nowhere else."""

    def __init__(self, attention_peak=(1, 2)):
        super().__init__(attention_peak)
        self.generic_calls = 0

    def image_attention(self, image, prompt, layer):
        self.generic_calls += 1
        attention = np.full((2, GRID[0] * GRID[1]), 0.01)
        attention[:, self.peak[0] * GRID[1] + self.peak[1]] = 1.0
        return attention


def test_plain_attention_crops_at_the_question_peak_without_a_generic_pass():
    backend = SinkBackend(attention_peak=(1, 2))
    edge = RecordingEdge()
    pipeline = TwoStagePipeline(backend, GateConfig(threshold=0.5), vicrop_method='att')
    plain = pipeline.answer('q?', _frame(), edge, make_policy('always')).roi_result
    box = edge.boxes[0]
    assert box.x0 <= 400 <= box.x1 and box.y0 <= 160 <= box.y1  # as in the test above
    assert backend.generic_calls == 0 and plain.saliency > 0.3
    # Relative attention divides the shared peak out: its map is flat, no window stands out.
    relative = TwoStagePipeline(backend, GateConfig(threshold=0.5), vicrop_method='rel_att')
    result = relative.answer('q?', _frame(), edge, make_policy('always'))
    assert backend.generic_calls == 1 and result.roi_result.saliency < 0.01

def test_crop_failure_falls_back_to_the_global_answer():
    pipeline = TwoStagePipeline(ScriptedBackend(), GateConfig(threshold=0.5))
    result = pipeline.answer('q?', _frame(), RecordingEdge(fail='edge gone'),
                             make_policy('always'))
    assert (result.status, result.decision, result.answer) == (
        Status.CROP_UNAVAILABLE, Decision.FALLBACK, 'glob')
    assert 'edge gone' in result.reason and result.crop_bytes == 0


def test_nan_scores_answer_model_error():
    pipeline = TwoStagePipeline(ScriptedBackend(nan=True))
    result = pipeline.answer('q?', _frame(), RecordingEdge(), make_policy('entropy'))
    assert (result.status, result.decision, result.answer) == (
        Status.MODEL_ERROR, Decision.NONE, '')
    assert 'NaN' in result.reason


def test_hd_fetches_four_tiles_covering_the_original():
    backend = ScriptedBackend()
    pipeline = TwoStagePipeline(backend)
    edge = RecordingEdge()
    result = pipeline.answer('q?', _frame(), edge, make_policy('hd'))
    assert len(edge.boxes) == 4 and backend.calls == [1, 5]
    assert sum(b.area for b in edge.boxes) == 640 * 480
    assert result.crop_bytes == 4000


def test_oracle_crops_around_the_target():
    pipeline = TwoStagePipeline(ScriptedBackend())
    edge = RecordingEdge()
    target = Box(300, 200, 340, 230)
    pipeline.answer('q?', _frame(), edge, make_policy('oracle'), target=target)
    box = edge.boxes[0]
    assert box.intersection(target).area == target.area
    assert box.width == box.height == 64  # the encoder size: the smallest scale holding it


def test_oracle_box_grows_for_large_targets_and_stays_inside():
    geometry = GlobalGeometry.fit(640, 480, 64, 64, 'pad')
    box = oracle_box(Box(600, 440, 640, 480), geometry, 64.0)
    assert (box.x1, box.y1) == (640, 480) and box.width == 64
    big = oracle_box(Box(0, 0, 100, 100), geometry, 64.0)
    assert big.width == big.height == 102  # round(1.6 x 64), the first scale >= 100 px


def test_attention_layer_is_validated():
    with pytest.raises(ValueError, match='vicrop.layer'):
        TwoStagePipeline(ScriptedBackend(), attention_layer=9)
