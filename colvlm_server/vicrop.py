"""ViCrop's pure parts: relative attention over the global frame, and the box it points at.

After "MLLMs know where to look" (Zhang et al., ICLR 2025); the code is ours. Maps in, a box in
original pixels out. It knows nothing about models or prompts beyond `GENERIC_PROMPT`: the VLM
adapter extracts the attention (or, for `grad_att`, the gradient-weighted attention), the edge
cuts the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from colvlm_msgs.geometry import Box, GlobalGeometry

# The prompt whose attention divides out where the model looks regardless of the question.
GENERIC_PROMPT = 'Write a general description of the image.'
# Window sides, as multiples of the encoder's input size, tried by `locate`.
DEFAULT_SCALES = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
# How the RoI map is made: the question's attention relative to the generic prompt's
# (`relative_attention`), or the attention weighted by the answer's gradient (the backend's
# `gradient_attention`), both the paper's training-free maps; or the question's attention as it
# is ('att'), for a model trained to look at the asked object (the bundled one), where dividing
# by a prompt it never saw in training only adds noise.
VICROP_METHODS = ('rel_att', 'grad_att', 'att')
# LLaVA-1.5-7B localises best at decoder layer 14 of 32.
_REFERENCE_LAYER, _REFERENCE_DEPTH = 14, 32


def choose_layer(num_layers: int) -> int:
    """The 0-based decoder layer to read attention from: 14 of 32, scaled to the depth."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) \
            or num_layers < 1:
        raise ValueError(f'num_layers must be an integer >= 1, got {num_layers!r}')
    layer = math.floor(num_layers * _REFERENCE_LAYER / _REFERENCE_DEPTH + 0.5)  # halves up
    return int(min(max(layer, 0), num_layers - 1))


def check_method(method: str) -> str:
    """`method` if it is one of VICROP_METHODS, else ValueError naming vicrop.method."""
    if method not in VICROP_METHODS:
        raise ValueError(f'vicrop.method must be one of {VICROP_METHODS}, got {method!r}')
    return method


def _head_mean_map(attention: Any, grid_hw: tuple[int, int], name: str) -> np.ndarray:
    """(gh, gw) float64 from (gh, gw), (N,), (heads, N) or (heads, gh, gw) attention."""
    if hasattr(attention, 'detach'):  # a torch tensor; bfloat16 has no numpy dtype
        attention = attention.detach().float().cpu().numpy()
    array = np.asarray(attention, dtype=np.float64)
    grid_h, grid_w = (int(v) for v in grid_hw)
    if array.shape == (grid_h, grid_w):
        return array
    if array.ndim == 1 and array.size == grid_h * grid_w:
        return array.reshape(grid_h, grid_w)
    if array.ndim == 2 and array.shape[1] == grid_h * grid_w:
        return array.mean(axis=0).reshape(grid_h, grid_w)
    if array.ndim == 3 and array.shape[1:] == (grid_h, grid_w):
        return array.mean(axis=0)
    raise ValueError(f'{name} of shape {array.shape} does not fit a {grid_h}x{grid_w} grid')


def question_attention(question_attn: Any, grid_hw: tuple[int, int]) -> np.ndarray:
    """(gh, gw) float64: the question's attention over the image, heads averaged ('att')."""
    return _head_mean_map(question_attn, grid_hw, 'question_attn')


def relative_attention(question_attn: Any, generic_attn: Any, grid_hw: tuple[int, int],
                       eps: float = 1e-3) -> np.ndarray:
    """(gh, gw) float64: the question's attention over the image divided by the generic prompt's.

    Each input is the attention of the last input position to the image tokens at one layer,
    (heads, N_img) with N_img = gh * gw in row-major order (averaged over heads), or a map
    already. `eps` is relative to the generic map's mean, so the result does not depend on the
    maps' scale. NaN or zero maps give NaN or inf, which `locate` answers with the whole image.
    """
    question = _head_mean_map(question_attn, grid_hw, 'question_attn')
    generic = _head_mean_map(generic_attn, grid_hw, 'generic_attn')
    with np.errstate(divide='ignore', invalid='ignore'):
        return question / (generic + eps * generic.mean())


@dataclass(frozen=True, eq=False)
class RoiResult:
    box: Box  # original px, integer edges
    map: np.ndarray  # (gh, gw) float64, the map searched: zero outside the image content
    scale: float  # chosen window side / encoder_size; 0.0 for the whole-image fallback
    saliency: float  # see `locate`; 0.0 for the fallback
    reason: str  # one line for logs
    fallback: bool = False


def _content_coverage(geometry: GlobalGeometry, grid_h: int, grid_w: int) -> np.ndarray:
    """(gh, gw) float64 in [0, 1]: the fraction of each cell that shows the original image."""
    return cell_coverage(geometry, geometry.original_box(), grid_h, grid_w)


def cell_coverage(geometry: GlobalGeometry, box: Box, grid_h: int, grid_w: int) -> np.ndarray:
    """(gh, gw) float64 in [0, 1]: the fraction of each cell of the global frame's token grid
    that `box` (original px) covers."""
    content = geometry.to_global(box)  # global px; may overhang the frame

    def axis(cells: int, size: int, low: float, high: float) -> np.ndarray:
        edges = np.arange(cells + 1) * (size / cells)  # (cells + 1,) global px
        overlap = np.minimum(edges[1:], min(high, size)) - np.maximum(edges[:-1], max(low, 0))
        return np.clip(overlap / (size / cells), 0.0, 1.0)

    return np.outer(axis(grid_h, geometry.global_height, content.y0, content.y1),
                    axis(grid_w, geometry.global_width, content.x0, content.x1))


def _window_sums(values: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """(gh - kh + 1, gw - kw + 1): the sum of `values` under each kh x kw window."""
    table = np.pad(values.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    return table[kh:, kw:] - table[:-kh, kw:] - table[kh:, :-kw] + table[:-kh, :-kw]


def _best_window(att: np.ndarray, kh: int, kw: int) -> tuple[int, int, np.ndarray]:
    """(row, col) of the kh x kw window holding the most attention, and all window sums.

    Ties (a blob smaller or larger than the window fits many) go to the window whose centre
    has the most attention nearby, weighted by a Gaussian as wide as half the window, so the
    box is centred on a small blob and on the middle of a large one.
    """
    sums = _window_sums(att, kh, kw)
    rows, cols = np.nonzero(sums >= sums.max() - 1e-9 * att.sum())  # (K,) tied windows
    centre_r, centre_c = rows + kh / 2.0, cols + kw / 2.0  # (K,) cell units
    cell_r, cell_c = np.arange(att.shape[0]) + 0.5, np.arange(att.shape[1]) + 0.5
    weight_r = np.exp(-0.5 * ((cell_r[None, :] - centre_r[:, None]) / (kh / 2.0)) ** 2)
    weight_c = np.exp(-0.5 * ((cell_c[None, :] - centre_c[:, None]) / (kw / 2.0)) ** 2)
    nearby = np.einsum('ki,ij,kj->k', weight_r, att, weight_c)  # (K,)
    best = int(np.argmax(nearby))
    return int(rows[best]), int(cols[best]), sums


def _whole_image(geometry: GlobalGeometry, att: np.ndarray, reason: str) -> RoiResult:
    box = Box(0, 0, int(geometry.original_width), int(geometry.original_height))
    return RoiResult(box, att, 0.0, 0.0, f'whole image: {reason}', fallback=True)


def _degenerate(values: np.ndarray) -> str:
    """Why the map's content cells cannot point anywhere, or '' when they can."""
    if values.size == 0:
        return 'the map covers no image content'
    if not np.isfinite(values).all():
        return 'attention map has NaN or inf'
    if (values < 0).any():
        return 'attention map has negative values'
    if values.max() - values.min() <= 1e-12 * values.max():
        return 'attention map is all zero' if values.max() == 0 else 'attention map is flat'
    return ''


def square_box(centre_x: float, centre_y: float, side: float,
               geometry: GlobalGeometry) -> Box:
    """A square of `side` original px centred at (centre_x, centre_y), shifted inside the
    original; a side larger than the image gives the whole image along that axis."""
    def span(centre: float, limit: int) -> tuple[int, int]:
        length = min(round(side), limit)
        start = min(max(round(centre - length / 2.0), 0), limit - length)
        return int(start), int(start + length)

    x0, x1 = span(centre_x, int(geometry.original_width))
    y0, y1 = span(centre_y, int(geometry.original_height))
    return Box(x0, y0, x1, y1)


def locate(rel_map: Any, geometry: GlobalGeometry, encoder_size: float,
           scales: tuple[float, ...] = DEFAULT_SCALES) -> RoiResult:
    """The square box, in original pixels, where the relative attention map points.

    rel_map is (gh, gw) over the whole global frame (geometry.global_width x global_height);
    cells that show padding are zeroed and cells cut by the image edge are weighted by the share
    they show. For each side `encoder_size * scale` (original px) the window, converted to map
    cells through `geometry`, is slid over the map to its largest attention sum. The scale kept
    has the largest saliency: the share of the map's attention inside that window minus the
    share a uniform map over the content would put there, which is largest for the window that
    just holds the attended region (ties go to the earlier scale). The box is that side, centred
    on the window and shifted inside the original; a side larger than the image gives the whole
    image along that axis. A map that is zero, flat or not finite gives the whole image.
    """
    att = np.array(rel_map, dtype=np.float64)  # (gh, gw), a copy
    if att.ndim != 2 or att.size == 0:
        raise ValueError(f'rel_map must be a (gh, gw) map, got shape {att.shape}')
    if not (encoder_size > 0 and math.isfinite(encoder_size)):
        raise ValueError(f'encoder_size must be a positive number, got {encoder_size!r}')
    if not scales or not all(s > 0 and math.isfinite(s) for s in scales):
        raise ValueError(f'scales must be positive numbers, got {scales!r}')
    grid_h, grid_w = att.shape
    cover = _content_coverage(geometry, grid_h, grid_w)  # (gh, gw) float64 in [0, 1]
    inside = cover > 0
    reason = _degenerate(att[inside])
    att = np.where(inside, att, 0.0)
    if reason:
        return _whole_image(geometry, att, reason)
    att *= cover
    cell_w, cell_h = geometry.global_width / grid_w, geometry.global_height / grid_h
    best = None  # (saliency, scale, side, row, col, kh, kw)
    for scale in scales:
        side = encoder_size * scale  # original px
        window = geometry.to_global(Box(0.0, 0.0, side, side))  # global px
        kw = int(min(max(round(window.width / cell_w), 1), grid_w))
        kh = int(min(max(round(window.height / cell_h), 1), grid_h))
        row, col, sums = _best_window(att, kh, kw)
        saliency = (sums[row, col] / att.sum()
                    - _window_sums(cover, kh, kw)[row, col] / cover.sum())
        if best is None or saliency > best[0] + 1e-12:
            best = (float(saliency), float(scale), side, row, col, kh, kw)
    saliency, scale, side, row, col, kh, kw = best
    centre = geometry.to_original(Box((col + kw / 2.0) * cell_w, (row + kh / 2.0) * cell_h,
                                      (col + kw / 2.0) * cell_w, (row + kh / 2.0) * cell_h))
    reason = (f'scale {scale:g} ({kw}x{kh} of {grid_w}x{grid_h} cells), '
              f'saliency {saliency:.3f}')
    return RoiResult(square_box(centre.x0, centre.y0, side, geometry), att, scale, saliency,
                     reason)


def box_hit(box: Box, target: Box, min_cover: float = 0.5) -> bool:
    """Whether `box` covers at least `min_cover` of `target`'s area (the RoI hit rate)."""
    if not target.area > 0:
        raise ValueError(f'target box must have a positive area, got {target}')
    return box.intersection(target).area >= min_cover * target.area


def tile_boxes(original_w: int, original_h: int, rows: int = 2, cols: int = 2) -> list[Box]:
    """rows x cols boxes, row-major, with integer edges, that tile the original exactly."""
    for name, value in (('original_w', original_w), ('original_h', original_h),
                        ('rows', rows), ('cols', cols)):
        if int(value) < 1:
            raise ValueError(f'{name} must be >= 1, got {value!r}')
    return [Box(c * original_w // cols, r * original_h // rows,
                (c + 1) * original_w // cols, (r + 1) * original_h // rows)
            for r in range(rows) for c in range(cols)]
