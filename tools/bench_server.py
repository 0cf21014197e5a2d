#!/usr/bin/env python3
"""Benchmark the server's per-query cost: generation against the gate and ViCrop overhead,
and compute per policy (LLM tokens, measured time), in one run on one machine.

    python -m tools.bench_server [--model bundled] [--images 20] [--repeat 3]

Prints medians in ms and the ratios the server issue sets targets for:
  gate + ViCrop overhead / generation time of the pass they accompany (target <= 0.10), where
  the overhead is the gate's entropies plus ViCrop's RoI map and box search, for each
  vicrop.method: 'att' (the question's attention alone), 'rel_att' (relative to the
  generic-prompt attention pass, once per frame: reported with and without it) and 'grad_att'
  (one more forward and backward pass per crop).
No assertions: a benchmark reports, tests decide.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import statistics
import sys
import tempfile
import time

import numpy as np

from colvlm_bench.evaluate import Evaluator
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_models.vlm import TransformersVlm
from colvlm_server.gate import GateConfig, measure
from colvlm_server.parameters import SERVER_PARAMETERS, with_model_settings
from colvlm_server.vicrop import (
    GENERIC_PROMPT,
    choose_layer,
    locate,
    question_attention,
    relative_attention,
)


def _median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def time_passes(backend, questions, frames, config: GateConfig, repeat: int) -> dict:
    """Seconds per call of generation, the gate and each ViCrop method, for every question."""
    layer = choose_layer(backend.num_layers)
    encoder = float(backend.image_size[0])
    samples: dict[str, list[float]] = {k: [] for k in (
        'generate', 'gate', 'att', 'rel_att', 'generic', 'grad_att')}

    def timed(name: str, work, *args, **kwargs):
        started = time.perf_counter()
        value = work(*args, **kwargs)
        samples[name].append(time.perf_counter() - started)
        return value

    def att_box(first, frame):
        return locate(question_attention(first, backend.grid), frame.geometry, encoder)

    def rel_box(first, generic, frame):
        return locate(relative_attention(first, generic, backend.grid), frame.geometry,
                      encoder)

    def grad_box(question, frame):
        return locate(backend.gradient_attention(frame.image, question, layer),
                      frame.geometry, encoder)

    for _ in range(repeat):
        for question, frame in zip(questions, frames, strict=True):
            generation = timed('generate', backend.generate, [frame.image],
                               question.question, attention_layer=layer)
            timed('gate', measure, generation.logits, config)
            timed('att', att_box, generation.attention, frame)
            generic = timed('generic', backend.image_attention, frame.image, GENERIC_PROMPT,
                            layer)
            timed('rel_att', rel_box, generation.attention, generic, frame)
            timed('grad_att', grad_box, question.question, frame)
    return samples


def print_overheads(samples: dict[str, list[float]]) -> None:
    gen, gate, att, rel, generic, grad = (_median_ms(samples[k]) for k in (
        'generate', 'gate', 'att', 'rel_att', 'generic', 'grad_att'))
    print(f'generation (pass 1, eager attention) {gen:8.2f} ms')
    print(f'gate entropies                       {gate:8.3f} ms  ratio {gate / gen:.4f}')
    print(f"ViCrop 'att' map + box               {att:8.3f} ms  ratio {att / gen:.4f}")
    print(f"ViCrop 'rel_att' map + box           {rel:8.3f} ms  ratio {rel / gen:.4f}")
    print(f'  generic-prompt attention pass      {generic:8.2f} ms  ratio {generic / gen:.4f}'
          ' (once per frame, cached across questions)')
    print(f"ViCrop 'grad_att' pass + map + box   {grad:8.2f} ms  ratio {grad / gen:.4f}"
          ' (per crop)')
    print('overhead (gate + ViCrop) / generation, target <= 0.10:')
    print(f'  att {(gate + att) / gen:.4f}; rel_att {(gate + rel) / gen:.4f} with the '
          f'generic pass cached, {(gate + rel + generic) / gen:.4f} without; '
          f'grad_att {(gate + grad) / gen:.4f}')


def print_policies(evaluator, config: GateConfig) -> None:
    for policy in ('global', 'entropy', 'always', 'hd'):
        records = evaluator.run(policy, config)
        tokens = [r.result.llm_tokens for r in records]
        latency = [sum(p.latency_ms for p in (r.result.first, r.result.second) if p)
                   for r in records]
        print(f'  {policy:>8}: LLM tokens {np.median(tokens):7.1f}, '
              f'model time {np.median(latency):8.2f} ms')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tools.bench_server',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='bundled')
    parser.add_argument('--images', type=int, default=20)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--seed', type=int, default=515)
    args = parser.parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')

    backend = TransformersVlm(args.model, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        data = write_dataset(Path(folder) / 'data', args.images, args.seed)
        questions = [q for q in load_dataset(data) if q.kind == 'text']
        server = with_model_settings({name: spec.default for name, spec
                                      in SERVER_PARAMETERS.specs.items()} | {'model': args.model})
        evaluator = Evaluator(backend, data, questions, progress=False,
                              vicrop_method=server['vicrop.method'])
        frames = [evaluator._frame(q) for q in questions]
        config = GateConfig(threshold=float(server['gate.threshold']))
        samples = time_passes(backend, questions, frames, config, args.repeat)
        print(f'model {backend.model_id}: {len(questions)} text questions x {args.repeat}, '
              f'attention layer {choose_layer(backend.num_layers)} of {backend.num_layers}')
        print_overheads(samples)
        print(f"\ncompute per policy (same questions, medians per query; server defaults: "
              f"tau {config.threshold}, vicrop.method {server['vicrop.method']}):")
        print_policies(evaluator, config)
    return 0


if __name__ == '__main__':
    sys.exit(main())
