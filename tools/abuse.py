"""Abuse probes of the server's defences (issue 19's probes 2 to 5), as any participant on the
DDS domain could run them: a server and a synthetic edge as real processes over real DDS on
loopback, probed by this process (and, for the asks, by child processes). Prints the figures;
test/integration/test_abuse.py runs the same probes and checks what they must hold (it
asserts behaviour, never memory or time). The edge's probes (bombs, folder, bag, crop flood)
are tools/abuse_edge.py; `--probes` takes theirs too.

    python -m tools.abuse [--probes future,burst,asks,layers] [--callers 60] [--transport ros]

future  a frame (image and geometry) stamped a day ahead published among the edge's own:
        questions answered about it (must be none) and the server's refusal lines.
burst   200 Query messages published at once: answers received of sent, by status.
asks    `--callers` clients, each a node of its own in one of 6 processes, calling
        colvlm/ask at the same moment: replies of callers.
layers  3000 TokenLayer messages of 64 kB for one stamp: the server's RSS growth (peak and
        held a second later), layers held, and whether it still answers.

Every probe reports the server's RSS growth. The probes share one server and one edge, in
a DDS domain of their own (ROS_DOMAIN_ID 200..229), discovery on loopback.
"""

from __future__ import annotations

import argparse
from collections import Counter
import contextlib
import os
import queue
import re
import sys
import threading
import time
import uuid

import numpy as np

from colvlm_msgs import stamps
from colvlm_msgs.constants import Status
from tools.abuse_edge import (
    NAMESPACE,
    REPO_ROOT,
    START_TIMEOUT_S,
    WAIT_S,
    RssSampler,
    _node,
    _wait_matched,
    colvlm,
    probe_env,
)

PROBES = ('future', 'burst', 'asks', 'layers')
EDGE_PROBES = ('bomb', 'folder', 'bag', 'flood')
DAY_NS = 86400 * 10**9
BURST = 200
LAYERS, LAYER_BYTES = 3000, 64 * 1024
CALLER_PROCESSES = 6


class Pair:
    """A server and a synthetic edge in NAMESPACE, and a probing node of this process."""

    def __init__(self, env: dict, transport: str = 'dds'):
        nodes_env = {**env, 'COLVLM_TRANSPORT': transport}  # this process's node: dds
        self.server = colvlm(nodes_env, 'server', '--namespace', NAMESPACE,
                             '-p', 'status.period_s=1')
        self.edge = colvlm(nodes_env, 'edge', '--source', 'synthetic', '--namespace', NAMESPACE,
                           '-p', 'source.fps=5', '-p', 'status.period_s=5')
        self.node = _node('prober')
        self.sampler: RssSampler | None = None
        self.ask_type = self.node.service_type('colvlm/srv/Ask')
        self._ask = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')

    def start(self) -> Pair:
        self.server.wait_for(r'\bready: model', START_TIMEOUT_S)
        self.edge.wait_for(r'\bready:', START_TIMEOUT_S)
        self.sampler = RssSampler(self.server.process.pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.ask().status != Status.OK:  # once a frame of the edge is held
            assert time.monotonic() < deadline, self.server.tail()
            time.sleep(0.3)
        return self

    def ask(self, question: str = 'What is written on the sign?', **fields):
        request = self.ask_type.Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question = question
        for name, value in fields.items():
            setattr(request.query, name, value)
        return self._ask.call(request, timeout=WAIT_S).answer

    def rss(self, baseline: float) -> dict:
        return {'server peak RSS growth MB': round(self.sampler.peak_mb - baseline, 1),
                'server held RSS growth MB': round(self.sampler.rss_mb() - baseline, 1)}

    def counts(self) -> dict:
        """The refusals the server's newest status line counts (after its next one)."""
        start = len(self.server.lines)
        line = self.server.wait_for(r'answered: .*dropped frames \d+', WAIT_S, start).string
        ahead = re.search(r'stamped ahead (\d+)', line)
        return {'dropped frames': int(re.search(r'dropped frames (\d+)', line).group(1)),
                'stamped ahead': int(ahead.group(1)) if ahead else None}

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        self.node.shutdown()
        self.edge.kill()
        self.server.kill()


def probe_future(pair: Pair) -> dict:
    """A frame stamped a day ahead among the edge's: answers about it, refusal lines."""
    from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
    from colvlm_edge.wire import global_frame_messages

    node, start, baseline = pair.node, len(pair.server.lines), pair.sampler.reset()
    images = node.create_publisher('sensor_msgs/msg/CompressedImage',
                                   'colvlm/global/compressed', 'frames')
    geometries = node.create_publisher('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                       'frame_info')
    _wait_matched(images)
    _wait_matched(geometries)
    pixels = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    encoded = GlobalEncoder(GlobalEncoderConfig()).encode(pixels)
    future_ns = time.time_ns() + DAY_NS
    image, geometry = global_frame_messages(
        node.message_type('sensor_msgs/msg/CompressedImage'),
        node.message_type('colvlm/msg/FrameGeometry'), encoded, future_ns, 'hostile')
    for _ in range(3):  # best effort frames: send it again, as a peer would
        geometries.publish(geometry)
        images.publish(image)
        time.sleep(0.2)
    answers = [pair.ask() for _ in range(5)]
    about_it = sum(stamps.to_ns(a.frame_stamp) == future_ns for a in answers)
    return {'answers about the future frame': about_it, 'of': len(answers),
            'statuses': dict(Counter(_status(a) for a in answers)),
            'refusal lines': sum('ahead of this clock' in t for t in pair.server.lines[start:]),
            **pair.counts(), **pair.rss(baseline)}


def _status(answer) -> str:
    return Status(answer.status).name


def probe_burst(pair: Pair, count: int = BURST) -> dict:
    """`count` queries published at once: answers received of sent."""
    node, baseline = pair.node, pair.sampler.reset()
    answers: queue.Queue = queue.Queue()
    node.create_subscription('colvlm/msg/Answer', 'colvlm/answer', answers.put, 'answers')
    publisher = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    _wait_matched(publisher)
    query_type = node.message_type('colvlm/msg/Query')
    burst = uuid.uuid4().hex[:6]
    queries = [query_type(query_id=f'{burst}-{i}', question='What is written on the sign?')
               for i in range(count)]
    started = time.perf_counter()
    for query in queries:
        publisher.publish(query)
    published_ms = (time.perf_counter() - started) * 1e3
    received: dict[str, str] = {}
    deadline = time.monotonic() + WAIT_S
    while len(received) < count and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            answer = answers.get(timeout=1.0)
            if answer.query_id.startswith(f'{burst}-'):
                received.setdefault(answer.query_id, _status(answer))
    return {'answers received': len(received), 'of sent': count,
            'published within ms': round(published_ms, 1),
            'statuses': dict(Counter(received.values())), **pair.rss(baseline)}


def probe_asks(pair: Pair, env: dict, callers: int, processes: int = CALLER_PROCESSES) -> dict:
    """`callers` clients, spread over `processes` child processes (LOCALHOST discovery
    finds 32 participants per domain at most), call colvlm/ask at the same moment: replies
    received of callers."""
    import subprocess

    baseline = pair.sampler.reset()
    shares = [callers // processes + (i < callers % processes) for i in range(processes)]
    children = [subprocess.Popen([sys.executable, '-m', 'tools.abuse', '--ask-child',
                                  str(share)], env=env, cwd=REPO_ROOT, text=True, bufsize=1,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
                for share in shares if share]
    try:
        ready = sum(int(child.stdout.readline().split()[-1] or 0) for child in children)
        started = time.monotonic()
        for child in children:
            child.stdin.write('go\n')
            child.stdin.flush()
        replies = [child.stdout.readline().strip() or 'nothing'
                   for child, share in zip(children, shares, strict=False)
                   for _ in range(share)]
        last_s = time.monotonic() - started
    finally:
        for child in children:
            with contextlib.suppress(Exception):
                child.kill()
                child.wait(10)
    statuses = Counter(replies)
    return {'callers ready': ready, 'processes': len(children),
            'replies': callers - statuses.get('nothing', 0) - statuses.get('TIMEOUT', 0),
            'of callers': callers, 'statuses': dict(statuses),
            'last reply after s': round(last_s, 1), **pair.rss(baseline)}


def ask_child(count: int) -> int:
    """`count` callers of probe_asks in one process, each a node of its own: 'ready N' once
    their services matched, all ask on 'go', one status name a line (TIMEOUT when no reply
    came within WAIT_S)."""
    from colvlm_msgs.transport.port import ServiceTimeout

    nodes = [_node(f'caller_{os.getpid()}_{i}') for i in range(count)]
    clients = [node.create_client('colvlm/srv/Ask', 'colvlm/ask') for node in nodes]
    ready = sum(client.wait_for_service(WAIT_S) for client in clients)
    print(f'ready {ready}', flush=True)
    sys.stdin.readline()
    lock = threading.Lock()

    def call(node, client) -> None:
        request = node.service_type('colvlm/srv/Ask').Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question = 'What is written on the sign?'
        try:
            line = _status(client.call(request, timeout=WAIT_S).answer)
        except ServiceTimeout:
            line = 'TIMEOUT'
        with lock:
            print(line, flush=True)

    threads = [threading.Thread(target=call, args=pair) for pair in zip(nodes, clients,
                                                                        strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for node in nodes:
        node.shutdown()
    return 0


def probe_layers(pair: Pair, count: int = LAYERS, size: int = LAYER_BYTES) -> dict:
    """`count` token layers of `size` payload bytes for one stamp: RSS growth, still OK."""
    node, start, baseline = pair.node, len(pair.server.lines), pair.sampler.reset()
    publisher = node.create_publisher('colvlm/msg/TokenLayer', 'colvlm/token_layers',
                                      'token_layers')
    _wait_matched(publisher)
    layer = node.message_type('colvlm/msg/TokenLayer')(
        codec_id='pca4-tower-128-000000000000', layer_count=4, token_count=64, token_dim=128,
        coefficient_count=4, bits=8, scale=1.0, payload=list(bytes(size)))
    stamps.fill(layer.header.stamp, time.time_ns())
    started = time.perf_counter()
    for index in range(count):
        layer.layer_index = index % 256
        publisher.publish(layer)
    published_s = time.perf_counter() - started
    time.sleep(2.0)
    answer = pair.ask()
    return {'layers sent': count, 'payload bytes each': size,
            'published within s': round(published_s, 1),
            'refusal lines': sum('token layer' in t for t in pair.server.lines[start:]),
            'answer after': _status(answer), **pair.counts(), **pair.rss(baseline)}


def run_probes(chosen: list[str], env: dict, callers: int, transport: str = 'dds') -> dict:
    """Each chosen probe's figures, against one server and edge pair."""
    pair, figures = Pair(env, transport), {}
    try:
        pair.start()
        figures['server RSS at start MB'] = round(pair.sampler.rss_mb(), 1)
        for name in chosen:
            started = time.monotonic()
            if name == 'asks':
                figures[name] = probe_asks(pair, env, callers)
            else:
                figures[name] = globals()[f'probe_{name}'](pair)
            figures[name]['probe s'] = round(time.monotonic() - started, 1)
    finally:
        pair.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--probes', default=','.join(PROBES),
                        help=f'comma-separated, of {PROBES + EDGE_PROBES}')
    parser.add_argument('--callers', type=int, default=60, help='processes of probe asks')
    parser.add_argument('--transport', choices=('dds', 'ros'), default='dds',
                        help="the server's and the edge's (ros: in a sourced ROS 2 "
                             'environment); the probes speak dds')
    parser.add_argument('--ask-child', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ask_child:
        return ask_child(args.ask_child)
    chosen = [p.strip() for p in args.probes.split(',') if p.strip()]
    unknown = sorted(set(chosen) - set(PROBES + EDGE_PROBES))
    if unknown:
        parser.error(f'unknown probe(s) {unknown}; choose from {PROBES + EDGE_PROBES}')
    server_probes = [p for p in chosen if p in PROBES]
    if server_probes:
        inherited = os.environ.get('PYTHONPATH', '')  # a sourced ROS 2's, for --transport ros
        env = probe_env(200 + os.getpid() % 30)
        if args.transport == 'ros' and inherited:
            env['PYTHONPATH'] = f'{REPO_ROOT}{os.pathsep}{inherited}'
        figures = run_probes(server_probes, env, args.callers, args.transport)
        for name, value in figures.items():
            print(f'{name}: {value}', flush=True)
    edge_probes = [p for p in chosen if p in EDGE_PROBES]
    if edge_probes:
        from tools import abuse_edge

        return abuse_edge.main(['--probes', ','.join(edge_probes)])
    return 0


if __name__ == '__main__':
    sys.exit(main())
