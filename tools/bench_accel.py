#!/usr/bin/env python3
"""Benchmark LiteVLM's accelerations against the plain pipeline, on the same questions in one
run: visual-token selection, speculative decoding, low precision.

    python -m tools.bench_accel --images 10 --out out/bench-accel      # about 3 min here
    python -m tools.bench_accel --data out/data/heldout --limit 200 --out out/bench-accel

Builds a Glyph-VQA set (seed --seed) unless --data names one, then runs every variant through
`Evaluator` / `TwoStagePipeline` (the server's own pipeline, policy --policy) with a backend
loaded with that variant's settings. Variants run in turn, --rounds times, each round on a
fresh evaluator (no memoised passes) and in an order rotated by one each round (no variant
always takes the first slot), so the machine's load falls on them alike; latencies
are the median over rounds of the per-query mean (model passes + ViCrop), accuracies those of
the first round (greedy decoding is deterministic). Prints a table and writes
OUT/results.json. No assertions: a benchmark reports, tests decide.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import statistics
import sys
import tempfile

from colvlm_bench.evaluate import Evaluator, summarize
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_models.accelerate import Acceleration
from colvlm_models.vlm import TransformersVlm, VlmBackend
from colvlm_server.gate import GateConfig
from colvlm_server.parameters import SERVER_PARAMETERS

# name -> (server parameters it stands for, backend settings)
VARIANTS = {
    'plain': ('(defaults)', {}),
    'tokens 0.5': ('tokens.keep_ratio=0.5', {'keep_ratio': 0.5}),
    'tokens 0.25': ('tokens.keep_ratio=0.25', {'keep_ratio': 0.25}),
    'prompt lookup': ('decode.speculative=prompt_lookup', {'speculative': 'prompt_lookup'}),
    'draft': ('decode.speculative=draft', {'speculative': 'draft'}),
    'int8': ('quantize=int8', {'quantize': 'int8'}),
    'bfloat16': ('dtype=bfloat16', {'dtype': 'bfloat16'}),
    'int8 + tokens 0.5': ('quantize=int8 tokens.keep_ratio=0.5',
                          {'quantize': 'int8', 'keep_ratio': 0.5}),
}


class Recording(VlmBackend):
    """Passes generations through and keeps them, for tokens/s and acceptance."""

    def __init__(self, backend: VlmBackend) -> None:
        self.inner = backend
        self.model_id, self.num_layers = backend.model_id, backend.num_layers
        self.image_size, self.grid = backend.image_size, backend.grid
        self.generations = []

    def generate(self, images, question, *, attention_layer=None):
        generation = self.inner.generate(images, question, attention_layer=attention_layer)
        self.generations.append(generation)
        return generation

    def image_attention(self, image, prompt, layer):
        return self.inner.image_attention(image, prompt, layer)


def load(model: str, settings: dict) -> TransformersVlm:
    settings = dict(settings)
    dtype = settings.pop('dtype', 'float32')
    return TransformersVlm(model, dtype=dtype, progress=False,
                           acceleration=Acceleration(**settings))


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The flags and the variant names to run."""
    parser = argparse.ArgumentParser(prog='python -m tools.bench_accel',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='bundled')
    parser.add_argument('--data', help='Glyph-VQA folder (default: --images new ones)')
    parser.add_argument('--images', type=int, default=10)
    parser.add_argument('--seed', type=int, default=20260308)
    parser.add_argument('--limit', type=int, default=0, help='first N questions (0 = all)')
    parser.add_argument('--policy', default='entropy')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--variants', default=','.join(VARIANTS))
    parser.add_argument('--out', default='out/bench-accel')
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(',') if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or 'plain' not in names:
        parser.error(f'--variants must include plain and be among {list(VARIANTS)}')
    return args, names


def round_order(names: list[str], round_index: int) -> list[str]:
    """The variants of one round, rotated by the round's index so no variant always runs first."""
    shift = round_index % len(names) if names else 0
    return names[shift:] + names[:shift]


def measure_variants(args, names: list[str], data, questions) -> dict[str, dict]:
    """Per variant: latency per round, and the first round's metrics, answers and tokens."""
    gate = GateConfig(threshold=float(SERVER_PARAMETERS.specs['gate.threshold'].default))
    backends = {name: load(args.model, VARIANTS[name][1]) for name in names}
    rows = {name: {'latencies': []} for name in names}
    for round_index in range(args.rounds):
        for name in round_order(names, round_index):
            recording = Recording(backends[name])
            evaluator = Evaluator(recording, data, questions, progress=False)
            records = evaluator.run(args.policy, gate)
            metrics = summarize(args.policy, records, gate)
            rows[name]['latencies'].append(metrics['latency_ms_mean'])
            if round_index == 0:
                generations = recording.generations
                rows[name].update(
                    metrics=metrics, answers=[r.result.answer for r in records],
                    output_tokens=sum(g.output_tokens for g in generations),
                    seconds=sum(g.seconds for g in generations),
                    drafted=sum(g.drafted_tokens for g in generations),
                    accepted=sum(g.accepted_tokens for g in generations))
            print(f'round {round_index + 1}/{args.rounds} {name}: '
                  f'{metrics["latency_ms_mean"]:.1f} ms', file=sys.stderr, flush=True)
    return rows


def table_rows(rows: dict[str, dict], names: list[str]) -> list[dict]:
    """Each variant against plain: accuracy, same answers, latency (median of rounds)."""
    plain = rows['plain']
    plain_latency = statistics.median(plain['latencies'])
    table = []
    for name in names:
        row = rows[name]
        m = row['metrics']
        latency = statistics.median(row['latencies'])
        speculative = VARIANTS[name][1].get('speculative')
        table.append({
            'variant': name, 'parameters': VARIANTS[name][0], 'n': m['n'],
            'accuracy': m['accuracy'],
            'accuracy_change_points': 100 * (m['accuracy'] - plain['metrics']['accuracy']),
            'same_answer_rate': sum(a == b for a, b in zip(row['answers'], plain['answers'],
                                                           strict=True)) / m['n'],
            'llm_tokens_mean': m['llm_tokens_mean'], 'gflops_mean': m['gflops_mean'],
            'latency_ms_mean': latency, 'latency_ratio': latency / plain_latency,
            'latency_ms_rounds': row['latencies'],
            'tokens_per_s': row['output_tokens'] / row['seconds'] if row['seconds'] else None,
            'drafted': row['drafted'] if speculative else None,
            'acceptance_rate': (row['accepted'] / row['drafted'] if row['drafted'] else None)
            if speculative else None,
            'retransmission_rate': m['retransmission_rate']})
    return table


def print_table(table: list[dict]) -> None:
    header = ('variant', 'accuracy %', 'Δ points', 'same answer %', 'LLM tokens', 'latency ms',
              '× plain', 'tokens/s', 'acceptance %')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for t in table:
        acceptance = '' if t['acceptance_rate'] is None else \
            f'{100 * t["acceptance_rate"]:.1f} ({t["drafted"]} drafted)'
        if t['drafted'] == 0:
            acceptance = 'none drafted'
        print(f'| {t["variant"]} | {100 * t["accuracy"]:.1f} | '
              f'{t["accuracy_change_points"]:+.1f} | {100 * t["same_answer_rate"]:.1f} | '
              f'{t["llm_tokens_mean"]:.1f} | {t["latency_ms_mean"]:.1f} | '
              f'{t["latency_ratio"]:.2f} | {t["tokens_per_s"]:.0f} | {acceptance} |')


def main(argv: list[str] | None = None) -> int:
    args, names = parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    with tempfile.TemporaryDirectory() as folder:
        data = args.data or write_dataset(Path(folder) / 'data', args.images, args.seed)
        questions = load_dataset(data)[:args.limit or None]
        rows = measure_variants(args, names, data, questions)
    table = table_rows(rows, names)
    print(f'\n{len(questions)} questions, policy {args.policy}, model {args.model}, '
          f'{args.rounds} rounds (latency: median of round means)\n')
    print_table(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'results.json').write_text(json.dumps(
        {'questions': len(questions), 'policy': args.policy, 'model': args.model,
         'rounds': args.rounds, 'data': str(args.data or f'glyphvqa seed {args.seed}, '
                                                       f'{args.images} images'),
         'rows': table}, indent=2) + '\n')
    print(f'\nwrote {out / "results.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
