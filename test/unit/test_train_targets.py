"""The attention loss's target in tools/train_tiny_vlm.py: where the evidence box lies on the
global view's token grid."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'train_tiny_vlm.py'


@pytest.fixture(scope='module')
def train():
    spec = importlib.util.spec_from_file_location('train_tiny_vlm', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_box_on_one_cell_puts_all_its_weight_there(train):
    # A 128 px square original is the view itself: cells are 16 px, row-major.
    cells = train.target_cells((48, 32, 64, 48), 128, 128, 128, 8)
    assert cells.shape == (64,) and cells.dtype == np.float32
    assert np.argmax(cells) == 2 * 8 + 3 and cells[2 * 8 + 3] == pytest.approx(1.0)


def test_the_share_follows_the_area_and_the_padding(train):
    # 1024 x 768 fits 128 x 96 with 16 px of padding above: the top row shows no image.
    whole = train.target_cells((0, 0, 1024, 768), 1024, 768, 128, 8).reshape(8, 8)
    assert whole.sum() == pytest.approx(1.0)
    assert whole[0].sum() == 0 and whole[-1].sum() == 0
    assert np.allclose(whole[1:7], whole[1:7].mean())
    # A box over two cells, a third in the left one.
    two = train.target_cells((8, 0, 32, 16), 128, 128, 128, 8)
    assert two[0] == pytest.approx(1 / 3) and two[1] == pytest.approx(2 / 3)
    assert two[2:].sum() == 0


def test_no_box_or_a_box_off_the_image_gives_no_target(train):
    assert train.target_cells(None, 640, 480, 128, 8) is None
    assert train.target_cells((700, 10, 800, 50), 640, 480, 128, 8) is None
