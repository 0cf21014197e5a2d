#!/usr/bin/env python3
"""Benchmark the server's per-query cost: generation against the gate and ViCrop overhead,
and compute per policy (LLM tokens, measured time), in one run on one machine.

    python tools/bench_server.py [--model bundled] [--images 20] [--repeat 3]

Prints medians in ms and the ratios the server issue sets targets for:
  gate + ViCrop overhead / generation time of the pass they accompany (target <= 0.10), where
  the overhead is the gate's entropies plus ViCrop's relative attention and box search, plus
  the generic-prompt attention pass (once per frame: reported with and without it).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colvlm_edge.glyphvqa.dataset import load_dataset, write_dataset  # noqa: E402
from colvlm_server.evaluate import Evaluator  # noqa: E402
from colvlm_server.gate import GateConfig, measure  # noqa: E402
from colvlm_server.vicrop import (  # noqa: E402
    GENERIC_PROMPT,
    choose_layer,
    locate,
    relative_attention,
)
from colvlm_server.vlm import TransformersVlm  # noqa: E402


def _median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='bundled')
    parser.add_argument('--images', type=int, default=20)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--seed', type=int, default=515)
    args = parser.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')

    backend = TransformersVlm(args.model, progress=False)
    layer = choose_layer(backend.num_layers)
    with tempfile.TemporaryDirectory() as folder:
        data = write_dataset(Path(folder) / 'data', args.images, args.seed)
        questions = [q for q in load_dataset(data) if q.kind == 'text']
        evaluator = Evaluator(backend, data, questions, progress=False)
        frames = [evaluator._frame(q) for q in questions]
        generate, gate_t, vicrop_t, generic_t = [], [], [], []
        config = GateConfig()
        for _ in range(args.repeat):
            for question, frame in zip(questions, frames, strict=True):
                started = time.perf_counter()
                generation = backend.generate([frame.image], question.question,
                                              attention_layer=layer)
                generate.append(time.perf_counter() - started)
                started = time.perf_counter()
                measure(generation.logits, config)
                gate_t.append(time.perf_counter() - started)
                started = time.perf_counter()
                generic = backend.image_attention(frame.image, GENERIC_PROMPT, layer)
                generic_t.append(time.perf_counter() - started)
                started = time.perf_counter()
                locate(relative_attention(generation.attention, generic, backend.grid),
                       frame.geometry, float(backend.image_size[0]))
                vicrop_t.append(time.perf_counter() - started)
        print(f'model {backend.model_id}: {len(questions)} text questions x {args.repeat}, '
              f'attention layer {layer} of {backend.num_layers}')
        gen, gate, vicrop, generic = (_median_ms(s) for s in (generate, gate_t, vicrop_t,
                                                              generic_t))
        print(f'generation (pass 1, eager attention) {gen:8.2f} ms')
        print(f'gate entropies                       {gate:8.3f} ms  ratio {gate / gen:.4f}')
        print(f'ViCrop relative attention + box      {vicrop:8.3f} ms  ratio {vicrop / gen:.4f}')
        print(f'generic-prompt attention pass        {generic:8.2f} ms  ratio {generic / gen:.4f}'
              ' (once per frame, cached across questions)')
        print(f'overhead / generation, generic cached: {(gate + vicrop) / gen:.4f} '
              f'(target <= 0.10); generic per query: {(gate + vicrop + generic) / gen:.4f}')

        print('\ncompute per policy (same questions, medians per query):')
        for policy in ('global', 'entropy', 'always', 'hd'):
            records = evaluator.run(policy, config)
            tokens = [r.result.llm_tokens for r in records]
            latency = [sum(p.latency_ms for p in (r.result.first, r.result.second) if p)
                       for r in records]
            print(f'  {policy:>8}: LLM tokens {np.median(tokens):7.1f}, '
                  f'model time {np.median(latency):8.2f} ms')
    return 0


if __name__ == '__main__':
    sys.exit(main())
