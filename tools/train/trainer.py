"""The tiny LLaVA's trainer: builds the model from the bundled recipe's tokenizer and tower
config, runs the stages in order (read, tower, align, bind, joint) with a cosine schedule,
and keeps a checkpoint and a JSON-lines log in its work folder so that a run resumes.

Contract: `Trainer(args).run()` with the namespace of `tools.train`'s parser; data come from
`data` and `prompts`, losses from `targets`, the export from `export`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import time

import numpy as np
import torch

from colvlm_bench.glyphvqa.scene import TASK_WORDS, TEXT_ALPHABET
from colvlm_models import tiny_vlm
from colvlm_models.glyph_tower import GlyphTowerConfig
from colvlm_server.vicrop import choose_layer

from .data import STREAMS, ScenePool, View, camera_style, text_page
from .export import export_model
from .prompts import FORMATS, PromptEncoder, build_sample, pixel_batch
from .targets import CellHeads, attention_loss
from .widen import load_except, widen_stem


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """One training run in its work folder: the model, the cell heads, the optimizer of the
    current stage and the state (stage, step, seconds, finished stages) a checkpoint keeps."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.work / 'train.log', 'a', encoding='utf-8')  # noqa: SIM115
        torch.manual_seed(args.seed)
        from transformers import LlavaForConditionalGeneration
        self.tower_config = GlyphTowerConfig(stem_channels=args.stem_channels)
        self.tokenizer = tiny_vlm.build_tokenizer(TASK_WORDS, TEXT_ALPHABET)
        self.processor = tiny_vlm.build_processor(self.tokenizer, self.tower_config)
        config = tiny_vlm.build_config(self.tokenizer, self.tower_config)
        # The attention loss reads attention weights, which only the eager kernel returns.
        config._attn_implementation = 'eager' if args.att_weight > 0 else 'sdpa'
        self.model = LlavaForConditionalGeneration(config).to(self.device)
        self.heads = CellHeads(self.tower_config.hidden_size, args.text_weight,
                               args.color_weight).to(self.device)
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
            stem = source.config.vision_config.stem_channels
            if list(stem) == list(self.tower_config.stem_channels):
                self.model.load_state_dict(source.state_dict())
            else:  # a wider stem: the source's tower copied in, the rest as is
                widen_stem(source.model.vision_tower, self.tower,
                           generator=torch.Generator().manual_seed(self.args.seed))
                load_except(self.model, source.state_dict(), lambda k: '.vision_tower.' in k)
        except (OSError, RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0]
            raise SystemExit(f"--init-from {path}: not this recipe's model ({first})") from None
        self.log({'init_from': str(path), 'stem_channels': list(stem)})

    def run(self) -> None:
        """Every stage not finished yet, then the export (unless --stop-at stops first)."""
        try:
            self._run_stages()
        finally:
            self.log_file.close()  # a recipe runs several trainers in one process

    def _run_stages(self) -> None:
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
            if not self._run_stage(index, name, steps, lr):
                self.log({'stopped': name, 'step': self.state['step']})
                return  # --stop-at: checkpoint kept, nothing exported
            finished[name] = steps
            self.state.update(stage=index + 1, step=0)
            self.save_checkpoint()
            saved = None
        self.export(Path(self.args.out))

    def _run_stage(self, index: int, name: str, steps: int, lr: float) -> bool:
        """Run the stage from the state's step; False when --stop-at stopped it first."""
        a = self.args
        stream = STREAMS[name]
        pool = ScenePool(a.seed, stream, a.pool, self.tower_config.image_size, self.grid,
                         a.style, camera_style(a))
        pool.advance_to(a.pool_fill + self.state['step'] * a.refresh)
        self.model.train(name not in ('read', 'tower'))
        self.tower.train()
        started = time.monotonic()
        for step in range(self.state['step'], steps):
            rng = np.random.default_rng(np.random.SeedSequence([a.seed, 104729, stream, step]))
            pool.advance_to(a.pool_fill + (step + 1) * a.refresh)
            for group in self.optimizer.param_groups:
                group['lr'] = cosine_lr(step, steps, lr, a.warmup) * group.get('lr_scale', 1.0)
            if name == 'tower':  # --head-warmup: fresh heads fit a frozen tower first
                for p in self.tower.parameters():
                    p.requires_grad_(step >= a.head_warmup)
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
            stop = a.stop_at == (name, step + 1)
            if (step + 1) % a.save_every == 0 or stop:
                self.state['seconds'] += time.monotonic() - started
                started = time.monotonic()
                self.save_checkpoint()
            if stop:
                return False
        self.state['seconds'] += time.monotonic() - started
        return True

    def _tower_step(self, rng: np.random.Generator, pool: ScenePool):
        views: list[View] = []
        share = self.args.tower_global_share
        # The rest is split as crops around signs 11 : tiles 3 (0.55 : 0.15 at the default
        # share 0.3), so a run at the default draws as before.
        crops = share + (1 - share) * 11 / 14
        while len(views) < self.args.tower_batch:
            scene = pool.sample(rng)
            pick = rng.random()
            if pick < share:
                views.append(scene.global_view)
            elif pick < crops:
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
        pages = [text_page(rng, size, self.grid, int(rng.integers(50, 96)), pool.camera)
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
            att_loss, att_stats = attention_loss(
                output.attentions[self.att_layer], inputs, [s[3] for s in samples],
                self.model.config.image_token_id, self.grid ** 2)
            stats.update(att_stats)
            loss = loss + self.args.att_weight * att_loss
        if name == 'joint' and self._tower_learns():
            cell_loss, cell_stats = self.heads.loss(features, views)
            stats['read_acc'] = cell_stats['read_acc']
            loss = loss + self.args.cell_weight * cell_loss
        return loss, stats

    def export(self, out: Path) -> None:
        export_model(self, out)
        self.log({'exported': str(out), 'minutes': round(self.state['seconds'] / 60, 2)})
