"""The attention loss's target in tools.train: where the evidence box lies on the global
view's token grid; and the scene pool's style, which picks the renderer's look per scene."""

from pathlib import Path

import numpy as np
import pytest

from tools.train.data import ScenePool, text_page
from tools.train.targets import target_cells


def test_a_box_on_one_cell_puts_all_its_weight_there():
    # A 128 px square original is the view itself: cells are 16 px, row-major.
    cells = target_cells((48, 32, 64, 48), 128, 128, 128, 8)
    assert cells.shape == (64,) and cells.dtype == np.float32
    assert np.argmax(cells) == 2 * 8 + 3 and cells[2 * 8 + 3] == pytest.approx(1.0)


def test_the_share_follows_the_area_and_the_padding():
    # 1024 x 768 fits 128 x 96 with 16 px of padding above: the top row shows no image.
    whole = target_cells((0, 0, 1024, 768), 1024, 768, 128, 8).reshape(8, 8)
    assert whole.sum() == pytest.approx(1.0)
    assert whole[0].sum() == 0 and whole[-1].sum() == 0
    assert np.allclose(whole[1:7], whole[1:7].mean())
    # A box over two cells, a third in the left one.
    two = target_cells((8, 0, 32, 16), 128, 128, 128, 8)
    assert two[0] == pytest.approx(1 / 3) and two[1] == pytest.approx(2 / 3)
    assert two[2:].sum() == 0


def test_no_box_or_a_box_off_the_image_gives_no_target():
    assert target_cells(None, 640, 480, 128, 8) is None
    assert target_cells((700, 10, 800, 50), 640, 480, 128, 8) is None


def test_the_pool_styles_scenes_clean_camera_or_every_other_one():
    assert [ScenePool(1, 0, 4, 128, 8).scene_style(n) for n in range(4)] == ['clean'] * 4
    assert [ScenePool(1, 0, 4, 128, 8, 'camera').scene_style(n) for n in range(2)] == [
        'camera'] * 2
    mixed = [ScenePool(1, 0, 4, 128, 8, 'mix').scene_style(n) for n in range(10)]
    assert mixed.count('camera') == 5 and mixed[:2] == ['clean', 'camera']
    with pytest.raises(ValueError, match='sepia'):
        ScenePool(1, 0, 4, 128, 8, 'sepia')


def test_a_clean_pool_draws_the_renderers_default_scenes():
    from colvlm_bench.glyphvqa.scene import render_scene

    pool = ScenePool(1234, 0, 2, 128, 8)
    pool.advance_to(1)
    rng = np.random.default_rng(np.random.SeedSequence([1234, 7919, 0, 0]))
    assert np.array_equal(pool.slots[0].scene.image, render_scene(rng).image)


def test_truetype_flags_give_the_camera_scenes_their_style(capsys):
    from colvlm_bench.glyphvqa.scene import render_scene
    from tools.train.__main__ import parse_args
    from tools.train.data import camera_style

    assert camera_style(parse_args(['--style', 'mix'])) is None  # CameraStyle() as it was
    style = camera_style(parse_args(['--style', 'mix', '--truetype', '0.5', '--typefaces',
                                     'dejavu,stix']))
    assert style.truetype == 0.5 and style.typefaces == ('dejavu', 'stix')
    pool = ScenePool(1234, 0, 2, 128, 8, 'camera', style)
    pool.advance_to(1)
    rng = np.random.default_rng(np.random.SeedSequence([1234, 7919, 0, 0]))
    assert np.array_equal(pool.slots[0].scene.image, render_scene(rng, style=style).image)
    sized = camera_style(parse_args(['--style', 'mix', '--text-height', '8,20']))
    assert sized.text_height == (8, 20) and sized.truetype == 0.0
    assert 'pose' not in sized.factors
    posed = camera_style(parse_args(['--style', 'mix', '--factors', 'all']))
    assert 'pose' in posed.factors and posed.text_height == (14, 32)
    assert posed.pose_share == 1.0
    shared = camera_style(parse_args(['--style', 'mix', '--factors', 'all', '--pose-share',
                                      '0.4']))
    assert 'pose' in shared.factors and shared.pose_share == 0.4
    for bad, culprit in ((['--truetype', '2'], '--truetype'),
                         (['--factors', 'zoom'], '--factors'),
                         (['--truetype', '0.5', '--typefaces', 'arial'], '--typefaces'),
                         (['--text-height', '3,5'], '--text-height'),
                         (['--pose-share', '0.4'], '--pose-share'),  # pose is not on
                         (['--factors', 'all', '--pose-share', '2'], '--pose-share')):
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert culprit in capsys.readouterr().err


def test_the_flags_name_a_stop_and_a_style_or_the_bad_value(capsys):
    from tools.train.__main__ import parse_args

    args = parse_args(['--stop-at', 'joint:1000', '--style', 'mix'])
    assert args.stop_at == ('joint', 1000) and args.style == 'mix'
    assert parse_args([]).stop_at is None and parse_args([]).style == 'clean'
    for bad in (['--stop-at', 'lunch:3'], ['--stop-at', 'joint:0'], ['--style', 'sepia'],
                ['--tower-global-share', '1.5']):
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert bad[1] in capsys.readouterr().err


def test_the_smoke_flag_gives_every_stage_a_few_steps_on_a_small_pool():
    """--smoke (the training script's own test size; the recipe's smoke run sets its own)."""
    from tools.train.__main__ import parse_args

    full, smoke = parse_args([]), parse_args(['--smoke'])
    steps = ('read_steps', 'tower_steps', 'align_steps', 'bind_steps', 'joint_steps')
    assert all(0 < getattr(smoke, k) <= 5 for k in steps)
    assert smoke.pool < full.pool and smoke.batch < full.batch and smoke.log_every == 1


def test_the_colour_weight_scales_only_the_colour_heads_loss():
    """--color-weight: the per-cell loss is kind + w * colour + text terms."""
    import torch

    from tools.train.targets import CellHeads

    pool = ScenePool(3, 0, 1, 128, 8)
    pool.advance_to(1)
    views = [pool.slots[0].global_view]
    torch.manual_seed(0)
    heads = CellHeads(16)
    features = torch.randn(1, 64, 16)
    _, stats = heads.loss(features, views)
    heads.color_weight = 3.0
    total, _ = heads.loss(features, views)
    expected = (stats['kind'] + 3.0 * stats['color']
                + heads.text_weight * (stats['text'] + stats['local']))
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert stats['color'] > 0


def test_text_pages_letter_truetype_lines_only_when_asked():
    from colvlm_bench.glyphvqa.camera import CameraStyle
    from tools.train.data import IGNORE

    plain = text_page(np.random.default_rng(3), 128, 8, 90)
    zero = text_page(np.random.default_rng(3), 128, 8, 90, CameraStyle(typefaces=('stix',)))
    assert np.array_equal(plain.pixels, zero.pixels) and np.array_equal(plain.local, zero.local)
    page = text_page(np.random.default_rng(3), 128, 8, 90,
                     CameraStyle(truetype=1.0, typefaces=('dejavu',)))
    assert not np.array_equal(page.pixels, plain.pixels)
    labelled = np.argwhere(page.local != IGNORE)
    assert len(labelled) >= 8
    # Every labelled cell holds ink: its pixels are not all the background's.
    spread = [np.ptp(page.pixels[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16].astype(int))
              for r, c in labelled]
    assert min(spread) >= 40


def test_text_pages_letter_in_a_font_file_given_by_path(tmp_path):
    import matplotlib

    from colvlm_bench.glyphvqa.camera import CameraStyle

    face = tmp_path / 'Own.ttf'
    face.write_bytes((Path(matplotlib.get_data_path()) / 'fonts' / 'ttf' / 'cmtt10.ttf')
                     .read_bytes())
    named = text_page(np.random.default_rng(3), 128, 8, 90,
                      CameraStyle(truetype=1.0, typefaces=('computer-modern',)))
    own = text_page(np.random.default_rng(3), 128, 8, 90,
                    CameraStyle(truetype=1.0, typefaces=(str(face),)))
    plain = text_page(np.random.default_rng(3), 128, 8, 90)
    assert not np.array_equal(own.pixels, plain.pixels)
    assert not np.array_equal(own.pixels, named.pixels)  # one face, not the family's four
