"""Run the end-to-end demo: an edge and a server over DDS, questions, and a small evaluation.

`colvlm demo --out DIR` writes a Glyph-VQA scene, starts `colvlm edge` on it and
`colvlm server` (the bundled model) as separate processes on a private DDS domain, asks the
scene's questions with `colvlm ask`, runs `colvlm eval` on a few more scenes, and writes
DIR/report.md with the answers, what each cost, and the evaluation's plots.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import queue
import random
import subprocess
import sys
import threading
import time

DEMO_SEED = 424242  # a seed the training streams never use


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default='demo-report', metavar='DIR',
                        help='report folder (default: %(default)s)')
    parser.add_argument('--model', default='bundled', help='model path or id (default: bundled)')
    parser.add_argument('--eval-images', type=int, default=6, metavar='N',
                        help='scenes in the small evaluation (default: %(default)s; 0 = skip)')
    parser.add_argument('--timeout', type=float, default=120.0, metavar='S',
                        help='seconds to wait for the server to be ready (default: 120)')


def _colvlm(*args: str) -> list[str]:
    return [sys.executable, '-m', 'colvlm_server.cli', *args]


def _wait_for_line(process: subprocess.Popen, needle: str, timeout: float) -> bool:
    """Read the process's stderr until a line holds `needle`; keep draining it afterwards."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                return False
            continue
        print(f'  | {line.rstrip()}')
        if needle in line:
            return True
    return False


def run(args: argparse.Namespace) -> int:
    from colvlm_edge.glyphvqa.dataset import load_dataset, write_dataset

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scene_dir = out / 'scene'
    write_dataset(scene_dir, n_images=1, seed=DEMO_SEED, overwrite=True)
    questions = load_dataset(scene_dir)
    env = {**os.environ, 'ROS_DOMAIN_ID': str(random.randint(120, 200)),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'HF_HUB_OFFLINE': '1',
           'COLVLM_TRANSPORT': 'dds'}
    print(f'demo: domain {env["ROS_DOMAIN_ID"]}, scene {scene_dir / questions[0].image}')
    edge = subprocess.Popen(
        _colvlm('edge', '--source', str(scene_dir / 'images'), '--namespace', 'demo',
                '-p', 'source.loop=true', '-p', 'source.fps=2'),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen(_colvlm('server', '--namespace', 'demo', '--model', args.model),
                              env=env, text=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    answers = []
    try:
        if not _wait_for_line(server, 'ready', args.timeout):
            print('demo: the server did not become ready', file=sys.stderr)
            return 1
        time.sleep(2.0)  # a frame or two from the edge
        for question in questions:
            done = subprocess.run(_colvlm('ask', question.question, '--namespace', 'demo',
                                          '--json', '--timeout', '60'),
                                  env=env, capture_output=True, text=True)
            reply = json.loads(done.stdout) if done.stdout.strip() else {}
            answers.append((question, reply))
            print(f'demo: {question.question!r} -> {reply.get("answer")!r} '
                  f'({reply.get("status_name")}, {reply.get("decision_name")}, '
                  f'expected {question.answers[0]!r})')
    finally:
        for process in (server, edge):
            process.terminate()
        for process in (server, edge):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    evaluation = None
    if args.eval_images > 0:
        data = write_dataset(out / 'eval-data', n_images=args.eval_images, seed=DEMO_SEED + 1,
                             overwrite=True)
        code = subprocess.run(_colvlm('eval', str(data), '--model', args.model, '--out',
                                      str(out / 'eval'), '--no-progress'), env=env).returncode
        if code == 0:
            evaluation = json.loads((out / 'eval' / 'metrics.json').read_text())
    _report(out, questions[0].image, answers, evaluation)
    print(f'demo: wrote {out / "report.md"}')
    return 0 if answers and all(reply for _, reply in answers) else 1


def _report(out: Path, image: str, answers, evaluation) -> None:
    lines = ['# colvlm demo', '', f'Scene: `scene/{image}` (edge and server over DDS).', '',
             '| question | answer | expected | status | decision | min-entropy (nats) | '
             'uplink B | total ms |', '|---|---|---|---|---|---|---|---|']
    for question, reply in answers:
        first = reply.get('first_pass', {})
        lines.append(
            f'| {question.question} | {reply.get("answer", "")} | {question.answers[0]} | '
            f'{reply.get("status_name", "no answer")} | {reply.get("decision_name", "")} | '
            f'{first.get("min_entropy", float("nan")):.3f} | {reply.get("uplink_bytes", "")} | '
            f'{reply.get("total_ms", 0):.0f} |')
    if evaluation:
        lines += ['', '## Small evaluation (`eval/metrics.json`)', '',
                  '| policy | accuracy | uplink B | retransmission | LLM tokens |',
                  '|---|---|---|---|---|']
        for m in evaluation:
            lines.append(f'| {m["policy"]} | {m["accuracy"]:.3f} | '
                         f'{m["uplink_bytes_mean"]:.0f} | {m["retransmission_rate"]:.2f} | '
                         f'{m["llm_tokens_mean"]:.0f} |')
        lines += ['', '![accuracy vs uplink](eval/accuracy_vs_uplink.png)',
                  '![accuracy vs compute](eval/accuracy_vs_compute.png)']
    (out / 'report.md').write_text('\n'.join(lines) + '\n')
