"""The grid probe's pure parts on stand-in backends whose tokens are cell means of the frame:
row-major ones pass, transposed or shifted ones fail, an image that never arrives fails."""

from __future__ import annotations

import numpy as np

from colvlm_models.grid_probe import mark_cell, probe_cells, probe_grid


class CellMeans:
    """frame_tokens: each cell's mean grey level as its (1,) token, in the order given."""

    def __init__(self, grid, order='rows', shift=0):
        self.grid, self.order, self.shift = grid, order, shift

    def frame_tokens(self, image):
        rows, cols = self.grid
        height, width = image.shape[:2]
        cells = image.reshape(rows, height // rows, cols, width // cols, 3).mean(axis=(1, 3, 4))
        tokens = cells.T.ravel() if self.order == 'columns' else cells.ravel()
        return np.roll(tokens, self.shift)[:, None], self.grid, (0.0, 0.0, 1.0, 1.0)


def test_cells_are_distinct_corners_and_a_middle():
    assert probe_cells((4, 6)) == ((0, 5), (3, 0), (2, 3))
    assert probe_cells((1, 1)) == ((0, 0),)


def test_mark_cell_paints_only_the_middle_of_that_cell_in_a_contrasting_grey():
    image = np.full((40, 60, 3), 200, np.uint8)
    marked = mark_cell(image, (1, 2), (2, 3))  # cells of 20x20 px
    changed = np.argwhere((marked != image).any(axis=2))
    assert changed.min(axis=0).tolist() == [25, 45] and changed.max(axis=0).tolist() == [34, 54]
    assert marked[30, 50].tolist() == [0, 0, 0] and image[30, 50, 0] == 200
    assert mark_cell(np.zeros((40, 60, 3), np.uint8), (0, 0), (2, 3))[10, 10, 0] == 255


def test_row_major_tokens_pass_and_transposed_or_shifted_ones_fail():
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    good = probe_grid(CellMeans((4, 6)), image)
    assert good.ok and good.found == good.marked == ((0, 5), (3, 0), (2, 3))
    assert not probe_grid(CellMeans((4, 6), order='columns'), image).ok
    shifted = probe_grid(CellMeans((4, 6), shift=1), image)
    assert not shifted.ok and '(0, 5) -> (1, 0)' in shifted.summary()


def test_tokens_that_ignore_the_image_are_no_change():
    class Blind(CellMeans):
        def frame_tokens(self, image):
            return np.zeros((16, 8)), (4, 4), (0.0, 0.0, 1.0, 1.0)

    probe = probe_grid(Blind((4, 4)), np.zeros((8, 8, 3), np.uint8))
    assert not probe.ok and probe.found == (None, None, None)
    assert 'no change' in probe.summary()
