"""LiteVLM's accelerations on the bundled model and real Glyph-VQA frames: token selection keeps
answers valid on fewer LLM tokens, speculative decoding keeps them identical, int8 keeps the
gate's metrics finite, and bad settings are refused naming the parameter."""

from __future__ import annotations

import numpy as np
import pytest

from colvlm_bench.evaluate import FolderFrames, InProcessEdge
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_models.accelerate import (
    Acceleration,
    answer_length,
    greedy_decode,
    lookup_candidates,
    select_image_positions,
)
from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_models.vlm import ModelLoadError, TransformersVlm, VisualTokens
from colvlm_msgs.constants import Decision, Status
from colvlm_server.gate import GateConfig, make_policy, measure
from colvlm_server.pipeline import TwoStagePipeline

ATTENTION_LAYER = 1


def load(**acceleration) -> TransformersVlm:
    return TransformersVlm('bundled', progress=False,
                           acceleration=Acceleration(**acceleration) if acceleration else None)


@pytest.fixture(scope='module')
def plain() -> TransformersVlm:
    return load()


@pytest.fixture(scope='module')
def scenes(tmp_path_factory, plain):
    """(question, global frame) for the first four questions of each of three Glyph-VQA
    scenes, as sent (every kind of question is among them; more only slow the suite)."""
    folder = write_dataset(tmp_path_factory.mktemp('accelerate') / 'data', 3, seed=20260308)
    frames = FolderFrames(folder)
    width, height = plain.image_size
    from colvlm_edge.global_encoder import GlobalEncoderConfig
    edge = InProcessEdge(GlobalEncoderConfig(width=width, height=height))
    held, pairs, per_scene = {}, [], {}
    for question in load_dataset(folder):
        per_scene[question.image] = per_scene.get(question.image, 0) + 1
        if per_scene[question.image] > 4:
            continue
        if question.image not in held:
            held[question.image] = edge.frame(frames.original(question.image), len(held) + 1)
        pairs.append((question, held[question.image]))
    return edge, pairs


@pytest.fixture(scope='module')
def reference(plain, scenes):
    _, pairs = scenes
    return [plain.generate([frame.image], q.question, attention_layer=ATTENTION_LAYER)
            for q, frame in pairs]


def assert_identical(generations, reference):
    for got, want in zip(generations, reference, strict=True):
        assert got.text == want.text
        assert got.output_tokens == want.output_tokens
        np.testing.assert_array_equal(got.logits.argmax(axis=1), want.logits.argmax(axis=1))
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)


# -- pure helpers --------------------------------------------------------------------------
def test_lookup_proposes_what_followed_the_latest_match_of_the_tail():
    assert lookup_candidates([5, 6, 7, 8, 5, 6], 2) == [7, 8]
    assert lookup_candidates([1, 2, 9, 1, 3, 1, 2], 3) == [9, 1, 3]  # the 2-gram first
    assert lookup_candidates([1, 2, 3], 2) == []


def test_selection_keeps_the_most_attended_image_positions_in_order():
    positions = np.array([10, 11, 12, 13])
    kept = select_image_positions(np.array([0.1, 0.4, 0.3, 0.2]), positions, 0.5)
    assert kept.tolist() == [11, 12]
    assert len(select_image_positions(np.zeros(4), positions, 0.01)) == 1  # at least one


@pytest.mark.parametrize('field, value, name', [
    ('keep_ratio', 0.0, 'tokens.keep_ratio'), ('keep_ratio', 1.2, 'tokens.keep_ratio'),
    ('select_layer', -1, 'tokens.select_layer'), ('speculative', 'medusa',
                                                   'decode.speculative'),
    ('draft_tokens', 0, 'decode.draft_tokens'), ('quantize', 'fp8', 'quantize'),
])
def test_bad_settings_name_the_parameter(field, value, name):
    with pytest.raises(ValueError, match=f'^{name} must'):
        Acceleration(**{field: value})


def test_settings_the_model_cannot_take_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match='tokens.select_layer must be in 0..2'):
        load(keep_ratio=0.5, select_layer=3)
    with pytest.raises(ModelLoadError, match='decode.draft_model'):
        load(speculative='draft', draft_model=str(tmp_path / 'no-draft'))


# -- the bundled model ---------------------------------------------------------------------
def test_keep_ratio_one_is_the_plain_path(plain, scenes, reference):
    whole = load(keep_ratio=1.0)
    assert not whole.acceleration.custom_decode
    _, pairs = scenes
    generations = [whole.generate([f.image], q.question, attention_layer=ATTENTION_LAYER)
                   for q, f in pairs[:4]]
    for got, want in zip(generations, reference, strict=False):
        assert (got.text, got.input_tokens) == (want.text, want.input_tokens)
        np.testing.assert_array_equal(got.logits, want.logits)
        np.testing.assert_array_equal(got.attention, want.attention)


def test_token_selection_answers_from_fewer_llm_tokens(plain, scenes, reference):
    pruned = load(keep_ratio=0.5, select_layer=0)
    edge, pairs = scenes
    heads = plain.model.config.text_config.num_attention_heads
    for (question, frame), want in zip(pairs[:6], reference, strict=False):
        got = pruned.generate([frame.image], question.question,
                              attention_layer=ATTENTION_LAYER)
        assert got.image_tokens == 32 and got.input_tokens == want.input_tokens - 32
        assert isinstance(got.text, str) and 1 <= got.output_tokens <= plain.max_new_tokens
        assert np.isfinite(got.logits).all()
        # ViCrop's map stays on the full grid; the dropped tokens get no attention.
        assert got.attention.shape == (heads, 64)
        assert int((got.attention.sum(axis=0) > 0).sum()) == 32
    # Two images: the ratio applies to all 128 image tokens; the pipeline places the RoI.
    question, frame = pairs[0]
    result = TwoStagePipeline(pruned, GateConfig()).answer(
        question.question, frame, edge, make_policy('always'))
    assert (result.status, result.decision) == (Status.OK, Decision.LOCAL_CROP)
    assert result.roi_result is not None
    assert result.second.input_tokens == reference[0].input_tokens + 64 - 64


@pytest.mark.parametrize('speculative', ['prompt_lookup', 'draft'])
def test_speculative_decoding_answers_exactly_as_greedy(speculative, scenes, reference):
    if speculative == 'draft' and not (bundled_model_path().parent
                                       / 'colvlm-tiny-llava-draft').is_dir():
        pytest.skip('the bundled draft model is not installed')
    fast = load(speculative=speculative, draft_tokens=3)
    _, pairs = scenes
    generations = [fast.generate([f.image], q.question, attention_layer=ATTENTION_LAYER)
                   for q, f in pairs]
    assert_identical(generations, reference)
    for got, want in zip(generations, reference, strict=True):
        np.testing.assert_allclose(got.attention, want.attention, atol=1e-5)
        assert 0 <= got.accepted_tokens <= got.drafted_tokens
    if speculative == 'draft':
        assert sum(g.drafted_tokens for g in generations) > 0


def test_speculation_over_selected_tokens_answers_as_selection_alone(scenes):
    """The two combine: a draft verified by the pruned model changes no pruned answer."""
    pruned = load(keep_ratio=0.5)
    both = load(keep_ratio=0.5, speculative='draft')
    _, pairs = scenes
    alone = [pruned.generate([f.image], q.question) for q, f in pairs[:6]]
    combined = [both.generate([f.image], q.question) for q, f in pairs[:6]]
    assert_identical(combined, alone)
    assert sum(g.drafted_tokens for g in combined) > 0


def test_verification_keeps_confirmed_proposals_and_rejects_the_rest(plain, scenes, reference):
    """Prompt lookup over a context that holds the answer (every proposal confirmed) or a wrong
    one (every proposal rejected): both give the greedy tokens and logits."""
    import torch
    _, pairs = scenes
    longest = max(range(len(reference)), key=lambda k: reference[k].output_tokens)
    question, frame = pairs[longest]
    want = reference[longest]
    with torch.inference_mode():
        embedded = plain._embedded_inputs([frame.image], question.question)
        embeds = embedded['inputs_embeds']
        positions = torch.arange(embeds.shape[1])[None]
        plain_run = greedy_decode(plain.model, embeds, positions, max_new_tokens=8,
                                  eos=plain._eos())
        answer = plain_run.tokens
        right = greedy_decode(plain.model, embeds, positions, max_new_tokens=8,
                              eos=plain._eos(), context=[*answer[:1], *answer], draft_tokens=4)
        wrong = greedy_decode(plain.model, embeds, positions, max_new_tokens=8,
                              eos=plain._eos(), context=[answer[0], 5, 6, 7, 8, 9],
                              draft_tokens=4)
    assert plain_run.tokens[:want.output_tokens] == answer[:want.output_tokens]
    for run in (right, wrong):
        assert run.tokens == answer
        for got, expected in zip(run.logits, plain_run.logits, strict=True):
            assert int(got.argmax()) == int(expected.argmax())
            np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)
    if len(answer) > 2:
        assert right.accepted > 0 and right.forwards < plain_run.forwards
        assert wrong.drafted > 0 and wrong.accepted == 0


def test_speculation_from_visual_tokens_answers_as_greedy(plain, scenes):
    fast = load(speculative='prompt_lookup')
    _, pairs = scenes
    for question, frame in pairs[:3]:
        tokens = VisualTokens(plain.visual_tokens(frame.image, 'tower'), 'tower')
        want = plain.generate([tokens], question.question)
        got = fast.generate([tokens], question.question)
        assert (got.text, got.input_tokens) == (want.text, want.input_tokens)


def test_int8_answers_stay_valid_and_the_gate_gets_finite_metrics(plain, scenes, reference):
    small = load(quantize='int8')
    import torch
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(small.model.model.language_model.layers[0].mlp.up_proj, quantized)
    assert not isinstance(plain.model.model.language_model.layers[0].mlp.up_proj, quantized)
    _, pairs = scenes
    agree = 0
    for (question, frame), want in zip(pairs, reference, strict=True):
        got = small.generate([frame.image], question.question, attention_layer=ATTENTION_LAYER)
        assert isinstance(got.text, str) and np.isfinite(got.logits).all()
        metrics = measure(got.logits, GateConfig())
        assert np.isfinite(metrics.min_entropy) and np.isfinite(metrics.shannon_entropy)
        assert np.isfinite(got.attention).all()
        agree += got.text == want.text
    assert agree > 0  # a quantized model that answers nothing as before is broken


def test_the_answer_ends_before_the_first_eos_or_runs_to_the_limit():
    assert answer_length([5, 7, 2, 9, 2], {2}) == 2
    assert answer_length([2], {2, 3}) == 0
    assert answer_length([5, 7], {2}) == 2
