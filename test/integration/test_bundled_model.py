"""The shipped tiny VLM, loaded offline from models/ as every command loads it by default."""

from __future__ import annotations

import json

import numpy as np
import pytest

from colvlm_bench.evaluate import Evaluator
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_bench.glyphvqa.scene import COLORS
from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_models.vlm import TransformersVlm
from colvlm_msgs.constants import Decision, Status
from colvlm_server.gate import GateConfig


@pytest.fixture(scope='module')
def bundled() -> TransformersVlm:
    return TransformersVlm('bundled', progress=False)


@pytest.fixture(scope='module')
def records(bundled, tmp_path_factory):
    data = write_dataset(tmp_path_factory.mktemp('glyph') / 'data', n_images=6, seed=31337)
    evaluator = Evaluator(bundled, data, load_dataset(data), progress=False)
    return evaluator.run('global', GateConfig())


def test_the_bundled_model_is_found_and_small():
    path = bundled_model_path()
    weights = path / 'model.safetensors'
    assert weights.is_file() and weights.stat().st_size <= 30 * 2**20
    assert (path / 'README.md').is_file()  # the model card
    config = json.loads((path / 'config.json').read_text())
    assert config['model_type'] == 'llava'
    assert config['vision_config']['model_type'] == 'colvlm_glyph_tower'


def test_it_loads_offline_through_the_standard_llava_class(bundled):
    assert type(bundled.model).__name__ == 'LlavaForConditionalGeneration'
    assert bundled.image_size == (128, 128) and bundled.grid == (8, 8)


def test_answers_use_the_task_vocabulary(records):
    for record in records:
        answer = record.result.answer
        if record.question.kind == 'color':
            assert answer in COLORS, (record.question.question, answer)
        elif record.question.kind == 'presence':
            assert answer in ('yes', 'no'), (record.question.question, answer)


def test_it_is_less_sure_where_it_cannot_read(records):
    """Text is 2-6 px tall in the global frame: the gate must see doubt there."""
    def mean_entropy(kind: str) -> float:
        return float(np.mean([r.result.first.gate.min_entropy for r in records
                              if r.question.kind == kind]))

    assert mean_entropy('text') > mean_entropy('color')


def test_the_two_stage_path_runs_on_it(bundled, tmp_path):
    data = write_dataset(tmp_path / 'data', n_images=1, seed=4242)
    questions = [q for q in load_dataset(data) if q.kind == 'text'][:2]
    evaluator = Evaluator(bundled, data, questions, progress=False)
    for record in evaluator.run('always', GateConfig()):
        result = record.result
        assert (result.status, result.decision) == (Status.OK, Decision.LOCAL_CROP)
        assert result.roi_result is not None and result.crop_bytes > 0
        assert result.second.input_tokens == result.first.input_tokens + 64
