"""The transformers backend, the evaluation CLI and the training script on real model
classes: a random-init tiny LLaVA with the bundled recipe (no weights, no network)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_clip_llama_configs
import numpy as np
import pytest

from colvlm_bench.cli import main as colvlm_main
from colvlm_bench.glyphvqa.dataset import write_dataset
from colvlm_models.vlm import ModelLoadError, TransformersVlm
from colvlm_msgs.constants import Decision, Status

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def backend(tiny_llava_path) -> TransformersVlm:
    return TransformersVlm(str(tiny_llava_path), progress=False, max_new_tokens=4)


def test_backend_reads_geometry_from_the_processor(backend):
    assert backend.image_size == (128, 128)
    assert backend.grid == (8, 8)
    assert backend.num_layers == 3


def test_generate_returns_scores_tokens_and_attention(backend):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
    one = backend.generate(images[:1], 'What is written on the red sign?', attention_layer=1)
    two = backend.generate(images, 'What is written on the red sign?')
    assert one.image_tokens == 64 and two.image_tokens == 128
    assert two.input_tokens == one.input_tokens + 64
    assert 1 <= one.output_tokens <= 4 and one.logits.shape[1] >= len(backend.tokenizer) - 8
    assert one.logits.shape[0] >= 1 and np.isfinite(one.logits).all()
    heads = backend.model.config.text_config.num_attention_heads
    assert one.attention.shape == (heads, 64)
    # Attention rows are softmax outputs: the image share of the last row lies in (0, 1].
    assert 0.0 < float(one.attention.sum(axis=1).max()) <= 1.0 + 1e-5
    assert two.attention is None and two.flops > one.flops > 0
    generic = backend.image_attention(images[0], 'Write a general description of the image.',
                                      1)
    assert generic.shape == (heads, 64)


def test_generation_is_deterministic(backend):
    image = np.full((128, 128, 3), 90, np.uint8)
    first = backend.generate([image], 'What color is the circle?')
    second = backend.generate([image], 'What color is the circle?')
    assert first.text == second.text
    np.testing.assert_array_equal(first.logits, second.logits)


def test_bad_model_path_names_the_model(tmp_path):
    with pytest.raises(ModelLoadError, match='no-such-model'):
        TransformersVlm(str(tmp_path / 'no-such-model'), progress=False)


def test_eval_cli_writes_metrics_and_plots(tiny_llava_path, tmp_path, capsys):
    data = write_dataset(tmp_path / 'data', n_images=2, seed=3)
    out = tmp_path / 'eval'
    code = colvlm_main(['eval', str(data), '--model', str(tiny_llava_path), '--policy',
                        'global,entropy,always,oracle,hd', '--threshold', '0.5', '--out',
                        str(out), '--no-progress', '--limit', '6'])
    assert code == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert [m['policy'] for m in metrics] == ['global', 'entropy', 'always', 'oracle', 'hd']
    by_policy = {m['policy']: m for m in metrics}
    for m in metrics:
        assert m['n'] == 6 and 0.0 <= m['accuracy'] <= 1.0
    assert by_policy['global']['retransmission_rate'] == 0.0
    assert by_policy['always']['retransmission_rate'] == 1.0
    # Crops and tiles cost uplink bytes on top of the global frame.
    assert by_policy['always']['uplink_bytes_mean'] > by_policy['global']['uplink_bytes_mean']
    assert by_policy['hd']['uplink_bytes_mean'] > by_policy['always']['uplink_bytes_mean']
    assert by_policy['hd']['llm_tokens_mean'] > by_policy['always']['llm_tokens_mean']
    assert by_policy['always']['roi_hit_rate'] is not None
    for name in ('accuracy_vs_uplink.png', 'accuracy_vs_compute.png'):
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    records = (out / 'records.jsonl').read_text().splitlines()
    assert len(records) == 5 * 6
    assert 'accuracy' in capsys.readouterr().out


def test_calibration_for_a_max_drop_sends_less_the_more_drop_it_allows(tmp_path, capsys):
    """--calibrate --max-drop P: the largest τ whose accuracy is within P points of always;
    on the bundled model, allowing every drop keeps the fewest crops of all."""
    data = write_dataset(tmp_path / 'data', n_images=3, seed=11)
    chosen = {}
    for drop in ('0', '100'):
        out = tmp_path / f'calibrate-{drop}'
        code = colvlm_main(['eval', str(data), '--calibrate', '--max-drop', drop,
                            '--out', str(out), '--no-progress', '--limit', '12'])
        assert code == 0
        chosen[drop] = json.loads((out / 'calibration.json').read_text())
        assert chosen[drop]['max_drop'] == float(drop) and chosen[drop]['n'] == 12
        assert (100 * (chosen[drop]['always_accuracy'] - chosen[drop]['accuracy'])
                <= float(drop) + 1e-9)
    assert chosen['100']['threshold'] >= chosen['0']['threshold']
    assert chosen['100']['retransmission_rate'] <= chosen['0']['retransmission_rate']
    assert 'calibrated gate.threshold' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        colvlm_main(['eval', str(data), '--calibrate', '--max-drop', '-1',
                     '--out', str(tmp_path / 'bad')])
    assert exit_.value.code == 2
    assert '--max-drop' in capsys.readouterr().err


def test_eval_cli_rejects_unknown_policy(tmp_path, capsys):
    assert colvlm_main(['eval', str(tmp_path), '--policy', 'psychic', '--out',
                        str(tmp_path / 'o')]) == 2
    assert 'psychic' in capsys.readouterr().err


@pytest.fixture(scope='module')
def tiny_llava_next_path(tmp_path_factory) -> Path:
    """A random-init tiny LLaVA-NeXT (CLIP tower, any-res tiles): the second family."""
    import torch
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    from colvlm_bench.glyphvqa.scene import TASK_WORDS, TEXT_ALPHABET
    from colvlm_models.tiny_vlm import CHAT_TEMPLATE, CLIP_MEAN, CLIP_STD, build_tokenizer

    path = tmp_path_factory.mktemp('tiny-llava-next')
    tokenizer = build_tokenizer(TASK_WORDS, TEXT_ALPHABET)
    vision, text = tiny_clip_llama_configs(tokenizer)
    pinpoints = [[56, 112], [112, 56], [112, 112]]
    image_processor = LlavaNextImageProcessorPil(
        size={'shortest_edge': 56}, crop_size={'height': 56, 'width': 56},
        image_grid_pinpoints=pinpoints, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    # CLIP keeps a CLS token that the 'default' strategy drops: one additional token.
    LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                       vision_feature_select_strategy='default', chat_template=CHAT_TEMPLATE,
                       num_additional_image_tokens=1).save_pretrained(path)
    config = LlavaNextConfig(
        vision_config=vision, text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids('<image>'),
        image_grid_pinpoints=pinpoints, vision_feature_select_strategy='default',
        vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaNextForConditionalGeneration(config).save_pretrained(path)
    return path


def test_second_family_llava_next_runs_the_two_stage_pipeline(tiny_llava_next_path):
    from colvlm_bench.evaluate import InProcessEdge
    from colvlm_edge.global_encoder import GlobalEncoderConfig
    from colvlm_server.gate import make_policy
    from colvlm_server.pipeline import TwoStagePipeline

    backend = TransformersVlm(str(tiny_llava_next_path), progress=False, max_new_tokens=3,
                              image_size=(112, 112))
    # The whole image's base grid (56 px / 14 px patches) is what ViCrop reads.
    assert backend.grid == (4, 4) and backend.num_layers == 2
    rng = np.random.default_rng(2)
    original = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    edge = InProcessEdge(GlobalEncoderConfig(width=112, height=112))
    frame = edge.frame(original, stamp_ns=1)
    pipeline = TwoStagePipeline(backend)
    result = pipeline.answer('What color is the circle?', frame, edge, make_policy('always'))
    assert (result.status, result.decision) == (Status.OK, Decision.LOCAL_CROP)
    assert result.roi_result is not None and not result.roi_result.fallback
    assert result.second.input_tokens > result.first.input_tokens
    assert result.crop_bytes > 0 and result.first.gate is not None


def test_llava_next_refuses_the_custom_decoding_loop_at_load(tiny_llava_next_path):
    """The loop fills image positions from the projector's rows, which LLaVA-NeXT's tiles and
    newlines are not (it used to fail at the first question with a TypeError)."""
    from colvlm_models.accelerate import Acceleration

    with pytest.raises(ValueError, match=r'decode\.speculative.*llava_next family'):
        TransformersVlm(str(tiny_llava_next_path), progress=False, image_size=(112, 112),
                        acceleration=Acceleration(speculative='prompt_lookup'))
