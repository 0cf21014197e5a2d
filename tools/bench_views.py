"""Benchmark of multi-camera view selection (LiteVLM, ../shared/seeds/002) on the multi-view
Glyph-VQA variant, with the bundled model, all rows in one run.

Every scene has one image per camera and the evidence in one of them. For each question a
selection rule decides which cameras' global frames cross the link; the server answers about
each sent frame through `TwoStagePipeline` (policy `entropy`) and keeps the surest answer
(`views.most_confident`), as the server node does. Rows:

- all views: every camera's frame is sent (the baseline without selection);
- first view: only the first camera's (a one-camera server);
- learned: each edge scores its newest frame for the question (`colvlm/score_view`, the
  bundled view probe on the vision tower), the best view is sent (views.select learned),
  one row per views.min_score and views.fallback pair in --learned;
- lexical: the question names its view ("... (left camera)"), matched by name, no scoring;
  the model gets the question without the mention (views.strip_names), or with it ("names
  kept");
- oracle view: the evidence view only (the upper bound of any selection).

Bytes are serialized as on the wire: global frames (with FrameGeometry), crops and their
requests, and the ScoreView requests and replies. Latency per query is the server's model
time (all passes, every view answered) plus, for 'learned', the slowest edge's score time
(edges score in parallel) — on this one CPU; link time at 1 Mbps is printed separately.

    python -m tools.bench_views --scenes 30 --out out/bench-views     # about 4 min here
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
import json
import os
from pathlib import Path
import sys
import time

from colvlm_bench.evaluate import Evaluator, _score, wire_size
from colvlm_bench.glyphvqa.views import load_views_dataset, write_views_dataset
from colvlm_msgs.typesupport import service_classes
from colvlm_server.gate import GateConfig, make_policy
from colvlm_server.parameters import SERVER_PARAMETERS
from colvlm_server.pipeline import TwoStagePipeline
from colvlm_server.views import (
    ViewsConfig,
    ViewScore,
    most_confident,
    select_views,
    strip_view_names,
)

LINK_BPS = 1_000_000  # the uplink of ../shared/seeds/001's evaluation, bits/s


@dataclass
class Row:
    label: str
    correct: int = 0
    hits: int = 0  # the evidence view was among those sent
    views_sent: int = 0
    uplink_bytes: int = 0
    downlink_bytes: int = 0
    model_ms: float = 0.0
    score_ms: float = 0.0
    n: int = 0
    fallbacks: int = 0
    by_kind: dict = field(default_factory=dict)

    def add(self, correct: bool, hit: bool, sent: int, up: int, down: int, model_ms: float,
            score_ms: float, kind: str, fallback: bool) -> None:
        self.n += 1
        self.correct += correct
        self.hits += hit
        self.views_sent += sent
        self.uplink_bytes += up
        self.downlink_bytes += down
        self.model_ms += model_ms
        self.score_ms += score_ms
        self.fallbacks += fallback
        right, total = self.by_kind.get(kind, (0, 0))
        self.by_kind[kind] = (right + correct, total + 1)

    def summary(self) -> dict:
        n = max(self.n, 1)
        return {'label': self.label, 'n': self.n, 'accuracy': self.correct / n,
                'view_hit_rate': self.hits / n, 'views_sent_mean': self.views_sent / n,
                'uplink_bytes_mean': self.uplink_bytes / n,
                'downlink_bytes_mean': self.downlink_bytes / n,
                'model_ms_mean': self.model_ms / n, 'score_ms_mean': self.score_ms / n,
                'latency_ms_mean': (self.model_ms + self.score_ms) / n,
                'link_ms_mean_1mbps': (self.uplink_bytes + self.downlink_bytes) * 8e3
                / LINK_BPS / n,
                'fallback_rate': self.fallbacks / n,
                'accuracy_by_kind': {k: r / t for k, (r, t) in sorted(self.by_kind.items())}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m tools.bench_views',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', help='a multi-view Glyph-VQA folder; default: write one')
    parser.add_argument('--scenes', type=int, default=30)
    parser.add_argument('--seed', type=int, default=20261124)
    parser.add_argument('--views', default='front,left,right,rear')
    parser.add_argument('--per-scene', type=int, default=3,
                        help='questions per scene: 3 = one of each kind, balanced')
    parser.add_argument('--model', default='bundled')
    parser.add_argument('--probe', default='', help="view probe; '' = next to the model")
    specs = SERVER_PARAMETERS.specs
    default = f"{specs['views.min_score'].default:g}:{specs['views.fallback'].default}"
    parser.add_argument('--learned', default=f'{default},0.2:all,0.5:first',
                        help='MIN_SCORE:FALLBACK pairs, one learned row each (the first is '
                             'the server default)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default='out/bench-views')
    return parser.parse_args(argv)


def learned_rows(pairs: str) -> dict[str, ViewsConfig]:
    """'MIN:FALLBACK,...' -> one learned-selection configuration per row label."""
    learned = {}
    for pair in pairs.split(','):
        minimum, fallback = pair.split(':')
        learned[f'learned (min {float(minimum):g}, fallback {fallback})'] = ViewsConfig(
            cameras=('a', 'b'), select='learned', min_score=float(minimum), fallback=fallback)
    return learned


class ViewsBench:
    """The rows of one run: every question answered about the views each rule sends, with
    answers and view scores cached per (question, view, text) so rows share the model work."""

    def __init__(self, evaluator, scorer, names: list[str], labels) -> None:
        gate = GateConfig(threshold=SERVER_PARAMETERS.specs['gate.threshold'].default)
        self.evaluator, self.scorer, self.names = evaluator, scorer, names
        self.pipeline = TwoStagePipeline(evaluator.backend, gate)
        self.policy = make_policy('entropy', gate)
        self.score_srv = service_classes('colvlm/srv/ScoreView')
        self.rows = {label: Row(label) for label in labels}
        self.answers: dict[tuple, object] = {}  # (question id, view, text) -> PipelineResult
        self.scored: dict[tuple, tuple] = {}

    def answer_about(self, item, view: str, text: str):
        key = (item.question.id, view, text)
        if key not in self.answers:
            image = dict(item.views)[view]
            asked = replace(item.question, image=image, question=text,
                            target=item.question.target if view == item.view else None)
            self.answers[key] = self.pipeline.answer(text, self.evaluator._frame(asked),
                                                     self.evaluator.edge, self.policy)
        return self.answers[key]

    def score_of(self, item, view: str, text: str) -> tuple[ViewScore, float, int, int]:
        """(score, ms, response bytes, request bytes) of the view's edge for the question."""
        key = (item.question.id, view, text)
        if key not in self.scored:
            original = self.evaluator.frames.original(dict(item.views)[view])
            result = self.scorer.score(original, text, key=(item.question.image, view))
            request = self.score_srv.Request(question=text)
            response = self.score_srv.Response(
                success=True, abstained=result.score is None,
                score=0.0 if result.score is None else result.score, concept=result.concept,
                score_ms=result.seconds * 1e3)
            self.scored[key] = (ViewScore(result.score, concept=result.concept),
                                result.seconds * 1e3, wire_size(response), wire_size(request))
        return self.scored[key]

    def select(self, item, text: str, config: ViewsConfig):
        """(views sent, question text for the model, score ms, up, down bytes, fallback)."""
        score_ms, up, down = 0.0, 0, 0
        scores = None
        if config.select in ('learned', 'auto'):
            scores = {}
            for view in self.names:
                score, ms, response_bytes, request_bytes = self.score_of(item, view, text)
                scores[view] = score
                score_ms = max(score_ms, ms)  # the edges score at once
                up += response_bytes
                down += request_bytes
        selection = select_views(text, self.names, config, scores)
        if config.strip_names:  # as the server does: the model never saw camera names
            text = strip_view_names(text, self.names)
        return (selection.views, text, score_ms, up, down,
                selection.how.startswith('fallback'))

    def run(self, label: str, item, text: str, config: ViewsConfig | None, fixed=None) -> None:
        if fixed is not None:
            chosen, score_ms, up, down, fallback = fixed, 0.0, 0, 0, False
        else:
            chosen, text, score_ms, up, down, fallback = self.select(item, text, config)
        results = [self.answer_about(item, view, text) for view in chosen]
        best = results[most_confident(results)]
        up += sum(r.uplink_bytes for r in results)
        down += sum(r.downlink_bytes for r in results)
        model_ms = sum(sum(p.latency_ms for p in r.passes) + r.locate_ms for r in results)
        self.rows[label].add(bool(_score(best.answer, item.question)), item.view in chosen,
                             len(chosen), up, down, model_ms, score_ms, item.question.kind,
                             fallback)

    def ask(self, item, learned: dict[str, ViewsConfig]) -> None:
        """One question through every row."""
        names = self.names
        text = item.question.question
        named = f'{text} ({item.view} camera)'
        self.run('all views', item, text, None, fixed=tuple(names))
        self.run('first view', item, text, None, fixed=(names[0],))
        for label, config in learned.items():
            self.run(label, item, text, config)
        self.run('lexical', item, named, ViewsConfig(cameras=tuple(names), select='lexical'))
        self.run('lexical, names kept', item, named,
                 ViewsConfig(cameras=tuple(names), select='lexical', strip_names=False))
        self.run('oracle view', item, text, None, fixed=(item.view,))


def print_table(rows: dict[str, Row]) -> list[dict]:
    """The Markdown table of the rows against 'all views'; the rows' summaries."""
    base = rows['all views'].summary()
    table = []
    print('| selection | accuracy % | Δ points | view hit % | views sent | uplink B/q | '
          '× all | latency ms | × all | link ms @1 Mbps | fallback % |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for row in rows.values():
        s = row.summary()
        table.append(s)
        print(f'| {s["label"]} | {100 * s["accuracy"]:.1f} | '
              f'{100 * (s["accuracy"] - base["accuracy"]):+.1f} | '
              f'{100 * s["view_hit_rate"]:.1f} | {s["views_sent_mean"]:.2f} | '
              f'{s["uplink_bytes_mean"]:.0f} | '
              f'{s["uplink_bytes_mean"] / base["uplink_bytes_mean"]:.2f} | '
              f'{s["latency_ms_mean"]:.1f} | '
              f'{s["latency_ms_mean"] / base["latency_ms_mean"]:.2f} | '
              f'{s["link_ms_mean_1mbps"]:.1f} | {100 * s["fallback_rate"]:.1f} |')
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import torch
    torch.set_num_threads(args.threads)
    from colvlm_edge.global_encoder import GlobalEncoderConfig
    from colvlm_edge.view_score import load_view_scorer
    from colvlm_models.vlm import TransformersVlm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    views = tuple(v.strip() for v in args.views.split(',') if v.strip())
    data = Path(args.data) if args.data else write_views_dataset(
        out / 'data', args.scenes, args.seed, views=views, per_scene=args.per_scene,
        overwrite=True)
    questions = load_views_dataset(data)
    started = time.perf_counter()
    backend = TransformersVlm(args.model, progress=False)
    encoder = GlobalEncoderConfig(width=backend.image_size[0], height=backend.image_size[1])
    scorer = load_view_scorer(args.model, args.probe, 'cpu', encoder, backend=backend)
    evaluator = Evaluator(backend, data, [q.question for q in questions], encoder=encoder,
                          progress=False)
    learned = learned_rows(args.learned)
    names = [name for name, _ in questions[0].views]
    bench = ViewsBench(evaluator, scorer, names,
                       ('all views', 'first view', *learned, 'lexical', 'lexical, names kept',
                        'oracle view'))
    for index, item in enumerate(questions):
        bench.ask(item, learned)
        if (index + 1) % 20 == 0:
            print(f'{index + 1}/{len(questions)} questions, '
                  f'{time.perf_counter() - started:.0f} s', flush=True)
    print(f'\n{len(questions)} questions, {len(names)} views ({", ".join(names)}), seed '
          f'{args.seed}, policy entropy; '
          f'{time.perf_counter() - started:.0f} s')
    table = print_table(bench.rows)
    record = {'seed': args.seed, 'views': names, 'n': len(questions),
              'learned': args.learned, 'rows': table,
              'command': 'python -m tools.bench_views ' + ' '.join(argv or sys.argv[1:])}
    (out / 'bench_views.json').write_text(json.dumps(record, indent=2))
    print(f'\nwritten {out / "bench_views.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
