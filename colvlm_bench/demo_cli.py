"""Run the end-to-end demo: an edge and a server over DDS, questions, and the baselines.

`colvlm demo --out DIR` writes a few Glyph-VQA scenes and starts `colvlm edge` and
`colvlm server` (the bundled model) as separate processes on a private DDS domain on
loopback. The demo itself plays the camera: it publishes each scene's original on the edge's
image topic, waits until the edge has sent its global frame, and asks the scene's questions
over `colvlm/ask`, naming that frame by its stamp. Each question is asked under the entropy
policy (one line per answer, under a progress bar) and under the `global` and `always`
baselines. Then `colvlm eval` runs every policy over a few more scenes in-process for the
trade-off plots, and DIR gets report.md, live.json (every answer and the per-policy
summary), eval/ (metrics.json and plots) and images/ (scenes with the RoI drawn).

Exit status: 0 when every answer was OK, 1 when some were degraded (a status other than OK,
or a fallback) or no answer came, 2 when the edge or the server did not start.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
import json
import os
from pathlib import Path
import random
import subprocess
import sys
import threading
import time

DEMO_SEED = 424242  # a seed the training streams never use
DEMO_POLICY = 'entropy'
BASELINES = ('global', 'always')
CAMERA_TOPIC = 'camera/image_raw/compressed'
NAMESPACE = 'demo'
FRAME_WAIT_S = 15.0    # for the edge's global frame of a newly shown scene
IMAGES_DRAWN = 4       # scenes with their RoI drawn in the report
NO_FRAME_RETRIES = 10  # asks again while the server has not yet got a frame the edge sent


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


class DemoCamera:
    """The demo's end of the link: it publishes originals to the edge and asks the server."""

    def __init__(self, namespace: str) -> None:
        from colvlm_msgs.transport import create_node

        self.node = create_node('demo', namespace, backend='dds')
        self._image_type = self.node.message_type('sensor_msgs/msg/CompressedImage')
        self._ask_type = self.node.service_type('colvlm/srv/Ask')
        self._images = self.node.create_publisher('sensor_msgs/msg/CompressedImage',
                                                  CAMERA_TOPIC, 'frames')
        self._client = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')
        self._sent: set[int] = set()   # stamps of the global frames the edge has sent
        self._changed = threading.Condition()
        self.node.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                      self._on_geometry, 'frame_info')
        self._queries = 0

    def _on_geometry(self, info) -> None:
        from colvlm_msgs import stamps

        with self._changed:
            self._sent.add(stamps.to_ns(info.header.stamp))
            self._changed.notify_all()

    def show(self, image_file: Path, stamp_ns: int, wait_s: float = FRAME_WAIT_S) -> bool:
        """Publish the original (its file bytes) until the edge has sent its global frame."""
        from colvlm_msgs import stamps

        message = self._image_type()
        stamps.fill(message.header.stamp, stamp_ns)
        message.header.frame_id = 'camera'
        message.format = image_file.suffix.lstrip('.').lower()
        message.data = image_file.read_bytes()
        deadline = time.monotonic() + wait_s
        with self._changed:
            while stamp_ns not in self._sent and time.monotonic() < deadline:
                self._images.publish(message)  # best effort: sent again until it lands
                self._changed.wait(timeout=1.0)
            return stamp_ns in self._sent

    def ask(self, question: str, stamp_ns: int, policy: str, timeout: float = 60.0) -> dict:
        """The answer as plain values, or a TIMEOUT status when none came."""
        from colvlm_bench.ask_cli import named, to_plain
        from colvlm_msgs import stamps
        from colvlm_msgs.transport import ServiceTimeout

        self._queries += 1
        request = self._ask_type.Request()
        query = request.query
        query.query_id, query.question, query.policy = f'demo-{self._queries}', question, policy
        stamps.fill(query.header.stamp, self.node.now_ns())
        stamps.fill(query.frame_stamp, stamp_ns)
        try:
            return named(to_plain(self._client.call(request, timeout=timeout).answer))
        except ServiceTimeout as error:
            return {'answer': '', 'status_name': 'TIMEOUT', 'status_message': str(error),
                    'decision_name': 'NONE', 'uplink_bytes': 0, 'total_ms': timeout * 1e3,
                    'first_pass': {'min_entropy': float('nan')}, 'roi': {}}

    def close(self) -> None:
        self.node.shutdown()


def degraded(reply: dict) -> bool:
    """An answer that lost something: any status but OK, or a refinement that fell back."""
    return reply['status_name'] != 'OK' or reply['decision_name'] == 'FALLBACK'


def run(args: argparse.Namespace) -> int:
    from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
    from colvlm_bench.processes import ChildFailed, ChildProcess

    if args.scenes < 1:
        print(f'colvlm demo: --scenes must be >= 1, got {args.scenes}', file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scene_dir = write_dataset(out / 'scenes', n_images=args.scenes, seed=DEMO_SEED,
                              overwrite=True)
    questions = load_dataset(scene_dir)
    domain_id = args.domain_id if args.domain_id is not None else random.randint(120, 230)
    # The demo's own DDS node and its children share the domain and loopback discovery.
    os.environ.update({'ROS_DOMAIN_ID': str(domain_id), 'COLVLM_TRANSPORT': 'dds',
                       'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'HF_HUB_OFFLINE': '1'})
    os.environ.pop('CYCLONEDDS_URI', None)
    print(f'demo: DDS domain {domain_id}, {len(questions)} questions about {args.scenes} '
          f'scene(s) in {scene_dir}; logs in {out}')
    # The demo asks three policies per question back to back, faster than a robot would:
    # the edge's crop rate limit (10 a second by default) is raised to match.
    edge = ChildProcess(_colvlm('edge', '--namespace', NAMESPACE, '--source',
                                f'topic:{CAMERA_TOPIC}', '-p', 'crop.max_requests=100'),
                        dict(os.environ), log=out / 'edge.log', name='edge')
    server = ChildProcess(_colvlm('server', '--namespace', NAMESPACE, '--model', args.model),
                          dict(os.environ), log=out / 'server.log', name='server')
    camera = None
    answers: list[tuple] = []
    try:
        for child, timeout in ((edge, 30.0), (server, args.timeout)):
            try:
                child.wait_for('ready', timeout)
            except ChildFailed:
                print(f'demo: the {child.name} did not start; see {out / (child.name + ".log")}',
                      file=sys.stderr)
                return 2
        camera = DemoCamera(NAMESPACE)
        answers = _ask_all(camera, scene_dir, questions, progress=not args.no_progress)
    finally:
        if camera is not None:
            camera.close()
        codes = {child.name: child.stop() for child in (server, edge)}
    print(f'demo: exit codes {codes}')
    evaluation = _evaluate(out, args) if args.eval_images > 0 else None
    summary = summarize_live(answers)
    _print_summary(summary)
    (out / 'live.json').write_text(json.dumps(
        {'domain_id': domain_id, 'summary': summary,
         'answers': [{'question': q.to_json(), 'policy': policy, 'reply': reply}
                     for q, policy, reply in answers]}, indent=1) + '\n')
    drawn = _draw_rois(out / 'images', scene_dir, answers)
    _report(out, summary, answers, evaluation, drawn)
    print(f'demo: wrote {out / "report.md"}')
    asked = [reply for _, policy, reply in answers if policy == DEMO_POLICY]
    return 0 if asked and not any(degraded(reply) for reply in asked) else 1


def _ask_all(camera: DemoCamera, scene_dir: Path, questions, progress: bool) -> list[tuple]:
    """Show each scene, ask its questions under the demo policy and the baselines."""
    from tqdm import tqdm

    by_image = defaultdict(list)
    for question in questions:
        by_image[question.image].append(question)
    answers = []
    bar = tqdm(total=len(questions), unit='q', desc='demo', disable=not progress,
               file=sys.stderr)
    for image, asked in by_image.items():
        stamp_ns = time.time_ns()
        shown = camera.show(scene_dir / image, stamp_ns)
        if not shown:
            bar.write(f'demo: no global frame of {image} from the edge within '
                      f'{FRAME_WAIT_S:g} s; asking anyway')
        for question in asked:
            for policy in (DEMO_POLICY, *BASELINES):
                reply = camera.ask(question.question, stamp_ns, policy)
                for _ in range(NO_FRAME_RETRIES):
                    # The edge has sent the frame; the server may take a moment to hold it.
                    if not shown or reply['status_name'] != 'NO_FRAME':
                        break
                    time.sleep(0.2)
                    reply = camera.ask(question.question, stamp_ns, policy)
                answers.append((question, policy, reply))
                if policy == DEMO_POLICY:
                    bar.write(_answer_line(question, reply))
            bar.update(1)
    bar.close()
    return answers


def _answer_line(question, reply: dict) -> str:
    from colvlm_bench.glyphvqa.questions import is_correct

    mark = 'right' if is_correct(reply['answer'], question.answers) else 'wrong'
    return (f'{question.question!r} -> {reply["answer"]!r} ({mark}, expected '
            f'{question.answers[0]!r}); min-entropy {reply["first_pass"]["min_entropy"]:.3f}; '
            f'{reply["decision_name"].lower()}; {reply["status_name"]}; uplink '
            f'{reply["uplink_bytes"]} B; {reply["total_ms"]:.0f} ms')


def summarize_live(answers: list[tuple]) -> dict:
    """Per policy: answered, accuracy, mean uplink bytes and latency, crops, degraded."""
    from colvlm_bench.glyphvqa.questions import is_correct

    rows: dict[str, list] = defaultdict(list)
    for question, policy, reply in answers:
        rows[policy].append((question, reply))
    summary = {}
    for policy, pairs in rows.items():
        n = len(pairs)
        ok = [reply for _, reply in pairs if reply['status_name'] == 'OK']
        summary[policy] = {
            'n': n, 'ok': len(ok),
            'degraded': sum(degraded(reply) for _, reply in pairs),
            'accuracy': sum(is_correct(r['answer'], q.answers) for q, r in pairs) / n,
            'uplink_bytes_mean': sum(r['uplink_bytes'] for _, r in pairs) / n,
            'retransmission_rate': sum(r['decision_name'] in ('LOCAL_CROP', 'FALLBACK')
                                       for _, r in pairs) / n,
            'latency_ms_mean': sum(r['total_ms'] for _, r in pairs) / n,
        }
    return summary


def _print_summary(summary: dict) -> None:
    print(f'\n{"policy":<9} {"answered":>9} {"accuracy":>9} {"uplink B":>9} {"crops":>6} '
          f'{"ms":>6} {"degraded":>9}')
    for policy, s in summary.items():
        print(f'{policy:<9} {s["ok"]:>4}/{s["n"]:<4} {s["accuracy"]:>9.3f} '
              f'{s["uplink_bytes_mean"]:>9.0f} {s["retransmission_rate"]:>6.2f} '
              f'{s["latency_ms_mean"]:>6.0f} {s["degraded"]:>9}')
    ours, always = summary.get(DEMO_POLICY), summary.get('always')
    if ours and always and always['uplink_bytes_mean']:
        gain = 100 * (ours['accuracy'] - always['accuracy'])
        ratio = ours['uplink_bytes_mean'] / always['uplink_bytes_mean']
        print(f'{DEMO_POLICY} vs always: accuracy {gain:+.1f} pt at {ratio:.2f}x the uplink bytes')
    if ours and ours['degraded']:
        print(f'{ours["degraded"]} of {ours["n"]} {DEMO_POLICY} answers were degraded '
              '(see live.json for their statuses)')


def _evaluate(out: Path, args) -> list[dict] | None:
    """Every policy over a few more scenes, in-process, for the trade-off plots."""
    from colvlm_bench.glyphvqa.dataset import write_dataset

    data = write_dataset(out / 'eval-data', n_images=args.eval_images, seed=DEMO_SEED + 1,
                         overwrite=True)
    command = _colvlm('eval', str(data), '--model', args.model, '--out', str(out / 'eval'))
    if args.no_progress:
        command.append('--no-progress')
    if subprocess.run(command).returncode != 0:
        print('demo: the evaluation failed; the report has the live answers only',
              file=sys.stderr)
        return None
    return json.loads((out / 'eval' / 'metrics.json').read_text())


def _draw_rois(folder: Path, scene_dir: Path, answers: list[tuple]) -> list[str]:
    """Scenes with the demo policy's RoI (green) and the evidence box (blue) drawn."""
    import cv2

    folder.mkdir(exist_ok=True)
    drawn = []
    for question, policy, reply in answers:
        roi = reply.get('roi') or {}
        if policy != DEMO_POLICY or not roi.get('width') or len(drawn) >= IMAGES_DRAWN:
            continue
        image = cv2.imread(str(scene_dir / question.image), cv2.IMREAD_COLOR)
        x, y = roi['x_offset'], roi['y_offset']
        cv2.rectangle(image, (x, y), (x + roi['width'], y + roi['height']), (0, 200, 0), 3)
        if question.target:
            x0, y0, x1, y1 = question.target
            cv2.rectangle(image, (x0, y0), (x1, y1), (255, 80, 0), 2)
        cv2.putText(image, f'{question.question} -> {reply["answer"]}', (10, 30),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4)
        cv2.putText(image, f'{question.question} -> {reply["answer"]}', (10, 30),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        name = f'{question.id}.jpg'
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        drawn.append(name)
    return drawn


def _report(out: Path, summary: dict, answers, evaluation, drawn: list[str]) -> None:
    lines = ['# colvlm demo', '',
             'Edge and server as separate processes over DDS; the demo played the camera.', '',
             f'## Answers ({DEMO_POLICY} policy)', '',
             '| question | answer | expected | status | decision | min-entropy (nats) | '
             'uplink B | total ms |', '|---|---|---|---|---|---|---|---|']
    for question, policy, reply in answers:
        if policy == DEMO_POLICY:
            lines.append(
                f'| {question.question} | {reply["answer"]} | {question.answers[0]} | '
                f'{reply["status_name"]} | {reply["decision_name"].lower()} | '
                f'{reply["first_pass"]["min_entropy"]:.3f} | {reply["uplink_bytes"]} | '
                f'{reply["total_ms"]:.0f} |')
    lines += ['', '## Against the baselines (same questions, same frames, over DDS)', '',
              '| policy | answered OK | accuracy | uplink B | crop rate | total ms | degraded |',
              '|---|---|---|---|---|---|---|']
    for policy, s in summary.items():
        lines.append(f'| {policy} | {s["ok"]}/{s["n"]} | {s["accuracy"]:.3f} | '
                     f'{s["uplink_bytes_mean"]:.0f} | {s["retransmission_rate"]:.2f} | '
                     f'{s["latency_ms_mean"]:.0f} | {s["degraded"]} |')
    if drawn:
        lines += ['', '## RoIs (green: ViCrop box sent to the edge; blue: the evidence)', '']
        lines += [f'![{name}](images/{name})' for name in drawn]
    if evaluation:
        lines += ['', '## In-process evaluation, every policy (`eval/metrics.json`)', '',
                  '| policy | accuracy | uplink B | retransmission | LLM tokens |',
                  '|---|---|---|---|---|']
        for m in evaluation:
            lines.append(f'| {m["policy"]} | {m["accuracy"]:.3f} | '
                         f'{m["uplink_bytes_mean"]:.0f} | {m["retransmission_rate"]:.2f} | '
                         f'{m["llm_tokens_mean"]:.0f} |')
        lines += ['', '![accuracy vs uplink](eval/accuracy_vs_uplink.png)',
                  '![accuracy vs compute](eval/accuracy_vs_compute.png)']
    (out / 'report.md').write_text('\n'.join(lines) + '\n')
