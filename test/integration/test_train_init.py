"""tools.train --init-from the bundled model with a wider --stem-channels: the trainer starts
from the bundled weights, its tower's stem copied in (Net2Net), everything else as shipped."""

import torch

from colvlm_models.tiny_vlm import bundled_model_path


def test_a_wider_stem_starts_from_the_bundled_model(tmp_path):
    from transformers import LlavaForConditionalGeneration

    from tools.train.__main__ import parse_args
    from tools.train.trainer import Trainer

    source = LlavaForConditionalGeneration.from_pretrained(str(bundled_model_path())).eval()
    args = parse_args(['--smoke', '--work', str(tmp_path / 'work'), '--out', str(tmp_path / 'm'),
                       '--stem-channels', '32,64,128', '--device', 'cpu'])
    trainer = Trainer(args)
    try:
        trainer.init_from(bundled_model_path())
    finally:
        trainer.log_file.close()
    wide = trainer.model.eval()
    assert wide.model.vision_tower.stem[0][0].out_channels == 32
    assert torch.equal(wide.model.language_model.embed_tokens.weight,
                       source.model.language_model.embed_tokens.weight)
    assert torch.equal(wide.model.multi_modal_projector.linear_1.weight,
                       source.model.multi_modal_projector.linear_1.weight)
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = wide.model.vision_tower(pixels).last_hidden_state
        expected = source.model.vision_tower(pixels).last_hidden_state
    gap = (got - expected).abs().mean() / expected.abs().mean()
    assert gap < 0.05  # the copies' noise only
    assert (tmp_path / 'work' / 'train.log').read_text().count('"stem_channels": [16, 32, 64]')


def test_head_warmup_keeps_the_tower_frozen_for_its_steps(tmp_path):
    """--head-warmup 2: two tower steps move the fresh cell heads, not the tower; a third
    step moves the tower too."""
    from transformers import LlavaForConditionalGeneration

    from tools.train.__main__ import parse_args
    from tools.train.trainer import Trainer

    source = LlavaForConditionalGeneration.from_pretrained(str(bundled_model_path()))
    tower_before = {k: v.clone() for k, v in source.model.vision_tower.state_dict().items()}

    def run(stop: int):
        args = parse_args(['--batch', '2', '--tower-batch', '4', '--pool', '4', '--pool-fill',
                           '2', '--refresh', '1', '--warmup', '1', '--log-every', '1',
                           '--work', str(tmp_path / f'w{stop}'),
                           '--out', str(tmp_path / 'm'), '--device', 'cpu',
                           '--init-from', str(bundled_model_path()), '--read-steps', '0',
                           '--tower-steps', '3', '--tower-lr', '1e-2', '--head-warmup', '2',
                           '--stop-at', f'tower:{stop}'])
        trainer = Trainer(args)
        heads_before = {k: v.clone() for k, v in trainer.heads.state_dict().items()}
        trainer.run()
        moved = [k for k, v in trainer.tower.state_dict().items()
                 if not torch.equal(v, tower_before[k])]
        heads_moved = any(not torch.equal(v, heads_before[k])
                          for k, v in trainer.heads.state_dict().items())
        return moved, heads_moved

    moved, heads_moved = run(2)
    assert moved == [] and heads_moved
    moved, _ = run(3)
    assert moved  # the tower learns once the warm-up is over
