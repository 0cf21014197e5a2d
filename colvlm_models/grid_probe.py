"""Whether a backend's image tokens lie over the frame as ViCrop assumes: image 0's whole-frame
tokens, row-major, rows top to bottom, the grid spanning the whole frame.

A cell of the grid, laid over the part of the frame the family says it shows, is marked (its
middle painted in a contrasting grey) and the token whose decoder input changes most must be
that cell's. A vision tower mixes its patches, but each
token keeps its own patch through the residual stream, so the marked cell's token changes most
unless the adapter reads the wrong positions (another tile, a transposed or shifted grid) or
the image never reaches the decoder (a projector of zeros). It knows nothing of attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from colvlm_models.families import FULL_FRAME


@dataclass(frozen=True)
class GridProbe:
    """The cells marked and the token cell that changed most for each (None: none changed)."""

    grid: tuple[int, int]  # (rows, cols) of the family's grid for the probed image
    marked: tuple[tuple[int, int], ...]
    found: tuple[tuple[int, int] | None, ...]
    span: tuple[float, float, float, float] = FULL_FRAME  # the part of the frame it shows

    @property
    def ok(self) -> bool:
        return self.marked == self.found

    def summary(self) -> str:
        pairs = ', '.join(f'{m} -> {f if f is not None else "no change"}'
                          for m, f in zip(self.marked, self.found, strict=True))
        rows, cols = self.grid
        x0, y0, x1, y1 = self.span
        shows = '' if self.span == FULL_FRAME else (
            f' (it shows x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f} of the frame)')
        return f'marked cell -> most-changed token on the {rows}x{cols} grid{shows}: {pairs}'


def probe_cells(grid: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Top-right, bottom-left and a middle cell: a transposed, flipped or shifted grid misses
    at least one of them."""
    rows, cols = grid
    cells = ((0, cols - 1), (rows - 1, 0), (rows // 2, cols // 2))
    return tuple(dict.fromkeys(cells))


def mark_cell(image: np.ndarray, cell: tuple[int, int], grid: tuple[int, int],
              span: tuple[float, float, float, float] = FULL_FRAME) -> np.ndarray:
    """A copy of (H, W, 3) uint8 `image` with the middle half of `cell` of a rows x cols grid
    over `span` of the frame (fractions) painted black or white, whichever differs more."""
    height, width = image.shape[:2]
    (row, col), (rows, cols) = cell, grid
    left, top = span[0] * width, span[1] * height
    cell_w, cell_h = (span[2] - span[0]) * width / cols, (span[3] - span[1]) * height / rows
    y0, y1 = top + row * cell_h, top + (row + 1) * cell_h
    x0, x1 = left + col * cell_w, left + (col + 1) * cell_w
    # The middle half: resizing may move cell edges by a pixel or two, never by a quarter.
    top, bottom = round(y0 + (y1 - y0) / 4), round(y1 - (y1 - y0) / 4)
    left, right = round(x0 + (x1 - x0) / 4), round(x1 - (x1 - x0) / 4)
    marked = image.copy()
    patch = marked[top:max(bottom, top + 1), left:max(right, left + 1)]
    patch[...] = 0 if patch.mean() >= 128 else 255
    return marked


def probe_grid(backend, image: np.ndarray) -> GridProbe:
    """Mark each of `probe_cells` of `image` in turn and find the token that changed most,
    through `backend.frame_tokens` (TransformersVlm's)."""
    base, grid, span = backend.frame_tokens(image)  # (N, hidden), (rows, cols), fractions
    cells = probe_cells(grid)
    found = []
    for cell in cells:
        tokens, _, _ = backend.frame_tokens(mark_cell(image, cell, grid, span))
        change = np.linalg.norm(tokens - base, axis=1).reshape(grid)  # (rows, cols)
        if not change.max() > 0:
            found.append(None)
            continue
        row, col = np.unravel_index(int(np.argmax(change)), grid)
        found.append((int(row), int(col)))
    return GridProbe(tuple(grid), cells, tuple(found), tuple(span))
