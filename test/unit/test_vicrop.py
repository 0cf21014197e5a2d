"""ViCrop's pure parts on synthetic attention maps: where the box lands, and when it gives up."""

import math

import numpy as np
import pytest

from colvlm_msgs.geometry import Box, GlobalGeometry
from colvlm_server.vicrop import (
    DEFAULT_SCALES,
    GENERIC_PROMPT,
    box_hit,
    choose_layer,
    locate,
    relative_attention,
    tile_boxes,
)

GRID = 24  # LLaVA-1.5: 336 px / 14 px patches
ENCODER = 336  # px
SIZES = [(1024, 768), (640, 480), (1920, 1080), (768, 1024)]
MODES = ['pad', 'center_crop', 'resize']


def _cell_of(geometry, x, y):
    """(row, col) of the global-map cell that shows original pixel (x, y)."""
    point = geometry.to_global(Box(x, y, x, y))
    cell = geometry.global_width / GRID
    return int(point.y0 // cell), int(point.x0 // cell)


def _peak_map(geometry, x, y, background=0.1, peak=5.0):
    att = np.full((GRID, GRID), background)  # (gh, gw) float64
    att[_cell_of(geometry, x, y)] = peak
    return att


def _inside(box, x, y):
    return box.x0 <= x < box.x1 and box.y0 <= y < box.y1


def _check_box(box, width, height):
    assert all(isinstance(v, int) for v in (box.x0, box.y0, box.x1, box.y1))
    assert 0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('width, height', SIZES)
@pytest.mark.parametrize('fx, fy', [(0.5, 0.5), (0.7, 0.35), (0.4, 0.6)])
def test_single_peak_lands_inside_box(mode, width, height, fx, fy):
    geometry = GlobalGeometry.fit(width, height, ENCODER, ENCODER, mode)
    x, y = fx * width, fy * height
    result = locate(_peak_map(geometry, x, y), geometry, ENCODER)
    assert not result.fallback, result.reason
    assert _inside(result.box, x, y)
    _check_box(result.box, width, height)
    side = round(ENCODER * result.scale)
    assert result.box.width == min(side, width) and result.box.height == min(side, height)


@pytest.mark.parametrize('mode', ['pad', 'resize'])
@pytest.mark.parametrize('x, y, expected', [
    (5, 5, Box(0, 0, ENCODER, ENCODER)),
    (1915, 1075, Box(1920 - ENCODER, 1080 - ENCODER, 1920, 1080)),
    (1915, 5, Box(1920 - ENCODER, 0, 1920, ENCODER)),
])
def test_box_is_clamped_at_borders(mode, x, y, expected):
    geometry = GlobalGeometry.fit(1920, 1080, ENCODER, ENCODER, mode)
    result = locate(_peak_map(geometry, x, y), geometry, ENCODER)
    assert result.box == expected


def test_peak_is_centred():
    geometry = GlobalGeometry.fit(3360, 3360, ENCODER, ENCODER, 'resize')  # 140 px per cell
    result = locate(_peak_map(geometry, 1750, 1750), geometry, ENCODER)  # cell 12
    assert result.scale == 1.0
    centre = ((result.box.x0 + result.box.x1) / 2, (result.box.y0 + result.box.y1) / 2)
    assert abs(centre[0] - 1750) <= 70 and abs(centre[1] - 1750) <= 70


def test_window_larger_than_image_gives_whole_image():
    geometry = GlobalGeometry.fit(300, 200, ENCODER, ENCODER, 'pad')
    result = locate(_peak_map(geometry, 150, 100), geometry, ENCODER)
    assert not result.fallback
    assert result.box == Box(0, 0, 300, 200)


def test_larger_blob_gets_larger_window():
    width, height = 1920, 1080
    geometry = GlobalGeometry.fit(width, height, ENCODER, ENCODER, 'pad')
    scales = []
    for side in (100, 600):
        target = Box(960 - side / 2, 540 - side / 2, 960 + side / 2, 540 + side / 2)
        region = geometry.to_global(target)
        centres = (np.arange(GRID) + 0.5) * (ENCODER / GRID)  # (gw,) global px
        in_x = (centres >= region.x0) & (centres < region.x1)
        in_y = (centres >= region.y0) & (centres < region.y1)
        att = 0.1 + np.outer(in_y, in_x).astype(np.float64)  # (gh, gw)
        result = locate(att, geometry, ENCODER)
        assert box_hit(result.box, target)
        scales.append(result.scale)
    assert scales[0] == 1.0 and scales[1] > 1.0


def test_padding_region_is_ignored():
    width, height = 1920, 1080  # pad: the image fills rows 5..18 of 24
    geometry = GlobalGeometry.fit(width, height, ENCODER, ENCODER, 'pad')
    att = _peak_map(geometry, 1400, 500, peak=3.0)
    att[0, :] = 100.0  # padding above the image
    att[-1, :5] = math.nan  # padding below it
    result = locate(att, geometry, ENCODER)
    assert not result.fallback
    assert _inside(result.box, 1400, 500)
    assert result.map[0].sum() == 0.0 and result.map[-1].sum() == 0.0


@pytest.mark.parametrize('att, why', [
    (np.full((GRID, GRID), 0.3), 'flat'),
    (np.zeros((GRID, GRID)), 'all zero'),
    (np.where(np.eye(GRID) > 0, math.nan, 1.0), 'NaN'),
    (np.where(np.eye(GRID) > 0, math.inf, 1.0), 'inf'),
    (np.where(np.eye(GRID) > 0, -1.0, 1.0), 'negative'),
])
def test_degenerate_map_falls_back_to_whole_image(att, why):
    geometry = GlobalGeometry.fit(1024, 768, ENCODER, ENCODER, 'pad')
    result = locate(att, geometry, ENCODER)
    assert result.fallback and result.box == Box(0, 0, 1024, 768)
    assert why in result.reason


def test_locate_rejects_bad_arguments():
    geometry = GlobalGeometry.fit(1024, 768, ENCODER, ENCODER, 'pad')
    with pytest.raises(ValueError, match='rel_map'):
        locate(np.ones(GRID), geometry, ENCODER)
    with pytest.raises(ValueError, match='encoder_size'):
        locate(np.ones((GRID, GRID)), geometry, 0)
    with pytest.raises(ValueError, match='scales'):
        locate(np.ones((GRID, GRID)), geometry, ENCODER, scales=())


def test_relative_attention_divides_out_a_common_bias():
    rng = np.random.default_rng(0)
    heads = 8
    bias = 0.01 + rng.random((GRID, GRID))  # where the model looks whatever the question
    bias[2, 3] = 40.0  # an attention sink far brighter than the answer
    focus = np.ones((GRID, GRID))
    focus[15, 9] = 6.0  # where the question makes it look
    question = (bias * focus)[None] * rng.uniform(0.5, 1.5, (heads, 1, 1))  # (heads, gh, gw)
    generic = bias[None] * rng.uniform(0.5, 1.5, (heads, 1, 1))
    assert np.unravel_index(np.argmax(question.mean(axis=0)), (GRID, GRID)) == (2, 3)
    relative = relative_attention(question.reshape(heads, -1), generic.reshape(heads, -1),
                                  (GRID, GRID))
    assert relative.shape == (GRID, GRID) and relative.dtype == np.float64
    assert np.unravel_index(np.argmax(relative), (GRID, GRID)) == (15, 9)
    geometry = GlobalGeometry.fit(ENCODER, ENCODER, ENCODER, ENCODER, 'resize')
    big = GlobalGeometry.fit(3360, 3360, ENCODER, ENCODER, 'resize')
    assert locate(relative, geometry, ENCODER).box == Box(0, 0, ENCODER, ENCODER)
    assert _inside(locate(relative, big, ENCODER).box, 9.5 * 140, 15.5 * 140)


def test_relative_attention_input_shapes():
    flat = np.arange(1, 7, dtype=np.float64)  # (N,) with N = 2 x 3
    generic = np.full(6, 2.0)
    expected = flat.reshape(2, 3) / (2.0 + 1e-3 * 2.0)
    np.testing.assert_allclose(relative_attention(flat, generic, (2, 3)), expected)
    np.testing.assert_allclose(relative_attention(flat.reshape(2, 3), generic, (2, 3)), expected)
    np.testing.assert_allclose(
        relative_attention(np.stack([flat, flat]), generic[None], (2, 3)), expected)
    with pytest.raises(ValueError, match='does not fit a 4x4 grid'):
        relative_attention(flat, generic, (4, 4))


def test_relative_attention_of_zero_generic_map_falls_back():
    relative = relative_attention(np.ones((4, 4)), np.zeros((4, 4)), (4, 4))
    geometry = GlobalGeometry.fit(1024, 768, 336, 336, 'pad')
    assert locate(relative, geometry, ENCODER).fallback


def test_generic_prompt_and_scales():
    assert GENERIC_PROMPT == 'Write a general description of the image.'
    assert DEFAULT_SCALES == (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)


@pytest.mark.parametrize('num_layers, layer', [
    (32, 14), (40, 18), (24, 11), (28, 12), (16, 7), (2, 1), (1, 0)])
def test_choose_layer(num_layers, layer):
    assert choose_layer(num_layers) == layer


@pytest.mark.parametrize('bad', [0, -3, 2.5, True])
def test_choose_layer_rejects_bad_depth(bad):
    with pytest.raises(ValueError, match='num_layers'):
        choose_layer(bad)


@pytest.mark.parametrize('box, hit', [
    (Box(0, 0, 100, 100), True),  # covers the whole target
    (Box(50, 0, 100, 100), True),  # exactly half
    (Box(51, 0, 100, 100), False),  # just under half
    (Box(200, 200, 300, 300), False),  # disjoint
    (Box(25, 25, 75, 75), False),  # inside it, a quarter
])
def test_box_hit(box, hit):
    assert box_hit(box, Box(0, 0, 100, 100)) is hit


def test_box_hit_threshold_and_empty_target():
    assert box_hit(Box(25, 25, 75, 75), Box(0, 0, 100, 100), min_cover=0.25)
    with pytest.raises(ValueError, match='positive area'):
        box_hit(Box(0, 0, 10, 10), Box(5, 5, 5, 9))


@pytest.mark.parametrize('width, height, rows, cols', [(1024, 768, 2, 2), (641, 481, 2, 2),
                                                        (1920, 1080, 3, 2)])
def test_tile_boxes_cover_exactly(width, height, rows, cols):
    tiles = tile_boxes(width, height, rows, cols)
    assert len(tiles) == rows * cols
    assert sum(tile.area for tile in tiles) == width * height
    assert tiles[0].x0 == 0 and tiles[0].y0 == 0 and tiles[-1].x1 == width
    assert tiles[-1].y1 == height
    with pytest.raises(ValueError, match='rows'):
        tile_boxes(width, height, 0, 2)
