"""Nodes on the in-memory transport for node tests: the real ServerNode and EdgeNode wired
through a MemoryBus, a scripted VLM instead of a model, and a client that asks.

A test builds a `Rig`, feeds frames to an edge with `Rig.feed` (the edge encodes and
publishes them as it does from a camera) and asks with `Rig.ask`. Everything runs in the
test's process in milliseconds; DDS end-to-end tests live in test/integration.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid

import numpy as np

from colvlm_edge.node import EdgeNode
from colvlm_edge.parameters import EDGE_PARAMETERS, EdgeConfig
from colvlm_edge.sources import Frame as CameraFrame
from colvlm_models.vlm import Generation, VlmBackend
from colvlm_msgs.constants import Status
from colvlm_msgs.transport.memory import MemoryBus, MemoryNode
from colvlm_server.node import ServerNode
from colvlm_server.parameters import SERVER_PARAMETERS, ServerConfig
from colvlm_server.pipeline import TwoStagePipeline

GRID = (4, 4)
TIMEOUT_S = 30.0
UNSURE = 'unsure'  # a question containing this word gets an unsure first pass

class ScriptedVlm(VlmBackend):
    """Sure about every question but those saying 'unsure' (until it sees a crop); answers
    'global' from one image and 'crop' from several. `failures` are raised (an Exception) or
    make NaN scores ('nan'), one per call, before it answers normally."""

    model_id, num_layers, image_size, grid = 'scripted', 2, (64, 64), GRID

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.calls: list[dict] = []
        self._lock = threading.Lock()

    def generate(self, images, question, *, attention_layer=None, max_new_tokens=None):
        with self._lock:
            self.calls.append({'images': len(images), 'max_new_tokens': max_new_tokens})
            failure = self.failures.pop(0) if self.failures else None
        if isinstance(failure, Exception):
            raise failure
        several = len(images) > 1
        logits = np.zeros((2, 8), np.float32)
        if several or UNSURE not in question:
            logits[:, 0] = 20.0  # min-entropy ~ 0
        if failure == 'nan':
            logits[0, 0] = np.nan
        attention = None
        if attention_layer is not None:
            attention = np.full((2, GRID[0] * GRID[1]), 0.01)
            attention[:, 5] = 1.0
        return Generation('crop' if several else 'global', logits, 10 + 16 * len(images),
                          16 * len(images), 2, 1e6, 0.001, attention)

    def image_attention(self, image, prompt, layer):
        return np.full((2, GRID[0] * GRID[1]), 0.05)

    def visual_tokens(self, image, split='tower'):
        """(64, 128) float32 tokens, the shape the bundled codec takes, from the pixels."""
        seed = int(np.asarray(image, np.uint8).sum()) % 2**32
        return np.random.default_rng(seed).normal(size=(64, 128)).astype(np.float32)

class ScriptedScorer:
    """An edge's view scorer with a fixed score for questions about a 'sign'; abstains on
    others, fails where `score` is an Exception."""

    def __init__(self, score):
        self._score = score

    def score(self, original, question: str, key=None):
        from colvlm_edge.view_score import ViewScore

        if isinstance(self._score, Exception):
            raise self._score
        if 'sign' not in question:
            return ViewScore(None, '', 0.001)
        return ViewScore(self._score, 'red sign', 0.001)


def server_config(node: MemoryNode, **overrides) -> ServerConfig:
    """The server's parameters as the node declares them, with `overrides` by name."""
    values = {'status.period_s': 3600.0, 'vicrop.method': 'att', **overrides}
    return ServerConfig.from_values(node.declare_parameters(SERVER_PARAMETERS, values))

def edge_config(node: MemoryNode, **overrides) -> EdgeConfig:
    values = {'status.period_s': 3600.0, 'global.width': 64, 'global.height': 64,
              'crop.max_requests': 1000, **overrides}
    return EdgeConfig.from_values(node.declare_parameters(EDGE_PARAMETERS, values))

def noise_image(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 BGR noise: compresses badly, so byte counts are not tiny."""
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)


class Rig:
    """A server node in `namespace`, edges per camera, and an asking client, on one bus."""

    def __init__(self, backend=None, *, namespace: str = 'cam0', cameras=(), edges=None,
                 edge_params: dict | None = None, scorers: dict | None = None,
                 tokens=None, **server_params):
        self.bus = MemoryBus()
        self.nodes: list[MemoryNode] = []
        self._stamps = itertools.count(time.time_ns())
        self.backend = backend or ScriptedVlm()
        server_node = self.node('server', namespace)
        self.layer_options = server_params.pop('layer_options', None)
        if cameras:
            server_params['views.cameras'] = list(cameras)
        config = server_config(server_node, **server_params)
        self.server = ServerNode(server_node, config,
                                 TwoStagePipeline(self.backend, config.gate, attention_layer=0,
                                                  vicrop_method=config.vicrop_method),
                                 layer_options=self.layer_options)
        self.edges: dict[str, EdgeNode] = {}
        for camera in (cameras or (namespace,)) if edges is None else edges:
            edge_node = self.node('edge', camera)
            self.edges[camera] = EdgeNode(edge_node, edge_config(edge_node,
                                                                 **(edge_params or {})),
                                          tokens, (scorers or {}).get(camera))
        client = self.node(f'client_{uuid.uuid4().hex[:6]}', namespace)
        self.client = client
        self._ask_type = client.service_type('colvlm/srv/Ask')
        self._ask = client.create_client('colvlm/srv/Ask', 'colvlm/ask')

    def node(self, name: str, namespace: str) -> MemoryNode:
        self.nodes.append(MemoryNode(name, namespace, bus=self.bus))
        return self.nodes[-1]

    def feed(self, camera: str | None = None, image=None, stamp_ns: int | None = None,
             wait: bool = True) -> int:
        """One camera frame into the edge of `camera`; waits until the server holds it
        (when the edge published it). Returns its stamp."""
        camera = camera or next(iter(self.edges))
        stamp_ns = next(self._stamps) if stamp_ns is None else stamp_ns
        edge = self.edges[camera]
        edge.on_frame(CameraFrame(stamp_ns, noise_image() if image is None else image,
                                  'camera'))
        if wait:
            link = next(link for link in self.server.links if camera.strip('/') in link.aliases)
            assert link.frames.wait_for(stamp_ns, TIMEOUT_S) is not None, 'frame never held'
        return stamp_ns

    @contextlib.contextmanager
    def cameras_running(self, period_s: float = 0.01):
        """Every edge reads a new frame (stamped now) each `period_s`, as from a camera."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(period_s):
                for camera in self.edges:
                    self.feed(camera, stamp_ns=time.time_ns(), wait=False)

        thread = threading.Thread(target=run, name='cameras', daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(TIMEOUT_S)

    def ask(self, question: str = 'What is written on the sign?', **fields):
        request = self._ask_type.Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question = question
        for name, value in fields.items():
            setattr(request.query, name, value)
        answer = self._ask.call(request, timeout=TIMEOUT_S).answer
        assert answer.query_id == request.query.query_id
        return answer

    def close(self) -> None:
        self.server.stop()
        for node in self.nodes:
            node.shutdown()

def status(answer) -> str:
    return Status(answer.status).name
