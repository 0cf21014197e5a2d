#!/usr/bin/env python3
"""Print the README's results table from a `colvlm eval` metrics.json.

    python -m tools.eval_table out/eval-heldout/metrics.json

One row per fixed policy, the entropy policy at its default τ (the calibrated one) and the
random policy at entropy's retransmission rate, then the issue's benchmark ratios.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys


def _pick(entries: list[dict]) -> list[dict]:
    rows = [m for m in entries if m['policy'] in ('global', 'always', 'hd', 'oracle')]
    entropy = [m for m in entries if m['policy'] == 'entropy' and m.get('default')]
    rows += entropy
    if entropy:
        rate = entropy[0]['retransmission_rate']
        randoms = [m for m in entries if m['policy'] == 'random']
        if randoms:
            rows.append(min(randoms, key=lambda m: abs(m['random_rate'] - rate)))
    order = ('global', 'entropy', 'random', 'always', 'hd', 'oracle')
    return sorted(rows, key=lambda m: order.index(m['policy']))


def _pct(value) -> str:
    return 'n/a' if value is None else f'{100 * value:.1f}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tools.eval_table',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('metrics', help='a `colvlm eval` metrics.json')
    entries = json.loads(Path(parser.parse_args(argv).metrics).read_text())
    entries = entries if isinstance(entries, list) else [entries]
    rows = _pick(entries)
    print('| policy | accuracy % | text | color | presence | uplink B/query | retransmit % '
          '| LLM tokens/query | RoI hit % (text) |')
    print('|---|---|---|---|---|---|---|---|---|')
    for m in rows:
        name = m['policy']
        if 'threshold' in m:
            name += f' (τ={m["threshold"]:g})'
        if 'random_rate' in m:
            name += f' (rate {m["random_rate"]:.2f})'
        kinds = m['accuracy_by_kind']
        print(f'| {name} | {_pct(m["accuracy"])} | {_pct(kinds.get("text"))} | '
              f'{_pct(kinds.get("color"))} | {_pct(kinds.get("presence"))} | '
              f'{m["uplink_bytes_mean"]:.0f} | {_pct(m["retransmission_rate"])} | '
              f'{m["llm_tokens_mean"]:.1f} | {_pct(m.get("roi_hit_rate_text"))} |')
    first = rows[0]
    text = first['min_entropy_auroc_text']
    interval = first.get('min_entropy_auroc_text_ci95')
    print(f'\nmin-entropy AUROC (wrong vs right global answers): overall '
          f'{first["min_entropy_auroc"]:.3f}, text questions '
          + ('n/a' if text is None else f'{text:.3f}')
          + ('' if interval is None else f' (95% bootstrap interval {interval[0]:.2f}-'
             f'{interval[1]:.2f}, {first["n_first_right_text"]} right global answers)'))
    within = first.get('min_entropy_auroc_by_kind') or {}
    if within:
        print('min-entropy AUROC within each kind: ' + ', '.join(
            f'{kind} ' + ('n/a' if value is None else f'{value:.3f}')
            for kind, value in within.items()))
    by = {m['policy']: m for m in rows}
    if {'entropy', 'always', 'random', 'hd'} <= by.keys():
        e, a, r, h = by['entropy'], by['always'], by['random'], by['hd']
        print(f'entropy vs always: accuracy {100 * (e["accuracy"] - a["accuracy"]):+.1f} points '
              f'with {e["uplink_bytes_mean"] / a["uplink_bytes_mean"]:.2f}x its uplink bytes '
              '(target: within 1 point at <= 0.50x)')
        print(f'entropy vs random at a similar rate: '
              f'{100 * (e["accuracy"] - r["accuracy"]):+.1f} points (target: >= +5)')
        print(f'entropy vs hd: {e["uplink_bytes_mean"] / h["uplink_bytes_mean"]:.2f}x uplink '
              f'bytes (target <= 0.40x), {e["llm_tokens_mean"] / h["llm_tokens_mean"]:.2f}x LLM '
              f'tokens, accuracy {100 * (e["accuracy"] - h["accuracy"]):+.1f} points '
              '(target: no lower)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
