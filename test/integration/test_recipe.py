"""tools.recipes.tiny_llava: the shipped model's recipe is the one its model card documents,
and its smoke configuration (one step per training stage, a few scenes per fit) runs the whole
chain, records it in training.json without machine paths, and resumes by skipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools.recipes import tiny_llava
from tools.recipes.runner import RecipeRunner, Stage

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / 'models' / 'colvlm-tiny-llava' / 'README.md'


def test_the_model_card_documents_every_stage_of_the_shipped_recipe(capsys):
    assert tiny_llava.main(['--dry-run']) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert [line.split(':')[0] for line in printed] == [s.name for s in tiny_llava.STAGES]
    card = CARD.read_text()
    missing = [line for line in printed if line not in card]
    assert not missing, f'model card lacks: {missing[0]}'


def test_a_stage_fills_its_placeholders_and_flags():
    stage = Stage('s', 'tools.x', {'_': ('eval', '{work}/d'), 'n_images': 2, 'smoke': True,
                                   'limit': None, 'quick': False, 'out': '{out}'})
    assert stage.argv({'work': 'W', 'out': 'O'}) == ['eval', 'W/d', '--n-images', '2',
                                                     '--smoke', '--out', 'O']
    assert stage.command() == 'python -m tools.x eval {work}/d --n-images 2 --smoke --out {out}'
    with pytest.raises(ValueError, match='unique'):
        RecipeRunner([stage, stage], Path('o'), Path('w'))


def test_an_unknown_start_stage_is_named():
    with pytest.raises(SystemExit, match="no stage 'tokens'"):
        tiny_llava.main(['--start-at', 'tokens', '--out', 'o'])


def test_style_reaches_every_training_stage_and_no_other():
    camera = tiny_llava.styled(tiny_llava.STAGES, 'camera')
    assert all(s.args.get('style') == 'camera' for s in camera if s.tool == tiny_llava.TRAIN)
    # Other stages keep their own: only the calibration split is camera-style (issue 18).
    others = {s.name: s.args.get('style') for s in camera if s.tool != tiny_llava.TRAIN}
    assert {k: v for k, v in others.items() if v} == {'calibration-split': 'camera'}
    assert tiny_llava.styled(tiny_llava.STAGES, 'clean') == tiny_llava.STAGES


def test_the_smoke_recipe_builds_a_loadable_model_and_resumes(tmp_path, capsys):
    import torch

    from colvlm_models.vlm import TransformersVlm

    threads = torch.get_num_threads()  # the fits set their own; give the suite its own back
    out, work = tmp_path / 'model', tmp_path / 'work'
    argv = ['--smoke', '--out', str(out), '--work', str(work)]
    try:
        assert tiny_llava.main(argv) == 0
        capsys.readouterr()
        assert tiny_llava.main(argv) == 0  # a rerun skips every finished stage
        rerun = capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)
    assert rerun.count('done, skipped') == len(tiny_llava.STAGES)
    # Seeded from weights already in OUT: the stages before token-codec are recorded, not run.
    assert tiny_llava.main([*argv, '--start-at', 'token-codec']) == 0
    seeded = json.loads((out / 'training.json').read_text())['recipe']
    first = [s.name for s in tiny_llava.STAGES].index('token-codec')
    assert [s.get('seeded', False) for s in seeded['stages']] == (
        [True] * first + [False] * (len(tiny_llava.STAGES) - first))
    assert seeded['start_at'] == 'token-codec'
    assert tiny_llava.main([*argv, '--start-at', 'gen1']) == 0  # the full chain again
    log = [json.loads(line) for line in (work / 'gen2' / 'train' / 'train.log').open()]
    assert [r['stopped'] for r in log if 'stopped' in r] == ['tower', 'joint']
    assert sum('exported' in r for r in log) == 2  # gen2-joint found joint done; gen2-export
    text = (out / 'training.json').read_text()
    assert str(tmp_path) not in text  # placeholders, not this machine's folders
    recipe = json.loads(text)['recipe']
    assert [s['name'] for s in recipe['stages']] == [s.name for s in tiny_llava.STAGES]
    assert recipe['stages'][0]['command'].startswith('python -m tools.train --work {work}/')
    assert recipe['calibrated']['gate.threshold'] >= 0 and 'torch' in recipe['versions']
    from colvlm_models.settings import model_settings
    assert model_settings(out) == {'gate.threshold': recipe['calibrated']['gate.threshold'],
                                   'vicrop.method': 'att', 'vicrop.layer': 1}
    for name in ('token_codec_tower.npz', 'token_codec_projector.npz', 'view_probe.npz'):
        assert (out / name).is_file()
    model = TransformersVlm(str(out), progress=False, max_new_tokens=2)
    draft = TransformersVlm(str(tmp_path / 'model-draft'), progress=False, max_new_tokens=2)
    assert model.num_layers == 3 and draft.num_layers == 1 and draft.grid == (8, 8)
    # The same run stands in for separate runs of tools.train and tools.make_draft_model:
    # gen1 trains every stage from scratch, gen3 on uses the attention loss, and the draft's
    # distillation (prompts drawn through the training script's sample code) is logged.
    def train_log(gen):
        return [json.loads(line) for line in (work / gen / 'train' / 'train.log').open()]

    first, third = train_log('gen1'), train_log('gen3')
    assert list(dict.fromkeys(r['stage'] for r in first if 'stage' in r)) == [
        'tower', 'align', 'joint']
    ran = {r['stage'] for r in first + log + third if 'stage' in r}
    assert ran == {'read', 'tower', 'align', 'bind', 'joint'}  # every stage, across gens
    assert all(np.isfinite(r['loss']) for r in first + log + third if 'loss' in r)
    attention = [r['att'] for r in third if 'att' in r]
    assert attention and np.isfinite(attention).all()
    made = json.loads((tmp_path / 'model-draft' / 'training.json').read_text())
    assert made['layers_kept'] == [0] and len(made['log']) == 1
    assert all(np.isfinite(r['kl']) for r in made['log'])
