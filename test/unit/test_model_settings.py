"""Per-model settings: one source for tau and the ViCrop method/layer. The library's defaults
equal the node's, and the bundled model's colvlm.yaml is what the node, TwoStagePipeline and
the Evaluator use for it; a parameter file or override still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from colvlm_models.settings import GENERIC, model_settings, write_model_settings
from colvlm_server.gate import GateConfig
from colvlm_server.parameters import SERVER_PARAMETERS, ServerConfig, with_model_settings

ROOT = Path(__file__).resolve().parents[2]


def test_library_defaults_equal_the_node_table_and_the_bundled_model_file():
    table = {name: SERVER_PARAMETERS.specs[name].default for name in GENERIC}
    assert table == GENERIC
    assert GateConfig().threshold == table['gate.threshold']
    assert ServerConfig.__dataclass_fields__['vicrop_method'].default == table['vicrop.method']
    bundled = model_settings('bundled')
    # The shipped tower was calibrated to 0.2281 nats (camera-style split, --max-drop 0.5) and
    # looks with its own attention.
    assert bundled == {'gate.threshold': 0.2281, 'vicrop.method': 'att', 'vicrop.layer': 1}
    assert bundled['gate.threshold'] == GateConfig().threshold
    # config/server.yaml leaves these to the model (else it would override any model's).
    text = (ROOT / 'config' / 'server.yaml').read_text()
    assert 'threshold:' not in text and 'method:' not in text


def test_a_model_without_the_file_gets_the_generic_settings(tmp_path):
    assert model_settings('some-org/some-vlm') == GENERIC
    assert model_settings(tmp_path) == GENERIC
    assert model_settings(None) == GENERIC


@pytest.mark.parametrize('text, culprit', [
    ('gate: {threshold: -1}', 'gate.threshold must be a number >= 0'),
    ('vicrop: {method: gradcam}', 'vicrop.method must be one of'),
    ('vicrop: {layer: x}', 'vicrop.layer must be an int >= -1'),
    ('gate: {tau: 1}', 'gate.tau: unknown model setting'),
])
def test_a_bad_model_file_is_one_line_naming_the_file_and_key(tmp_path, text, culprit):
    (tmp_path / 'colvlm.yaml').write_text(text)
    with pytest.raises(ValueError, match=culprit) as caught:
        model_settings(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / 'colvlm.yaml'))
    assert '\n' not in str(caught.value)


def test_precedence_table_then_model_then_what_the_user_set(tmp_path):
    write_model_settings(tmp_path, 0.25, 'grad_att', 2)
    values = SERVER_PARAMETERS.resolve({'model': str(tmp_path), 'vicrop.method': 'rel_att'})
    merged = with_model_settings(values, explicit={'model', 'vicrop.method'})
    assert merged['gate.threshold'] == 0.25 and merged['vicrop.layer'] == 2
    assert merged['vicrop.method'] == 'rel_att'  # the file set it: the model's yields


class _Backend:
    """Just what TwoStagePipeline reads at construction."""
    num_layers, image_size, model_id = 4, (64, 64), 'fake'

    def __init__(self, model_path):
        self.model_path = model_path


def test_a_pipeline_built_for_a_model_uses_its_settings_unless_told(tmp_path):
    from colvlm_server.pipeline import TwoStagePipeline

    write_model_settings(tmp_path, 0.125, 'att', 3)
    pipeline = TwoStagePipeline(_Backend(str(tmp_path)))
    assert (pipeline.gate.threshold, pipeline.vicrop_method, pipeline.attention_layer) == (
        0.125, 'att', 3)
    told = TwoStagePipeline(_Backend(str(tmp_path)), GateConfig(threshold=1.0),
                            vicrop_method='rel_att', attention_layer=0)
    assert (told.gate.threshold, told.vicrop_method, told.attention_layer) == (
        1.0, 'rel_att', 0)
    generic = TwoStagePipeline(_Backend(None))
    assert generic.vicrop_method == GENERIC['vicrop.method']
    assert generic.gate.threshold == GENERIC['gate.threshold']


def test_the_recipe_writes_the_settings_the_shipped_model_has(tmp_path):
    from tools.recipes.tiny_llava import write_settings

    (tmp_path / 'config.json').write_text((ROOT / 'models' / 'colvlm-tiny-llava' /
                                           'config.json').read_text())
    write_settings(tmp_path, 0.2281)
    assert model_settings(tmp_path) == model_settings('bundled')
