"""The server node: the two-stage pipeline behind `colvlm/query` and `colvlm/ask`.

It keeps the newest global frames of one camera, or of several (`views.cameras`); an image is
usable once its FrameGeometry, same stamp, has arrived too. It queues questions for one worker
thread running `TwoStagePipeline`, fetches crops from the edge's `colvlm/crop_roi`, and fills
every field of the Answer. Queries under policy 'layers' are answered from the token layers
the edge sends on `colvlm/token_layers` instead, asking `colvlm/request_layers` for more.

With several cameras, a query that names none is answered from the views selected for it
(colvlm_server/views.py): named in the question, or best scored by the edges'
`colvlm/score_view`. Only their frames are asked for with `colvlm/request_frame`, and the
surest of their answers is kept.

Every query gets exactly one Answer: a bad request, a lost edge, bad layers or a failing model
is a status on it, never a stopped node. Loading the model is the caller's job (server_cli);
the token codecs (small files) are loaded here.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import contextlib
from dataclasses import dataclass, replace
import queue
import threading
import time

from colvlm_models.vlm import resolve_model
from colvlm_msgs import stamps
from colvlm_msgs.geometry import GlobalGeometry
from colvlm_msgs.image_codec import ImageDecodeError, decode_image
from colvlm_msgs.token_codec import EncodedLayer
from colvlm_msgs.transport.port import Node, ServiceTimeout
from colvlm_server.edge_link import (
    FRAMES_KEPT,
    EdgeCropSource,
    EdgeLayerSource,
    FrameStore,
    LayerStore,
    fill_roi,
)
from colvlm_server.gate import make_policy
from colvlm_server.parameters import MAX_NEW_TOKENS, SERVER_POLICIES, ServerConfig
from colvlm_server.pipeline import PipelineResult, TwoStagePipeline
from colvlm_server.token_layers import LayerOptions, load_codecs, model_codec_paths
from colvlm_server.views import (
    ViewScore,
    most_confident,
    needs_scores,
    select_views,
    strip_view_names,
    view_name,
)

# Answer.msg's STATUS_* and DECISION_* constants, by name.
STATUS_NAMES = ('OK', 'CROP_UNAVAILABLE', 'LAYERS_UNAVAILABLE', 'NO_FRAME', 'STALE_FRAME',
                'BUSY', 'BAD_REQUEST', 'MODEL_ERROR', 'TIMEOUT')
DECISION_NAMES = ('NONE', 'GLOBAL', 'LOCAL_CROP', 'TOKEN_LAYERS', 'FALLBACK')
_PIPELINE_STATUS = {'ok': 'OK', 'crop_unavailable': 'CROP_UNAVAILABLE',
                    'layers_unavailable': 'LAYERS_UNAVAILABLE', 'model_error': 'MODEL_ERROR'}
_DECISION = {'none': 'NONE', 'global': 'GLOBAL', 'local_crop': 'LOCAL_CROP',
             'token_layers': 'TOKEN_LAYERS', 'fallback': 'FALLBACK'}


class Rejected(Exception):
    """A query answered without running the pipeline: `status` is an Answer STATUS_ name."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    query: object
    reply: Callable
    received: float      # perf_counter s
    received_ns: int     # wall clock ns
    policy: str
    held: tuple | None   # (Frame, frame_id); None = ask the edge for a fresh one
    link: CameraLink | None  # None = select views (several cameras, none named)


class CameraLink:
    """What the server holds and asks of one camera's edge: its frames and token layers, and
    clients of its crop, layer, frame and view-score services."""

    def __init__(self, node: Node, prefix: str, config: ServerConfig, *, scores: bool):
        prefix = prefix.rstrip('/')
        names = {key: f'{prefix}/colvlm/{key}' if prefix else f'colvlm/{key}'
                 for key in ('global/compressed', 'global/geometry', 'crop_roi',
                             'request_frame', 'token_layers', 'request_layers', 'score_view')}
        self.topics = names
        full = node.resolve_name(names['global/compressed'])
        self.camera = full[:-len('/colvlm/global/compressed')] or '/'
        self.name = view_name(self.camera)  # '' for the root namespace
        self.aliases = {prefix.strip('/'), self.camera.strip('/'), self.name}
        self.frames = FrameStore(self.camera)
        self.crops = EdgeCropSource(node, names['crop_roi'], config)
        self.layers = LayerStore(self.camera)
        self.layer_source = EdgeLayerSource(node, names['request_layers'], config)
        self.frame_client = node.create_client('colvlm/srv/RequestFrame',
                                               names['request_frame'])
        self.score_client = node.create_client('colvlm/srv/ScoreView', names['score_view']) \
            if scores else None


class ServerNode:
    """The server side of colvlm for one or several cameras on one transport node."""

    def __init__(self, node: Node, config: ServerConfig, pipeline: TwoStagePipeline, *,
                 model_id: str = ''):
        self.node, self.config, self.pipeline = node, config, pipeline
        self.model_id = model_id or getattr(pipeline.backend, 'model_id', '')
        views = config.views
        prefixes = views.cameras or (config.default_camera,)
        self.links = [CameraLink(node, prefix, config, scores=views.several)
                      for prefix in prefixes]
        self.several = views.several
        self._by_name = {link.name: link for link in self.links}
        default = self.links[0]
        # The first camera's stores stay reachable under the one-camera names.
        self.camera, self.frames, self.layers = default.camera, default.frames, default.layers
        self.crops, self.layer_source = default.crops, default.layer_source
        self._scoring = ThreadPoolExecutor(len(self.links), thread_name_prefix='score') \
            if self.several else None
        self.layer_options = LayerOptions(load_codecs(codec_paths(config)), config.layers_step,
                                          config.layers_crop)
        self.policies = {name: make_policy(name, config.gate) for name in SERVER_POLICIES}
        self.counts: dict[str, int] = {}
        self.dropped_frames = 0
        self._lock = threading.Lock()        # the counts and dropped_frames
        self._admission = threading.Lock()   # queueing against stopping
        self._stop = threading.Event()
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=config.queue_max_size)
        self._answer_type = node.message_type('colvlm/msg/Answer')
        self._ask_type = node.service_type('colvlm/srv/Ask')
        self._frame_type = node.service_type('colvlm/srv/RequestFrame')
        self._score_type = node.service_type('colvlm/srv/ScoreView') if self.several else None
        self._worker = threading.Thread(target=self._work, name='server-worker', daemon=True)
        self._worker.start()
        self._answers = node.create_publisher('colvlm/msg/Answer', 'colvlm/answer', 'answers')
        for link in self.links:
            self._subscribe(link)
        node.create_subscription('colvlm/msg/Query', 'colvlm/query', self.on_query, 'queries')
        node.create_service('colvlm/srv/Ask', 'colvlm/ask', self.serve_ask)
        node.create_timer(config.status_period_s, self.log_status)

    # Frames in
    def _subscribe(self, link: CameraLink) -> None:
        topics, node = link.topics, self.node
        node.create_subscription('sensor_msgs/msg/CompressedImage', topics['global/compressed'],
                                 lambda message: self.on_image(message, link), 'frames')
        node.create_subscription('colvlm/msg/FrameGeometry', topics['global/geometry'],
                                 lambda message: self.on_geometry(message, link), 'frame_info')
        node.create_subscription('colvlm/msg/TokenLayer', topics['token_layers'],
                                 lambda message: self.on_token_layer(message, link),
                                 'token_layers')

    def on_image(self, message, link: CameraLink | None = None) -> None:
        link = link or self.links[0]
        try:
            image = decode_image(bytes(message.data))  # (h, w, 3) uint8 BGR
        except ImageDecodeError as error:
            self._drop_frame(f'{link.camera}: {error}')
            return
        self._add(link.frames.add_image, stamps.to_ns(message.header.stamp), image,
                  message.header.frame_id, self.node.serialized_size(message))

    def on_geometry(self, message, link: CameraLink | None = None) -> None:
        link = link or self.links[0]
        geometry = GlobalGeometry(
            message.original_width, message.original_height, message.global_width,
            message.global_height, message.preprocess, message.scale_x, message.scale_y,
            message.offset_x, message.offset_y)
        self._add(link.frames.add_geometry, stamps.to_ns(message.header.stamp), geometry,
                  self.node.serialized_size(message))

    def on_token_layer(self, message, link: CameraLink | None = None) -> None:
        """Held as it came: the pipeline checks layers against its codecs per query."""
        (link or self.links[0]).layers.add(
            stamps.to_ns(message.header.stamp), EncodedLayer.from_message(message),
            self.node.serialized_size(message), message.header.frame_id)

    def _add(self, add: Callable, *args) -> None:
        try:
            add(*args)
        except ValueError as error:
            self._drop_frame(str(error))

    def _drop_frame(self, why: str) -> None:
        with self._lock:
            self.dropped_frames += 1
        self.node.logger.warning(f'frame dropped: {why}')

    # Queries in
    def on_query(self, query) -> None:
        self.submit(query, self._answers.publish)

    def serve_ask(self, request):
        answered: list = []
        done = threading.Event()

        def reply(answer) -> None:
            answered.append(answer)
            done.set()

        self.submit(request.query, reply)
        done.wait()  # every path through submit() replies exactly once
        return self._ask_type.Response(answer=answered[0])

    def submit(self, query, reply: Callable) -> None:
        """Queue `query` for the worker, or answer it now (bad request, no frame, busy)."""
        received, received_ns = time.perf_counter(), self.node.now_ns()
        policy = query.policy or self.config.policy
        try:
            link = self._check(query, policy)
            named_frame = bool(stamps.to_ns(query.frame_stamp))
            # Several cameras' edges publish on request: their newest frames are fetched by
            # the worker; a frame named by stamp must be held already.
            held = None
            if link is not None and not query.fresh_frame and (named_frame or not self.several):
                held = self._frame_for(query, received_ns, policy, link)
            with self._admission:  # nothing is queued once stop() has begun
                if self._stop.is_set():
                    raise Rejected('BUSY', 'the server is shutting down')
                self._jobs.put_nowait(_Job(query, reply, received, received_ns, policy, held,
                                           link))
        except Rejected as rejection:
            self._reject(query, policy, reply, received, rejection)
        except queue.Full:
            self._reject(query, policy, reply, received, Rejected(
                'BUSY', f'{self.config.queue_max_size} queries are already waiting'))

    def _check(self, query, policy: str) -> CameraLink | None:
        """The camera the query is about (None: views to select), or Rejected."""
        limit = self.config.question_max_chars
        if not query.question.strip():
            raise Rejected('BAD_REQUEST', 'empty question')
        if len(query.question) > limit:
            raise Rejected('BAD_REQUEST', f'question of {len(query.question)} characters; at '
                                          f'most {limit} are accepted (question.max_chars)')
        if policy not in SERVER_POLICIES:
            raise Rejected('BAD_REQUEST', f'unknown policy {policy!r}; this server knows '
                                          f'{", ".join(SERVER_POLICIES)}')
        if query.max_new_tokens > MAX_NEW_TOKENS:
            raise Rejected('BAD_REQUEST', f'max_new_tokens must be <= {MAX_NEW_TOKENS}, got '
                                          f'{query.max_new_tokens}')
        wanted = query.camera.strip('/')
        if not wanted and self.several and stamps.to_ns(query.frame_stamp):
            raise Rejected('BAD_REQUEST', 'a frame_stamp names a frame of one camera: set the '
                                          "query's camera too (this server has several)")
        if not wanted:
            return None if self.several else self.links[0]
        for link in self.links:
            if wanted in link.aliases:
                return link
        known = ', '.join(repr(link.camera) for link in self.links)
        raise Rejected('BAD_REQUEST', f'unknown camera {query.camera!r}; this server answers '
                                      f'about {known}')

    @staticmethod
    def _store(policy: str, link: CameraLink) -> FrameStore | LayerStore:
        """Where the frames a policy answers about are held: token layers for 'layers'."""
        return link.layers if policy == 'layers' else link.frames

    def _frame_for(self, query, received_ns: int, policy: str, link: CameraLink) -> tuple:
        wanted = stamps.to_ns(query.frame_stamp)
        store = self._store(policy, link)
        what = 'token layers' if store is link.layers else 'frame'
        if wanted:
            held = store.get(wanted)
            if held is None:
                raise Rejected('NO_FRAME', f'{what} {wanted} is not held (only the newest '
                                           f'{FRAMES_KEPT} are)')
            return held
        held = store.latest()
        if held is None:
            hint = ' (does the edge run with layers.enabled?)' if store is link.layers else ''
            raise Rejected('NO_FRAME', f'no {what} from camera {link.camera!r} yet{hint}')
        age_s = (received_ns - held[0].stamp_ns) / 1e9
        max_age_s = self.config.frame_max_age_s
        if max_age_s and age_s > max_age_s:
            raise Rejected('STALE_FRAME', f'the newest frame is {age_s:.1f} s old '
                                          f'(frame.max_age_s {max_age_s:g})')
        return held

    # The worker
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            self._run(job)

    def _run(self, job: _Job) -> None:
        answer = self._new_answer(job.query, job.policy, job.link)
        answer.queue_ms = (time.perf_counter() - job.received) * 1e3
        try:
            if job.link is None:
                self._answer_views(job, answer)
            elif self.several and job.held is None and not job.query.fresh_frame:
                answer.views_sent, answer.view_selection = [job.link.name], 'query'
                frame, frame_id = self._view_frame(job, job.link, None)
                self._fill(answer, self._answer_in(job, job.link, frame), frame, frame_id)
            else:
                frame, frame_id = job.held or self._fresh_frame(job.received_ns, job.policy,
                                                                job.link)
                self._fill(answer, self._answer_in(job, job.link, frame), frame, frame_id)
        except Rejected as rejection:
            answer.status = getattr(self._answer_type, f'STATUS_{rejection.status}')
            answer.status_message = str(rejection)
        except Exception as error:  # the node keeps serving whatever one query does
            text = str(error).strip().splitlines()
            line = f'{type(error).__name__}: {text[0] if text else repr(error)}'
            self.node.logger.error(f'query {job.query.query_id!r} failed: {line}')
            answer.status = self._answer_type.STATUS_MODEL_ERROR
            answer.status_message = f'internal error: {line}'
            answer.answer, answer.decision = '', self._answer_type.DECISION_NONE
        self._send(job.reply, answer, job.received)

    def _answer_in(self, job: _Job, link: CameraLink, frame,
                   question: str | None = None) -> PipelineResult:
        """The pipeline's answer about one camera's frame (or token layers)."""
        policy = self.policies[job.policy]
        question = job.query.question if question is None else question
        with self._token_limit(job.query.max_new_tokens):
            if job.policy == 'layers':
                frame = replace(frame, geometry=link.frames.geometry(frame.stamp_ns))
                return self.pipeline.answer_layers(question, frame, link.layer_source, policy,
                                                   self.layer_options, crops=link.crops)
            return self.pipeline.answer(question, frame, link.crops, policy)

    def _answer_views(self, job: _Job, answer) -> None:
        """Select views, get only their frames, answer about each, keep the surest answer;
        every byte and millisecond of the selection is on the Answer."""
        started = time.perf_counter()
        question = job.query.question
        names = [link.name for link in self.links]
        scores, score_up, score_down = {}, 0, 0
        if needs_scores(question, names, self.config.views):
            scores, score_up, score_down = self._score_views(question)
        selection = select_views(question, names, self.config.views, scores)
        if self.config.views.strip_names:
            question = strip_view_names(question, names)
        answer.select_ms = (time.perf_counter() - started) * 1e3
        answer.view_selection = selection.how
        answered, missing = [], []
        for name in selection.views:
            link = self._by_name[name]
            try:
                frame, frame_id = self._view_frame(job, link, scores.get(name))
            except Rejected as rejection:
                missing.append(f'{name}: {rejection}')
                continue
            answered.append((link, frame, frame_id,
                             self._answer_in(job, link, frame, question)))
        answer.uplink_score_bytes = score_up
        if not answered:  # the scores still crossed the link
            answer.uplink_bytes, answer.downlink_bytes = score_up, score_down
            raise Rejected('NO_FRAME', f'no frame from the selected views ({selection.how}: '
                                       f'{"; ".join(missing)})')
        best = most_confident([result for *_, result in answered])
        link, frame, frame_id, result = answered[best]
        self._fill(answer, result, frame, frame_id)
        answer.camera = link.camera
        answer.views_sent = [link.name] + [other.name for other, *_ in answered
                                           if other is not link]
        for other, _, _, extra in answered:  # every view's bytes crossed the link
            if other is not link:
                answer.uplink_global_bytes += extra.global_bytes
                answer.uplink_crop_bytes += extra.crop_bytes
                answer.uplink_layer_bytes += extra.layer_bytes
                answer.uplink_bytes += extra.uplink_bytes
                answer.downlink_bytes += extra.downlink_bytes
        answer.uplink_bytes += score_up
        answer.downlink_bytes += score_down
        note = f'views {", ".join(answer.views_sent)} by {selection.how} ({selection.reason})'
        if missing:
            note += f'; without {"; ".join(missing)}'
        answer.status_message = f'{answer.status_message}; {note}' if answer.status_message \
            else note

    def _score_views(self, question: str) -> tuple[dict[str, ViewScore], int, int]:
        """Every edge's colvlm/score_view at once, within views.score_timeout_s together:
        scores by view name, uplink and downlink bytes."""
        timeout_s = self.config.views.score_timeout_s
        request = self._score_type.Request(question=question)
        request_bytes = self.node.serialized_size(request)

        def ask(link: CameraLink):
            try:
                return link.score_client.call(request, timeout=timeout_s)
            except ServiceTimeout as error:
                return error

        futures = {link.name: self._scoring.submit(ask, link) for link in self.links}
        scores, up, down = {}, 0, 0
        for name, future in futures.items():
            response = future.result()
            down += request_bytes
            if isinstance(response, Exception):
                scores[name] = ViewScore(None, error=str(response))
                continue
            up += self.node.serialized_size(response)
            if not response.success:
                scores[name] = ViewScore(None, error=f'the edge refused: '
                                                     f'{response.status_message}')
            else:
                scores[name] = ViewScore(None if response.abstained else float(response.score),
                                         stamps.to_ns(response.frame_stamp), response.concept)
        return scores, up, down

    def _view_frame(self, job: _Job, link: CameraLink, score: ViewScore | None) -> tuple:
        """A selected view's frame: the newest held one when it is fresh and not older than
        the frame its edge scored, else one asked for with colvlm/request_frame."""
        scored_ns = score.stamp_ns if score is not None else 0
        if not job.query.fresh_frame:
            held = self._store(job.policy, link).latest()
            max_age_s = self.config.frame_max_age_s
            if held is not None and held[0].stamp_ns >= scored_ns and (
                    not max_age_s or job.received_ns - held[0].stamp_ns <= max_age_s * 1e9):
                return held
            return self._fresh_frame(max(scored_ns - 1, 0), job.policy, link)
        return self._fresh_frame(job.received_ns, job.policy, link)

    def _fresh_frame(self, newer_than_ns: int, policy: str, link: CameraLink) -> tuple:
        """A frame the edge took after `newer_than_ns`, asked for with colvlm/request_frame,
        once the policy's store holds it."""
        store = self._store(policy, link)
        timeout_s = self.config.fresh_frame_timeout_s
        deadline = time.monotonic() + timeout_s
        request = self._frame_type.Request()
        stamps.fill(request.newer_than, newer_than_ns)
        response = None
        while response is None or not response.success:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Rejected('NO_FRAME', f'no fresh frame from the edge of {link.camera!r} '
                                           f'within {timeout_s:g} s')
            try:
                response = link.frame_client.call(request, timeout=remaining)
            except ServiceTimeout as error:
                raise Rejected('NO_FRAME', f'no fresh frame: {error}') from None
            if not response.success:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        wanted = stamps.to_ns(response.frame_stamp)
        held = store.wait_for(wanted, deadline - time.monotonic())
        if held is None:
            raise Rejected('NO_FRAME', f'fresh frame {wanted} did not arrive within '
                                       f'{timeout_s:g} s')
        return held

    @contextlib.contextmanager
    def _token_limit(self, limit: int):
        """A query's own max_new_tokens, for its passes only; the worker is the backend's
        only user, so changing the setting for one query cannot leak into another."""
        backend = self.pipeline.backend
        default = getattr(backend, 'max_new_tokens', None)
        if not limit or default is None:
            yield
            return
        backend.max_new_tokens = int(limit)
        try:
            yield
        finally:
            backend.max_new_tokens = default

    # Answers out
    def _new_answer(self, query, policy: str, link: CameraLink | None = None):
        gate = self.config.gate
        camera = link.camera if link else '' if self.several else self.camera
        return self._answer_type(
            query_id=query.query_id, question=query.question, policy=policy,
            camera=camera, model_id=self.model_id, gate_aggregate=gate.aggregate,
            gate_threshold=gate.threshold, renyi_alpha=gate.renyi_alpha)

    def _fill(self, answer, result: PipelineResult, frame, frame_id: str) -> None:
        kind = self._answer_type
        answer.header.frame_id = frame_id
        stamps.fill(answer.frame_stamp, frame.stamp_ns)
        answer.status = getattr(kind, f'STATUS_{_PIPELINE_STATUS[result.status]}')
        answer.decision = getattr(kind, f'DECISION_{_DECISION[result.decision]}')
        answer.answer, answer.status_message = result.answer, result.reason
        for metrics, done in ((answer.first_pass, result.first),
                              (answer.second_pass, result.second)):
            if done is None:
                continue
            metrics.ran, metrics.answer = True, done.answer
            metrics.input_tokens, metrics.output_tokens = done.input_tokens, done.output_tokens
            metrics.gflops, metrics.latency_ms = done.flops / 1e9, done.latency_ms
            for name, value in (done.gate.pass_fields().items() if done.gate else ()):
                setattr(metrics, name, value)
        if result.crop_boxes:  # the box actually cut; none when no crop was used
            box = result.crop_boxes[0]
            fill_roi(answer.roi, box.x0, box.y0, box.x1, box.y1)
        answer.uplink_global_bytes, answer.uplink_crop_bytes = (result.global_bytes,
                                                                result.crop_bytes)
        answer.uplink_layer_bytes = result.layer_bytes
        answer.uplink_bytes, answer.downlink_bytes = result.uplink_bytes, result.downlink_bytes
        answer.locate_ms, answer.fetch_ms = result.locate_ms, result.fetch_ms
        if result.status in ('crop_unavailable', 'layers_unavailable'):
            self.node.logger.warning(f'query {answer.query_id!r}: {result.reason}')

    def _reject(self, query, policy: str, reply: Callable, received: float,
                rejection: Rejected) -> None:
        answer = self._new_answer(query, policy)
        answer.status = getattr(self._answer_type, f'STATUS_{rejection.status}')
        answer.status_message = str(rejection)
        self._send(reply, answer, received)

    def _send(self, reply: Callable, answer, received: float) -> None:
        stamps.fill(answer.header.stamp, self.node.now_ns())
        answer.total_ms = (time.perf_counter() - received) * 1e3
        with self._lock:
            name = status_name(self._answer_type, answer.status)
            self.counts[name] = self.counts.get(name, 0) + 1
        try:
            reply(answer)
        except Exception as error:  # a closing transport; the count above still holds
            self.node.logger.error(f'answer to {answer.query_id!r} not sent: {error!r}')

    # Lifetime
    def stop(self) -> None:
        """Finish the running query, answer the waiting ones busy, stop the worker."""
        with self._admission:
            self._stop.set()
        self._worker.join(timeout=60.0)
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            self._reject(job.query, job.policy, job.reply, job.received,
                         Rejected('BUSY', 'the server is shutting down'))
        if self._scoring is not None:
            self._scoring.shutdown(wait=False, cancel_futures=True)

    def log_status(self) -> None:
        with self._lock:
            counts = ', '.join(f'{name.lower()} {n}' for name, n in sorted(self.counts.items()))
        frames = []
        for link in self.links:
            latest = link.frames.latest()
            age = f', newest {(self.node.now_ns() - latest[0].stamp_ns) / 1e9:.1f} s old' \
                if latest else ''
            where = f'{link.name} ' if self.several else ''
            frames.append(f'{where}{link.frames.completed}{age}')
        self.node.logger.info(
            f'answered: {counts or "nothing"}; queue {self._jobs.qsize()}/'
            f'{self.config.queue_max_size}; frames {"; ".join(frames)}; dropped '
            f'frames {self.dropped_frames}')


def codec_paths(config: ServerConfig) -> list:
    """The token codec artifacts `layers.codec` names, or those next to a local model."""
    if config.layers_codec.strip():
        return [part.strip() for part in config.layers_codec.split(',') if part.strip()]
    return model_codec_paths(resolve_model(config.model))


def status_name(answer_type, status: int) -> str:
    """'OK', 'BUSY', ... for an Answer status value (constants by name: rclpy's classes keep
    them on their metaclass, where dir() does not list them)."""
    for name in STATUS_NAMES:
        if getattr(answer_type, f'STATUS_{name}') == status:
            return name
    return str(status)
