#!/usr/bin/env python3
"""Benchmark the token-layer path against the image paths, in one run on one machine.

    python -m tools.bench_layers --out out/bench-layers [--images 40] [--seed 20261125]

On a Glyph-VQA split the model never trained on, for each codec split (tower, projector):
per layer count k = 1..all, the bytes a frame's first k layers take as serialized TokenLayer
messages, the reconstruction's cosine similarity to the exact tokens, how often the answer
from k layers agrees with the answer from the exact tokens, and its accuracy; beside them the
global image (what the image path sends first). Then the edge's compute per frame on this CPU
for each path: full cloud (JPEG of the original), image two-stage (the 128 px global frame;
a crop when asked), token layers (vision tower + codec), full edge (the whole VLM answering on
the edge). Then the policies through the server's pipeline (`colvlm eval`'s Evaluator):
global, entropy (two-stage) and layers, with their uplink bytes.

Writes results.json, table.txt and token-layers.png (accuracy, agreement and cosine against
bytes per frame) to --out. No assertions: a benchmark reports, tests decide. The link
latencies at 1 Mbps come from tools/linkbench (--configs naive,tuned,layers,full-edge).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import sys
import time

import numpy as np

from colvlm_bench.evaluate import (
    Evaluator,
    FolderFrames,
    LayerSettings,
    summarize,
    wire_size,
)
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_bench.glyphvqa.questions import EVAL_KINDS, is_correct
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.token_encoder import TokenLayerEncoder
from colvlm_edge.wire import token_layer_message
from colvlm_models.settings import model_settings
from colvlm_models.vlm import TransformersVlm, VisualTokens, resolve_model
from colvlm_msgs.token_codec import SPLITS, TokenCodec, cosine_similarity
from colvlm_msgs.typesupport import message_class
from colvlm_server.gate import GateConfig

SEED = 20261125  # not a seed tools.train or the README's eval splits use


def _ms(samples: list[float]) -> float:
    return round(1e3 * statistics.median(samples), 2)


def layer_rows(backend, frames: dict[str, np.ndarray], questions, split: str,
               codec: TokenCodec) -> list[dict]:
    """Per layer count: bytes, cosine, agreement with the exact tokens' answer, accuracy."""
    layer_type = message_class('colvlm/msg/TokenLayer')
    tokens = {name: backend.visual_tokens(pixels, split) for name, pixels in frames.items()}
    encoded = {name: codec.encode(t) for name, t in tokens.items()}
    exact = {q.id: backend.generate([VisualTokens(tokens[q.image], split)], q.question).text
             for q in questions}
    rows = []
    for k in range(1, codec.layer_count + 1):
        decoded = {name: codec.decode(layers[:k]) for name, layers in encoded.items()}
        answers = {q.id: backend.generate([VisualTokens(decoded[q.image], split)],
                                          q.question).text for q in questions}
        sizes = [sum(wire_size(token_layer_message(layer_type, layer, 1, 'camera'))
                     for layer in layers[:k]) for layers in encoded.values()]
        rows.append({
            'split': split, 'layers': k, 'bytes_per_frame': round(float(np.mean(sizes)), 1),
            'cosine': round(float(np.mean([cosine_similarity(decoded[n], tokens[n])
                                           for n in tokens])), 4),
            'agreement': round(float(np.mean([answers[q.id] == exact[q.id]
                                              for q in questions])), 4),
            'accuracy': round(float(np.mean([is_correct(answers[q.id], q.answers)
                                             for q in questions])), 4)})
    rows.append({'split': split, 'layers': 'exact', 'bytes_per_frame': None, 'cosine': 1.0,
                 'agreement': 1.0, 'accuracy': round(float(np.mean(
                     [is_correct(exact[q.id], q.answers) for q in questions])), 4)})
    return rows


def image_row(backend, evaluator, questions) -> dict:
    """The global image as the image path sends it: bytes, and its answers' accuracy."""
    records = evaluator.run('global', GateConfig(
        threshold=model_settings('bundled')['gate.threshold']))
    return {'split': 'image', 'layers': 'global JPEG', 'cosine': None, 'agreement': None,
            'bytes_per_frame': round(float(np.mean([r.result.global_bytes
                                                    for r in records])), 1),
            'accuracy': round(float(np.mean([r.correct for r in records])), 4)}


def edge_compute(backend, originals: list[np.ndarray], questions, repeat: int) -> dict:
    """Median ms per frame of each path's edge-side work on this CPU."""
    encoder = GlobalEncoder(GlobalEncoderConfig(width=128, height=128))
    side = GlobalEncoder(GlobalEncoderConfig(width=max(originals[0].shape[:2]),
                                             height=max(originals[0].shape[:2])))
    tower = TokenLayerEncoder(backend, TokenCodec.load(
        Path(resolve_model('bundled')) / 'token_codec_tower.npz'))
    timings: dict[str, list[float]] = {'full_cloud': [], 'two_stage': [], 'token_layers': [],
                                       'full_edge': []}
    for _ in range(repeat):
        for original, question in zip(originals, questions, strict=False):
            started = time.perf_counter()
            side.encode(original)
            timings['full_cloud'].append(time.perf_counter() - started)
            started = time.perf_counter()
            encoder.encode(original)
            timings['two_stage'].append(time.perf_counter() - started)
            pixels, _ = encoder.render(original)
            started = time.perf_counter()
            tower.encode(pixels)
            timings['token_layers'].append(time.perf_counter() - started)
            started = time.perf_counter()
            backend.generate([pixels], question.question)
            timings['full_edge'].append(time.perf_counter() - started)
    return {name: _ms(values) for name, values in timings.items()}


def policy_rows(evaluator, threshold: float) -> list[dict]:
    rows = []
    for policy in ('global', 'entropy', 'layers'):
        gate = GateConfig(threshold=threshold)
        metrics = summarize(policy, evaluator.run(policy, gate), gate)
        rows.append({key: metrics.get(key) for key in (
            'policy', 'accuracy', 'uplink_bytes_mean', 'downlink_bytes_mean',
            'retransmission_rate', 'llm_tokens_mean', 'latency_ms_mean', 'layers_used_mean')})
    return rows


def plot(rows: list[dict], image: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for split, color in zip(SPLITS, ('tab:blue', 'tab:orange'), strict=True):
        mine = [r for r in rows if r['split'] == split and r['layers'] != 'exact']
        xs = [r['bytes_per_frame'] for r in mine]
        axes[0].plot(xs, [r['accuracy'] for r in mine], 'o-', color=color,
                     label=f'accuracy, {split}')
        axes[0].plot(xs, [r['agreement'] for r in mine], 's--', color=color,
                     label=f'agreement with exact tokens, {split}')
        axes[1].plot(xs, [r['cosine'] for r in mine], 'o-', color=color, label=split)
        for row in mine:
            axes[1].annotate(str(row['layers']), (row['bytes_per_frame'], row['cosine']),
                             textcoords='offset points', xytext=(4, -10))
    axes[0].plot([image['bytes_per_frame']], [image['accuracy']], 'k*', markersize=12,
                 label='global JPEG (image path)')
    axes[0].set(xlabel='uplink bytes per frame (serialized messages)',
                ylabel='fraction of questions', title='answers vs bytes, per layer count')
    axes[1].set(xlabel='uplink bytes per frame (serialized messages)',
                ylabel='cosine similarity to the exact tokens',
                title='reconstruction vs bytes (labels: layers)')
    for axis in axes:
        axis.set_xscale('log')
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def table(layer_table: list[dict], image: dict, compute: dict, policies: list[dict]) -> str:
    lines = ['per layer count (held-out frames):', '',
             'split      layers  B/frame  cosine  agree %  accuracy %',
             '---------  ------  -------  ------  -------  ----------']
    for row in [*layer_table, image]:
        size = '' if row['bytes_per_frame'] is None else f'{row["bytes_per_frame"]:.0f}'
        cosine = '' if row['cosine'] is None else f'{row["cosine"]:.4f}'
        agree = '' if row['agreement'] is None else f'{100 * row["agreement"]:.1f}'
        lines.append(f'{row["split"]:<9}  {row["layers"]!s:>6}  {size:>7}  {cosine:>6}  '
                     f'{agree:>7}  {100 * row["accuracy"]:>10.1f}')
    lines += ['', 'edge compute per frame on this CPU (median ms):']
    lines += [f'  {name}: {value:.2f}' for name, value in compute.items()]
    lines += ['', 'policies (server pipeline):', '',
              'policy   accuracy %  uplink B/q  downlink B/q  refined %  LLM tokens  layers',
              '-------  ----------  ----------  ------------  ---------  ----------  ------']
    for row in policies:
        layers = '' if row['layers_used_mean'] is None else f'{row["layers_used_mean"]:.2f}'
        lines.append(f'{row["policy"]:<7}  {100 * row["accuracy"]:>10.1f}  '
                     f'{row["uplink_bytes_mean"]:>10.0f}  {row["downlink_bytes_mean"]:>12.0f}  '
                     f'{100 * row["retransmission_rate"]:>9.1f}  {row["llm_tokens_mean"]:>10.1f}'
                     f'  {layers:>6}')
    uplink = {r['policy']: r['uplink_bytes_mean'] for r in policies}
    lines += ['', f'uplink bytes, layers / global: {uplink["layers"] / uplink["global"]:.2f}; '
              f'layers / entropy (two-stage): {uplink["layers"] / uplink["entropy"]:.2f}']
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='out/bench-layers')
    parser.add_argument('--images', type=int, default=40)
    parser.add_argument('--seed', type=int, default=SEED)
    parser.add_argument('--repeat', type=int, default=3, help='timing repeats per frame')
    args = parser.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    backend = TransformersVlm('bundled', progress=False)
    data = out / 'data'
    if not (data / 'questions.jsonl').is_file():
        write_dataset(data, n_images=args.images, seed=args.seed, overwrite=True)
    questions = [q for q in load_dataset(data) if q.kind in EVAL_KINDS]
    evaluator = Evaluator(backend, data, questions, progress=False)
    encoder = GlobalEncoder(GlobalEncoderConfig(width=128, height=128))
    originals = {name: FolderFrames(data).original(name)
                 for name in dict.fromkeys(q.image for q in questions)}
    frames = {name: encoder.render(image)[0] for name, image in originals.items()}

    layer_table = []
    for split in SPLITS:
        codec = TokenCodec.load(Path(resolve_model('bundled')) / f'token_codec_{split}.npz')
        layer_table += layer_rows(backend, frames, questions, split, codec)
        print(f'{split}: done', flush=True)
    image = image_row(backend, evaluator, questions)
    first = {}
    for question in questions:
        first.setdefault(question.image, question)
    compute = edge_compute(backend, [originals[n] for n in first], list(first.values()),
                           args.repeat)
    threshold = float(model_settings('bundled')['gate.threshold'])  # the model's own tau
    evaluator.enable_layers('bundled', LayerSettings())
    policies = policy_rows(evaluator, threshold)

    text = (f'bench_layers: bundled model, Glyph-VQA seed {args.seed}, {len(frames)} images, '
            f'{len(questions)} questions, tau {threshold}\n\n'
            + table(layer_table, image, compute, policies))
    print(text)
    (out / 'table.txt').write_text(text + '\n')
    (out / 'results.json').write_text(json.dumps(
        {'seed': args.seed, 'images': len(frames), 'questions': len(questions),
         'layers': layer_table, 'image': image, 'edge_compute_ms': compute,
         'policies': policies}, indent=2) + '\n')
    plot(layer_table, image, out / 'token-layers.png')
    print(f'wrote {out / "table.txt"}, {out / "results.json"}, {out / "token-layers.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
