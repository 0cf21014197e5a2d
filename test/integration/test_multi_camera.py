"""Multi-camera view selection over real DDS, end to end: two edges (front, left),
each a process with its own camera folder and the bundled view probe, publishing only on
request; one server with views.cameras. Only the selected view's global frame crosses.
Named views, bad requests, lost edges and the byte accounting in detail are tested on the
in-memory transport in test/unit/test_multi_camera_node.py.
"""

from __future__ import annotations

import threading
import uuid

from conftest import module_dds_env
import cv2
from processes import START_TIMEOUT_S, colvlm
import pytest

from colvlm_bench.glyphvqa.views import load_views_dataset, write_views_dataset
from colvlm_edge.view_score import load_view_scorer
from colvlm_msgs import stamps
from colvlm_msgs.constants import Status
from colvlm_msgs.transport import create_node
from colvlm_server.parameters import SERVER_PARAMETERS

VIEWS = ('front', 'left')  # two edges suffice to see that only one frame crosses
VIEWS_MIN_SCORE = SERVER_PARAMETERS.specs['views.min_score'].default
ROOT = 'robot'
TIMEOUT_S = 60.0


@pytest.fixture(scope='module')
def env():
    with module_dds_env() as env:
        yield env


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    """One scene's text question whose evidence is not in the first view, and one folder per
    camera holding that camera's image. The probe's own accuracy is test_view_score's
    business; here the question is one the edges' scores select its view for (checked with
    the same scorer in this process), so that what is tested is the wire."""
    root = tmp_path_factory.mktemp('views')
    data = write_views_dataset(root / 'data', 12, seed=5151, views=VIEWS)
    scorer = load_view_scorer('bundled')

    def selected(item) -> bool:
        scores = {view: scorer.score(cv2.imread(str(data / image)), item.question.question)
                  .score for view, image in item.views}
        best = max(scores, key=scores.get)
        return best == item.view and scores[best] >= VIEWS_MIN_SCORE
    item = next(q for q in load_views_dataset(data)
                if q.question.kind == 'text' and q.view != VIEWS[0] and selected(q))
    folders = {}
    for view, image in item.views:
        folder = root / view
        folder.mkdir()
        cv2.imwrite(str(folder / 'frame.png'), cv2.imread(str(data / image)))
        folders[view] = folder
    return item, folders


@pytest.fixture(scope='module')
def edges(env, scene):
    _, folders = scene
    processes = {view: colvlm('edge', '--namespace', f'{ROOT}/{view}', '--source',
                              str(folders[view]), '-p', 'source.loop=true', '-p',
                              'source.fps=5.0', '-p', 'publish.mode=on_request', '-p',
                              'view.enabled=true', '-p', f'frame_id={view}', env=env,
                              name=f'edge {view}')
                 for view in VIEWS}
    try:
        for process in processes.values():
            process.wait_for(r'\bready: .*view scores on', START_TIMEOUT_S)
        yield processes
    finally:
        for process in processes.values():
            process.kill()


@pytest.fixture(scope='module')
def server(env, edges):
    cameras = '[' + ','.join(f'/{ROOT}/{view}' for view in VIEWS) + ']'
    process = colvlm('server', '--namespace', ROOT, '-p', f'views.cameras={cameras}',
                     '-p', 'policy=global', '-p', 'views.score_timeout_s=2.0', env=env)
    try:
        process.wait_for(r'\bready: model', START_TIMEOUT_S)
        yield process
    finally:
        process.kill()


class ViewsClient:
    """Asks the server; counts the global frames each camera publishes."""

    def __init__(self):
        self.node = create_node(f'test_views_{uuid.uuid4().hex[:6]}', ROOT)
        self.frames = {view: 0 for view in VIEWS}
        self._lock = threading.Lock()
        for view in VIEWS:
            self.node.create_subscription(
                'sensor_msgs/msg/CompressedImage', f'/{ROOT}/{view}/colvlm/global/compressed',
                lambda message, view=view: self._count(view), 'frames')
        self.ask_type = self.node.service_type('colvlm/srv/Ask')
        self._ask = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')
        self.score_type = self.node.service_type('colvlm/srv/ScoreView')

    def _count(self, view: str) -> None:
        with self._lock:
            self.frames[view] += 1

    def counts(self) -> dict[str, int]:
        threading.Event().wait(0.5)  # frames published with the answer are in by now
        with self._lock:
            return dict(self.frames)

    def ask(self, question: str, camera: str = '', frame_stamp: int = 0,
            fresh_frame: bool = False):
        request = self.ask_type.Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question, request.query.camera = question, camera
        request.query.fresh_frame = fresh_frame
        stamps.fill(request.query.frame_stamp, frame_stamp)
        answer = self._ask.call(request, timeout=TIMEOUT_S).answer
        assert answer.query_id == request.query.query_id
        return answer

    def score(self, view: str, question: str):
        client = self.node.create_client('colvlm/srv/ScoreView',
                                         f'/{ROOT}/{view}/colvlm/score_view')
        return client.call(self.score_type.Request(question=question), timeout=TIMEOUT_S)


@pytest.fixture(scope='module')
def client(server):
    client = ViewsClient()
    yield client
    client.node.shutdown()


def test_only_the_best_scored_view_crosses_the_link(client, scene):
    item, _ = scene
    before = client.counts()
    answer = client.ask(item.question.question, fresh_frame=True)  # one new frame per view
    assert answer.status == Status.OK, answer.status_message
    assert list(answer.views_sent) == [item.view], answer.status_message
    assert answer.view_selection == 'learned'
    assert answer.camera == f'/{ROOT}/{item.view}'
    sent = {view: n - before[view] for view, n in client.counts().items()}
    assert sent == {view: int(view == item.view) for view in VIEWS}
    # Three score replies and one frame; the score replies are small next to the frame.
    assert 0 < answer.uplink_score_bytes < answer.uplink_global_bytes
    assert answer.uplink_bytes == (answer.uplink_global_bytes + answer.uplink_crop_bytes
                                   + answer.uplink_score_bytes)
    assert answer.select_ms > 0 and 'scores ' in answer.status_message
