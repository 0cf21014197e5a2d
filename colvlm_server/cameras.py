"""What the server holds and asks of each camera's edge, and how a query gets its frame.

A `CameraLink` holds one camera's newest frames and token layers (edge_link's stores) and
clients of its crop, layer, frame and view-score services. Its frame methods say which frame a
query is answered about: one held (by stamp, or the newest if fresh enough), or one asked for
with `colvlm/request_frame` when none held is fresh enough (an edge whose source ended sends
its last frame again, so that frame is still answered about); a frame that cannot be had
within frame.fresh_timeout_s is `Rejected` with NO_FRAME or STALE_FRAME and the reason.
`score_views` asks every edge at once how relevant its newest frame is. It builds no answers
and runs no model.
"""

from __future__ import annotations

from concurrent.futures import Executor
import time

from colvlm_msgs import stamps
from colvlm_msgs.constants import Status
from colvlm_msgs.transport.port import Node, ServiceTimeout
from colvlm_server.edge_link import (
    FRAMES_KEPT,
    EdgeCropSource,
    EdgeLayerSource,
    FrameStore,
    LayerStore,
)
from colvlm_server.jobs import Rejected
from colvlm_server.parameters import ServerConfig
from colvlm_server.views import ViewScore, view_name

_TOPICS = ('global/compressed', 'global/geometry', 'crop_roi', 'request_frame', 'token_layers',
           'request_layers', 'score_view')
_RETRY_S = 0.05  # between request_frame calls the edge refused (no newer frame yet)


class CameraLink:
    """One camera's edge as the server sees it; `prefix` is its namespace ('' for the node's)."""

    def __init__(self, node: Node, prefix: str, config: ServerConfig, *, scores: bool):
        prefix = prefix.rstrip('/')
        self.topics = {key: f'{prefix}/colvlm/{key}' if prefix else f'colvlm/{key}'
                       for key in _TOPICS}
        full = node.resolve_name(self.topics['global/compressed'])
        self.camera = full[:-len('/colvlm/global/compressed')] or '/'
        self.name = view_name(self.camera)  # '' for the root namespace
        self.aliases = {prefix.strip('/'), self.camera.strip('/'), self.name}
        self.config = config
        self.frames = FrameStore(self.camera)
        self.layers = LayerStore(self.camera)
        self.crops = EdgeCropSource(node, self.topics['crop_roi'], config)
        self.layer_source = EdgeLayerSource(node, self.topics['request_layers'], config)
        self._frame_type = node.service_type('colvlm/srv/RequestFrame')
        self.frame_client = node.create_client('colvlm/srv/RequestFrame',
                                               self.topics['request_frame'])
        self.score_client = node.create_client('colvlm/srv/ScoreView',
                                               self.topics['score_view']) if scores else None

    def store(self, policy: str) -> FrameStore | LayerStore:
        """Where the frames a policy answers about are held: token layers for 'layers'."""
        return self.layers if policy == 'layers' else self.frames

    def held_frame(self, stamp_ns: int, received_ns: int, policy: str) -> tuple | None:
        """(frame, frame_id): the one named by `stamp_ns`, else the newest if fresh enough;
        None when there is none fresh enough (the worker then asks the edge for one)."""
        store = self.store(policy)
        if stamp_ns:
            held = store.get(stamp_ns)
            if held is None:
                what = 'token layers' if store is self.layers else 'frame'
                raise Rejected(Status.NO_FRAME, f'{what} {stamp_ns} is not held (only the '
                                                f'newest {FRAMES_KEPT} are)')
            return held
        held = store.latest()
        return held if held is not None and self._fresh(held, received_ns) else None

    def _fresh(self, held: tuple, received_ns: int) -> bool:
        max_age_s = self.config.frame_max_age_s
        return not max_age_s or received_ns - held[0].stamp_ns <= max_age_s * 1e9

    def view_frame(self, received_ns: int, policy: str, fresh: bool,
                   score: ViewScore | None = None) -> tuple:
        """A query's frame when none was chosen at admission: the newest held one when it is
        fresh and not older than the frame its edge scored, else the edge's newest, asked for
        with colvlm/request_frame (an edge whose source ended still has its last frame)."""
        if fresh:
            return self.fresh_frame(received_ns, policy)
        scored_ns = score.stamp_ns if score is not None else 0
        held = self.store(policy).latest()
        if held is not None and held[0].stamp_ns >= scored_ns and self._fresh(held, received_ns):
            return held
        try:
            return self.fresh_frame(max(scored_ns - 1, 0), policy)
        except Rejected as error:
            if held is None:
                raise
            raise self._stale(held, received_ns, error) from None

    def _stale(self, held: tuple, received_ns: int, error: Rejected) -> Rejected:
        """STALE_FRAME: the newest frame held is too old and the edge sent no newer one."""
        age_s = (received_ns - held[0].stamp_ns) / 1e9
        return Rejected(Status.STALE_FRAME, f'the newest frame is {age_s:.1f} s old (frame.'
                                            f'max_age_s {self.config.frame_max_age_s:g}); '
                                            f'{error}')

    def fresh_frame(self, newer_than_ns: int, policy: str) -> tuple:
        """A frame the edge took after `newer_than_ns` (0: its newest, whenever taken), asked
        for with colvlm/request_frame, once the policy's store holds it; waits at most
        frame.fresh_timeout_s."""
        timeout_s = self.config.fresh_frame_timeout_s
        deadline = time.monotonic() + timeout_s
        request = self._frame_type.Request()
        stamps.fill(request.newer_than, newer_than_ns)
        response = None
        what = 'token layers' if policy == 'layers' else 'frame'
        hint = ' (does the edge run with layers.enabled?)' if policy == 'layers' else ''
        while response is None or not response.success:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f' ({response.status_message})' if response is not None else ''
                raise Rejected(Status.NO_FRAME, f'no {what} from the edge of {self.camera!r} '
                                                f'within {timeout_s:g} s (frame.fresh_timeout_s)'
                                                f'{why}{hint}')
            try:
                response = self.frame_client.call(request, timeout=remaining)
            except ServiceTimeout as error:
                raise Rejected(Status.NO_FRAME, f'no fresh frame: {error}') from None
            if not response.success:
                time.sleep(min(_RETRY_S, max(0.0, deadline - time.monotonic())))
        wanted = stamps.to_ns(response.frame_stamp)
        held = self.store(policy).wait_for(wanted, deadline - time.monotonic())
        if held is None:
            raise Rejected(Status.NO_FRAME, f'{what} of frame {wanted} from the edge did not '
                                            f'arrive within {timeout_s:g} s{hint}')
        return held


def find_link(links: list[CameraLink], query, several: bool) -> CameraLink | None:
    """The camera `query` is about; None when views are to be selected; else Rejected."""
    wanted = query.camera.strip('/')
    if query.camera and not wanted:  # '/' names no camera; it is not "the only one"
        raise Rejected(Status.BAD_REQUEST, f'camera {query.camera!r} names no camera')
    if not wanted and several and stamps.to_ns(query.frame_stamp):
        raise Rejected(Status.BAD_REQUEST, 'a frame_stamp names a frame of one camera: set '
                                           "the query's camera too (this server has several)")
    if not wanted:
        return None if several else links[0]
    for link in links:
        if wanted in link.aliases:
            return link
    known = ', '.join(repr(link.camera) for link in links)
    raise Rejected(Status.BAD_REQUEST, f'unknown camera {query.camera!r}; this server answers '
                                       f'about {known}')


def score_views(node: Node, links: list[CameraLink], question: str, timeout_s: float,
                pool: Executor) -> tuple[dict[str, ViewScore], int, int]:
    """Every edge's colvlm/score_view at once, within `timeout_s` together: scores by view
    name, uplink and downlink bytes (a request counts whether or not it was answered)."""
    request = node.service_type('colvlm/srv/ScoreView').Request(question=question)
    request_bytes = node.serialized_size(request)

    def ask(link: CameraLink):
        try:
            return link.score_client.call(request, timeout=timeout_s)
        except ServiceTimeout as error:
            return error

    futures = {link.name: pool.submit(ask, link) for link in links}
    scores, up, down = {}, 0, 0
    for name, future in futures.items():
        response = future.result()
        down += request_bytes
        if isinstance(response, Exception):
            scores[name] = ViewScore(None, error=str(response))
            continue
        up += node.serialized_size(response)
        if not response.success:
            scores[name] = ViewScore(None, error=f'the edge refused: {response.status_message}')
        else:
            scores[name] = ViewScore(None if response.abstained else float(response.score),
                                     stamps.to_ns(response.frame_stamp), response.concept)
    return scores, up, down
