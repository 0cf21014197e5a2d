"""Evaluate policies on a Glyph-VQA style data set: accuracy against bytes and compute.

`colvlm eval DATA --policy all --sweep --out DIR` runs the server's pipeline over DATA's
questions for each policy (entropy swept over τ, random over rates) and writes metrics.json,
records.jsonl and two plots. `--calibrate --target-rate R` picks the τ whose retransmission
rate is closest to R from below and writes calibration.json. `colvlm replay` runs its policies
and writes its report through this module's `evaluate`, so both verbs report alike.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import math
from pathlib import Path
import sys

import numpy as np

SWEEP_QUANTILES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
RANDOM_RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _points(text: str) -> float:
    """An argparse type: a finite number of accuracy points >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f'must be a number of points >= 0, got {text!r}')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from colvlm_bench.glyphvqa.questions import EVAL_KINDS
    parser.add_argument('data', metavar='DATA', help='data set folder (questions.jsonl)')
    add_policy_arguments(parser, default_policy='all')
    parser.add_argument('--calibrate', action='store_true',
                        help='pick τ on DATA for --target-rate, --byte-budget or --max-drop')
    parser.add_argument('--target-rate', type=float, default=0.4, metavar='R',
                        help='calibration: retransmission rate to stay under (default 0.4)')
    parser.add_argument('--byte-budget', type=float, default=None, metavar='B',
                        help='calibration: mean uplink bytes per query to stay under')
    parser.add_argument('--max-drop', type=_points, default=None, metavar='P',
                        help="calibration: the largest τ whose accuracy is within P points of "
                             "the always policy's (a crop only where it is needed to stay "
                             'that close)')
    parser.add_argument('--kinds', default=','.join(EVAL_KINDS),
                        help='question kinds to use (default: %(default)s)')


def add_policy_arguments(parser: argparse.ArgumentParser, default_policy: str) -> None:
    """The flags `colvlm eval` and `colvlm replay` share: policies, model, output."""
    from colvlm_bench.evaluate import EVAL_POLICIES
    from colvlm_edge.parameters import EDGE_PARAMETERS
    from colvlm_msgs.token_codec import SPLITS
    from colvlm_server.vicrop import VICROP_METHODS
    parser.add_argument('--policy', default=default_policy,
                        help=f"one of {EVAL_POLICIES}, a comma list; 'all' = every one but "
                             f"'layers' (default: {default_policy})")
    parser.add_argument('--model', default='bundled', help='model path or id (default: bundled)')
    parser.add_argument('--threshold', type=float, default=None, metavar='T',
                        help="entropy threshold τ, nats (default: the model's colvlm.yaml, "
                             'as on the server)')
    parser.add_argument('--rate', type=float, default=None, metavar='R',
                        help="the random policy's rate (default: entropy's retransmission rate)")
    parser.add_argument('--sweep', action='store_true',
                        help='sweep τ (entropy) and the rate (random); metrics.json is a list')
    parser.add_argument('--limit', type=int, default=0, metavar='N',
                        help='use the first N questions only (0 = all)')
    parser.add_argument('--device', default='cpu',
                        help='torch device the model runs on: cpu, cuda, cuda:1, mps '
                             '(default: %(default)s)')
    parser.add_argument('--vicrop-method', choices=VICROP_METHODS, default=None,
                        help="the server's vicrop.method: the RoI map, relative, "
                             "gradient-weighted or plain attention (default: the model's "
                             'colvlm.yaml, as on the server)')
    layers = parser.add_argument_group("policy 'layers' (visual-token layers instead of pixels)")
    layers.add_argument('--layers-split', default='tower', choices=SPLITS,
                        help="the edge's layers.split (default: %(default)s)")
    layers.add_argument('--layers-proactive', type=int, metavar='K',
                        default=EDGE_PARAMETERS.specs['layers.proactive'].default,
                        help="layers sent with each frame (default: %(default)s, as the "
                             "edge's layers.proactive)")
    layers.add_argument('--layers-step', type=int, default=1, metavar='K',
                        help='layers asked for per refinement (default: %(default)s)')
    layers.add_argument('--layers-crop', action='store_true',
                        help='after all layers, ask for an RoI crop when still unsure')
    layers.add_argument('--layers-codec', default='', metavar='FILE',
                        help="token codec artifact (default: the model's, at the split)")
    parser.add_argument('--out', required=True, metavar='DIR', help='output folder')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def parse_policies(text: str) -> list[str]:
    """'entropy,layers' -> ['entropy', 'layers']; 'all' stands for the image policies."""
    from colvlm_bench.evaluate import EVAL_POLICIES, POLICIES
    names = []
    for name in (p.strip() for p in text.split(',')):
        for policy in POLICIES if name == 'all' else [name] if name else []:
            if policy not in names:
                names.append(policy)
    unknown = [n for n in names if n not in EVAL_POLICIES]
    if unknown or not names:
        raise ValueError(f'--policy must be among {EVAL_POLICIES} or all, got {text!r}')
    return names


def _default_threshold(model: str) -> float:
    """The τ the server would use for `model`: its colvlm.yaml, else the generic default."""
    from colvlm_models.settings import model_settings
    return float(model_settings(model)['gate.threshold'])


def run(args: argparse.Namespace) -> int:
    try:
        policies = parse_policies(args.policy)
    except ValueError as error:
        print(f'colvlm eval: {error}', file=sys.stderr)
        return 2
    from colvlm_bench.evaluate import Evaluator
    from colvlm_bench.glyphvqa.dataset import load_dataset
    from colvlm_models.vlm import ModelLoadError, TransformersVlm

    try:
        questions = load_dataset(args.data)
    except (OSError, ValueError) as error:
        print(f'colvlm eval: {error}', file=sys.stderr)
        return 2
    kinds = {k.strip() for k in args.kinds.split(',') if k.strip()}
    questions = [q for q in questions if q.kind in kinds]
    if args.limit:
        questions = questions[:args.limit]
    if not questions:
        print(f'colvlm eval: no questions of kinds {sorted(kinds)} in {args.data}',
              file=sys.stderr)
        return 2
    try:
        backend = TransformersVlm(args.model, device=args.device, progress=not args.no_progress)
    except ModelLoadError as error:
        print(f'colvlm eval: {error}', file=sys.stderr)
        return 2
    evaluator = Evaluator(backend, args.data, questions, progress=not args.no_progress,
                          vicrop_method=args.vicrop_method)
    try:
        return evaluate(args, evaluator, policies, 'colvlm eval')
    except OSError as error:  # an unreadable image (FrameProvider's contract), or --out
        print(f'colvlm eval: {error}', file=sys.stderr)
        return 2


def evaluate(args: argparse.Namespace, evaluator, policies: list[str], prog: str) -> int:
    """Run `policies` (flags from add_policy_arguments) and write the report into args.out.

    metrics.json (or calibration.json) is written last and atomically, after a stale one is
    removed: a folder holding it holds a complete run.
    """
    from colvlm_bench.evaluate import LayerSettings
    from colvlm_server.gate import GateConfig

    if 'layers' in policies:
        try:
            evaluator.enable_layers(args.model, LayerSettings(
                args.layers_split, args.layers_proactive, args.layers_step, args.layers_crop),
                args.layers_codec)
        except ValueError as error:
            print(f'{prog}: policy layers: {error}', file=sys.stderr)
            return 2
    calibrate = getattr(args, 'calibrate', False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ('calibration.json' if calibrate else 'metrics.json')).unlink(missing_ok=True)
    threshold = (args.threshold if args.threshold is not None
                 else _default_threshold(args.model))
    base = GateConfig(threshold=threshold)

    # The global pass first: its scores place the sweep's thresholds.
    global_records = evaluator.run('global', base)
    scores = np.array([r.result.first.gate.min_entropy for r in global_records
                       if r.result.first and r.result.first.gate])
    if calibrate:
        return _calibrate(args, evaluator, base, scores, out, prog)

    entries, all_records = _run_policies(args, evaluator, policies, base, global_records,
                                         scores)
    plots = write_report(out, entries, all_records)
    print(f'wrote {out / "metrics.json"}, {out / "records.jsonl"}, '
          + ', '.join(str(p) for p in plots))
    return 0


def _settings(args: argparse.Namespace, policy: str, base, scores: np.ndarray,
              entropy_rate: float | None) -> list:
    """The gate settings `policy` runs with: a τ sweep, a rate sweep, or `base` alone."""
    if policy in ('entropy', 'layers') and args.sweep and scores.size:
        grid = sorted({round(float(t), 4) for t in np.quantile(scores, SWEEP_QUANTILES)}
                      | {base.threshold})
        return [replace(base, threshold=t) for t in grid]
    if policy == 'random':
        rate = args.rate if args.rate is not None else entropy_rate
        rates = list(RANDOM_RATES) if args.sweep else []
        if rate is not None or not rates:
            rates = sorted(set(rates) | {round(rate if rate is not None else 0.5, 4)})
        return [replace(base, random_rate=r) for r in rates]
    return [base]


def _run_policies(args: argparse.Namespace, evaluator, policies: list[str], base,
                  global_records: list, scores: np.ndarray) -> tuple[list, list]:
    """Each policy at each of its settings, a line printed per setting: (metrics entries,
    (metrics, record) pairs). The random policy defaults to entropy's retransmission rate."""
    from colvlm_bench.evaluate import summarize

    entries, all_records = [], []
    entropy_rate = None
    for policy in policies:
        for gate in _settings(args, policy, base, scores, entropy_rate):
            label = policy + (f' τ={gate.threshold:g}' if policy in ('entropy', 'layers')
                              else '') \
                + (f' rate={gate.random_rate:g}' if policy == 'random' else '')
            records = global_records if policy == 'global' else evaluator.run(policy, gate,
                                                                             label)
            metrics = summarize(policy, records, gate, evaluator.vicrop_method)
            if policy == 'entropy' and gate.threshold == base.threshold:
                entropy_rate = metrics['retransmission_rate']
                metrics['default'] = True
            entries.append(metrics)
            all_records += [(metrics, r) for r in records]
            print(_line(metrics), flush=True)
    return entries, all_records


def _line(m: dict) -> str:
    extra = f' τ={m["threshold"]:.4g}' if 'threshold' in m else ''
    extra += f' rate={m["random_rate"]:.3g}' if 'random_rate' in m else ''
    hit = m['roi_hit_rate']
    # Percentages for people; metrics.json keeps the fractions.
    accuracy = ('not scored' if m['accuracy'] is None else
                f'{100 * m["accuracy"]:.1f}% ('
                + ', '.join(f'{k} {100 * v:.1f}%' for k, v in m['accuracy_by_kind'].items())
                + ')')
    return (f'{m["policy"]:>8}{extra}: accuracy {accuracy}, '
            f'uplink {m["uplink_bytes_mean"]:.0f} B, retransmit '
            f'{100 * m["retransmission_rate"]:.1f}%, LLM tokens {m["llm_tokens_mean"]:.1f}, '
            f'latency {m["latency_ms_mean"]:.1f} ms'
            + (f', RoI hit {100 * hit:.1f}% ({m["vicrop_method"]})' if hit is not None else ''))


def write_report(out: Path, entries: list[dict], records) -> list[Path]:
    """records.jsonl and the plots, then metrics.json (a list, or the one entry) atomically;
    the plots' paths."""
    from colvlm_bench.eval_plots import plot_tradeoffs

    with open(out / 'records.jsonl', 'w', encoding='utf-8') as stream:
        for metrics, record in records:
            result = record.result
            first = result.first
            stream.write(json.dumps({
                'id': record.question.id, 'kind': record.question.kind,
                'question': record.question.question,
                'policy': metrics['policy'], 'threshold': metrics.get('threshold'),
                'random_rate': metrics.get('random_rate'), 'answer': result.answer,
                'answers': list(record.question.answers), 'correct': record.correct,
                'first_answer': first.answer if first else None,
                'first_correct': record.first_correct,
                'min_entropy': first.gate.min_entropy if first and first.gate else None,
                'status': result.status.name.lower(),
                'decision': result.decision.name.lower(),
                'layers_used': result.layers_used,
                'uplink_bytes': result.uplink_bytes, 'llm_tokens': result.llm_tokens,
                'roi': None if result.roi is None else [result.roi.x0, result.roi.y0,
                                                        result.roi.x1, result.roi.y1],
                'roi_hit': record.roi_hit}) + '\n')
    # Unscored settings have no accuracy to plot.
    plots = plot_tradeoffs([e for e in entries if e['accuracy'] is not None], out)
    _write_atomically(out / 'metrics.json', entries[0] if len(entries) == 1 else entries)
    return plots


def _write_atomically(path: Path, document) -> None:
    partial = path.with_name(path.name + '.partial')
    partial.write_text(json.dumps(document, indent=2) + '\n')
    partial.replace(path)


def within_drop(accuracy: float | None, always_accuracy: float | None, max_drop: float) -> bool:
    """Whether `accuracy` (a share) is at most `max_drop` points (percent) under
    `always_accuracy`; False when either is unscored."""
    if accuracy is None or always_accuracy is None:
        return False
    return 100.0 * (always_accuracy - accuracy) <= max_drop + 1e-9


def _calibrate(args, evaluator, base, scores: np.ndarray, out: Path, prog: str) -> int:
    from colvlm_bench.evaluate import summarize
    candidates = sorted({round(float(t), 4) for t in np.quantile(scores, np.linspace(0, 1, 41))})
    if args.max_drop is not None:
        # The two-stage answers are memoised, so the sweep after this run costs little.
        always = summarize('always', evaluator.run('always', base), base, evaluator.vicrop_method)
        target = {'max_drop': args.max_drop, 'always_accuracy': always['accuracy']}
    elif args.byte_budget:
        target = {'byte_budget': args.byte_budget}
    else:
        target = {'target_rate': args.target_rate}
    chosen = None
    for threshold in candidates:  # ascending τ: the retransmission rate falls
        gate = replace(base, threshold=threshold)
        metrics = summarize('entropy', evaluator.run('entropy', gate, f'τ={threshold:g}'), gate,
                            evaluator.vicrop_method)
        if args.max_drop is not None:
            within = within_drop(metrics['accuracy'], target['always_accuracy'], args.max_drop)
        elif args.byte_budget:
            within = metrics['uplink_bytes_mean'] <= args.byte_budget
        else:
            within = metrics['retransmission_rate'] <= args.target_rate
        if within:
            chosen = metrics
            if args.max_drop is None:
                break  # the first τ under a rate or byte target; a drop keeps looking higher
    if chosen is None:
        print(f'{prog}: no threshold meets the target', file=sys.stderr)
        return 1
    _write_atomically(out / 'calibration.json', {**target, **chosen})
    print(_line(chosen))
    print(f'calibrated gate.threshold: {chosen["threshold"]:.4f} nats '
          f'(put it in config/server.yaml); wrote {out / "calibration.json"}')
    return 0
