"""The server node: the two-stage pipeline behind `colvlm/query` and `colvlm/ask`, wired to a
transport port. Every query gets exactly one Answer: a bad request, a lost edge, bad layers or
a failing model is a status on it, never a stopped node.

This file holds callbacks and wiring only. What it wires: per camera a `CameraLink` (its
frames, token layers and the edge's services, cameras.py); admission and the one worker
(jobs.py); the pipeline (pipeline.py), which the node calls with each query's own
max_new_tokens; views selected and answered about when several cameras serve a query that
names none (view_answers.py); PipelineResult -> Answer (answers.py). The model and the token
codecs are loaded by the caller (cli.py) before the node offers anything.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
import threading
import time

from colvlm_msgs import stamps
from colvlm_msgs.constants import Status, first_line
from colvlm_msgs.transport.port import SERVICE_THREADS, Node
from colvlm_server.answer_log import answer_line
from colvlm_server.answers import echoed_question, fill_answer, new_answer, set_status
from colvlm_server.ask_action import AskAction
from colvlm_server.cameras import CameraLink, find_link, score_views
from colvlm_server.gate import make_policy
from colvlm_server.health import AnswerStats, ServerDiagnostics, status_line
from colvlm_server.intake import FrameIntake
from colvlm_server.jobs import Job, JobQueue, Rejected, check_query
from colvlm_server.overlays import RoiOverlays
from colvlm_server.parameters import SERVER_POLICIES, ServerConfig
from colvlm_server.pipeline import PipelineResult, TwoStagePipeline
from colvlm_server.token_layers import LayerOptions
from colvlm_server.view_answers import answer_views, fill_views


class ServerNode:
    """The server side of colvlm for one or several cameras on one transport node."""

    def __init__(self, node: Node, config: ServerConfig, pipeline: TwoStagePipeline, *,
                 layer_options: LayerOptions | None = None, model_id: str = ''):
        self.node, self.config, self.pipeline = node, config, pipeline
        self.model_id = model_id or getattr(pipeline.backend, 'model_id', '')
        self.several = config.views.several
        self.layer_options = layer_options or LayerOptions({}, config.layers_step,
                                                           config.layers_crop,
                                                           config.layers_first)
        self.links = [CameraLink(node, prefix, config, scores=self.several,
                                 layers_per_frame=self.layer_options.layer_count)
                      for prefix in config.views.cameras or (config.default_camera,)]
        self.camera = self.links[0].camera
        self._by_name = {link.name: link for link in self.links}
        self._scoring = ThreadPoolExecutor(len(self.links), thread_name_prefix='score') \
            if self.several else None
        self.policies = {name: make_policy(name, config.gate) for name in SERVER_POLICIES}
        self.stats = AnswerStats()  # what the status line and /diagnostics report
        self.intake = FrameIntake(config.frame_max_ahead_s, config.decode_max_pixels,
                                  node.logger, node.now_ns, node.serialized_size)
        # Each waiting ask holds a service thread: at most half of them wait, more are BUSY.
        self._ask_slots = threading.Semaphore(SERVICE_THREADS // 2)
        self._answer_type = node.message_type('colvlm/msg/Answer')
        self._ask_type = node.service_type('colvlm/srv/Ask')
        self.jobs = JobQueue(config.queue_max_size, self._run)
        self._answers = node.create_publisher('colvlm/msg/Answer', 'colvlm/answer', 'answers')
        self.overlays = RoiOverlays(node, config.debug_annotated_image)
        for link in self.links:
            self._subscribe(link)
        node.create_subscription('colvlm/msg/Query', 'colvlm/query', self.on_query, 'queries')
        node.create_service('colvlm/srv/Ask', 'colvlm/ask', self.serve_ask)
        self.ask_action = AskAction(node, self)  # the same question as an action, with stages
        node.create_timer(config.status_period_s, self.log_status)
        self.diagnostics = ServerDiagnostics(node, self.figures, config.diagnostics_warn_age_s,
                                             config.diagnostics_error_age_s)

    # Frames in: intake.py refuses, counts and stores; layers only where a codec reads them
    def _subscribe(self, link: CameraLink) -> None:
        topics, node, intake = link.topics, self.node, self.intake
        node.create_subscription('sensor_msgs/msg/CompressedImage', topics['global/compressed'],
                                 lambda message: intake.image(message, link), 'frames')
        node.create_subscription('colvlm/msg/FrameGeometry', topics['global/geometry'],
                                 lambda message: intake.geometry(message, link), 'frame_info')
        if self.layer_options.codecs:
            node.create_subscription('colvlm/msg/TokenLayer', topics['token_layers'],
                                     lambda message: intake.layer(message, link),
                                     'token_layers')

    @property
    def dropped_frames(self) -> int:
        return self.intake.dropped.count

    @property
    def counts(self) -> dict[str, int]:
        return self.stats.snapshot()['counts']

    # Queries in
    def on_query(self, query) -> None:
        self.submit(query, self._answers.publish)

    def serve_ask(self, request):
        answered: list = []
        done = threading.Event()

        def reply(answer) -> None:
            answered.append(answer)
            done.set()

        if not self._ask_slots.acquire(blocking=False):
            self.submit(request.query, reply, busy=f'{SERVICE_THREADS // 2} asks are waiting '
                                                   'already (colvlm/query queues more)')
            return self._ask_type.Response(answer=answered[0])
        try:
            self.submit(request.query, reply)
            done.wait()  # every path through submit() replies exactly once
        finally:
            self._ask_slots.release()
        return self._ask_type.Response(answer=answered[0])

    def submit(self, query, reply: Callable, busy: str = '',
               progress: Callable | None = None) -> None:
        """Queue `query` for the worker, or answer it now (bad request, no frame, busy)."""
        job = Job(query, reply, time.perf_counter(), self.node.now_ns(),
                  query.policy or self.config.policy, None, None, progress)
        try:
            check_query(query, job.policy, self.config.question_max_chars,
                        layers=bool(self.layer_options.codecs))
            if busy:
                raise Rejected(Status.BUSY, busy)
            job.link = find_link(self.links, query, self.several)
            # Several cameras' edges publish on request: their newest frames are fetched by
            # the worker; a frame named by stamp must be held already.
            stamp_ns = stamps.to_ns(query.frame_stamp)
            if job.link is not None and not query.fresh_frame and (stamp_ns or not self.several):
                job.held = job.link.held_frame(stamp_ns, job.received_ns, job.policy)
            self.jobs.submit(job)
        except Rejected as rejection:
            self._reject(job, rejection)

    # The worker
    def _run(self, job: Job) -> None:
        camera = job.link.camera if job.link else ''
        answer = new_answer(self._answer_type, job.query, job.policy, camera, self.model_id,
                            self.config.gate)
        answer.queue_ms = (time.perf_counter() - job.received) * 1e3
        try:
            if job.link is None:
                views = answer_views(job.query.question, list(self._by_name),
                                     self.config.views, self._score, self._answer_view(job))
                fill_views(answer, views, {name: link.camera
                                           for name, link in self._by_name.items()})
            else:
                if self.several and job.held is None and not job.query.fresh_frame:
                    answer.views_sent, answer.view_selection = [job.link.name], 'query'
                frame, frame_id = job.held or job.link.view_frame(
                    job.received_ns, job.policy, job.query.fresh_frame)
                self._fill(answer, self._answer_in(job, job.link, frame), frame, frame_id)
        except Rejected as rejection:
            set_status(answer, rejection.status, str(rejection))
        except Exception as error:  # the node keeps serving whatever one query does
            self.node.logger.error(f'query {job.query.query_id!r} failed: {first_line(error)}')
            set_status(answer, Status.MODEL_ERROR, f'internal error: {first_line(error)}')
        self._send(job, answer)

    def _answer_view(self, job: Job) -> Callable:
        def answer_view(name: str, question: str, score) -> tuple:
            link = self._by_name[name]
            frame, frame_id = link.view_frame(job.received_ns, job.policy,
                                              job.query.fresh_frame, score)
            return frame, frame_id, self._answer_in(job, link, frame, question)

        return answer_view

    def _score(self, question: str) -> tuple:
        return score_views(self.node, self.links, question, self.config.views.score_timeout_s,
                           self._scoring)

    def _answer_in(self, job: Job, link: CameraLink, frame,
                   question: str | None = None) -> PipelineResult:
        """The pipeline's answer about one camera's frame (or token layers)."""
        policy, limit = self.policies[job.policy], job.query.max_new_tokens
        question = job.query.question if question is None else question
        if job.policy == 'layers':
            frame = replace(frame, geometry=link.frames.geometry(frame.stamp_ns))
            return self.pipeline.answer_layers(question, frame, link.layer_source, policy,
                                               self.layer_options, crops=link.crops,
                                               max_new_tokens=limit, progress=job.progress)
        return self.pipeline.answer(question, frame, link.crops, policy, max_new_tokens=limit,
                                    progress=job.progress)

    def _fill(self, answer, result: PipelineResult, frame, frame_id: str) -> None:
        fill_answer(answer, result, frame.stamp_ns, frame_id)
        self.overlays.publish(answer, frame)
        if result.status in (Status.CROP_UNAVAILABLE, Status.LAYERS_UNAVAILABLE):
            self.node.logger.warning(f'query {answer.query_id!r}: {result.reason}')

    # Answers out
    def _reject(self, job: Job, rejection: Rejected) -> None:
        camera = '' if self.several else self.camera
        answer = new_answer(self._answer_type, job.query, job.policy, camera, self.model_id,
                            self.config.gate)
        set_status(answer, rejection.status, str(rejection))
        answer.question = echoed_question(answer.question, self.config.question_max_chars)
        self._send(job, answer)

    def _send(self, job: Job, answer) -> None:
        stamps.fill(answer.header.stamp, self.node.now_ns())
        answer.total_ms = (time.perf_counter() - job.received) * 1e3
        self.stats.record(answer.status, answer.decision, answer.total_ms)
        self.node.logger.info(answer_line(answer, job.query.question))
        try:
            job.reply(answer)
        except Exception as error:  # a closing transport; the count above still holds
            self.node.logger.error(f'answer to {answer.query_id!r} not sent: {error!r}')

    # Lifetime
    def stop(self) -> None:
        """Finish the running query, answer the waiting ones busy, stop the worker."""
        for job in self.jobs.stop():
            self._reject(job, Rejected(Status.BUSY, 'the server is shutting down'))
        if self._scoring is not None:
            self._scoring.shutdown(wait=False, cancel_futures=True)

    def figures(self) -> dict:
        """What the status line and /diagnostics report, gathered once."""
        now_ns, links = self.node.now_ns(), {}
        for link in self.links:
            latest = link.frames.latest()
            links[link.name] = {
                'camera': link.camera, 'frames': link.frames.completed,
                'age s': (now_ns - latest[0].stamp_ns) / 1e9 if latest else None,
                'services': link.frame_client.wait_for_service(0.0)}
        return dict(self.stats.snapshot(), links=links, model=self.model_id,
                    device=self.config.device, queue=self.jobs.waiting(),
                    **{'queue max': self.config.queue_max_size,
                       'dropped frames': self.dropped_frames,
                       'stamped ahead': self.intake.ahead.count})

    def log_status(self) -> None:
        self.node.logger.info(status_line(self.figures()))
