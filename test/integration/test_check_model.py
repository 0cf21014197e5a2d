"""`colvlm check-model` on tiny random-init models of each family: the report names the family,
grid and layer, every stage works, and --write-settings leaves a colvlm.yaml colvlm reads."""

from __future__ import annotations

import pytest
from tiny_families import (
    save_tiny_gemma3,
    save_tiny_gemma4,
    save_tiny_idefics3,
    save_tiny_qwen2_5_vl,
)

from colvlm_bench.cli import main as colvlm_main
from colvlm_models.settings import SETTINGS_FILE, model_settings

# family: (builder, its grid over a 112x112 frame)
BUILDERS = {'qwen_vl': (save_tiny_qwen2_5_vl, 4), 'idefics3': (save_tiny_idefics3, 4),
            'gemma3': (save_tiny_gemma3, 4), 'gemma4': (save_tiny_gemma4, 8)}


@pytest.mark.parametrize('family', sorted(BUILDERS))
def test_check_model_reports_every_stage_and_writes_settings(family, tmp_path, capsys):
    build, side = BUILDERS[family]
    path = build(tmp_path / family)
    code = colvlm_main(['check-model', str(path), '--image-size', '112x112',
                        '--write-settings'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f'({family} family, 2 decoder layers)' in out
    assert f'{side}x{side} image tokens over a 112x112 frame' in out
    assert 'eager attention came back' in out and 'FAILED' not in out
    for stage in ('gate', 'geometry', 'vicrop', 'crop', 'grad_att'):
        assert any(line.startswith(f'{stage} ') and ' ok ' in line
                   for line in out.splitlines()), stage
    assert (path / SETTINGS_FILE).is_file()
    settings = model_settings(path)
    assert settings['vicrop.method'] == 'rel_att' and settings['vicrop.layer'] == 1


def test_check_model_names_a_missing_model_in_one_line(tmp_path, capsys):
    assert colvlm_main(['check-model', str(tmp_path / 'no-such-model')]) == 2
    err = capsys.readouterr().err.strip()
    assert 'no-such-model' in err and len(err.splitlines()) == 1


def test_check_model_rejects_a_bad_image_size(capsys):
    assert colvlm_main(['check-model', 'bundled', '--image-size', 'big']) == 2
    assert '--image-size' in capsys.readouterr().err


def test_check_model_says_when_the_processor_crops_a_wide_frame(capsys):
    """The bundled model's CLIP processor sees the middle square of a 192x128 frame: the report
    says so, and the geometry stage still passes over that middle."""
    assert colvlm_main(['check-model', 'bundled', '--image-size', '192x128']) == 0
    out = capsys.readouterr().out
    assert 'the model sees only x 0.17..0.83, y 0.00..1.00 of it' in out
    assert any(line.startswith('geometry ') and ' ok ' in line for line in out.splitlines())


def test_a_processor_needing_a_missing_package_is_one_line(tiny_llava_path, monkeypatch,
                                                           capsys):
    """SmolVLM's processor raises ImportError without num2words: one line naming the package
    and the model, exit 2, as for any model that cannot be loaded (the server says the same)."""
    import colvlm_models.vlm as vlm

    def needs_a_package(path):
        raise ImportError('Package `num2words` is required to run SmolVLM processor.')

    monkeypatch.setattr(vlm, 'load_processor', needs_a_package)
    assert colvlm_main(['check-model', str(tiny_llava_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'num2words' in err and 'cannot load model' in err


def test_an_adapter_reading_the_wrong_tokens_fails_the_geometry_stage(tmp_path, monkeypatch,
                                                                      capsys):
    """Idefics3 read from its first tile instead of its global sub-image: every other stage
    runs, the geometry stage says FAILED and the exit status is 1."""
    from colvlm_models.families import Idefics3Family

    def first_tile(self, inputs, n_images):
        return self._image_positions(inputs['input_ids'])[:16], (4, 4)

    monkeypatch.setattr(Idefics3Family, 'image_layout', first_tile)
    path = save_tiny_idefics3(tmp_path / 'idefics3')
    assert colvlm_main(['check-model', str(path), '--image-size', '112x112']) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith('geometry ') and 'FAILED' in line and 'no change' in line
               for line in lines)
    assert any(line.startswith('gate ') and ' ok ' in line for line in lines)
