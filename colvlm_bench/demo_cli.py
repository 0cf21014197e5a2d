"""Run the end-to-end demo: an edge and a server over DDS, questions, and the baselines.

`colvlm demo --out DIR` writes a few Glyph-VQA scenes and starts `colvlm edge` and
`colvlm server` (the bundled model) as separate processes on a private DDS domain on
loopback. The demo itself plays the camera: it publishes each scene's original on the edge's
image topic, waits until the edge has sent its global frame, and asks the scene's questions
over `colvlm/ask`, naming that frame by its stamp. Each question is asked under the entropy
policy (one line per answer, under a progress bar on a terminal) and under the `global` and
`always` baselines. Then `colvlm eval` runs every policy over a few more scenes in-process for
the trade-off plots, and DIR gets report.md, live.json (every answer and the per-policy
summary), eval/ (metrics.json and plots) and images/ (every crop asked for, drawn on its
scene). A rerun into the same DIR replaces what it wrote before.

Exit status: 0 when every answer was OK, 1 when some were degraded (a status other than OK,
or a fallback) or no answer came, 2 when the edge or the server did not start or a flag is
wrong (one line, no traceback).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import json
import os
from pathlib import Path
import random
import shutil
import subprocess
import sys
import time

from colvlm_bench.camera_client import FRAME_WAIT_S, IMAGE_TOPIC
from colvlm_bench.demo_report import (
    DEMO_POLICY,
    answer_line,
    degraded,
    draw_rois,
    exit_codes_line,
    print_summary,
    summarize_live,
    write_report,
)

DEMO_SEED = 424242  # a seed the training streams never use
BASELINES = ('global', 'always')
NAMESPACE = 'demo'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default='demo-report', metavar='DIR',
                        help='report folder (default: %(default)s)')
    parser.add_argument('--model', default='bundled', help='model path or id (default: bundled)')
    parser.add_argument('--scenes', type=int, default=3, metavar='N',
                        help='scenes shown to the edge and asked about (default: %(default)s)')
    parser.add_argument('--eval-images', type=int, default=6, metavar='N',
                        help='scenes in the in-process evaluation (default: %(default)s; '
                             '0 = skip)')
    parser.add_argument('--timeout', type=float, default=120.0, metavar='S',
                        help='seconds to wait for the server to be ready (default: 120)')
    parser.add_argument('--domain-id', type=int, default=None, metavar='ID',
                        help='DDS domain of the demo (default: a random one in 120..230)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def _colvlm(*args: str) -> list[str]:
    return [sys.executable, '-m', 'colvlm_bench.cli', *args]


def ask_demo(camera, question: str, stamp_ns: int, policy: str, count: int, shown: bool,
             timeout: float = 60.0) -> dict:
    """The answer as plain values, or a TIMEOUT status when none came."""
    from colvlm_bench.ask_cli import named, to_plain
    from colvlm_msgs.transport import ServiceTimeout

    try:
        return named(to_plain(camera.ask(f'demo-{count}', question, timeout,
                                         stamp_ns=stamp_ns, policy=policy, shown=shown)))
    except ServiceTimeout as error:
        return {'answer': '', 'status_name': 'TIMEOUT', 'status_message': str(error),
                'decision_name': 'NONE', 'uplink_bytes': 0, 'total_ms': timeout * 1e3,
                'first_pass': {'min_entropy': float('nan')}, 'roi': {}}


def run(args: argparse.Namespace) -> int:
    from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset

    out = Path(args.out).resolve()
    try:
        _check(args, out)
        out.mkdir(parents=True, exist_ok=True)
        _clear_old_results(out, args)
        scene_dir = write_dataset(out / 'scenes', n_images=args.scenes, seed=DEMO_SEED,
                                  overwrite=True)
    except (ValueError, OSError) as error:
        print(f'colvlm demo: {_one_line(error)}', file=sys.stderr)
        return 2
    questions = load_dataset(scene_dir)
    domain_id = args.domain_id if args.domain_id is not None else random.randint(120, 230)
    # The demo's own DDS node and its children share the domain and loopback discovery.
    os.environ.update({'ROS_DOMAIN_ID': str(domain_id), 'COLVLM_TRANSPORT': 'dds',
                       'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'})
    os.environ.pop('CYCLONEDDS_URI', None)
    print(f'demo: DDS domain {domain_id}, {len(questions)} questions about {args.scenes} '
          f'scene(s) in {scene_dir}; logs in {out}')
    answers = _live(out, args, scene_dir, questions)
    if answers is None:
        return 2
    evaluation = _evaluate(out, args) if args.eval_images > 0 else None
    summary = summarize_live(answers)
    print_summary(summary)
    (out / 'live.json').write_text(json.dumps(
        {'domain_id': domain_id, 'summary': summary,
         'answers': [{'question': q.to_json(), 'policy': policy, 'reply': reply}
                     for q, policy, reply in answers]}, indent=1) + '\n')
    drawn = draw_rois(out / 'images', scene_dir, answers)
    write_report(out, summary, answers, evaluation, drawn)
    print(f'demo: wrote {out / "report.md"}')
    asked = [reply for _, policy, reply in answers if policy == DEMO_POLICY]
    return 0 if asked and not any(degraded(reply) for reply in asked) else 1


def _check(args: argparse.Namespace, out: Path) -> None:
    """ValueError naming the bad flag."""
    if args.scenes < 1:
        raise ValueError(f'--scenes must be >= 1, got {args.scenes}')
    if args.eval_images < 0:
        raise ValueError(f'--eval-images must be >= 0, got {args.eval_images}')
    if out.exists() and not out.is_dir():
        raise ValueError(f'--out {args.out}: a file is there, not a folder')
    from colvlm_models.vlm import ModelLoadError, resolve_model

    try:
        resolve_model(args.model)  # before two processes start to find it missing
    except ModelLoadError as error:
        raise ValueError(str(error)) from None


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f'{error.filename}: {error.strerror or error}'
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _clear_old_results(out: Path, args: argparse.Namespace) -> None:
    """A rerun's report shows this run only: what an earlier run wrote and this one will
    not rewrite goes (images drawn before, an evaluation this run skips)."""
    gone = ['images'] + (['eval', 'eval-data'] if args.eval_images == 0 else [])
    for name in gone:
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def _live(out: Path, args, scene_dir: Path, questions) -> list[tuple] | None:
    """The edge and server started, every question asked, both stopped; None when one of
    them did not start."""
    from colvlm_bench.camera_client import CameraClient
    from colvlm_bench.processes import ChildFailed, ChildProcess

    # The demo asks three policies per question back to back, faster than a robot would:
    # the edge's crop rate limit (10 a second by default) is raised to match.
    edge = ChildProcess(_colvlm('edge', '--namespace', NAMESPACE, '--source',
                                f'topic:{IMAGE_TOPIC}', '-p', 'crop.max_requests=100'),
                        dict(os.environ), log=out / 'edge.log', name='edge')
    server = ChildProcess(_colvlm('server', '--namespace', NAMESPACE, '--model', args.model),
                          dict(os.environ), log=out / 'server.log', name='server')
    camera = None
    try:
        for child, timeout in ((edge, 30.0), (server, args.timeout)):
            try:
                child.wait_for('ready', timeout)
            except ChildFailed:
                print(f'demo: the {child.name} did not start; see {out / (child.name + ".log")}',
                      file=sys.stderr)
                return None
        camera = CameraClient('demo', NAMESPACE, backend='dds', camera=True)
        progress = not args.no_progress and sys.stderr.isatty()
        return _ask_all(camera, scene_dir, questions, progress)
    finally:
        if camera is not None:
            camera.close()
        print(exit_codes_line({child.name: child.stop() for child in (server, edge)}))


def _ask_all(camera, scene_dir: Path, questions, progress: bool) -> list[tuple]:
    """Show each scene, ask its questions under the demo policy and the baselines."""
    from tqdm import tqdm

    by_image = defaultdict(list)
    for question in questions:
        by_image[question.image].append(question)
    answers = []
    # Without a terminal there is no bar: its redraws would land inside the answer lines.
    bar = tqdm(total=len(questions), unit='q', desc='demo', disable=not progress,
               file=sys.stderr)
    for image, asked in by_image.items():
        stamp_ns = time.time_ns()
        shown = camera.show(scene_dir / image, stamp_ns)
        if not shown:
            bar.write(f'demo: no global frame of {image} from the edge within '
                      f'{FRAME_WAIT_S:g} s; asking anyway', file=sys.stdout)
        for question in asked:
            for policy in (DEMO_POLICY, *BASELINES):
                reply = ask_demo(camera, question.question, stamp_ns, policy, len(answers),
                                 shown)
                answers.append((question, policy, reply))
                if policy == DEMO_POLICY:
                    bar.write(answer_line(question, reply), file=sys.stdout)
            bar.update(1)
    bar.close()
    return answers


def _evaluate(out: Path, args) -> list[dict] | None:
    """Every policy over a few more scenes, in-process, for the trade-off plots."""
    from colvlm_bench.glyphvqa.dataset import write_dataset

    data = write_dataset(out / 'eval-data', n_images=args.eval_images, seed=DEMO_SEED + 1,
                         overwrite=True)
    command = _colvlm('eval', str(data), '--model', args.model, '--out', str(out / 'eval'))
    if args.no_progress or not sys.stderr.isatty():
        command.append('--no-progress')
    if subprocess.run(command).returncode != 0:
        print('demo: the evaluation failed; the report has the live answers only',
              file=sys.stderr)
        return None
    return json.loads((out / 'eval' / 'metrics.json').read_text())
