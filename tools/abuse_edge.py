"""Abuse probes of the edge's defences (issue 19's probes 1, 6 and 7 and its minor items), as
any participant on the DDS domain could run them: real processes over real DDS on loopback.
Prints the figures; test/integration/test_abuse_edge.py runs the same probes and checks what
they must hold (it asserts behaviour, never memory or time).

    python -m tools.abuse_edge [--probes bomb,folder,bag,flood]

bomb    a server alone; a 663-byte JPEG declaring 30000x30000, then a PNG zlib bomb of
        20000x20000 (~400 kB), published on cam0/colvlm/global/compressed: the server's RSS
        growth (peak, sampled every 10 ms, and held a second later) and its drop lines.
folder  an edge on a folder of one good image, a JPEG declaring 13000x13000, a 20000x20000
        PNG bomb, a link loop and a link to a device: its peak RSS, buffer bytes, refused
        and skipped counts, and whether the warnings carry the log prefix.
bag     an edge on a rosbag2 corrupted mid-file: its ERROR lines and the level /diagnostics
        reports.
flood   an edge (synthetic) and a server (policy always: every answer needs a crop); one
        client floods cheap 10x10 crops at 50/s while another asks 6 text questions: OK
        answers of asked, flood crops served of sent; then 100 request_frame calls from one
        client: served of asked.

Each probe runs in a DDS domain of its own (ROS_DOMAIN_ID 200..229), discovery on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
import queue
import re
import sys
import tempfile
import threading
import time
import uuid

import cv2
import numpy as np

from colvlm_bench.processes import ChildProcess
from tools.hostile_inputs import corrupt_sqlite_bag, forged_jpeg, png_bomb

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = 'cam0'
START_TIMEOUT_S = 180.0  # a server loads its model; a busy machine is slow
WAIT_S = 60.0
FLOOD_HZ = 50.0
QUESTIONS = 6
PROBES = ('bomb', 'folder', 'bag', 'flood')


def colvlm(env: dict, *args: str) -> ChildProcess:
    return ChildProcess([sys.executable, '-m', 'colvlm_bench.cli', *args], env, cwd=REPO_ROOT,
                        name=args[0])


def probe_env(domain_id: int) -> dict:
    """os.environ for a private domain on loopback, offline (set in this process too)."""
    os.environ.update({'ROS_DOMAIN_ID': str(domain_id), 'COLVLM_TRANSPORT': 'dds',
                       'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'HF_HUB_OFFLINE': '1',
                       'TRANSFORMERS_OFFLINE': '1', 'PYTHONPATH': str(REPO_ROOT)})
    os.environ.pop('CYCLONEDDS_URI', None)
    return dict(os.environ)


class RssSampler:
    """A process's resident memory, sampled every 10 ms on a thread, in MB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = self.rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss_mb(self) -> float:
        try:
            text = Path(f'/proc/{self.pid}/status').read_text()
        except OSError:
            return 0.0
        return int(re.search(r'VmRSS:\s+(\d+) kB', text).group(1)) / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def reset(self) -> float:
        self.peak_mb = self.rss_mb()
        return self.peak_mb

    def stop(self) -> None:
        self._stop.set()


def _node(name: str, namespace: str = NAMESPACE):
    from colvlm_msgs.transport import create_node

    return create_node(f'abuse_{name}_{uuid.uuid4().hex[:6]}', namespace)


def _wait_matched(publisher, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while publisher.subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def probe_bomb(env: dict) -> dict:
    """Image bombs published to a server; its RSS growth and drop lines."""
    from colvlm_msgs import stamps

    server = colvlm(env, 'server', '--namespace', NAMESPACE, '-p', 'status.period_s=1')
    node = _node('bomber')
    figures, sampler = {}, None
    try:
        server.wait_for(r'\bready: model', START_TIMEOUT_S)
        sampler = RssSampler(server.process.pid)
        publisher = node.create_publisher('sensor_msgs/msg/CompressedImage',
                                          'colvlm/global/compressed', 'frames')
        _wait_matched(publisher)
        image_type = node.message_type('sensor_msgs/msg/CompressedImage')
        for name, codec, data in (('jpeg 30000x30000', 'jpeg', forged_jpeg(30000, 30000)),
                                  ('png 20000x20000', 'png', png_bomb(20000, 20000))):
            start, baseline = len(server.lines), sampler.reset()
            message = image_type(format=f'bgr8; {codec} compressed bgr8', data=list(data))
            stamps.fill(message.header.stamp, time.time_ns())
            seen = None
            for _ in range(5):  # best effort: a large sample may be lost, send it again
                publisher.publish(message)
                with contextlib.suppress(AssertionError):
                    seen = server.wait_for(rf'frame dropped: .*{name.split()[1]}', 3.0, start)
                    break
            time.sleep(1.0)
            figures[name] = {'bytes': len(data), 'dropped line': seen.string if seen else None,
                             'peak RSS growth MB': round(sampler.peak_mb - baseline, 1),
                             'held MB': round(sampler.rss_mb() - baseline, 1)}
        figures['server RSS MB'] = round(sampler.rss_mb(), 1)
    finally:
        if sampler is not None:
            sampler.stop()
        node.shutdown()
        server.kill()
    return figures


def probe_folder(env: dict, workdir: Path) -> dict:
    """An edge on a folder of bombs and bad links; what it holds and counts."""
    folder = workdir / 'folder'
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / 'good.png'), image)
    (folder / 'bomb_13000.jpg').write_bytes(forged_jpeg(13000, 13000))
    (folder / 'bomb_20000.png').write_bytes(png_bomb(20000, 20000))
    (folder / 'loop.png').symlink_to(folder / 'loop.png')
    (folder / 'device.png').symlink_to(os.devnull)
    edge = colvlm(env, 'edge', '--source', str(folder), '--namespace', NAMESPACE,
                  '-p', 'source.loop=true', '-p', 'source.fps=10', '-p', 'status.period_s=0.5')
    sampler = RssSampler(edge.process.pid)
    try:
        line = edge.wait_for(r'uplink: .*refused images 2\b', WAIT_S).string
        time.sleep(1.0)
    finally:
        sampler.stop()
        edge.kill()
    warnings = [text for text in edge.lines if 'skipping' in text or 'refusing' in text]
    return {'edge peak RSS MB': round(sampler.peak_mb, 1),
            'buffer bytes': int(re.search(r'buffer \d+ frames (\d+) B', line).group(1)),
            'refused images': int(re.search(r'refused images (\d+)', line).group(1)),
            'dropped frames': int(re.search(r'dropped frames (\d+)', line).group(1)),
            'warnings': len(warnings),
            'warnings with the log prefix': sum(text.startswith('[WARNING] [')
                                                for text in warnings)}


def probe_bag(env: dict, workdir: Path) -> dict:
    """An edge on a bag corrupted mid-file: its ERROR line and /diagnostics."""
    from colvlm_edge.health import DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC

    bag = corrupt_sqlite_bag(workdir / 'bag')
    node = _node('monitor', '/')
    reports: queue.Queue = queue.Queue()
    node.create_subscription('diagnostic_msgs/msg/DiagnosticArray', DIAGNOSTICS_TOPIC,
                             reports.put, DIAGNOSTICS_QOS)
    edge = colvlm(env, 'edge', '--source', str(bag), '--namespace', NAMESPACE,
                  '-p', 'source.fps=50', '-p', 'status.period_s=0.5')
    level, message = None, ''
    try:
        error = edge.wait_for(r'\[ERROR\].*source .* failed: .*', WAIT_S).string
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and level != 2:
            with contextlib.suppress(queue.Empty):
                (status,) = reports.get(timeout=1.0).status
                level, message = int(status.level), status.message
        time.sleep(1.0)
    finally:
        node.shutdown()
        edge.kill()
    return {'error line': error,
            'error lines': sum('[ERROR]' in text for text in edge.lines),
            'tracebacks': sum('Traceback' in text for text in edge.lines),
            'source ended lines': sum('source' in t and 'ended' in t for t in edge.lines),
            'diagnostics level': level, 'diagnostics message': message}


def _flood(node, stop: threading.Event, newest: list, counts: dict) -> None:
    """Cheap 10x10 crops of the newest frame at FLOOD_HZ, one client, until stop."""
    from colvlm_msgs import stamps

    crop_type = node.service_type('colvlm/srv/CropRoi')
    client = node.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')
    client.wait_for_service(WAIT_S)
    next_time = time.monotonic()
    while not stop.is_set():
        request = crop_type.Request()
        stamps.fill(request.frame_stamp, newest[0])
        request.roi.width = request.roi.height = 10
        counts['sent'] += 1
        with contextlib.suppress(Exception):
            counts['ok'] += bool(client.call(request, timeout=2.0).success)
        next_time += 1.0 / FLOOD_HZ
        stop.wait(max(0.0, next_time - time.monotonic()))


def _ask(client, ask_type, policy: str = 'always'):
    request = ask_type.Request()
    request.query.query_id = uuid.uuid4().hex[:8]
    request.query.question = 'What is written on the sign?'
    request.query.policy = policy
    return client.call(request, timeout=WAIT_S).answer


def probe_flood(env: dict) -> dict:
    """Six refining questions from one client while another floods cheap crops."""
    from colvlm_msgs import stamps
    from colvlm_msgs.constants import Status

    server = colvlm(env, 'server', '--namespace', NAMESPACE, '-p', 'policy=always',
                    '-p', 'frame.max_age_s=0', '-p', 'status.period_s=1')
    edge = colvlm(env, 'edge', '--source', 'synthetic', '--namespace', NAMESPACE,
                  '-p', 'source.fps=5', '-p', 'status.period_s=1')
    flooder, asker = _node('flooder'), _node('asker')
    newest = [0]
    flooder.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                lambda m: newest.__setitem__(0, stamps.to_ns(m.header.stamp)),
                                'frame_info')
    ask_type = asker.service_type('colvlm/srv/Ask')
    ask_client = asker.create_client('colvlm/srv/Ask', 'colvlm/ask')
    stop, counts = threading.Event(), {'sent': 0, 'ok': 0}
    flood = threading.Thread(target=_flood, args=(flooder, stop, newest, counts), daemon=True)
    try:
        server.wait_for(r'\bready: model', START_TIMEOUT_S)
        edge.wait_for(r'\bready:', START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        while _ask(ask_client, ask_type, 'global').status == Status.NO_FRAME:
            assert time.monotonic() < deadline, server.tail()
            time.sleep(0.3)
        flood.start()
        time.sleep(1.0)  # the flood has emptied its bucket
        statuses = [Status(_ask(ask_client, ask_type).status).name
                    for _ in range(QUESTIONS)]
        stop.set()
        flood.join(WAIT_S)
        frames = _frame_requests(asker, 100)
    finally:
        stop.set()
        flooder.shutdown()
        asker.shutdown()
        edge.kill()
        server.kill()
    return {'questions OK': statuses.count('OK'), 'questions asked': QUESTIONS,
            'statuses': statuses, 'flood crops served': counts['ok'],
            'flood crops sent': counts['sent'], 'request_frame served': frames, 'of': 100}


def _frame_requests(node, count: int) -> int:
    frame_type = node.service_type('colvlm/srv/RequestFrame')
    client = node.create_client('colvlm/srv/RequestFrame', 'colvlm/request_frame')
    client.wait_for_service(WAIT_S)
    return sum(bool(client.call(frame_type.Request(), timeout=WAIT_S).success)
               for _ in range(count))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--probes', default=','.join(PROBES),
                        help=f'comma-separated, of {PROBES}')
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.probes.split(',') if p.strip()]
    unknown = sorted(set(chosen) - set(PROBES))
    if unknown:
        parser.error(f'unknown probe(s) {unknown}; choose from {PROBES}')
    with tempfile.TemporaryDirectory(prefix='colvlm-abuse-') as scratch:
        for index, name in enumerate(chosen):
            env = probe_env(200 + (os.getpid() + index) % 30)
            workdir = Path(scratch) / name
            workdir.mkdir()
            started = time.monotonic()
            if name == 'bomb':
                figures = probe_bomb(env)
            elif name == 'flood':
                figures = probe_flood(env)
            else:
                figures = {'folder': probe_folder, 'bag': probe_bag}[name](env, workdir)
            print(f'{name} ({time.monotonic() - started:.0f} s):')
            for key, value in figures.items():
                print(f'  {key}: {value}')
            sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
