"""Fit the edge's view probe (colvlm_edge/view_score.py) on the model's frozen vision tower and
save it next to the model.

Scenes are rendered fresh from seed stream 20261201 (SeedSequence([20261201, i]); no other tool,
data set or test draws from it), turned into global frames exactly as the edge makes them (the
edge's default `global.*` parameters: the model's 128x128 input, padded) and run through the
tower once each. Labels come from `label_map` at full resolution: a cell holds concept
'colour kind' when at least --min-cover of the cell's area (default 15 %, in original pixels)
belongs to an object of that colour and kind, and an object that covers no cell that much (a
small sign) labels the one cell holding most of it, so every object is somewhere positive.

The probe is one logistic regression per concept on the raw tokens (Adam; positives weighted
by negatives/positives, capped, because a concept is in ~1 % of cells), then one Platt scaling
of the view score (the max logit over cells and the question's concepts) on question-view
pairs of the training scenes, folded into weights and bias. The last --held-out
scenes are never trained on; they give the cell-level metrics per concept and the view-level
AUROC of the score (each question scored on its own scene and on the next held-out scene,
positive when that view holds the asked concept), per question template.

    python -m tools.fit_view_probe          # ~75 s on a 2-core CPU, 1 thread
    python -m tools.fit_view_probe --model PATH --out out/probe.npz --scenes 600
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import os
from pathlib import Path
import sys
import time

import numpy as np

from colvlm_bench.evaluate import auroc
from colvlm_bench.glyphvqa.questions import EVAL_KINDS, questions_for_scene
from colvlm_bench.glyphvqa.scene import COLORS, SHAPES, Scene, label_map, render_scene
from colvlm_edge.global_encoder import GlobalEncoder
from colvlm_edge.parameters import EDGE_PARAMETERS, EdgeConfig
from colvlm_edge.view_score import (
    PROBE_FILE,
    SPLIT,
    ViewProbe,
    ViewScorer,
    concept_names,
    matching_concepts,
    question_concepts,
)
from colvlm_msgs.geometry import Box

SEED_STREAM = 20261201  # scenes of this tool only
POS_WEIGHT_CAP = 50.0  # rarest concepts: cap the weighting so their few cells do not dominate
BATCH = 1024  # cells per Adam step


def cell_labels(scene: Scene, encoder: GlobalEncoder, grid: tuple[int, int],
                concepts: tuple[str, ...], min_cover: float) -> np.ndarray:
    """(rows * cols, C) float32 0/1, row-major like the tower's tokens: which concepts each
    cell of the global frame holds (see the module docstring for the rule)."""
    labels = label_map(scene)  # (H, W) int16 object index, -1 background
    geometry = encoder.geometry_for(scene.width, scene.height)
    rows, cols = grid
    cell_w = geometry.global_width / cols  # global px
    cell_h = geometry.global_height / rows
    index = {name: k for k, name in enumerate(concepts)}
    counts = np.zeros((rows * cols, len(scene.objects)), np.float64)  # original px per cell
    areas = np.zeros(rows * cols, np.float64)  # original px^2 a cell spans, padding included
    for row in range(rows):
        for col in range(cols):
            box = geometry.to_original(Box(col * cell_w, row * cell_h,
                                           (col + 1) * cell_w, (row + 1) * cell_h))
            cell = row * cols + col
            areas[cell] = (box.x1 - box.x0) * (box.y1 - box.y0)
            x0, y0 = max(0, int(box.x0)), max(0, int(box.y0))
            x1 = min(scene.width, int(np.ceil(box.x1)))
            y1 = min(scene.height, int(np.ceil(box.y1)))
            if x1 <= x0 or y1 <= y0:
                continue  # padding only
            found = np.bincount(labels[y0:y1, x0:x1].ravel() + 1,
                                minlength=len(scene.objects) + 1)
            counts[cell] = found[1:]
    out = np.zeros((rows * cols, len(concepts)), np.float32)
    for obj, thing in enumerate(scene.objects):
        column = index[thing.name]
        covered = counts[:, obj] >= min_cover * areas
        if not covered.any() and counts[:, obj].max() > 0:
            covered[counts[:, obj].argmax()] = True
        out[covered, column] = 1.0
    return out


def view_holds(objects, question: str) -> bool:
    """Whether a scene's objects hold what the question asks about, read as the scorer reads
    it (a kind without a colour is any colour, and the other way round)."""
    colors, kinds = question_concepts(question, concept_names(COLORS, ('sign', *SHAPES)))
    return any((not colors or obj.color in colors)
               and (not kinds or (obj.shape or 'sign') in kinds) for obj in objects)


def view_pairs(objects: list, rng: np.random.Generator):
    """(template, question, view index, holds) for every evaluation question of scene k, asked
    of scene k and of scene k + 1 (which holds the concept or not, by chance)."""
    for k in range(len(objects)):
        scene = Scene(np.zeros((1, 1, 3), np.uint8), objects[k])  # questions read objects only
        for question in questions_for_scene(scene, rng, f'{k}.png', kinds=EVAL_KINDS):
            for view in (k, (k + 1) % len(objects)):
                yield question.kind, question.question, view, view_holds(objects[view],
                                                                         question.question)


def platt(max_logits: np.ndarray, holds: np.ndarray, torch) -> tuple[float, float]:
    """(a, b) of P(view holds the concept) = sigmoid(a * max logit + b), by maximum
    likelihood; a > 0, so the order of views is kept."""
    z = torch.from_numpy(max_logits.astype(np.float32))
    y = torch.from_numpy(holds.astype(np.float32))
    log_a = torch.zeros((), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_a, b], max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(log_a.exp() * z + b, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_a.detach().exp()), float(b.detach())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m tools.fit_view_probe',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='bundled', help="'bundled' or a local model folder")
    parser.add_argument('--out', default='', help=f'default: {PROBE_FILE} next to the model')
    parser.add_argument('--scenes', type=int, default=1500,
                        help='scenes rendered, the last --held-out of them for evaluation')
    parser.add_argument('--held-out', type=int, default=300)
    parser.add_argument('--epochs', type=int, default=60)
    parser.add_argument('--min-cover', type=float, default=0.15,
                        help="fraction of a cell's area an object must cover to label it")
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--seed', type=int, default=4242,
                        help='initialisation, shuffling and the evaluation questions')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    args = parser.parse_args(argv)
    if not 0 < args.held_out < args.scenes:
        parser.error(f'--held-out must be in 1..{args.scenes - 1}, got {args.held_out}')
    if not 0.0 < args.min_cover <= 1.0:
        parser.error(f'--min-cover must be in (0, 1], got {args.min_cover}')
    return args


def scene(index: int) -> Scene:
    return render_scene(np.random.default_rng(np.random.SeedSequence([SEED_STREAM, index])))


def edge_encoder(backend) -> GlobalEncoder:
    """The edge's global frames with its default parameters, at the model's input size."""
    config = EdgeConfig.from_values(EDGE_PARAMETERS.resolve()).encoder
    if config.size != tuple(backend.image_size):
        # The edge's defaults are the bundled model's input; another model's edge would set
        # global.width/height to its own, so fit on that.
        config = replace(config, width=backend.image_size[0], height=backend.image_size[1])
    return GlobalEncoder(config)


def tower_cells(backend, encoder: GlobalEncoder, concepts, args, started: float):
    """Every scene through the tower: tokens (scenes * N, D), labels (scenes * N, C) and the
    scenes' objects."""
    tokens, labels, objects = [], [], []
    for index in range(args.scenes):
        drawn = scene(index)
        pixels, _ = encoder.render(drawn.image)  # (h, w, 3) uint8 BGR, what the edge sees
        tokens.append(backend.visual_tokens(pixels, SPLIT))  # (N, D) float32
        labels.append(cell_labels(drawn, encoder, backend.grid, concepts, args.min_cover))
        objects.append(drawn.objects)
        if (index + 1) % 250 == 0:
            print(f'  {index + 1}/{args.scenes} scenes through the tower, '
                  f'{time.perf_counter() - started:.0f} s', flush=True)
    return np.concatenate(tokens), np.concatenate(labels), objects


def fit_linear(x_train: np.ndarray, y_train: np.ndarray, args, torch):
    """One logistic regression per concept: (weights (D, C), bias (C,)) on raw tokens."""
    # Adam on standardised channels converges in few epochs whatever the tower's scales; the
    # standardisation is folded into the saved weights, so the probe reads raw tokens.
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0) + 1e-6
    xt = torch.from_numpy((x_train - mean) / scale)
    yt = torch.from_numpy(y_train)
    positives = yt.sum(dim=0)
    pos_weight = ((len(yt) - positives) / positives.clamp(min=1.0)).clamp(max=POS_WEIGHT_CAP)
    linear = torch.nn.Linear(xt.shape[1], yt.shape[1])
    optimizer = torch.optim.Adam(linear.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), BATCH):
            batch = order[start:start + BATCH]
            loss = loss_fn(linear(xt[batch]), yt[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if (epoch + 1) % 10 == 0 or epoch + 1 == args.epochs:
            print(f'  epoch {epoch + 1}/{args.epochs}: loss {total / len(xt):.4f}', flush=True)
    weight = linear.weight.detach().numpy().T / scale[:, None]  # (D, C)
    return weight, linear.bias.detach().numpy() - mean @ weight


def calibrated_probe(weight, bias, x_train, objects, concepts, rng, model_id, torch):
    """The probe with one Platt scaling of the view score folded into weights and bias."""
    # The positive weighting ranks cells well but puts their probabilities far too high: the
    # max over 64 cells (and 7 colours for a colour question) of a view without the concept
    # is often above 0.5, the server's views.min_score. One Platt scaling of that max, on the
    # training scenes, makes the view score P(view holds the concept) (for the balanced mix of
    # views these question pairs give); folded into weights and bias, since sigmoid(a z + b)
    # is increasing for a > 0, the max over cells and concepts is kept.
    train_logits = (x_train @ weight + bias).reshape(len(objects), -1, len(concepts))
    pairs = list(view_pairs(objects, rng))
    max_logits = np.array([train_logits[view][:, matching_concepts(question, concepts)].max()
                           for _, question, view, _ in pairs])
    slope, offset = platt(max_logits, np.array([holds for *_, holds in pairs]), torch)
    print(f'  view calibration: sigmoid({slope:.3f} * max logit {offset:+.3f}) on '
          f'{len(pairs)} training question-view pairs', flush=True)
    probe = ViewProbe((weight * slope).astype(np.float32),
                      (bias * slope + offset).astype(np.float32), concepts, model_id)
    return probe, {'slope': round(slope, 4), 'offset': round(offset, 4)}


def cell_metrics(probe: ViewProbe, x_test, y_test, concepts) -> tuple[dict, dict]:
    """Held-out cells: AUROC per concept, and its mean, min and micro average."""
    probabilities = probe.cell_probabilities(x_test)  # (cells, C)
    per_concept = {}
    for k, name in enumerate(concepts):
        truth = y_test[:, k] > 0
        per_concept[name] = {
            'cells': int(truth.sum()),
            'auroc': round(auroc(probabilities[:, k].tolist(), truth.tolist()), 4)}
    aurocs = [m['auroc'] for m in per_concept.values() if not np.isnan(m['auroc'])]
    return per_concept, {
        'cell_auroc_mean': round(float(np.mean(aurocs)), 4),
        'cell_auroc_min': round(float(np.min(aurocs)), 4),
        'cell_auroc_micro': round(auroc(probabilities.ravel().tolist(),
                                        (y_test.ravel() > 0).tolist()), 4)}


def view_metrics(backend, probe, encoder, objects, first: int, rng) -> dict:
    """View level, through the edge's own scoring path (render, tower, probe, max) on the
    held-out scenes (from `first`), rendered again; two scorers so that each keeps its view's
    tokens."""
    held_out = [scene(index) for index in range(first, first + len(objects))]
    scorers = ViewScorer(backend, probe, encoder), ViewScorer(backend, probe, encoder)
    by_kind: dict[str, tuple[list, list]] = {kind: ([], []) for kind in EVAL_KINDS}
    for kind, question, view, holds in view_pairs(objects, rng):
        scorer = scorers[view % 2]
        by_kind[kind][0].append(scorer.score(held_out[view].image, question, key=view).score)
        by_kind[kind][1].append(holds)
    metrics = {}
    for kind, (scores, truth) in by_kind.items():
        scores, truth = np.array(scores), np.array(truth)
        metrics[kind] = {
            'auroc': round(auroc(scores.tolist(), truth.tolist()), 4),
            'positives': int(truth.sum()), 'negatives': int((~truth).sum()),
            'tpr_at_0.5': round(float((scores[truth] >= 0.5).mean()), 3),
            'fpr_at_0.5': round(float((scores[~truth] >= 0.5).mean()), 3)}
    return metrics


def report(record: dict, out: Path, seconds: float) -> None:
    for name, metrics in record['per_concept'].items():
        print(f'  {name:16s} {metrics["cells"]:4d} held-out cells, AUROC {metrics["auroc"]:.4f}')
    print(f'cell AUROC mean {record["cell_auroc_mean"]:.4f} min {record["cell_auroc_min"]:.4f} '
          f'micro {record["cell_auroc_micro"]:.4f}')
    for kind, m in record['view'].items():
        print(f'view {kind:8s} AUROC {m["auroc"]:.4f}  at 0.5: TPR {m["tpr_at_0.5"]:.3f} '
              f'FPR {m["fpr_at_0.5"]:.3f}  ({m["positives"]} views hold it, '
              f'{m["negatives"]} do not)')
    print(f'wrote {out} ({out.stat().st_size} B) in {seconds:.0f} s')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import torch

    from colvlm_models.vlm import TransformersVlm, resolve_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    backend = TransformersVlm(args.model, attention=False, progress=False)
    encoder = edge_encoder(backend)
    concepts = concept_names(COLORS, ('sign', *SHAPES))
    train_count = args.scenes - args.held_out
    config = encoder.config
    print(f'{args.model}: {backend.grid[0]}x{backend.grid[1]} cells, global frames '
          f'{config.width}x{config.height} {config.preprocess}; '
          f'{train_count} training + {args.held_out} held-out scenes, seed stream '
          f'{SEED_STREAM}', flush=True)
    x_all, y_all, objects = tower_cells(backend, encoder, concepts, args, started)
    split = train_count * (len(x_all) // args.scenes)  # cells of the training scenes
    weight, bias = fit_linear(x_all[:split], y_all[:split], args, torch)
    rng = np.random.default_rng(args.seed)
    probe, calibration = calibrated_probe(weight, bias, x_all[:split], objects[:train_count],
                                          concepts, rng, backend.model_id, torch)
    per_concept, cells = cell_metrics(probe, x_all[split:], y_all[split:], concepts)
    views = view_metrics(backend, probe, encoder, objects[train_count:], train_count, rng)
    seconds = time.perf_counter() - started
    record = {
        'settings': {'model': str(args.model), 'scenes': args.scenes,
                     'held_out': args.held_out, 'epochs': args.epochs,
                     'min_cover': args.min_cover, 'lr': args.lr, 'seed': args.seed,
                     'seed_stream': SEED_STREAM, 'pos_weight_cap': POS_WEIGHT_CAP,
                     'global': f'{config.width}x{config.height} {config.preprocess}',
                     'split': SPLIT},
        **cells, 'view_auroc': {kind: m['auroc'] for kind, m in views.items()},
        'view': views, 'calibration': calibration, 'per_concept': per_concept,
        'seconds': round(seconds)}
    # A local folder is named by its own name, not by the path it was given as.
    model_id = Path(backend.model_id).name if Path(backend.model_id).is_dir() else \
        backend.model_id
    probe = ViewProbe(probe.weights, probe.bias, concepts, model_id,
                      json.dumps(record, separators=(',', ':')))
    out = Path(args.out) if args.out else Path(resolve_model(args.model)) / PROBE_FILE
    probe.save(out)
    report(record, out, seconds)
    return 0


if __name__ == '__main__':
    sys.exit(main())
