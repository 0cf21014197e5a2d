"""The trained model as a transformers folder (weights, processor, chat template) and its
`training.json`: every stage with steps and learning rate, the data mix, seeds, minutes and
versions, so that the folder says how it was made.

Contract: paths in the record are relative to the repository (or shortened to their last
parts when they lie outside it): a model folder never carries a machine's layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .prompts import FORMATS, KIND_WEIGHTS

REPO = Path(__file__).resolve().parents[2]


def portable_path(path: str | Path | None) -> str | None:
    """`path` relative to the repository, or '.../<parent>/<name>' outside it."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO).as_posix()
    except ValueError:
        return '.../' + '/'.join(resolved.parts[-2:])


def training_record(trainer) -> dict:
    """What `training.json` holds for a trainer's run (its stages, data mix and state)."""
    args = trainer.args
    return {
        'seed': args.seed, 'style': args.style,
        'stages': [{'name': n, 'steps': s, 'lr': lr} for n, s, lr in trainer.stages()],
        'init_from': portable_path(args.init_from), 'page_share': args.page_share,
        'batch': args.batch, 'tower_batch': args.tower_batch,
        'kinds': args.kinds or KIND_WEIGHTS, 'bind_kinds': args.bind_kinds,
        'joint_formats': dict(args.joint_formats or FORMATS['joint']),
        'joint_tower_scale': args.joint_tower_scale,
        'att_weight': args.att_weight, 'att_layer': trainer.att_layer,
        'completed': {'stage': trainer.state['stage'], 'step': trainer.state['step']},
        'minutes': round(trainer.state['seconds'] / 60, 1), 'device': str(trainer.device),
        'torch': torch.__version__}


def export_model(trainer, out: Path) -> None:
    """Save the trainer's model, processor and training record to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    trainer.model.config._attn_implementation = 'eager'  # what inference reads attention with
    trainer.model.save_pretrained(out)
    trainer.processor.save_pretrained(out)
    (out / 'training.json').write_text(json.dumps(training_record(trainer), indent=2) + '\n')
