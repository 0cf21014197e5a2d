#!/usr/bin/env python3
"""Derive the draft model for speculative decoding from a trained LLaVA (default: bundled).

    python -m tools.make_draft_model --out models/colvlm-tiny-llava-draft \
        [--layers 0] [--distill-steps 300]

The draft is the model itself with fewer decoder layers (`--layers`, 0-based, default the
first): same tower, projector, embeddings, final norm and tokenizer, so it reads the model's
input embeddings as they are. `--distill-steps N` then trains the draft's decoder layers and
norm (everything else frozen) to match the model's next-token distribution (KL) on Glyph-VQA
prompts drawn as tools.train draws them (1-, 2- and 5-image prompts, the answer
tokens teacher-forced from the reference answers), on CPU. The model card and training.json
record how it was made.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path
import shutil
import sys
import time

import torch
import torch.nn.functional as F

import colvlm_models.glyph_tower  # noqa: F401  registers the tower
from colvlm_models.vlm import resolve_model
from tools.train.export import portable_path

PROCESSOR_FILES = ('chat_template.jinja', 'processor_config.json', 'tokenizer.json',
                   'tokenizer_config.json')


def derive(source: str, layers: list[int]):
    """The draft: `source` with only decoder `layers`, sharing every other weight."""
    from transformers import AutoModelForImageTextToText
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
    config = copy.deepcopy(model.config)
    config.text_config.num_hidden_layers = len(layers)
    draft = type(model)(config)
    state = model.state_dict()
    prefix = 'model.language_model.layers.'
    kept = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split('.', 1)
            if int(index) not in layers:
                continue
            key = f'{prefix}{layers.index(int(index))}.{rest}'
        kept[key] = value
    missing, unexpected = draft.load_state_dict(kept, strict=False)
    if unexpected or [k for k in missing if 'lm_head' not in k]:
        raise RuntimeError(f'draft weights do not fit: missing {missing}, extra {unexpected}')
    draft.tie_weights()
    return model.eval(), draft


def trainable_layers(draft) -> list:
    """Freeze the draft but for its decoder layers and final norm; those parameters."""
    for parameter in draft.parameters():
        parameter.requires_grad = False
    trainable = [p for n, p in draft.named_parameters()
                 if n.startswith(('model.language_model.layers.', 'model.language_model.norm.'))]
    for parameter in trainable:
        parameter.requires_grad = True
    return trainable


def distill(teacher, draft, source: str, steps: int, lr: float, seed: int,
            batch: int) -> list:
    """KL(teacher || draft) at every answer position of teacher-forced Glyph-VQA prompts;
    a log line every 20 steps."""
    import numpy as np
    from transformers import AutoProcessor

    from tools.train import data  # the bundled model's own data code
    from tools.train import prompts as recipe
    from tools.train.trainer import cosine_lr

    processor = AutoProcessor.from_pretrained(source)
    grid = int(teacher.config.vision_config.image_size) // int(
        teacher.config.vision_config.patch_size)
    prompts = recipe.PromptEncoder(processor, grid * grid)
    # A scene stream that none of the bundled model's training stages draws from.
    stream = max(data.STREAMS.values()) + 1
    pool = data.ScenePool(seed, stream, 128, int(teacher.config.vision_config.image_size),
                          grid)
    formats = recipe.FORMATS['joint']
    weights = np.array([w for _, w in formats])
    optimizer = torch.optim.AdamW(trainable_layers(draft), lr=lr, weight_decay=0.0)
    torch.manual_seed(seed)
    log, started = [], time.time()
    draft.train()
    for step in range(steps):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 31337, step]))
        pool.advance_to(32 + 2 * (step + 1))
        n_images = formats[int(rng.choice(len(formats), p=weights / weights.sum()))][0]
        size = max(2, int(batch * 2 / (n_images + 1)))
        samples = [recipe.build_sample(rng, pool.sample(rng), n_images) for _ in range(size)]
        inputs = prompts.batch(samples, 'cpu')
        labels = inputs.pop('labels')
        inputs['pixel_values'] = recipe.pixel_batch(
            processor, [v for images, *_ in samples for v in images])
        loss, agree = kl_step(teacher, draft, inputs, labels != data.IGNORE, optimizer,
                              cosine_lr(step, steps, lr, 20))
        if step % 20 == 0 or step == steps - 1:
            record = {'step': step, 'kl': round(loss, 5), 'argmax_agreement': round(agree, 4),
                      'elapsed_s': round(time.time() - started, 1)}
            log.append(record)
            print(json.dumps(record), flush=True)
    draft.eval()
    return log


def kl_step(teacher, draft, inputs: dict, answer, optimizer, lr: float) -> tuple[float, float]:
    """One AdamW step on KL(teacher || draft) where `answer` (B, T) marks supervised tokens;
    (loss, the share of positions where both argmaxes agree)."""
    with torch.no_grad():
        target = teacher(**inputs).logits[:, :-1]
    logits = draft(**inputs).logits[:, :-1]
    mask = answer[:, 1:]  # position t predicts token t + 1
    loss = F.kl_div(F.log_softmax(logits[mask], -1), F.log_softmax(target[mask], -1),
                    log_target=True, reduction='batchmean')
    optimizer.zero_grad()
    loss.backward()
    for group in optimizer.param_groups:
        group['lr'] = lr
    optimizer.step()
    agree = (logits[mask].argmax(-1) == target[mask].argmax(-1)).float().mean().item()
    return loss.item(), agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='bundled')
    parser.add_argument('--out', required=True)
    parser.add_argument('--layers', default='0', help='decoder layers kept, comma-separated')
    parser.add_argument('--distill-steps', type=int, default=0)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--seed', type=int, default=4321)
    parser.add_argument('--batch', type=int, default=16, help='1-image prompts per step')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    args = parser.parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    torch.set_num_threads(args.threads)
    source = resolve_model(args.model)
    layers = [int(v) for v in args.layers.split(',') if v.strip()]
    teacher, draft = derive(source, layers)
    log = []
    if args.distill_steps:
        log = distill(teacher, draft, source, args.distill_steps, args.lr, args.seed,
                      args.batch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    draft.save_pretrained(out)
    for name in PROCESSOR_FILES:
        if (Path(source) / name).is_file():
            shutil.copy(Path(source) / name, out / name)
    (out / 'training.json').write_text(json.dumps({
        'derived_from': args.model if args.model == 'bundled' else portable_path(args.model),
        'layers_kept': layers,
        'distill_steps': args.distill_steps, 'lr': args.lr, 'seed': args.seed,
        'batch': args.batch,
        'log': log}, indent=2) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
