"""Each VLM family colvlm supports, as a random-init miniature saved to disk, answers a
Glyph-VQA frame through the whole two-stage path: the gate's scores, ViCrop's attention at the
family's image positions mapped onto the global frame, the crop as a second image, tokens."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tiny_families import (
    save_tiny_gemma3,
    save_tiny_gemma4,
    save_tiny_idefics3,
    save_tiny_qwen2_5_vl,
    save_tiny_qwen3_vl,
)

from colvlm_models.vlm import TransformersVlm
from colvlm_msgs.constants import Decision, Status

FAMILIES = {'qwen2_5_vl': save_tiny_qwen2_5_vl, 'qwen3_vl': save_tiny_qwen3_vl,
            'idefics3': save_tiny_idefics3, 'gemma3': save_tiny_gemma3,
            'gemma4': save_tiny_gemma4}
FRAME = (112, 112)  # global frame (width, height) px


@pytest.fixture(scope='module', params=sorted(FAMILIES))
def backend(request, tmp_path_factory) -> TransformersVlm:
    path = FAMILIES[request.param](tmp_path_factory.mktemp(request.param))
    return TransformersVlm(str(path), progress=False, max_new_tokens=3, image_size=FRAME)


@pytest.fixture(scope='module')
def glyph_frame():
    from colvlm_bench.evaluate import InProcessEdge
    from colvlm_bench.glyphvqa import render_scene
    from colvlm_edge.global_encoder import GlobalEncoderConfig

    scene = render_scene(np.random.default_rng(3), 640, 480)
    edge = InProcessEdge(GlobalEncoderConfig(width=FRAME[0], height=FRAME[1]))
    return scene, edge, edge.frame(scene.image, stamp_ns=1)


@pytest.mark.parametrize('policy', ['global', 'entropy', 'always'])
def test_family_answers_a_glyph_frame_through_each_policy(backend, glyph_frame, policy):
    from colvlm_server.gate import make_policy
    from colvlm_server.pipeline import TwoStagePipeline

    scene, edge, frame = glyph_frame
    result = TwoStagePipeline(backend).answer('What color is the circle?', frame, edge,
                                              make_policy(policy))
    assert result.status == Status.OK, result.reason
    assert result.first is not None and result.first.gate is not None
    assert result.first.input_tokens > backend.tokens_per_image > 0
    if policy == 'global':
        assert result.decision == Decision.GLOBAL and result.second is None
    if result.decision == Decision.LOCAL_CROP:
        height, width = scene.image.shape[:2]
        roi = result.roi
        assert 0 <= roi.x0 < roi.x1 <= width and 0 <= roi.y0 < roi.y1 <= height
        assert result.roi_result is not None
        # The crop came in as a second image: more image tokens, more input positions.
        assert result.second.input_tokens > result.first.input_tokens
        assert result.crop_bytes > 0
    if policy == 'always':
        assert result.decision == Decision.LOCAL_CROP
        assert not result.roi_result.fallback, result.roi_result.reason


def test_attention_lands_on_the_backend_grid_whatever_the_frame_size(backend):
    """A dynamic-resolution family's token grid follows the image; the backend maps it onto
    its own grid, which ViCrop lays over the whole global frame."""
    rng = np.random.default_rng(0)
    for height, width in ((112, 112), (84, 168)):
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        attention = backend.image_attention(image, 'Write a general description of the image.',
                                            backend.num_layers - 1)
        assert attention.shape[1] == backend.grid[0] * backend.grid[1]
        assert np.isfinite(attention).all() and (attention >= 0).all()
    grad = backend.gradient_attention(image, 'What color is the circle?', 0)
    assert grad.shape == backend.grid and np.isfinite(grad).all()


@pytest.mark.parametrize('name, family', [('qwen2_5_vl', 'qwen_vl'), ('gemma3', 'gemma3')])
def test_families_refuse_the_llava_only_decoding_loop(tmp_path, name, family):
    """Token selection and speculative decoding run from embeddings with 1-D positions and a
    causal mask, which Qwen-VL's 3-D RoPE and Gemma 3's two-way image mask do not follow (on
    Gemma 3 its logits drifted from the model's own by 0.06): refused at load, naming the
    parameter."""
    from colvlm_models.accelerate import Acceleration

    path = FAMILIES[name](tmp_path / name)
    with pytest.raises(ValueError, match=rf'decode\.speculative.*{family} family'):
        TransformersVlm(str(path), progress=False, image_size=FRAME,
                        acceleration=Acceleration(speculative='prompt_lookup'))


def test_a_wide_global_frame_gives_a_box_inside_the_original(backend):
    """A global frame wider than the backend's probe size: the family's grid (Qwen-VL's follows
    the frame) is laid over the whole frame, so the box stays inside the original."""
    from colvlm_bench.evaluate import InProcessEdge
    from colvlm_bench.glyphvqa import render_scene
    from colvlm_edge.global_encoder import GlobalEncoderConfig
    from colvlm_server.gate import make_policy
    from colvlm_server.pipeline import TwoStagePipeline

    scene = render_scene(np.random.default_rng(5), 1024, 576)
    edge = InProcessEdge(GlobalEncoderConfig(width=168, height=112))
    frame = edge.frame(scene.image, stamp_ns=2)
    result = TwoStagePipeline(backend).answer('What color is the square?', frame, edge,
                                              make_policy('always'))
    assert (result.status, result.decision) == (Status.OK, Decision.LOCAL_CROP), result.reason
    roi = result.roi
    assert 0 <= roi.x0 < roi.x1 <= 1024 and 0 <= roi.y0 < roi.y1 <= 576
    assert result.roi_result.map.shape == backend.grid


@pytest.mark.parametrize('size', [(112, 112), (168, 112)])
def test_the_tokens_read_lie_over_the_frame_row_major(backend, glyph_frame, size):
    """A marked cell of the frame changes its own token most among those ViCrop reads: the
    adapter's positions, grid and order are the frame's (at a square and a wide frame)."""
    from colvlm_models.grid_probe import probe_grid

    width, height = size
    image = cv2.resize(glyph_frame[0].image, (width, height), interpolation=cv2.INTER_AREA)
    probe = probe_grid(backend, image)
    assert probe.ok, probe.summary()
    assert len(probe.marked) == 3


def test_the_probe_catches_an_adapter_reading_a_tile(tmp_path):
    """Idefics3 read as a generic family (its first 16 image tokens: the top-left tile, not the
    global sub-image) fails the probe: a mark in another tile changes none of those tokens."""
    from colvlm_models.families import Family
    from colvlm_models.grid_probe import probe_grid

    backend = TransformersVlm(str(save_tiny_idefics3(tmp_path / 'idefics3')), progress=False,
                              image_size=FRAME)
    backend.family = Family(backend.model.config, backend.processor, backend.image_token_id)
    backend.family._grid = (4, 4)  # the first 16 image tokens, as a LLaVA-style square
    probe = probe_grid(backend, np.full((112, 112, 3), 120, np.uint8))
    assert not probe.ok and probe.found[0] is None, probe.summary()


def test_a_centre_cropping_model_is_read_over_the_middle_of_a_wide_frame(glyph_frame):
    """The bundled model's CLIP processor (LLaVA-1.5's) cuts the middle square out of a wide
    frame: the probe finds the tokens there, and ViCrop's map is 0 over the sides the model
    never saw instead of the middle's attention stretched over the whole frame. (Its trained
    tower keeps each patch in its token; a random one of this recipe blurs them.)"""
    from colvlm_models.grid_probe import probe_grid

    backend = TransformersVlm('bundled', progress=False, max_new_tokens=2,
                              image_size=(192, 128))
    image = cv2.resize(glyph_frame[0].image, (192, 128), interpolation=cv2.INTER_AREA)
    probe = probe_grid(backend, image)
    assert probe.ok, probe.summary()
    assert np.allclose(probe.span, (1 / 6, 0.0, 5 / 6, 1.0))
    attention = backend.image_attention(image, 'Write a general description of the image.', 1)
    columns = attention.reshape(-1, *backend.grid).sum(axis=(0, 1))  # (8,) over the frame
    assert columns[0] == 0 and columns[-1] == 0 and columns[2:6].min() > 0


def test_gemma4_flops_leave_out_its_per_layer_lookup_tables(tmp_path):
    """Gemma 4's per-layer embeddings are looked up, not multiplied: counted as decoder
    parameters they would double its E2B's FLOPs."""
    backend = TransformersVlm(str(save_tiny_gemma4(tmp_path / 'gemma4')), progress=False,
                              max_new_tokens=2, image_size=FRAME)
    decoder = backend.model.get_decoder()
    table = sum(p.numel() for p in decoder.embed_tokens_per_layer.parameters())
    every = sum(p.numel() for p in decoder.parameters())
    generation = backend.generate([np.full((112, 112, 3), 90, np.uint8)], 'What is written?')
    positions = generation.input_tokens + generation.output_tokens
    assert table > 0 and generation.flops == 2.0 * (every - table) * positions


@pytest.mark.parametrize('method', ['att', 'grad_att'])
def test_family_crops_with_each_vicrop_map(backend, glyph_frame, method):
    """The question's attention alone ('att') and the gradient-weighted one ('grad_att', one
    more forward and backward pass) place the box inside the frame too."""
    from colvlm_server.gate import make_policy
    from colvlm_server.pipeline import TwoStagePipeline

    scene, edge, frame = glyph_frame
    pipeline = TwoStagePipeline(backend, vicrop_method=method)
    result = pipeline.answer('What color is the circle?', frame, edge, make_policy('always'))
    assert (result.status, result.decision) == (Status.OK, Decision.LOCAL_CROP), result.reason
    height, width = scene.image.shape[:2]
    roi = result.roi
    assert 0 <= roi.x0 < roi.x1 <= width and 0 <= roi.y0 < roi.y1 <= height
    assert result.roi_result.map.shape == backend.grid
    assert result.second.input_tokens > result.first.input_tokens
