"""tools.train's stem widening (Net2Net copies): a wider tower that starts as the narrow one."""

import pytest
import torch

from colvlm_models.glyph_tower import GlyphTowerConfig, GlyphTowerModel
from tools.train.widen import widen_stem


def _tower(stem, seed=0, **sizes) -> GlyphTowerModel:
    torch.manual_seed(seed)
    config = GlyphTowerConfig(stem_channels=stem, hidden_size=32, intermediate_size=64,
                              **sizes)
    tower = GlyphTowerModel(config).eval()
    with torch.no_grad():  # trained-looking weights: non-trivial norms and biases
        for p in tower.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return tower


def test_a_doubled_stem_computes_what_the_narrow_one_did():
    narrow, wide = _tower((4, 8, 16)), _tower((8, 16, 32), seed=1)
    pixels = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        before = wide(pixels).last_hidden_state.clone()
        widen_stem(narrow, wide, noise=0.0)
        expected = narrow(pixels).last_hidden_state
        got = wide(pixels).last_hidden_state
    assert not torch.allclose(before, expected, atol=1e-2)  # it did change the wide tower
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_noise_sets_the_copies_apart_and_keeps_them_close():
    narrow, wide = _tower((4, 8, 16)), _tower((8, 16, 32), seed=1)
    widen_stem(narrow, wide, noise=0.01, generator=torch.Generator().manual_seed(3))
    first = wide.stem[0][0].weight  # out channels: copies of channel c at 2c and 2c + 1
    assert not torch.equal(first[0::2], first[1::2])
    pixels = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        gap = (wide(pixels).last_hidden_state - narrow(pixels).last_hidden_state).abs().max()
    assert 0 < gap < 0.5


def test_only_whole_multiples_of_the_stem_and_equal_other_sizes_are_taken():
    narrow = _tower((4, 8, 16))
    with pytest.raises(ValueError, match='whole multiples'):
        widen_stem(narrow, _tower((6, 8, 16)))
    with pytest.raises(ValueError, match='whole multiples'):
        widen_stem(narrow, _tower((4, 8, 8)))
    with pytest.raises(ValueError, match='stem_layers differs'):
        widen_stem(narrow, _tower((8, 16, 32), stem_layers=2))


def test_the_stem_flag_takes_three_counts_or_names_the_bad_value(capsys):
    from tools.train.__main__ import parse_args

    assert parse_args([]).stem_channels == (16, 32, 64)
    assert parse_args(['--stem-channels', '32,64,128']).stem_channels == (32, 64, 128)
    for bad in ('32,64', '32,x,128', '0,64,128'):
        with pytest.raises(SystemExit):
            parse_args(['--stem-channels', bad])
        assert bad in capsys.readouterr().err
