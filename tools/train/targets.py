"""Training targets and losses of the tiny LLaVA: the tower's per-cell heads (object kind,
colour, the sign's text in slots, the character under the cell), the attention loss's target
(the evidence box's share of each cell of the global view) and the attention loss itself.

Contract: pure functions of views, tensors and boxes; the heads are trained, never shipped.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from colvlm_msgs.geometry import Box, GlobalGeometry
from colvlm_server.vicrop import cell_coverage

from .data import COLOR_CLASSES, END, IGNORE, KIND_CLASSES, SLOTS, View


class CellHeads(nn.Module):
    """Per-cell supervision of the tower; used in training only, not shipped."""

    def __init__(self, width: int, text_weight: float = 1.0, color_weight: float = 1.0) -> None:
        super().__init__()
        self.text_weight, self.color_weight = text_weight, color_weight
        self.kind = nn.Linear(width, len(KIND_CLASSES))
        self.color = nn.Linear(width, len(COLOR_CLASSES))
        self.text = nn.Linear(width, SLOTS * (END + 1))
        self.local = nn.Linear(width, END)

    def loss(self, features: torch.Tensor, views: list[View]) -> tuple[torch.Tensor, dict]:
        """features (B, G*G, width) for B views."""
        device = features.device
        kind = torch.from_numpy(np.stack([v.kind.reshape(-1) for v in views])).to(device)
        color = torch.from_numpy(np.stack([v.color.reshape(-1) for v in views])).to(device)
        text = torch.from_numpy(np.stack([v.text.reshape(-1, SLOTS) for v in views])).to(device)
        # Objects are rare among cells: weight them up so the background does not win.
        weight = torch.ones(len(KIND_CLASSES), device=device)
        weight[1:] = 4.0
        kind_loss = F.cross_entropy(self.kind(features).flatten(0, 1), kind.reshape(-1),
                                    weight=weight)
        color_loss = F.cross_entropy(self.color(features).flatten(0, 1), color.reshape(-1),
                                     weight=torch.cat([weight[:1], torch.full(
                                         (len(COLOR_CLASSES) - 1,), 4.0, device=device)]))
        text_logits = self.text(features).reshape(-1, END + 1)
        has_text = (text.reshape(-1) != IGNORE).any()
        text_loss = (F.cross_entropy(text_logits, text.reshape(-1), ignore_index=IGNORE)
                     if has_text else text_logits.sum() * 0.0)
        local = torch.from_numpy(np.stack([v.local.reshape(-1) for v in views])).to(device)
        local_loss = (F.cross_entropy(self.local(features).flatten(0, 1), local.reshape(-1),
                                      ignore_index=IGNORE)
                      if (local != IGNORE).any() else features.sum() * 0.0)
        with torch.no_grad():
            cells = text.reshape(-1, SLOTS)
            read = (cells[:, 0] != IGNORE)
            accuracy = ((self.text(features).reshape(-1, SLOTS, END + 1).argmax(-1) == cells)
                        .all(-1)[read].float().mean().item() if read.any() else float('nan'))
        stats = {'kind': kind_loss.item(), 'color': color_loss.item(), 'text': text_loss.item(),
                 'local': local_loss.item(), 'read_acc': accuracy}
        return (kind_loss + self.color_weight * color_loss
                + self.text_weight * (text_loss + local_loss)), stats

    def page_loss(self, features: torch.Tensor, views: list[View]) -> tuple[torch.Tensor, dict]:
        """The character under each labelled cell of text pages; (loss, accuracy)."""
        local = torch.from_numpy(np.stack([v.local.reshape(-1) for v in views]))
        local = local.to(features.device).reshape(-1)
        logits = self.local(features).flatten(0, 1)
        with torch.no_grad():
            seen = local != IGNORE
            accuracy = (logits.argmax(-1)[seen] == local[seen]).float().mean().item()
        return F.cross_entropy(logits, local, ignore_index=IGNORE), {'page_acc': accuracy}


def target_cells(box: tuple[int, int, int, int] | None, width: int, height: int, size: int,
                 grid: int) -> np.ndarray | None:
    """(grid * grid,) float32, row-major like the image tokens: the share of the evidence box's
    area that falls in each cell of the global view (the original fitted into size x size),
    or None when the question has no box."""
    if box is None:
        return None
    geometry = GlobalGeometry.fit(width, height, size, size, 'pad')
    cells = cell_coverage(geometry, Box(*box), grid, grid).ravel().astype(np.float32)
    total = cells.sum()
    return cells / total if total > 0 else None


def attention_loss(attention: torch.Tensor, inputs: dict, targets: list, image_token_id: int,
                   image_tokens: int) -> tuple[torch.Tensor, dict]:
    """Cross-entropy from the evidence box's cells to where the last prompt position looks
    in the global image at the ViCrop layer (heads averaged, renormalised over image 0's
    tokens): the answer position learns to look at the asked object, as ViCrop assumes a
    VLM does. attention: (B, heads, T, T); targets: (G*G,) arrays or None per row."""
    rows = [k for k, cells in enumerate(targets) if cells is not None]
    if not rows:
        return attention.new_zeros(()), {}
    ids, labels = inputs['input_ids'], inputs['labels']
    losses, hits = [], 0
    for k in rows:
        end = int((labels[k] != IGNORE).nonzero()[0]) - 1  # the last prompt position
        image0 = (ids[k] == image_token_id).nonzero().flatten()[:image_tokens]
        looked = attention[k, :, end, image0].mean(0)
        looked = looked / looked.sum().clamp_min(1e-12)
        cells = torch.as_tensor(targets[k], device=looked.device)
        losses.append(-(cells * torch.log(looked + 1e-8)).sum())
        hits += bool(cells[int(looked.argmax())] > 0)
    loss = torch.stack(losses).mean()
    return loss, {'att': loss.item(), 'att_hit': hits / len(rows)}
