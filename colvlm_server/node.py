"""The server node: the two-stage pipeline behind `colvlm/query` and `colvlm/ask`.

It keeps the newest global frames of one camera (an image is usable once its FrameGeometry,
same stamp, has arrived too), queues questions for one worker thread running
`TwoStagePipeline`, fetches crops from the edge's `colvlm/crop_roi`, and fills every field of
the Answer. Queries under policy 'layers' are answered from the token layers the edge sends on
`colvlm/token_layers` instead, asking `colvlm/request_layers` for more. Every query gets
exactly one Answer: a bad request, a lost edge, bad layers or a failing model is a status on
it, never a stopped node. Loading the model is the caller's job (server_cli); the token codecs
(small files) are loaded here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, replace
import queue
import sys
import threading
import time

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
from colvlm_server.vlm import resolve_model

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


class ServerNode:
    """The server side of colvlm for one camera on one transport node."""

    def __init__(self, node: Node, config: ServerConfig, pipeline: TwoStagePipeline, *,
                 model_id: str = ''):
        self.node, self.config, self.pipeline = node, config, pipeline
        self.model_id = model_id or getattr(pipeline.backend, 'model_id', '')
        prefix = config.default_camera.rstrip('/')
        names = {key: f'{prefix}/colvlm/{key}' if prefix else f'colvlm/{key}'
                 for key in ('global/compressed', 'global/geometry', 'crop_roi',
                             'request_frame', 'token_layers', 'request_layers')}
        full = node.resolve_name(names['global/compressed'])
        self.camera = full[:-len('/colvlm/global/compressed')] or '/'
        self._cameras = {'', prefix.strip('/'), self.camera.strip('/')}
        self.frames = FrameStore(self.camera)
        self.crops = EdgeCropSource(node, names['crop_roi'], config)
        self.layers = LayerStore(self.camera)
        self.layer_source = EdgeLayerSource(node, names['request_layers'], config)
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
        self._frame_client = node.create_client('colvlm/srv/RequestFrame',
                                                names['request_frame'])
        self._worker = threading.Thread(target=self._work, name='server-worker', daemon=True)
        self._worker.start()
        self._answers = node.create_publisher('colvlm/msg/Answer', 'colvlm/answer', 'answers')
        node.create_subscription('sensor_msgs/msg/CompressedImage', names['global/compressed'],
                                 self.on_image, 'frames')
        node.create_subscription('colvlm/msg/FrameGeometry', names['global/geometry'],
                                 self.on_geometry, 'frame_info')
        node.create_subscription('colvlm/msg/TokenLayer', names['token_layers'],
                                 self.on_token_layer, 'token_layers')
        node.create_subscription('colvlm/msg/Query', 'colvlm/query', self.on_query, 'queries')
        node.create_service('colvlm/srv/Ask', 'colvlm/ask', self.serve_ask)
        node.create_timer(config.status_period_s, self.log_status)

    # Frames in
    def on_image(self, message) -> None:
        try:
            image = decode_image(bytes(message.data))  # (h, w, 3) uint8 BGR
        except ImageDecodeError as error:
            self._drop_frame(str(error))
            return
        self._add(self.frames.add_image, stamps.to_ns(message.header.stamp), image,
                  message.header.frame_id, self.node.serialized_size(message))

    def on_geometry(self, message) -> None:
        geometry = GlobalGeometry(
            message.original_width, message.original_height, message.global_width,
            message.global_height, message.preprocess, message.scale_x, message.scale_y,
            message.offset_x, message.offset_y)
        self._add(self.frames.add_geometry, stamps.to_ns(message.header.stamp), geometry,
                  self.node.serialized_size(message))

    def on_token_layer(self, message) -> None:
        """Held as it came: the pipeline checks layers against its codecs per query."""
        self.layers.add(stamps.to_ns(message.header.stamp), EncodedLayer.from_message(message),
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
            self._check(query, policy)
            held = None if query.fresh_frame else self._frame_for(query, received_ns, policy)
            with self._admission:  # nothing is queued once stop() has begun
                if self._stop.is_set():
                    raise Rejected('BUSY', 'the server is shutting down')
                self._jobs.put_nowait(_Job(query, reply, received, received_ns, policy, held))
        except Rejected as rejection:
            self._reject(query, policy, reply, received, rejection)
        except queue.Full:
            self._reject(query, policy, reply, received, Rejected(
                'BUSY', f'{self.config.queue_max_size} queries are already waiting'))

    def _check(self, query, policy: str) -> None:
        limit = self.config.question_max_chars
        if not query.question.strip():
            raise Rejected('BAD_REQUEST', 'empty question')
        if len(query.question) > limit:
            raise Rejected('BAD_REQUEST', f'question of {len(query.question)} characters; at '
                                          f'most {limit} are accepted (question.max_chars)')
        if policy not in SERVER_POLICIES:
            raise Rejected('BAD_REQUEST', f'unknown policy {policy!r}; this server knows '
                                          f'{", ".join(SERVER_POLICIES)}')
        if query.camera.strip('/') not in self._cameras:
            raise Rejected('BAD_REQUEST', f'unknown camera {query.camera!r}; this server '
                                          f'answers about {self.camera!r}')
        if query.max_new_tokens > MAX_NEW_TOKENS:
            raise Rejected('BAD_REQUEST', f'max_new_tokens must be <= {MAX_NEW_TOKENS}, got '
                                          f'{query.max_new_tokens}')

    def _store(self, policy: str) -> FrameStore | LayerStore:
        """Where the frames a policy answers about are held: token layers for 'layers'."""
        return self.layers if policy == 'layers' else self.frames

    def _frame_for(self, query, received_ns: int, policy: str) -> tuple:
        wanted = stamps.to_ns(query.frame_stamp)
        store = self._store(policy)
        what = 'token layers' if store is self.layers else 'frame'
        if wanted:
            held = store.get(wanted)
            if held is None:
                raise Rejected('NO_FRAME', f'{what} {wanted} is not held (only the newest '
                                           f'{FRAMES_KEPT} are)')
            return held
        held = store.latest()
        if held is None:
            hint = ' (does the edge run with layers.enabled?)' if store is self.layers else ''
            raise Rejected('NO_FRAME', f'no {what} from camera {self.camera!r} yet{hint}')
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
        answer = self._new_answer(job.query, job.policy)
        answer.queue_ms = (time.perf_counter() - job.received) * 1e3
        try:
            frame, frame_id = job.held or self._fresh_frame(job.received_ns,
                                                            self._store(job.policy))
            answer.header.frame_id = frame_id
            stamps.fill(answer.frame_stamp, frame.stamp_ns)
            policy = self.policies[job.policy]
            with self._token_limit(job.query.max_new_tokens):
                if job.policy == 'layers':
                    frame = replace(frame, geometry=self.frames.geometry(frame.stamp_ns))
                    result = self.pipeline.answer_layers(
                        job.query.question, frame, self.layer_source, policy,
                        self.layer_options, crops=self.crops)
                else:
                    result = self.pipeline.answer(job.query.question, frame, self.crops,
                                                  policy)
            self._fill(answer, result)
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

    def _fresh_frame(self, newer_than_ns: int, store) -> tuple:
        """A frame the edge took after `newer_than_ns`, asked for with colvlm/request_frame,
        once `store` holds it."""
        timeout_s = self.config.fresh_frame_timeout_s
        deadline = time.monotonic() + timeout_s
        request = self._frame_type.Request()
        stamps.fill(request.newer_than, newer_than_ns)
        response = None
        while response is None or not response.success:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Rejected('NO_FRAME', f'no fresh frame from the edge within {timeout_s:g} s')
            try:
                response = self._frame_client.call(request, timeout=remaining)
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
    def _new_answer(self, query, policy: str):
        gate = self.config.gate
        return self._answer_type(
            query_id=query.query_id, question=query.question, policy=policy,
            camera=self.camera, model_id=self.model_id, gate_aggregate=gate.aggregate,
            gate_threshold=gate.threshold, renyi_alpha=gate.renyi_alpha)

    def _fill(self, answer, result: PipelineResult) -> None:
        kind = self._answer_type
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

    def log_status(self) -> None:
        with self._lock:
            counts = ', '.join(f'{name.lower()} {n}' for name, n in sorted(self.counts.items()))
        latest = self.frames.latest()
        age = f', newest {(self.node.now_ns() - latest[0].stamp_ns) / 1e9:.1f} s old' \
            if latest else ''
        self.node.logger.info(
            f'answered: {counts or "nothing"}; queue {self._jobs.qsize()}/'
            f'{self.config.queue_max_size}; frames {self.frames.completed}{age}; dropped '
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


def main(argv: list[str] | None = None) -> int:
    """`ros2 run colvlm server_node`: the `colvlm server` verb; ROS arguments are left to
    rclpy."""
    from colvlm_server import server_cli

    parser = argparse.ArgumentParser(prog='server_node')
    server_cli.add_arguments(parser)
    from colvlm_msgs.transport import without_ros_arguments

    # rclpy reads --ros-args from sys.argv itself; its `-p` is not colvlm's --param.
    args, _unknown = parser.parse_known_args(
        without_ros_arguments(sys.argv[1:] if argv is None else argv))
    return server_cli.run(args)
