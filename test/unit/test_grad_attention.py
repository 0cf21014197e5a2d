"""ViCrop's gradient-weighted attention (grad-att) on real model classes: the bundled model, the
random-init tiny LLaVA of the bundled recipe and a tiny random CLIP-ViT LLaVA; the map, the
model left as it was, the pipeline's crop from it and the vicrop.method setting."""

from __future__ import annotations

from conftest import tiny_clip_llama_configs
import numpy as np
import pytest

from colvlm_bench.evaluate import Evaluator, FolderFrames, InProcessEdge, summarize
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_edge.global_encoder import GlobalEncoderConfig
from colvlm_models.accelerate import Acceleration
from colvlm_models.vlm import TransformersVlm, VisualTokens
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.params import ParameterError
from colvlm_server.gate import GateConfig, make_policy
from colvlm_server.parameters import SERVER_PARAMETERS, ServerConfig, with_model_settings
from colvlm_server.pipeline import TwoStagePipeline
from colvlm_server.vicrop import VICROP_METHODS

QUESTION = 'What is written on the red sign?'


@pytest.fixture(scope='module')
def bundled() -> TransformersVlm:
    return TransformersVlm('bundled', progress=False)


@pytest.fixture(scope='module')
def tiny(tiny_llava_path) -> TransformersVlm:
    return TransformersVlm(str(tiny_llava_path), progress=False, max_new_tokens=3)


@pytest.fixture(scope='module')
def tiny_clip(tmp_path_factory) -> TransformersVlm:
    """A random-init LLaVA-1.5 layout in miniature: CLIP ViT tower (CLS dropped), MLP
    projector, Llama decoder; 56 px input, 14 px patches: a 4x4 grid."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from colvlm_bench.glyphvqa.scene import TASK_WORDS, TEXT_ALPHABET
    from colvlm_models.tiny_vlm import CHAT_TEMPLATE, CLIP_MEAN, CLIP_STD, build_tokenizer

    path = tmp_path_factory.mktemp('tiny-clip-llava')
    tokenizer = build_tokenizer(TASK_WORDS, TEXT_ALPHABET)
    vision, text = tiny_clip_llama_configs(tokenizer)
    image_processor = CLIPImageProcessorPil(
        size={'shortest_edge': 56}, crop_size={'height': 56, 'width': 56},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                   vision_feature_select_strategy='default', chat_template=CHAT_TEMPLATE,
                   num_additional_image_tokens=1).save_pretrained(path)
    config = LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids('<image>'),
        vision_feature_select_strategy='default', vision_feature_layer=-1,
        image_seq_length=16)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(path)
    backend = TransformersVlm(str(path), progress=False, max_new_tokens=3)
    assert backend.grid == (4, 4)
    return backend


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    """A Glyph-VQA data set of two scenes: (folder, questions)."""
    folder = write_dataset(tmp_path_factory.mktemp('grad-att') / 'data', 2, seed=20261124)
    return folder, load_dataset(folder)


def _image(backend: TransformersVlm, seed: int = 0) -> np.ndarray:
    width, height = backend.image_size
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _model_state(backend: TransformersVlm) -> list[tuple[str, bool, bool]]:
    """(name, requires_grad, has .grad) per parameter."""
    return [(name, p.requires_grad, p.grad is not None)
            for name, p in backend.model.named_parameters()]


@pytest.mark.parametrize('name', ['bundled', 'tiny', 'tiny_clip'])
def test_map_covers_the_grid_finite_non_negative_and_unlike_plain_attention(name, request):
    import torch

    backend = request.getfixturevalue(name)
    image, layer = _image(backend), backend.num_layers - 1
    before = _model_state(backend)
    assert not any(has_grad for _, _, has_grad in before)
    grad_enabled = torch.is_grad_enabled()
    weighted = backend.gradient_attention(image, QUESTION, layer)
    assert weighted.shape == backend.grid and weighted.dtype == np.float32
    assert np.isfinite(weighted).all() and (weighted >= 0).all() and weighted.max() > 0
    plain = backend.image_attention(image, QUESTION, layer).mean(axis=0).reshape(backend.grid)
    assert not np.allclose(weighted / weighted.sum(), plain / plain.sum())
    # No .grad written, requires_grad as it was, autograd's global mode restored.
    assert _model_state(backend) == before
    assert torch.is_grad_enabled() == grad_enabled


def test_map_matches_backward_through_a_retained_attention_gradient(tiny):
    """An independent computation as the paper states it: retain the layer's attention grad,
    backpropagate log p(y*) of the first answer token, A ⊙ ReLU(grad), mean over heads."""
    import copy

    import torch

    image, layer = _image(tiny, seed=3), 1
    got = tiny.gradient_attention(image, QUESTION, layer)
    model = copy.deepcopy(tiny.model)
    inputs = tiny._inputs([image], QUESTION)
    output = model(**inputs, output_attentions=True, return_dict=True)
    attention = output.attentions[layer]  # (1, heads, L, L)
    attention.retain_grad()
    torch.log_softmax(output.logits[0, -1], dim=-1).max().backward()
    image_positions = (inputs['input_ids'][0] == tiny.image_token_id).nonzero().flatten()
    row = attention[0, :, -1, image_positions]
    want = (row * attention.grad[0, :, -1, image_positions].clamp(min=0)).mean(dim=0)
    np.testing.assert_allclose(got, want.detach().reshape(tiny.grid).numpy(), rtol=1e-4,
                               atol=1e-9)


def test_frozen_parameters_stay_frozen_and_visual_tokens_give_the_same_map(bundled):
    image = _image(bundled, seed=5)
    parameters = list(bundled.model.parameters())
    was = [p.requires_grad for p in parameters]
    try:
        for p in parameters:
            p.requires_grad_(False)
        frozen = bundled.gradient_attention(image, QUESTION, 1)
        assert not any(p.requires_grad or p.grad is not None for p in parameters)
    finally:
        for p, requires in zip(parameters, was, strict=True):
            p.requires_grad_(requires)
    np.testing.assert_allclose(frozen, bundled.gradient_attention(image, QUESTION, 1),
                               rtol=1e-5, atol=1e-10)
    tokens = VisualTokens(bundled.visual_tokens(image, 'tower'), 'tower')
    np.testing.assert_allclose(bundled.gradient_attention(tokens, QUESTION, 1), frozen,
                               rtol=1e-4, atol=1e-9)


def test_pipeline_with_grad_att_crops_inside_the_frame(bundled, scene):
    folder, questions = scene
    width, height = bundled.image_size
    edge = InProcessEdge(GlobalEncoderConfig(width=width, height=height))
    question = next(q for q in questions if q.kind == 'text')
    original = FolderFrames(folder).original(question.image)
    frame = edge.frame(original, stamp_ns=1)
    pipeline = TwoStagePipeline(bundled, GateConfig(), vicrop_method='grad_att')
    assert pipeline.vicrop_method == 'grad_att'
    result = pipeline.answer(question.question, frame, edge, make_policy('always'))
    assert (result.status, result.decision) == (Status.OK, Decision.LOCAL_CROP)
    roi = result.roi_result
    assert roi is not None and roi.box == result.roi
    assert 0 <= roi.box.x0 < roi.box.x1 <= original.shape[1]
    assert 0 <= roi.box.y0 < roi.box.y1 <= original.shape[0]
    assert result.crop_bytes > 0 and result.locate_ms > 0


def test_evaluation_reports_the_method(bundled, scene):
    folder, questions = scene
    evaluator = Evaluator(bundled, folder, questions[:2], progress=False,
                          vicrop_method='grad_att')
    records = evaluator.run('always', GateConfig())
    assert all(r.result.roi_result is not None for r in records)
    assert summarize('always', records, GateConfig(), 'grad_att')['vicrop_method'] == 'grad_att'


def test_bad_methods_are_refused_naming_the_parameter(bundled, scene):
    message = f"vicrop.method must be one of {VICROP_METHODS}, got 'gradcam'"
    assert VICROP_METHODS == ('rel_att', 'grad_att', 'att')
    with pytest.raises(ValueError) as error:
        TwoStagePipeline(bundled, vicrop_method='gradcam')
    assert str(error.value) == message
    with pytest.raises(ValueError, match='vicrop.method must be one of'):
        Evaluator(bundled, scene[0], scene[1], progress=False, vicrop_method='gradcam')
    with pytest.raises(ParameterError) as error:
        SERVER_PARAMETERS.resolve(overrides={'vicrop.method': 'gradcam'})
    assert message in str(error.value)


def test_server_parameter_reaches_the_configuration_and_refuses_int8():
    def config(**values) -> ServerConfig:
        return ServerConfig.from_values(SERVER_PARAMETERS.resolve(overrides=values))

    assert config().vicrop_method == 'rel_att'  # the paper's, for a model without colvlm.yaml
    bundled = with_model_settings(SERVER_PARAMETERS.resolve())
    assert ServerConfig.from_values(bundled).vicrop_method == 'att'  # the bundled model's
    assert config(**{'vicrop.method': 'grad_att'}).vicrop_method == 'grad_att'
    with pytest.raises(ValueError, match=r"vicrop.method 'grad_att' .* quantize 'int8'"):
        config(**{'vicrop.method': 'grad_att', 'quantize': 'int8'})
    quantized = TransformersVlm('bundled', progress=False,
                                acceleration=Acceleration(quantize='int8'))
    with pytest.raises(ValueError, match="quantize 'int8'"):
        quantized.gradient_attention(_image(quantized), QUESTION, 1)


def test_eval_cli_takes_the_method_and_refuses_others(capsys):
    from colvlm_bench.cli import main as colvlm_main

    with pytest.raises(SystemExit) as exit_:
        colvlm_main(['eval', 'data', '--out', 'out', '--vicrop-method', 'gradcam'])
    assert exit_.value.code == 2
    assert "--vicrop-method: invalid choice: 'gradcam'" in capsys.readouterr().err
