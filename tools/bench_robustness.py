"""Robustness of a model to the camera style, one factor at a time, as ImageNet-C tabulates it.

For every camera factor (colvlm_bench.glyphvqa.camera.FACTORS: color, clutter, fonts, warp,
blur, noise, jpeg, pose) and severity 1..3 this writes a Glyph-VQA set with that factor alone on,
as `colvlm dataset glyphvqa OUT --style camera --factors F --severity S` does, and one more
row, 'typeface': the fonts factor at severity 1 with 1/3, 2/3 or all of the signs lettered in
TrueType faces (DejaVu, STIX, Computer Modern) instead of Hershey fonts, as `--factors fonts
--severity 1 --truetype S/3 --typefaces dejavu,stix,computer-modern` does, and 'text-size':
the same mildest fonts factor with the signs' ink smaller than the style's 14-32 px
(TEXT_SIZES: 10-13, 8-11, 6-9 px in the original), as `--factors fonts --severity 1
--text-height 10,13` does; plus two
references: 'clean' (severity 0: every factor off, the same scenes as the one-factor sets of
the seed drawn as the clean style draws them, so each drop is the factor's alone) and
'camera' (the default camera style: every factor but pose over its whole range, as the
held-out splits are drawn). `colvlm eval`'s Evaluator then answers every
set under the policies global, entropy (at the model's τ from its colvlm.yaml, as the server
takes it) and oracle, with one loaded model.

Writes into --out: robustness.json (every cell: factor, severity, policy, accuracy overall
and by question kind, question count), robustness.csv (the same, one row per cell and
policy), robustness.png (accuracy against severity, one line per factor, one panel per
policy) and data/ (the sets). Prints the table and the factor that costs most: the largest
mean drop from the clean accuracy over its three severities, under the entropy policy.

Reproduce the table reported for issue 18 (about 20 min on two CPU cores):

    python -m tools.bench_robustness --out out/robustness --n-images 20 --seed 20261205

`--quick` uses 1 image per cell, for a smoke test. Every set is deterministic given the
seed and the installed sample photos (style.json in each set lists them). Runs split over
processes by `--factors` (same seed, model and images) join into one table and plot:

    python -m tools.bench_robustness --out out/robustness --merge out/rob-a out/rob-b
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
import sys

import numpy as np

POLICIES = ('global', 'entropy', 'oracle')
KINDS = ('text', 'color', 'presence')
QUICK_IMAGES = 1
CLEAN, FULL = 'clean', 'camera'  # the reference rows' factor names
TYPEFACE = 'typeface'  # a row of its own: the share of signs in TrueType faces
TEXT_SIZE = 'text-size'  # and one of sign text smaller than the camera style draws it
TEXT_SIZES = ((10, 13), (8, 11), (6, 9))  # ink height range in px, per severity 1..3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from colvlm_bench.glyphvqa.camera import FACTORS
    factors = (*FACTORS, TYPEFACE, TEXT_SIZE)
    parser = argparse.ArgumentParser(prog='python -m tools.bench_robustness',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, metavar='DIR', help='output folder')
    parser.add_argument('--n-images', type=int, default=20, metavar='N',
                        help='images per cell (default: %(default)s)')
    parser.add_argument('--quick', action='store_true',
                        help=f'{QUICK_IMAGES} images per cell, whatever --n-images says')
    parser.add_argument('--seed', type=int, default=20261205, metavar='S',
                        help='data set seed, the same for every cell (default: %(default)s)')
    parser.add_argument('--factors', default=','.join(factors), metavar='LIST',
                        help='camera factors to tabulate (default: %(default)s)')
    parser.add_argument('--severities', default='1,2,3', metavar='LIST',
                        help='severities to tabulate, among 1,2,3 (default: %(default)s)')
    parser.add_argument('--policies', default=','.join(POLICIES), metavar='LIST',
                        help='policies to run (default: %(default)s)')
    parser.add_argument('--model', default='bundled', help='model path or id (default: bundled)')
    parser.add_argument('--threshold', type=float, default=None, metavar='T',
                        help="entropy's τ in nats (default: the model's colvlm.yaml)")
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--merge', nargs='+', metavar='DIR',
                        help='join the robustness.json of earlier runs instead of running')
    args = parser.parse_args(argv)
    args.factors = _split(args.factors)
    args.severities = [int(s) for s in _split(args.severities)]
    args.policies = _split(args.policies)
    bad = ([f for f in args.factors if f not in factors]
           + [s for s in args.severities if s not in (1, 2, 3)]
           + [p for p in args.policies if p not in POLICIES])
    if bad or not (args.factors and args.severities and args.policies) or args.n_images < 1:
        parser.error(f'--factors among {factors}, --severities among 1,2,3, --policies among '
                     f'{POLICIES}, --n-images >= 1; got {bad or "an empty list"}')
    if args.quick:
        args.n_images = QUICK_IMAGES
    return args


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(',') if part.strip()]


def factor_style(factor: str, severity: int):
    """The camera style of one cell: a camera factor alone at `severity`; for 'typeface'
    the mildest fonts factor with severity/3 of the signs in TrueType faces of every family,
    for 'text-size' the same with the signs' ink in TEXT_SIZES[severity - 1]."""
    from dataclasses import replace

    from colvlm_bench.glyphvqa.camera import CameraStyle
    from colvlm_bench.glyphvqa.lettering import TYPEFACES
    if factor == TYPEFACE:
        return replace(CameraStyle.only(['fonts'], 1), truetype=round(severity / 3, 4),
                       typefaces=tuple(TYPEFACES))
    if factor == TEXT_SIZE:
        return replace(CameraStyle.only(['fonts'], 1), text_height=TEXT_SIZES[severity - 1])
    return CameraStyle.only([factor], severity)


def cells(factors: list[str], severities: list[int]) -> list[tuple[str, int, object]]:
    """(factor, severity, style) of every set: clean first, each factor's severities, then
    the full camera style (severity 0 for both references)."""
    from colvlm_bench.glyphvqa.camera import CameraStyle
    rows: list[tuple[str, int, object]] = [(CLEAN, 0, CameraStyle.only([]))]
    rows += [(factor, severity, factor_style(factor, severity))
             for factor in factors for severity in severities]
    rows.append((FULL, 0, CameraStyle()))
    return rows


def evaluate_cell(backend, folder: Path, policies: list[str], threshold: float) -> dict:
    """{policy: summary} of one set: accuracy overall and by kind, and the question count."""
    from colvlm_bench.evaluate import Evaluator, summarize
    from colvlm_bench.glyphvqa.dataset import load_dataset
    from colvlm_server.gate import GateConfig

    gate = GateConfig(threshold=threshold)
    evaluator = Evaluator(backend, folder, load_dataset(folder), progress=False)
    results = {}
    for policy in policies:
        metrics = summarize(policy, evaluator.run(policy, gate), gate, evaluator.vicrop_method)
        results[policy] = {'accuracy': metrics['accuracy'], 'n': metrics['n'],
                           **{f'accuracy_{kind}': metrics['accuracy_by_kind'].get(kind)
                              for kind in KINDS}}
    return results


def costliest(rows: list[dict], policy: str) -> tuple[str, float] | None:
    """(factor, mean drop in accuracy from clean over its severities) of the worst factor."""
    clean = [r['accuracy'] for r in rows if r['factor'] == CLEAN and r['policy'] == policy]
    drops = {}
    for row in rows:
        if row['policy'] == policy and row['factor'] not in (CLEAN, FULL) and clean:
            drops.setdefault(row['factor'], []).append(clean[0] - row['accuracy'])
    if not drops:
        return None
    factor = max(drops, key=lambda f: float(np.mean(drops[f])))
    return factor, float(np.mean(drops[factor]))


def write_table(out: Path, rows: list[dict]) -> None:
    """robustness.json and robustness.csv."""
    (out / 'robustness.json').write_text(json.dumps(rows, indent=2) + '\n', encoding='utf-8')
    with open(out / 'robustness.csv', 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(out: Path, rows: list[dict], policies: list[str]) -> Path:
    """robustness.png: accuracy against severity per factor (severity 0 = clean)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(policies), figsize=(4.5 * len(policies), 4),
                                sharey=True, squeeze=False)
    factors = list(dict.fromkeys(r['factor'] for r in rows
                                 if r['factor'] not in (CLEAN, FULL)))
    for axis, policy in zip(axes[0], policies, strict=True):
        mine = [r for r in rows if r['policy'] == policy]
        clean = next(r['accuracy'] for r in mine if r['factor'] == CLEAN)
        for factor in factors:
            points = sorted((r['severity'], r['accuracy']) for r in mine
                            if r['factor'] == factor)
            axis.plot([0] + [s for s, _ in points], [clean] + [a for _, a in points],
                      marker='o', label=factor)
        full = next(r['accuracy'] for r in mine if r['factor'] == FULL)
        axis.axhline(full, color='black', linestyle='--', label='full camera style')
        axis.set_title(policy)
        axis.set_xlabel('severity (0 = clean)')
        axis.set_xticks(range(4))
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel('accuracy')
    axes[0][-1].legend(fontsize=8, loc='lower left')
    figure.tight_layout()
    path = out / 'robustness.png'
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def print_table(rows: list[dict], policies: list[str]) -> None:
    """Accuracy % per factor (rows) and severity (columns), one block per policy."""
    for policy in policies:
        mine = [r for r in rows if r['policy'] == policy]
        print(f'\n{policy}: accuracy % by severity (0: every factor off; camera: all on)')
        print('| factor | 0 | 1 | 2 | 3 | mean 1-3 | text / color / presence at the worst |')
        print('|---|---|---|---|---|---|---|')
        for factor in dict.fromkeys(r['factor'] for r in mine):
            by = {r['severity']: r for r in mine if r['factor'] == factor}
            worst = by[max(by)]
            kinds = ' / '.join('-' if worst[f'accuracy_{k}'] is None
                               else f'{100 * worst[f"accuracy_{k}"]:.0f}' for k in KINDS)
            cols = ' | '.join(f'{100 * by[s]["accuracy"]:.1f}' if s in by else ''
                              for s in range(4))
            graded = [by[s]['accuracy'] for s in by if s > 0]
            mean = f'{100 * np.mean(graded):.1f}' if graded else ''
            print(f'| {factor} | {cols} | {mean} | {kinds} |')


def merge(folders: list[str]) -> list[dict]:
    """The rows of several runs' robustness.json, each cell once; a cell two runs both hold
    (the clean and camera references) must agree, else they ran on different sets or models."""
    rows: dict[tuple, dict] = {}
    for folder in folders:
        path = Path(folder) / 'robustness.json'
        if not path.is_file():
            raise SystemExit(f'--merge: {path} does not exist (run the benchmark there first)')
        for row in json.loads(path.read_text(encoding='utf-8')):
            key = (row['factor'], row['severity'], row['policy'])
            if key in rows and rows[key] != row:
                raise SystemExit(f'--merge: {path} differs from an earlier run on cell {key} '
                                 f'(another seed, --n-images or model?)')
            rows.setdefault(key, row)
    # The full camera style stays the table's last row, as in a single run.
    return sorted(rows.values(), key=lambda row: row['factor'] == FULL)


def report(out: Path, rows: list[dict], policies: list[str]) -> None:
    """Write the table and plot, print them and the factor that costs most."""
    write_table(out, rows)
    path = plot(out, rows, policies)
    print_table(rows, policies)
    worst = costliest(rows, 'entropy' if 'entropy' in policies else policies[0])
    if worst:
        print(f'\ncosts most: {worst[0]} (mean drop {100 * worst[1]:.1f} points from clean '
              f'over its severities)')
    print(f'wrote {out / "robustness.json"}, {out / "robustness.csv"}, {path}')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = merge(args.merge) if args.merge else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        report(out, rows, [p for p in POLICIES if any(r['policy'] == p for r in rows)])
        return 0
    from colvlm_bench.glyphvqa.dataset import write_dataset
    from colvlm_models.settings import model_settings
    from colvlm_models.vlm import TransformersVlm

    backend = TransformersVlm(args.model, device=args.device, progress=False)
    # The τ the server would use for this model: its colvlm.yaml, else the generic default.
    threshold = (args.threshold if args.threshold is not None
                 else float(model_settings(backend.model_path)['gate.threshold']))
    rows = []
    for factor, severity, style in cells(args.factors, args.severities):
        name = factor if severity == 0 else f'{factor}-{severity}'
        folder = write_dataset(out / 'data' / name, args.n_images, args.seed, style=style,
                               overwrite=True)
        for policy, result in evaluate_cell(backend, folder, args.policies, threshold).items():
            rows.append({'factor': factor, 'severity': severity, 'policy': policy, **result})
            print(f'{name:>10} {policy:>8}: accuracy {result["accuracy"]:.3f} '
                  f'({result["n"]} questions)', flush=True)
    report(out, rows, args.policies)
    return 0


if __name__ == '__main__':
    sys.exit(main())
