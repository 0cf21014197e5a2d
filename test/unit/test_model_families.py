"""The family adapters' pure parts: attention resampled between grids, and which image tokens
each family says cover the whole frame (token ids laid out as each processor lays them)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from colvlm_models.families import (
    Family,
    Gemma4Family,
    Idefics3Family,
    QwenVlFamily,
    family_for,
    fit_grid,
)

IMAGE = 7


def test_fit_grid_keeps_a_matching_grid_and_moves_a_peak_proportionally():
    attention = np.arange(32, dtype=np.float32).reshape(2, 16)
    assert fit_grid(attention, (4, 4), (4, 4)) is attention
    peak = np.zeros((1, 2 * 4), np.float32)
    peak[0, 1 * 4 + 3] = 1.0  # bottom-right cell of a 2x4 grid
    fitted = fit_grid(peak, (2, 4), (4, 8)).reshape(4, 8)
    assert fitted.shape == (4, 8) and np.unravel_index(fitted.argmax(), fitted.shape) == (3, 7)


def test_qwen_grid_is_the_merged_image_grid_of_image_0():
    config = SimpleNamespace(model_type='qwen2_5_vl',
                             vision_config=SimpleNamespace(spatial_merge_size=2))
    ids = torch.tensor([[1, *[IMAGE] * 6, 2, *[IMAGE] * 4, 3]])
    inputs = {'input_ids': ids, 'image_grid_thw': torch.tensor([[1, 4, 6], [1, 4, 4]])}
    family = family_for(config, None, IMAGE)
    assert isinstance(family, QwenVlFamily)
    positions, grid = family.image_layout(inputs, 2)
    assert grid == (2, 3) and positions.tolist() == list(range(1, 7))


def test_idefics3_reads_image_0s_global_sub_image_not_its_tiles():
    tokenizer = SimpleNamespace(unk_token_id=0,
                                convert_tokens_to_ids=lambda token: {'<global-img>': 9}[token])
    processor = SimpleNamespace(image_seq_len=4, tokenizer=tokenizer)
    tile, glob = [5, *[IMAGE] * 4], [9, *[IMAGE] * 4]
    ids = torch.tensor([[1, *tile, *tile, *glob, 2, *glob, 3]])  # image 0: 2 tiles; image 1
    family = family_for(SimpleNamespace(model_type='idefics3'), processor, IMAGE)
    assert isinstance(family, Idefics3Family)
    positions, grid = family.image_layout({'input_ids': ids}, 2)
    assert grid == (2, 2) and positions.tolist() == [12, 13, 14, 15]


def test_generic_grid_is_square_and_fixed_after_the_probe():
    family = family_for(SimpleNamespace(model_type='llava'), None, IMAGE)
    assert type(family) is Family
    probe = {'input_ids': torch.tensor([[1, *[IMAGE] * 9, 2]])}
    assert family.image_layout(probe, 1)[1] == (3, 3)
    two = {'input_ids': torch.tensor([[1, *[IMAGE] * 9, 2, *[IMAGE] * 9]])}
    positions, grid = family.image_layout(two, 2)
    assert grid == (3, 3) and positions.tolist() == list(range(1, 10))


def test_gemma4_grid_is_image_0s_patch_extent_pooled_by_the_kernel():
    config = SimpleNamespace(model_type='gemma4',
                             vision_config=SimpleNamespace(pooling_kernel_size=3))
    xs, ys = np.meshgrid(np.arange(12), np.arange(6))  # a wide image: 6 x 12 patches
    patches = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    padded = np.concatenate([patches, -np.ones((9, 2), int)])  # the processor pads with -1
    ids = torch.tensor([[1, *[IMAGE] * 8, 2, *[IMAGE] * 8, 3]])
    inputs = {'input_ids': ids, 'image_position_ids': torch.from_numpy(padded)[None]}
    family = family_for(config, None, IMAGE)
    assert isinstance(family, Gemma4Family) and family.needs == 'image_position_ids'
    positions, grid = family.image_layout(inputs, 2)
    assert grid == (2, 4) and positions.tolist() == list(range(1, 9))


def test_a_centre_cropping_processor_shows_the_middle_of_a_wide_frame():
    """CLIP's processor (LLaVA-1.5's) resizes the shortest edge and cuts the middle square out
    of a frame that is not square: the grid shows only that middle."""
    clip = SimpleNamespace(do_center_crop=True, size={'shortest_edge': 128},
                           crop_size={'height': 128, 'width': 128})
    family = family_for(SimpleNamespace(model_type='llava'),
                        SimpleNamespace(image_processor=clip), IMAGE)
    assert family.frame_span(128, 128) == (0.0, 0.0, 1.0, 1.0)
    x0, y0, x1, y1 = family.frame_span(192, 128)
    assert (y0, y1) == (0.0, 1.0) and np.allclose((x0, x1), (1 / 6, 5 / 6))
    squash = SimpleNamespace(image_processor=SimpleNamespace(
        do_center_crop=False, size={'height': 56, 'width': 56}))
    assert family_for(SimpleNamespace(model_type='gemma3'), squash,
                      IMAGE).frame_span(192, 128) == (0.0, 0.0, 1.0, 1.0)


def test_fit_grid_lays_a_cropped_grid_over_the_middle_and_zeroes_the_sides():
    peak = np.zeros((1, 4), np.float32)
    peak[0, 0] = 1.0  # top-left cell of a 2x2 grid showing x 0.25..0.75 of the frame
    fitted = fit_grid(peak, (2, 2), (2, 8), (0.25, 0.0, 0.75, 1.0)).reshape(2, 8)
    assert (fitted[:, :2] == 0).all() and (fitted[:, 6:] == 0).all()
    assert np.unravel_index(fitted.argmax(), fitted.shape) == (0, 2)
    assert fitted[1].max() == 0
