#!/usr/bin/env python3
"""Train colvlm's bundled tiny LLaVA on Glyph-VQA, from scratch, in stages.

    python tools/train_tiny_vlm.py --out models/colvlm-tiny-llava --work out/train

0. read (optional, `--read-steps`): the tower learns characters first, from synthetic text
   pages (lines of characters 8-32 px tall, every cell labelled with the character under its
   centre) mixed with scene crops around signs: dense supervision that per-scene signs, a few
   labelled cells each, do not give.
1. tower: the GlyphTower alone, with per-cell heads (object kind, colour, and the sign's text
   in three character slots) on global frames, ViCrop-sized crops and 2x2 tiles.
2. align: projector and language model on Glyph-VQA with the tower frozen.
2b. bind (optional, `--bind-steps`): as align, on 1-image colour and presence questions only
   (`--bind-kinds`): the decoder must pick the asked object out of the global frame, which the
   mixed stages, where such questions are a small share, were too short to teach.
3. joint: everything, on 1-image (global), 2-image (global + crop) and 5-image (global + 2x2
   tiles) prompts with the question kinds mixed, grounding questions included; the per-cell
   losses stay on so the tower keeps what stage 1 taught it (`--joint-tower-scale 0` freezes
   the tower instead).

`--att-weight` adds an attention loss to the VQA stages: at ViCrop's decoder layer, the last
prompt position's attention over the global image (heads averaged) is pulled towards the cells
of the question's evidence box, so that the model looks where it is asked, as ViCrop assumes a
VLM does. Without it the bind stage stayed at chance for 4300 steps; with it, it learnt.

Every view goes through the edge's own resize/pad and a JPEG round trip, as at run time.
Data are drawn from seeded streams indexed by step, so a run resumes (`--work` keeps a
checkpoint and a log) and repeats. Runs on CPU or CUDA (`--device`). `--smoke` runs a few
steps of each stage on a small pool, for tests. `--init-from` starts from an exported model's
weights (the bundled one, say) instead of random ones.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import sys
import time

import cv2
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colvlm_bench.glyphvqa.questions import questions_for_scene  # noqa: E402
from colvlm_bench.glyphvqa.scene import (  # noqa: E402
    COLORS,
    FONTS,
    SHAPES,
    TASK_WORDS,
    TEXT_ALPHABET,
    Scene,
    label_map,
    render_scene,
)
from colvlm_edge.global_encoder import CLIP_MEAN_BGR, render_geometry  # noqa: E402
from colvlm_models import tiny_vlm  # noqa: E402
from colvlm_models.glyph_tower import GlyphTowerConfig  # noqa: E402
from colvlm_msgs.geometry import Box, GlobalGeometry  # noqa: E402
from colvlm_msgs.image_codec import decode_image, encode_image  # noqa: E402
from colvlm_server.vicrop import (  # noqa: E402
    DEFAULT_SCALES,
    cell_coverage,
    choose_layer,
    tile_boxes,
)

KIND_CLASSES = ('background', 'sign', *SHAPES)
COLOR_CLASSES = ('none', *COLORS)
SLOTS = 3  # characters per sign text
END = len(TEXT_ALPHABET)  # slot class for "no character here"
MIN_READABLE_PX = 6.0  # text ink height in a view below which its characters are not a label
IGNORE = -100
# Prompt formats of the VQA stages: (images per prompt, weight).
FORMATS = {'align': ((1, 0.6), (2, 0.4)), 'bind': ((1, 1.0),),
           'joint': ((1, 0.45), (2, 0.4), (5, 0.15))}
# Each stage draws from its own seeded stream; the ids stay fixed as stages are added.
STREAMS = {'tower': 0, 'align': 1, 'joint': 2, 'read': 3, 'bind': 4}
PAGE_TEXT_PX = (8, 32)  # character heights on the read stage's text pages, view px
KIND_WEIGHTS = {'text': 0.35, 'color': 0.2, 'presence': 0.2, 'grounding': 0.15, 'count': 0.1}


@dataclass
class View:
    pixels: np.ndarray  # (S, S, 3) uint8 BGR, after the JPEG round trip
    kind: np.ndarray  # (G, G) int64 class of KIND_CLASSES
    color: np.ndarray  # (G, G) int64 class of COLOR_CLASSES
    text: np.ndarray  # (G, G, SLOTS) int64 character class, END, or IGNORE
    local: np.ndarray  # (G, G) int64 the character under the cell, or IGNORE


class SceneViews:
    """One rendered scene and the ways it can be seen: global, crops, tiles."""

    def __init__(self, scene: Scene, size: int, grid: int, quality: int) -> None:
        self.scene, self.size, self.grid, self.quality = scene, size, grid, quality
        self.labels = label_map(scene)  # (H, W) int16 object index, -1 background
        self.global_view = self.view((0, 0, scene.width, scene.height))

    def view(self, cut: tuple[int, int, int, int]) -> View:
        """The cut (x0, y0, x1, y1) original px as the edge would send it, with cell labels."""
        x0, y0, x1, y1 = cut
        geometry = GlobalGeometry.fit(x1 - x0, y1 - y0, self.size, self.size, 'pad')
        pixels = render_geometry(self.scene.image[y0:y1, x0:x1], geometry, CLIP_MEAN_BGR)
        pixels = decode_image(encode_image(np.ascontiguousarray(pixels), 'jpeg', self.quality))
        width, height = geometry.resized_size
        labels = cv2.resize(self.labels[y0:y1, x0:x1], (width, height),
                            interpolation=cv2.INTER_NEAREST)
        ox, oy = int(geometry.offset_x), int(geometry.offset_y)
        canvas = np.full((self.size, self.size), -1, np.int16)
        canvas[oy:oy + height, ox:ox + width] = labels
        return self._cell_labels(pixels, canvas, (x0, y0), geometry)

    def _cell_labels(self, pixels: np.ndarray, canvas: np.ndarray, origin: tuple[int, int],
                     geometry: GlobalGeometry) -> View:
        scale = geometry.scale_y
        objects = self.scene.objects
        cell = self.size // self.grid
        onehot = (canvas[..., None] == np.arange(len(objects))).astype(np.int32)  # (S, S, K)
        counts = onehot.reshape(self.grid, cell, self.grid, cell, -1).sum(axis=(1, 3))
        totals = np.maximum(onehot.sum(axis=(0, 1)), 1)  # (K,) px of each object in view
        best = counts.argmax(axis=-1)  # (G, G)
        best_count = counts.max(axis=-1)
        present = (best_count >= 0.12 * cell * cell) | (best_count >= 0.4 * totals[best])
        present &= best_count > 0
        kind = np.zeros((self.grid, self.grid), np.int64)
        color = np.zeros_like(kind)
        text = np.full((self.grid, self.grid, SLOTS), IGNORE, np.int64)
        local = np.full((self.grid, self.grid), IGNORE, np.int64)
        centres = (np.arange(self.grid) + 0.5) * cell  # view px
        for index, obj in enumerate(objects):
            mask = present & (best == index)
            if not mask.any():
                continue
            kind[mask] = KIND_CLASSES.index('sign' if obj.kind == 'sign' else obj.shape)
            color[mask] = COLOR_CLASSES.index(obj.color)
            if obj.kind == 'sign':
                ink = obj.text_box[3] - obj.text_box[1]
                if ink * scale >= MIN_READABLE_PX:
                    chars = [TEXT_ALPHABET.index(c) for c in obj.text]
                    text[mask] = chars + [END] * (SLOTS - len(chars))
                    self._local_chars(local, obj, chars, origin, geometry, centres, cell)
        return View(pixels, kind, color, text, local)

    @staticmethod
    def _local_chars(local, obj, chars, origin, geometry, centres, cell) -> None:
        """The character under each cell centre on the text's line (fonts taken as evenly
        spaced): a local target that convolutions learn first and the slots build on."""
        tx0, ty0, tx1, ty1 = obj.text_box
        x0 = (tx0 - origin[0]) * geometry.scale_x + geometry.offset_x
        x1 = (tx1 - origin[0]) * geometry.scale_x + geometry.offset_x
        y0 = (ty0 - origin[1]) * geometry.scale_y + geometry.offset_y
        y1 = (ty1 - origin[1]) * geometry.scale_y + geometry.offset_y
        rows = np.nonzero((centres >= y0 - cell / 2) & (centres <= y1 + cell / 2))[0]
        cols = np.nonzero((centres >= x0) & (centres < x1))[0]
        if len(rows) == 0 or len(cols) == 0:
            return
        slot = ((centres[cols] - x0) / max(x1 - x0, 1e-6) * len(chars)).astype(int)
        for row in rows:
            local[row, cols] = np.asarray(chars)[np.clip(slot, 0, len(chars) - 1)]

    def crop_around(self, rng: np.random.Generator, box: tuple[int, int, int, int] | None,
                    scales: tuple[float, float] = (DEFAULT_SCALES[0], DEFAULT_SCALES[-1]),
                    ) -> View:
        """A square of side encoder size x U(scales) original px (ViCrop's 1..2 by default)
        holding `box`, or anywhere."""
        width, height = self.scene.width, self.scene.height
        side = int(round(self.size * float(rng.uniform(*scales))))
        side = min(side, width, height)
        if box is None:
            x0 = int(rng.integers(0, width - side + 1))
            y0 = int(rng.integers(0, height - side + 1))
        else:
            bx0, by0, bx1, by1 = box
            # Centre jittered by up to a quarter side, as an attention peak is off by a cell.
            cx = (bx0 + bx1) / 2 + rng.uniform(-0.25, 0.25) * side
            cy = (by0 + by1) / 2 + rng.uniform(-0.25, 0.25) * side
            x0 = int(np.clip(round(cx - side / 2), 0, width - side))
            y0 = int(np.clip(round(cy - side / 2), 0, height - side))
        return self.view((x0, y0, x0 + side, y0 + side))

    def tiles(self) -> list[View]:
        return [self.view(tuple(int(v) for v in (b.x0, b.y0, b.x1, b.y1)))
                for b in tile_boxes(self.scene.width, self.scene.height)]


def text_page(rng: np.random.Generator, size: int, grid: int, quality: int) -> View:
    """A view full of text lines in one ink on one background, characters drawn one by one so
    that the character under every cell centre is known; other cells and labels IGNORE."""
    background = rng.integers(0, 256, 3)
    dark = background.mean() > 128
    ink = tuple(int(v) for v in (rng.integers(0, 70, 3) if dark else rng.integers(186, 256, 3)))
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:] = background
    local = np.full((grid, grid), IGNORE, np.int64)
    centres = (np.arange(grid) + 0.5) * (size / grid)
    y = int(rng.integers(0, 12))
    while True:
        height = int(rng.integers(PAGE_TEXT_PX[0], PAGE_TEXT_PX[1] + 1))
        if y + height > size:
            break
        font = FONTS[int(rng.integers(len(FONTS)))]
        scale, thickness = height / 21.0, max(1, round(height / 10))
        rows = np.nonzero((centres >= y) & (centres < y + height))[0]
        x = int(rng.integers(-height // 2, size // 5))
        while x < size:
            char = int(rng.integers(len(TEXT_ALPHABET)))
            (width, _), _ = cv2.getTextSize(TEXT_ALPHABET[char], font, scale, thickness)
            cv2.putText(pixels, TEXT_ALPHABET[char], (x, y + height), font, scale, ink,
                        thickness, cv2.LINE_AA)
            cols = np.nonzero((centres >= x) & (centres < x + width))[0]
            local[rows[:, None], cols[None, :]] = char
            x += width + int(rng.integers(1, max(2, height // 3)))
        y += height + int(rng.integers(3, 20))
    pixels = decode_image(encode_image(pixels, 'jpeg', quality))
    nothing = np.full((grid, grid), IGNORE, np.int64)
    return View(pixels, nothing, nothing.copy(),
                np.full((grid, grid, SLOTS), IGNORE, np.int64), local)


class ScenePool:
    """A ring of recent scenes, each reused by several samples; scene n is seeded by n alone."""

    def __init__(self, seed: int, stage: int, capacity: int, size: int, grid: int) -> None:
        self.seed, self.stage, self.capacity = seed, stage, capacity
        self.size, self.grid = size, grid
        self.slots: list[SceneViews | None] = [None] * capacity
        self.rendered = 0

    def _render(self, index: int) -> SceneViews:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7919, self.stage, index]))
        scene = render_scene(rng)
        return SceneViews(scene, self.size, self.grid, int(rng.integers(50, 96)))

    def advance_to(self, scenes: int) -> None:
        """Hold scenes [scenes - capacity, scenes): the state after `scenes` renders."""
        start = max(self.rendered, scenes - self.capacity)
        for index in range(start, scenes):
            self.slots[index % self.capacity] = self._render(index)
        self.rendered = scenes

    def sample(self, rng: np.random.Generator) -> SceneViews:
        filled = min(self.rendered, self.capacity)
        return self.slots[int(rng.integers(0, filled))]


class CellHeads(nn.Module):
    """Per-cell supervision of the tower; used in training only, not shipped."""

    def __init__(self, width: int, text_weight: float = 1.0) -> None:
        super().__init__()
        self.text_weight = text_weight
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
        return kind_loss + color_loss + self.text_weight * (text_loss + local_loss), stats

    def page_loss(self, features: torch.Tensor, views: list[View]) -> tuple[torch.Tensor, dict]:
        """The character under each labelled cell of text pages; (loss, accuracy)."""
        local = torch.from_numpy(np.stack([v.local.reshape(-1) for v in views]))
        local = local.to(features.device).reshape(-1)
        logits = self.local(features).flatten(0, 1)
        with torch.no_grad():
            seen = local != IGNORE
            accuracy = (logits.argmax(-1)[seen] == local[seen]).float().mean().item()
        return F.cross_entropy(logits, local, ignore_index=IGNORE), {'page_acc': accuracy}


def pixel_batch(processor, views: list[View]) -> torch.Tensor:
    """The model's own image processor on the views (BGR -> RGB first)."""
    images = [v.pixels[:, :, ::-1] for v in views]
    return processor.image_processor(images=images, return_tensors='pt')['pixel_values']


def draw_question(rng: np.random.Generator, views: SceneViews,
                  kind_weights: dict[str, float] | None = None):
    kind_weights = kind_weights or KIND_WEIGHTS
    kinds = list(kind_weights)
    weights = np.array([kind_weights[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    questions = questions_for_scene(views.scene, rng, 'scene.png', kinds=(kind,))
    return questions[int(rng.integers(0, len(questions)))]


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


def build_sample(rng: np.random.Generator, views: SceneViews, n_images: int,
                 kind_weights: dict[str, float] | None = None):
    """(image views, question text, answer text, the evidence box's share per cell of the
    global view or None)."""
    question = draw_question(rng, views, kind_weights)
    images = [views.global_view]
    if n_images == 2:
        objects = views.scene.objects
        if question.target is not None and rng.random() < 0.75:
            box = question.target
        elif rng.random() < 0.5:
            box = objects[int(rng.integers(0, len(objects)))].box
        else:
            box = None
        images.append(views.crop_around(rng, box))
    elif n_images == 5:
        images += views.tiles()
    cells = target_cells(question.target, views.scene.width, views.scene.height, views.size,
                         views.grid)
    return images, question.question, question.answers[0], cells


class PromptEncoder:
    """Token ids and labels for (n images, question, answer) in the chat template's format."""

    def __init__(self, processor, image_tokens: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_tokens = image_tokens
        self._cache: dict[tuple[int, str], list[int]] = {}

    def prompt_ids(self, n_images: int, question: str) -> list[int]:
        key = (n_images, question)
        if key not in self._cache:
            messages = [{'role': 'user', 'content': [{'type': 'image'}] * n_images
                         + [{'type': 'text', 'text': question}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            text = text.replace(tiny_vlm.IMAGE_TOKEN, tiny_vlm.IMAGE_TOKEN * self.image_tokens)
            self._cache[key] = self.tokenizer(text)['input_ids']
        return self._cache[key]

    def batch(self, samples, device) -> dict[str, torch.Tensor]:
        rows, labels = [], []
        for images, question, answer, *_ in samples:
            prompt = self.prompt_ids(len(images), question)
            target = self.tokenizer(answer, add_special_tokens=False)['input_ids'] \
                + [self.tokenizer.eos_token_id]
            rows.append(prompt + target)
            labels.append([IGNORE] * len(prompt) + target)
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        label = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        for k, (row, lab) in enumerate(zip(rows, labels, strict=True)):  # left padding
            ids[k, length - len(row):] = torch.tensor(row)
            mask[k, length - len(row):] = 1
            label[k, length - len(lab):] = torch.tensor(lab)
        return {'input_ids': ids.to(device), 'attention_mask': mask.to(device),
                'labels': label.to(device)}


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.work / 'train.log', 'a', encoding='utf-8')  # noqa: SIM115
        torch.manual_seed(args.seed)
        from transformers import LlavaForConditionalGeneration
        self.tower_config = GlyphTowerConfig()
        self.tokenizer = tiny_vlm.build_tokenizer(TASK_WORDS, TEXT_ALPHABET)
        self.processor = tiny_vlm.build_processor(self.tokenizer, self.tower_config)
        config = tiny_vlm.build_config(self.tokenizer, self.tower_config)
        # The attention loss reads attention weights, which only the eager kernel returns.
        config._attn_implementation = 'eager' if args.att_weight > 0 else 'sdpa'
        self.model = LlavaForConditionalGeneration(config).to(self.device)
        self.heads = CellHeads(self.tower_config.hidden_size, args.text_weight).to(self.device)
        self.grid = self.tower_config.grid_size
        layers = config.text_config.num_hidden_layers
        self.att_layer = choose_layer(layers) if args.att_layer < 0 else args.att_layer
        if not 0 <= self.att_layer < layers:
            raise SystemExit(f'--att-layer must be in 0..{layers - 1}, got {args.att_layer}')
        self.prompts = PromptEncoder(self.processor, self.grid ** 2)
        self.tower = self.model.model.vision_tower
        self._tower_out: list[torch.Tensor] = []
        self.tower.register_forward_hook(
            lambda module, inputs, output: self._tower_out.append(output.last_hidden_state))
        self.state = {'stage': 0, 'step': 0, 'seconds': 0.0}
        self.optimizer: torch.optim.Optimizer | None = None
        self._optimizer_stage = -1  # the stage the optimizer's state belongs to

    # -- bookkeeping ------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        line = json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v
                           for k, v in record.items()})
        self.log_file.write(line + '\n')
        self.log_file.flush()
        print(line, flush=True)

    def save_checkpoint(self) -> None:
        path = self.work / 'checkpoint.pt'
        torch.save({'state': self.state, 'model': self.model.state_dict(),
                    'heads': self.heads.state_dict(),
                    'optimizer': self.optimizer.state_dict() if self.optimizer else None,
                    'optimizer_stage': self._optimizer_stage},
                   str(path) + '.tmp')
        os.replace(str(path) + '.tmp', path)

    def load_checkpoint(self) -> dict | None:
        path = self.work / 'checkpoint.pt'
        if not path.is_file():
            return None
        saved = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(saved['model'])
        self.heads.load_state_dict(saved['heads'])
        self.state = saved['state']
        return saved

    # -- stages -----------------------------------------------------------------------------
    def stages(self):
        a = self.args
        return [('read', a.read_steps, a.read_lr), ('tower', a.tower_steps, a.tower_lr),
                ('align', a.align_steps, a.align_lr), ('bind', a.bind_steps, a.bind_lr),
                ('joint', a.joint_steps, a.joint_lr)]

    def _make_optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        for p in self.model.parameters():
            p.requires_grad_(True)
        if name in ('read', 'tower'):
            params = [*self.tower.parameters(), *self.heads.parameters()]
        elif name in ('align', 'bind'):
            for p in self.tower.parameters():
                p.requires_grad_(False)
            params = [p for p in self.model.parameters() if p.requires_grad]
        else:
            tower_ids = {id(p) for p in self.tower.parameters()}
            rest = [p for p in self.model.parameters() if id(p) not in tower_ids]
            if not self._tower_learns():
                for p in self.tower.parameters():
                    p.requires_grad_(False)
                return torch.optim.AdamW(rest, lr=lr, weight_decay=0.01)
            params = [{'params': rest},
                      {'params': [*self.tower.parameters(), *self.heads.parameters()],
                       'lr_scale': self.args.joint_tower_scale}]
            return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    def _tower_learns(self) -> bool:
        """Whether the joint stage trains the tower (and keeps its per-cell losses)."""
        return self.args.joint_tower_scale > 0

    def init_from(self, path: Path) -> None:
        """Start from an exported model's weights; the cell heads start afresh."""
        from transformers import LlavaForConditionalGeneration
        try:
            source = LlavaForConditionalGeneration.from_pretrained(str(path))
            self.model.load_state_dict(source.state_dict())
        except (OSError, RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0]
            raise SystemExit(f"--init-from {path}: not this recipe's model ({first})") from None
        self.log({'init_from': str(path)})

    def run(self) -> None:
        saved = self.load_checkpoint()
        if saved is None and self.args.init_from:
            self.init_from(Path(self.args.init_from))
        if self.args.export_only:
            if saved is None:
                raise SystemExit(f'no checkpoint in {self.work} to export')
            self.export(Path(self.args.out))
            return
        finished = self.state.setdefault('finished', {})  # stage name -> steps run
        for index, (name, steps, lr) in enumerate(self.stages()):
            if finished.get(name, 0) >= steps or (name not in finished
                                                  and index < self.state['stage']):
                continue
            if name in finished:  # a finished stage given more steps: carry on from its end
                self.state.update(stage=index, step=finished[name])
            self.optimizer = self._make_optimizer(name, lr)
            self._optimizer_stage = index
            if saved and saved.get('optimizer') and saved.get('optimizer_stage') == index \
                    and self.state['step'] > 0:
                self.optimizer.load_state_dict(saved['optimizer'])
            self.state['stage'] = index
            self._run_stage(index, name, steps, lr)
            finished[name] = steps
            self.state.update(stage=index + 1, step=0)
            self.save_checkpoint()
            saved = None
        self.export(Path(self.args.out))

    def _run_stage(self, index: int, name: str, steps: int, lr: float) -> None:
        a = self.args
        stream = STREAMS[name]
        pool = ScenePool(a.seed, stream, a.pool, self.tower_config.image_size, self.grid)
        pool.advance_to(a.pool_fill + self.state['step'] * a.refresh)
        self.model.train(name not in ('read', 'tower'))
        self.tower.train()
        started = time.monotonic()
        for step in range(self.state['step'], steps):
            rng = np.random.default_rng(np.random.SeedSequence([a.seed, 104729, stream, step]))
            pool.advance_to(a.pool_fill + (step + 1) * a.refresh)
            for group in self.optimizer.param_groups:
                group['lr'] = cosine_lr(step, steps, lr, a.warmup) * group.get('lr_scale', 1.0)
            if name == 'read':
                loss, stats = self._read_step(rng, pool)
            elif name == 'tower':
                loss, stats = self._tower_step(rng, pool)
            else:
                loss, stats = self._vqa_step(rng, pool, name)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g['params']], 1.0)
            self.optimizer.step()
            self.state['step'] = step + 1
            if (step + 1) % a.log_every == 0 or step + 1 == steps:
                elapsed = self.state['seconds'] + time.monotonic() - started
                self.log({'stage': name, 'step': step + 1, 'of': steps,
                          'loss': round(loss.item(), 4), 'minutes': round(elapsed / 60, 2),
                          **{k: round(v, 4) for k, v in stats.items()}})
            if (step + 1) % a.save_every == 0:
                self.state['seconds'] += time.monotonic() - started
                started = time.monotonic()
                self.save_checkpoint()
        self.state['seconds'] += time.monotonic() - started

    def _tower_step(self, rng: np.random.Generator, pool: ScenePool):
        views: list[View] = []
        while len(views) < self.args.tower_batch:
            scene = pool.sample(rng)
            pick = rng.random()
            if pick < 0.3:
                views.append(scene.global_view)
            elif pick < 0.85:
                signs = scene.scene.signs
                target = signs[int(rng.integers(0, len(signs)))].box if rng.random() < 0.8 \
                    else None
                # Larger text than ViCrop's crops show, too: reading starts there.
                views.append(scene.crop_around(rng, target, (self.args.tower_min_scale, 2.0)))
            else:
                tiles = scene.tiles()
                views.append(tiles[int(rng.integers(0, len(tiles)))])
        pixels = pixel_batch(self.processor, views).to(self.device)
        features = self.tower(pixels).last_hidden_state
        self._tower_out.clear()
        return self.heads.loss(features, views)

    def _read_step(self, rng: np.random.Generator, pool: ScenePool):
        """Text pages, and scene crops around signs so the heads keep to real scenes."""
        size = self.tower_config.image_size
        pages = [text_page(rng, size, self.grid, int(rng.integers(50, 96)))
                 for _ in range(int(round(self.args.tower_batch * self.args.page_share)))]
        views: list[View] = []
        while len(pages) + len(views) < self.args.tower_batch:
            scene = pool.sample(rng)
            signs = scene.scene.signs
            views.append(scene.crop_around(rng, signs[int(rng.integers(0, len(signs)))].box,
                                           (self.args.tower_min_scale, 2.0)))
        features = self.tower(pixel_batch(self.processor, pages + views)).last_hidden_state
        self._tower_out.clear()
        page_loss, stats = self.heads.page_loss(features[:len(pages)], pages)
        if not views:
            return page_loss, stats
        scene_loss, scene_stats = self.heads.loss(features[len(pages):], views)
        return page_loss + scene_loss, {**stats, **scene_stats}

    def _vqa_step(self, rng: np.random.Generator, pool: ScenePool, name: str):
        formats = self.args.joint_formats if name == 'joint' and self.args.joint_formats \
            else FORMATS[name]
        weights = np.array([w for _, w in formats])
        n_images = formats[int(rng.choice(len(formats), p=weights / weights.sum()))][0]
        batch_size = max(2, int(self.args.batch * 2 / (n_images + 1)))  # similar tokens/step
        kinds = self.args.bind_kinds if name == 'bind' else self.args.kinds
        samples = [build_sample(rng, pool.sample(rng), n_images, kinds)
                   for _ in range(batch_size)]
        views = [v for images, *_ in samples for v in images]
        inputs = self.prompts.batch(samples, self.device)
        inputs['pixel_values'] = pixel_batch(self.processor, views).to(self.device)
        self._tower_out.clear()
        attend = self.args.att_weight > 0
        output = self.model(**inputs, output_attentions=attend)
        features = self._tower_out[-1]
        self._tower_out.clear()
        loss = output.loss
        stats = {'lm': loss.item(), 'images': float(n_images)}
        if attend:
            att_loss, att_stats = self._attention_loss(output.attentions[self.att_layer],
                                                       inputs, [s[3] for s in samples])
            stats.update(att_stats)
            loss = loss + self.args.att_weight * att_loss
        if name == 'joint' and self._tower_learns():
            cell_loss, cell_stats = self.heads.loss(features, views)
            stats['read_acc'] = cell_stats['read_acc']
            loss = loss + self.args.cell_weight * cell_loss
        return loss, stats

    def _attention_loss(self, attention: torch.Tensor, inputs: dict, targets: list):
        """Cross-entropy from the evidence box's cells to where the last prompt position looks
        in the global image at the ViCrop layer (heads averaged, renormalised over image 0's
        tokens): the answer position learns to look at the asked object, as ViCrop assumes a
        VLM does. attention: (B, heads, T, T); targets: (G*G,) arrays or None per row."""
        rows = [k for k, cells in enumerate(targets) if cells is not None]
        if not rows:
            return attention.new_zeros(()), {}
        ids, labels = inputs['input_ids'], inputs['labels']
        image_id = self.model.config.image_token_id
        losses, hits = [], 0
        for k in rows:
            end = int((labels[k] != IGNORE).nonzero()[0]) - 1  # the last prompt position
            image0 = (ids[k] == image_id).nonzero().flatten()[:self.grid ** 2]
            looked = attention[k, :, end, image0].mean(0)
            looked = looked / looked.sum().clamp_min(1e-12)
            cells = torch.as_tensor(targets[k], device=looked.device)
            losses.append(-(cells * torch.log(looked + 1e-8)).sum())
            hits += bool(cells[int(looked.argmax())] > 0)
        loss = torch.stack(losses).mean()
        return loss, {'att': loss.item(), 'att_hit': hits / len(rows)}

    def export(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.model.config._attn_implementation = 'eager'
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        (out / 'training.json').write_text(json.dumps(
            {'seed': self.args.seed, 'stages': [
                {'name': n, 'steps': s, 'lr': lr} for n, s, lr in self.stages()],
             'init_from': self.args.init_from, 'page_share': self.args.page_share,
             'batch': self.args.batch, 'tower_batch': self.args.tower_batch,
             'kinds': self.args.kinds or KIND_WEIGHTS, 'bind_kinds': self.args.bind_kinds,
             'joint_formats': dict(self.args.joint_formats or FORMATS['joint']),
             'joint_tower_scale': self.args.joint_tower_scale,
             'att_weight': self.args.att_weight, 'att_layer': self.att_layer,
             'completed': {'stage': self.state['stage'], 'step': self.state['step']},
             'minutes': round(self.state['seconds'] / 60, 1), 'device': str(self.device),
             'torch': torch.__version__}, indent=2) + '\n')
        self.log({'exported': str(out), 'minutes': round(self.state['seconds'] / 60, 2)})


def _weights(key_type: type, allowed: set):
    """An argparse type: 'a=0.5,b=0.5' -> {a: 0.5, b: 0.5} for keys in `allowed`."""
    def parse(text: str):
        weights = {}
        for part in text.split(','):
            key, _, value = part.partition('=')
            try:
                key, weight = key_type(key.strip()), float(value)
            except ValueError:
                raise argparse.ArgumentTypeError(f'{part!r} is not KEY=WEIGHT') from None
            if key not in allowed or weight < 0:
                raise argparse.ArgumentTypeError(f'{part!r}: keys are {sorted(allowed)}, '
                                                 'weights >= 0')
            weights[key] = weight
        if not sum(weights.values()) > 0:
            raise argparse.ArgumentTypeError(f'{text!r}: the weights sum to 0')
        return weights if key_type is str else tuple(weights.items())
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='models/colvlm-tiny-llava', help='export folder')
    parser.add_argument('--work', default='out/train-tiny-vlm',
                        help='checkpoint and log folder; a run there resumes')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=0, help='torch CPU threads; 0 = default')
    parser.add_argument('--seed', type=int, default=1234)
    parser.add_argument('--init-from', default=None, metavar='MODEL_DIR',
                        help="start from an exported model's weights (when --work holds no "
                             'checkpoint yet)')
    parser.add_argument('--read-steps', type=int, default=0,
                        help='steps of the reading stage before the tower stage')
    parser.add_argument('--read-lr', type=float, default=2e-3)
    parser.add_argument('--page-share', type=float, default=1.0,
                        help="share of text pages among the read stage's views, the rest "
                             'scene crops around signs (0.5 read more slowly than 1.0)')
    parser.add_argument('--tower-steps', type=int, default=1500)
    parser.add_argument('--align-steps', type=int, default=600)
    parser.add_argument('--bind-steps', type=int, default=0,
                        help='steps of the binding stage (1-image, tower frozen) before joint')
    parser.add_argument('--joint-steps', type=int, default=3000)
    parser.add_argument('--tower-lr', type=float, default=2e-3)
    parser.add_argument('--align-lr', type=float, default=1e-3)
    parser.add_argument('--bind-lr', type=float, default=5e-4)
    parser.add_argument('--joint-lr', type=float, default=6e-4)
    parser.add_argument('--warmup', type=int, default=100)
    parser.add_argument('--batch', type=int, default=32, help='1-image prompts per step')
    parser.add_argument('--tower-batch', type=int, default=64, help='views per tower step')
    parser.add_argument('--cell-weight', type=float, default=0.3)
    parser.add_argument('--att-weight', type=float, default=0.0,
                        help='weight of the attention loss in the VQA stages: the last prompt '
                             "position's attention to the global image, heads averaged, "
                             "against the question's evidence box (0 = off)")
    parser.add_argument('--att-layer', type=int, default=-1,
                        help="decoder layer of the attention loss; -1 = ViCrop's default")
    parser.add_argument('--joint-tower-scale', type=float, default=0.3,
                        help="the tower's learning rate in the joint stage, as a share of "
                             "--joint-lr; 0 freezes it (and drops the per-cell losses)")
    parser.add_argument('--text-weight', type=float, default=2.0,
                        help='weight of the text slots among the per-cell losses')
    parser.add_argument('--tower-min-scale', type=float, default=0.5,
                        help='smallest tower-stage crop side, in encoder sizes')
    parser.add_argument('--pool', type=int, default=256, help='scenes kept for reuse')
    parser.add_argument('--pool-fill', type=int, default=64, help='scenes before step 1')
    parser.add_argument('--refresh', type=int, default=4, help='new scenes per step')
    parser.add_argument('--kinds', type=_weights(str, set(KIND_WEIGHTS)), default=None,
                        metavar='KIND=W,...', help='question kinds and their weights in the '
                        'align and joint stages (default: ' + ','.join(
                            f'{k}={w:g}' for k, w in KIND_WEIGHTS.items()) + ')')
    parser.add_argument('--bind-kinds', type=_weights(str, set(KIND_WEIGHTS)),
                        default={'color': 0.5, 'presence': 0.5}, metavar='KIND=W,...',
                        help='question kinds of the bind stage (default: color=0.5,presence=0.5)')
    parser.add_argument('--joint-formats', type=_weights(int, {1, 2, 5}), default=None,
                        metavar='N=W,...', help='images per prompt and weights in the joint '
                        'stage (default: ' + ','.join(
                            f'{n}={w:g}' for n, w in FORMATS['joint']) + ')')
    parser.add_argument('--log-every', type=int, default=20)
    parser.add_argument('--save-every', type=int, default=100)
    parser.add_argument('--export-only', action='store_true',
                        help="export the work folder's latest checkpoint and stop")
    parser.add_argument('--smoke', action='store_true',
                        help='a few steps of each stage on a small pool (for tests)')
    args = parser.parse_args(argv)
    if args.smoke:
        args.read_steps, args.tower_steps, args.align_steps, args.joint_steps = 2, 3, 3, 4
        args.bind_steps = 2
        args.batch, args.tower_batch, args.pool, args.pool_fill, args.refresh = 4, 8, 8, 4, 1
        args.warmup, args.log_every, args.save_every = 2, 1, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    Trainer(args).run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
