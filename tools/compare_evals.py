#!/usr/bin/env python3
"""Compare two `colvlm eval` runs on the same questions, question by question.

    python -m tools.compare_evals out/eval-before out/eval-after

Two models (or two settings) evaluated on one data set differ by a few answers on many
measures; whether such a difference is more than the draw of questions is what this says.
Per policy and question kind: each run's accuracy, the answers the second run gained and
lost, and a two-sided exact sign test over those. Per kind, the min-entropy AUROC of each
run's global answers (wrong against right) and a bootstrap interval of their difference,
questions resampled together so both runs see the same draw. A run folder (or its
records.jsonl) made without `--sweep`: one setting per policy.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import json
import math
from pathlib import Path
import sys

import numpy as np

from colvlm_bench.evaluate import auroc


class CompareError(ValueError):
    """Runs that cannot be compared; the message names the file and what is wrong."""


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven among the
    gained + lost discordant questions if either run were as likely to be the right one."""
    if gained < 0 or lost < 0:
        raise ValueError(f'counts must be non-negative, got {gained} and {lost}')
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def load_run(path: Path) -> dict[str, dict[str, dict]]:
    """{policy: {question id: record}} from a run folder or its records.jsonl."""
    path = Path(path)
    file = path / 'records.jsonl' if path.is_dir() else path
    if not file.is_file():
        raise CompareError(f'{file}: no such records file (a `colvlm eval --out` folder?)')
    by_policy: dict[str, dict[str, dict]] = defaultdict(dict)
    settings: dict[str, set] = defaultdict(set)
    with open(file, encoding='utf-8') as stream:
        for number, line in enumerate(stream, 1):
            try:
                record = json.loads(line)
                policy, question = record['policy'], record['id']
            except (ValueError, KeyError, TypeError) as error:
                raise CompareError(f'{file}:{number}: not a colvlm eval record ({error})') \
                    from None
            settings[policy].add((record.get('threshold'), record.get('random_rate')))
            by_policy[policy][question] = record
    for policy, seen in settings.items():
        if len(seen) > 1:
            raise CompareError(f'{file}: {len(seen)} settings of policy {policy!r} (a --sweep '
                               'run); compare runs made without --sweep')
    if not by_policy:
        raise CompareError(f'{file}: no records')
    return dict(by_policy)


def _shared(a: dict[str, dict], b: dict[str, dict], label: str) -> list[str]:
    ids = sorted(set(a) & set(b))
    for question in ids:
        if a[question].get('question') != b[question].get('question'):
            raise CompareError(f'{label}: question {question!r} differs between the runs '
                               '(not the same data set)')
    return ids


def _kinds(kinds) -> list[str]:
    """'all', then each kind in order; a run of one kind has just that kind's row."""
    kinds = sorted(set(kinds))
    return kinds if len(kinds) == 1 else ['all'] + kinds


def compare_accuracy(a: dict, b: dict) -> list[dict]:
    """Rows (policy, kind, n, accuracies, gained, lost, p) for policies in both runs; kind
    'all' first (if there are several kinds), then each kind; unscored questions left out."""
    rows = []
    for policy in [p for p in a if p in b]:
        ids = _shared(a[policy], b[policy], policy)
        pairs = [(a[policy][q], b[policy][q]) for q in ids]
        pairs = [(x, y) for x, y in pairs if x['correct'] is not None and y['correct'] is not None]
        for kind in _kinds(x['kind'] for x, _ in pairs):
            chosen = [(x, y) for x, y in pairs if kind == 'all' or x['kind'] == kind]
            if not chosen:
                continue
            gained = sum(1 for x, y in chosen if y['correct'] and not x['correct'])
            lost = sum(1 for x, y in chosen if x['correct'] and not y['correct'])
            rows.append({'policy': policy, 'kind': kind, 'n': len(chosen),
                         'accuracy_a': sum(x['correct'] for x, _ in chosen) / len(chosen),
                         'accuracy_b': sum(y['correct'] for _, y in chosen) / len(chosen),
                         'gained': gained, 'lost': lost, 'p': sign_test(gained, lost)})
    return rows


def _first_pass(run: dict) -> dict[str, dict]:
    """The records that carry the global pass's answer and entropy: the global policy's if
    the run has it, else any policy's (every policy starts with that pass)."""
    return run.get('global') or next(iter(run.values()))


def compare_auroc(a: dict, b: dict, resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Per kind ('all' first if there are several): each run's min-entropy AUROC (wrong
    global answers ranked above right ones), the number of right global answers each rests
    on, and a 95% percentile bootstrap interval of b - a over questions resampled together
    (None when under half the resamples have both classes in both runs)."""
    first_a, first_b = _first_pass(a), _first_pass(b)
    ids = [q for q in _shared(first_a, first_b, 'global pass')
           if all(r[q]['min_entropy'] is not None and r[q]['first_correct'] is not None
                  for r in (first_a, first_b))]
    rows = []
    for kind in _kinds(first_a[q]['kind'] for q in ids):
        chosen = [q for q in ids if kind == 'all' or first_a[q]['kind'] == kind]
        if not chosen:
            continue
        scores = [np.array([r[q]['min_entropy'] for q in chosen]) for r in (first_a, first_b)]
        wrong = [np.array([not r[q]['first_correct'] for q in chosen])
                 for r in (first_a, first_b)]
        values = [auroc(s, w) for s, w in zip(scores, wrong, strict=True)]
        differences = []
        rng = np.random.default_rng(seed)  # each kind its own draw, the same for the same set
        for _ in range(resamples):
            draw = rng.integers(0, len(chosen), len(chosen))
            pair = [auroc(s[draw], w[draw]) for s, w in zip(scores, wrong, strict=True)]
            if not any(math.isnan(v) for v in pair):
                differences.append(pair[1] - pair[0])
        interval = (tuple(float(v) for v in np.quantile(differences, [0.025, 0.975]))
                    if len(differences) >= resamples / 2 else None)
        rows.append({'kind': kind, 'n': len(chosen), 'auroc_a': values[0],
                     'auroc_b': values[1], 'right_a': int((~wrong[0]).sum()),
                     'right_b': int((~wrong[1]).sum()), 'difference_ci95': interval})
    return rows


def _pct(value: float) -> str:
    return f'{100 * value:.1f}'


def _auroc(value: float) -> str:
    return 'n/a' if math.isnan(value) else f'{value:.3f}'


def report(accuracy: list[dict], aurocs: list[dict]) -> str:
    lines = ['| policy | kind | questions | A % | B % | gained | lost | sign test p |',
             '|---|---|---|---|---|---|---|---|']
    lines += [f'| {r["policy"]} | {r["kind"]} | {r["n"]} | {_pct(r["accuracy_a"])} | '
              f'{_pct(r["accuracy_b"])} | {r["gained"]} | {r["lost"]} | {r["p"]:.3g} |'
              for r in accuracy]
    lines += ['', '| kind | questions | AUROC A (right) | AUROC B (right) | B - A, 95% interval |',
              '|---|---|---|---|---|']
    for r in aurocs:
        interval = ('n/a' if r['difference_ci95'] is None else
                    f'{r["difference_ci95"][0]:+.3f} to {r["difference_ci95"][1]:+.3f}')
        lines.append(f'| {r["kind"]} | {r["n"]} | {_auroc(r["auroc_a"])} ({r["right_a"]}) | '
                     f'{_auroc(r["auroc_b"])} ({r["right_b"]}) | {interval} |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tools.compare_evals',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('a', type=Path, help='the first run (A): a colvlm eval --out folder')
    parser.add_argument('b', type=Path, help='the second run (B), on the same data set')
    parser.add_argument('--resamples', type=int, default=2000,
                        help='bootstrap resamples for the AUROC difference (default 2000)')
    parser.add_argument('--seed', type=int, default=0, help='bootstrap seed (default 0)')
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error(f'--resamples must be at least 1, got {args.resamples}')
    try:
        a, b = load_run(args.a), load_run(args.b)
        accuracy = compare_accuracy(a, b)
        if not accuracy:
            raise CompareError(f'{args.a} and {args.b} share no policy with scored questions')
        aurocs = compare_auroc(a, b, args.resamples, args.seed)
    except CompareError as error:
        print(f'compare_evals: {error}', file=sys.stderr)
        return 2
    print(f'A = {args.a}\nB = {args.b}\n')
    print(report(accuracy, aurocs))
    return 0


if __name__ == '__main__':
    sys.exit(main())
