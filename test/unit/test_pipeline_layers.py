"""The pipeline's token-layer path: answer from the layers that came, ask for more while the
gate is unsure, then (by option) crop; bad or missing layers end in LAYERS_UNAVAILABLE with
an answer from what was usable. A scripted backend is sure only when the tokens it gets are
close enough to the frame's true tokens, so the number of layers decides its confidence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from colvlm_models.vlm import Generation, VisualTokens, VlmBackend
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.geometry import GlobalGeometry
from colvlm_msgs.token_codec import TokenCodec
from colvlm_server.gate import GateConfig, make_policy
from colvlm_server.pipeline import Crop, TwoStagePipeline
from colvlm_server.token_layers import LayeredFrame, LayerFetch, LayerOptions, LayersUnavailable

GRID, DIM = (4, 4), 24


def _tokens(rng, n: int) -> np.ndarray:
    mixing = rng.normal(size=(DIM, DIM)) * (0.6 ** np.arange(DIM))[:, None]
    return (rng.normal(size=(n, DIM)) @ mixing + 3.0).astype(np.float32)


CODEC = TokenCodec.fit(_tokens(np.random.default_rng(0), 2000), [2, 4, 6, 12], [8, 6, 5, 4])
TRUTH = _tokens(np.random.default_rng(1), GRID[0] * GRID[1])
LAYERS = CODEC.encode(TRUTH)
ERRORS = [float(np.linalg.norm(CODEC.decode(LAYERS[:k]) - TRUTH)) for k in range(1, 5)]


class TokenBackend(VlmBackend):
    """Sure when its image tokens are within `tolerance` (L2) of TRUTH, or given a crop."""

    model_id, num_layers, image_size, grid = 'scripted', 4, (64, 64), GRID

    def __init__(self, layers_needed: int):
        self.tolerance = ERRORS[layers_needed - 1] * 1.001
        self.calls: list[list] = []

    def generate(self, images, question, *, attention_layer=None):
        self.calls.append(list(images))
        assert isinstance(images[0], VisualTokens) and images[0].split == 'tower'
        error = np.linalg.norm(images[0].tokens - TRUTH)
        sure = len(images) > 1 or error <= self.tolerance
        logits = np.zeros((2, 8), np.float32)
        logits[:, 0] = 20.0 if sure else 0.0
        attention = None
        if attention_layer is not None:
            attention = np.full((2, 16), 0.01)
            attention[:, 6] = 1.0
        return Generation('sure' if sure else 'unsure', logits, 30, 16, 3, 1e6, 0.001,
                          attention)

    def image_attention(self, image, prompt, layer):
        assert isinstance(image, VisualTokens)
        return np.full((2, 16), 0.05)


class ScriptedEdge:
    """Serves LAYERS: 100 B per layer in a reply, 20 B per request."""

    def __init__(self, fail: str | None = None, reply=None):
        self.asked: list[tuple[int, int, str]] = []
        self.fail, self.reply = fail, reply

    def fetch(self, frame, first, last, codec_id):
        self.asked.append((first, last, codec_id))
        if self.fail:
            raise LayersUnavailable(self.fail)
        layers = self.reply if self.reply is not None else LAYERS[first:last + 1]
        return LayerFetch(list(layers), 100 * len(layers), 20)


class CropEdge:
    def __init__(self):
        self.boxes = []

    def fetch(self, frame, box, output_size):
        self.boxes.append(box)
        return Crop(np.zeros((64, 64, 3), np.uint8), box, 1000, 50)


def _frame(layers=LAYERS[:1], **fields) -> LayeredFrame:
    return LayeredFrame(7, tuple(layers), 'cam', 80 * len(layers), **fields)


def _answer(backend, frame, edge, *, step=1, crop=False, crops=None, threshold=0.5, first=1):
    pipeline = TwoStagePipeline(backend, GateConfig(threshold=threshold))
    options = LayerOptions({CODEC.codec_id: CODEC}, step=step, crop=crop, first=first)
    return pipeline.answer_layers('q?', frame, edge, make_policy('layers', pipeline.gate),
                                  options, crops=crops)


def test_the_errors_fall_with_layers():
    assert ERRORS == sorted(ERRORS, reverse=True) and ERRORS[0] > ERRORS[-1]


def test_sure_from_the_first_layer_asks_for_nothing():
    edge = ScriptedEdge()
    result = _answer(TokenBackend(1), _frame(), edge)
    assert (result.answer, result.decision, result.status) == ('sure', Decision.GLOBAL, Status.OK)
    assert edge.asked == [] and result.layers_used == 1 and result.second is None
    assert (result.layer_bytes, result.uplink_bytes, result.downlink_bytes) == (80, 80, 0)
    assert 'layers 0..0 of 4' in result.reason


def test_unsure_asks_for_one_layer_at_a_time_until_sure():
    backend, edge = TokenBackend(3), ScriptedEdge()
    result = _answer(backend, _frame(), edge)
    assert edge.asked == [(1, 1, CODEC.codec_id), (2, 2, CODEC.codec_id)]
    assert (result.answer, result.decision, result.status) == (
        'sure', Decision.TOKEN_LAYERS, Status.OK)
    assert result.refinement == 'layers' and result.layers_used == 3
    assert len(backend.calls) == 3 and len(result.middle) == 1
    assert result.first.answer == 'unsure' and result.second.answer == 'sure'
    assert (result.layer_bytes, result.downlink_bytes) == (80 + 200, 40)
    assert result.llm_tokens == 3 * 33 and 'layers 0..2 of 4' in result.reason


def test_a_larger_step_asks_for_several_layers_at_once():
    edge = ScriptedEdge()
    result = _answer(TokenBackend(4), _frame(), edge, step=2)
    assert edge.asked == [(1, 2, CODEC.codec_id), (3, 3, CODEC.codec_id)]
    assert result.layers_used == 4 and result.answer == 'sure'


def test_still_unsure_with_all_layers_keeps_the_last_answer_or_crops():
    never_sure = TokenBackend(4)
    never_sure.tolerance = 0.0
    result = _answer(never_sure, _frame(), ScriptedEdge())
    assert (result.answer, result.decision, result.layers_used) == (
        'unsure', Decision.TOKEN_LAYERS, 4)
    crops = CropEdge()
    geometry = GlobalGeometry.fit(640, 480, 64, 64, 'pad')
    cropped = _answer(never_sure, _frame(geometry=geometry), ScriptedEdge(), crop=True,
                      crops=crops)
    assert (cropped.answer, cropped.decision, cropped.refinement) == ('sure', Decision.LOCAL_CROP,
                                                                      'crop')
    images = never_sure.calls[-1]
    assert isinstance(images[0], VisualTokens) and images[1].shape == (64, 64, 3)
    assert len(crops.boxes) == 1 and cropped.crop_boxes == crops.boxes
    assert cropped.uplink_bytes == 80 + 300 + 1000 and cropped.downlink_bytes == 3 * 20 + 50


def test_a_lost_edge_answers_from_the_layers_that_came():
    result = _answer(TokenBackend(3), _frame(), ScriptedEdge(fail='edge gone'))
    assert (result.status, result.decision, result.answer) == (
        Status.LAYERS_UNAVAILABLE, Decision.FALLBACK, 'unsure')
    assert 'edge gone' in result.reason and result.layers_used == 1


def test_bad_layers_from_the_edge_are_not_decoded():
    broken = [replace(LAYERS[1], payload=LAYERS[1].payload[:-2])]
    backend = TokenBackend(2)
    result = _answer(backend, _frame(), ScriptedEdge(reply=broken))
    assert (result.status, result.decision) == (Status.LAYERS_UNAVAILABLE, Decision.FALLBACK)
    assert 'bad layers: layer 1 payload' in result.reason and len(backend.calls) == 1
    assert result.layer_bytes == 80 + 100  # what crossed is counted all the same
    wrong = _answer(TokenBackend(2), _frame(), ScriptedEdge(reply=LAYERS[2:3]))
    assert 'asked for layers 1..1, the edge sent [2]' in wrong.reason


@pytest.mark.parametrize('arrived, why, fetched', [
    ((LAYERS[1],), 'layer 0 is missing (got 1)', [(0, 0), (2, 2)]),
    ((LAYERS[0], LAYERS[2]), 'layer 1 is missing (got 0, 2)', [(1, 1)]),
    ((LAYERS[1], LAYERS[0]), '', [(2, 2)]),  # arrival order does not matter
])
def test_missing_arrived_layers_are_fetched_and_reported(arrived, why, fetched):
    edge = ScriptedEdge()
    result = _answer(TokenBackend(3), _frame(arrived), edge)
    assert [(first, last) for first, last, _ in edge.asked] == fetched
    assert result.answer == 'sure' and result.layers_used == 3
    assert result.status == (Status.LAYERS_UNAVAILABLE if why else Status.OK)
    assert why in result.reason


def test_a_proactive_layer_lost_on_the_link_is_asked_for_before_the_first_pass():
    # The edge sent layers 0 and 1 with the frame (layers.first 2); layer 1 never came. One
    # layer is enough for this backend to be sure, so without layers.first it would answer
    # from layer 0 alone, as a real model does with confidently wrong answers.
    backend, edge = TokenBackend(1), ScriptedEdge()
    result = _answer(backend, _frame(LAYERS[:1]), edge, first=2)
    assert edge.asked == [(1, 1, CODEC.codec_id)] and len(backend.calls) == 1
    assert (result.answer, result.decision, result.status) == ('sure', Decision.GLOBAL, Status.OK)
    assert result.layers_used == 2 and 'layers 0..1 of 4' in result.reason
    assert (result.layer_bytes, result.downlink_bytes) == (80 + 100, 20)
    both = ScriptedEdge()  # both came: nothing to ask
    assert _answer(TokenBackend(1), _frame(LAYERS[:2]), both, first=2).layers_used == 2
    assert both.asked == []
    beyond = ScriptedEdge()  # more than the codec has: all of them, no more
    assert _answer(TokenBackend(1), _frame(), beyond, first=9).layers_used == 4
    assert beyond.asked == [(1, 3, CODEC.codec_id)]


@pytest.mark.parametrize('needed', [1, 3])
def test_a_lost_proactive_layer_the_edge_cannot_give_leaves_the_answer_from_layer_0(needed):
    # Sure from layer 0 or not, the answer comes from it once the edge fails to send layer 1,
    # and the edge is not asked again for the same query.
    edge, backend = ScriptedEdge(fail='edge gone'), TokenBackend(needed)
    result = _answer(backend, _frame(LAYERS[:1]), edge, first=2)
    assert (result.status, result.decision) == (Status.LAYERS_UNAVAILABLE, Decision.FALLBACK)
    assert result.answer == ('sure' if needed == 1 else 'unsure') and len(backend.calls) == 1
    assert edge.asked == [(1, 1, CODEC.codec_id)] and result.layers_used == 1
    assert result.reason.count('edge gone') == 1 and 'layers 0..0 of 4' in result.reason
    nothing = ScriptedEdge(fail='edge gone')  # no usable layer at all: nothing to answer from
    empty = LayeredFrame(7, (replace(LAYERS[0], payload=b''),), 'cam', 80)
    none = _answer(TokenBackend(1), empty, nothing, first=2)
    assert (none.status, none.decision, none.answer) == (
        Status.LAYERS_UNAVAILABLE, Decision.NONE, '')


def test_an_unknown_codec_gives_no_answer():
    other = TokenCodec.fit(_tokens(np.random.default_rng(3), 500), [2, 4, 6, 12], [8, 6, 5, 4])
    edge, backend = ScriptedEdge(), TokenBackend(1)
    result = _answer(backend, _frame(other.encode(TRUTH)[:1]), edge)
    assert (result.status, result.decision, result.answer) == (
        Status.LAYERS_UNAVAILABLE, Decision.NONE, '')
    assert f'codec_id {other.codec_id!r} is not one this server decodes' in result.reason
    assert backend.calls == [] and edge.asked == [] and result.first is None


def test_no_layers_at_all_fetches_layer_0_first():
    edge = ScriptedEdge()
    result = _answer(TokenBackend(1), _frame(), edge)
    assert result.status == Status.OK
    frame = LayeredFrame(7, (replace(LAYERS[0], payload=b''),), 'cam', 80)
    result = _answer(TokenBackend(1), frame, edge)
    assert edge.asked[-1][:2] == (0, 0) and result.answer == 'sure'
    assert result.status == Status.LAYERS_UNAVAILABLE and 'payload is 0 bytes' in result.reason


def test_layer_options_are_validated():
    with pytest.raises(ValueError, match='step'):
        LayerOptions(step=0)
    with pytest.raises(ValueError, match='layers first must be an int >= 1, got 0'):
        LayerOptions(first=0)
