"""The two-stage answer: global pass, gate, ViCrop RoI, edge crop, global + local pass.

One `TwoStagePipeline.answer` call turns (question, global frame, a way to fetch crops, a
policy) into a `PipelineResult` with both passes' metrics, the decision, the RoI and the
bytes that crossed the link. The server node and `colvlm eval` both call it; neither has a
second implementation. It knows nothing about the wire: frames arrive decoded, crops come from
a `CropSource` (the edge over DDS in the node, an in-process edge in evaluation).

`answer_layers` is the same loop over visual-token layers instead of a global frame: answer
from the layers that came with the frame, and while the gate is unsure ask the edge for more
(a `LayerSource`), up to all of them, then optionally for an RoI crop as above.

Both take an optional `progress` (stages.py) called at each stage as it is reached; what it
raises ends the answer there and reaches the caller.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
import time
from typing import Protocol

import numpy as np

from colvlm_models.settings import model_settings
from colvlm_models.vlm import Generation, VisualTokens, VlmBackend
from colvlm_msgs.constants import Decision as Answered
from colvlm_msgs.constants import Status
from colvlm_msgs.geometry import Box, GlobalGeometry
from colvlm_server.gate import (
    Decision,
    DecisionContext,
    GateConfig,
    GateError,
    GateMetrics,
    Policy,
    measure,
)
from colvlm_server.stages import Progress, Stage, no_progress
from colvlm_server.token_layers import (
    LayeredFrame,
    LayerOptions,
    LayerSource,
    LayersUnavailable,
    check_fetched,
    extend_from,
    usable_prefix,
)
from colvlm_server.vicrop import (
    DEFAULT_SCALES,
    GENERIC_PROMPT,
    RoiResult,
    check_method,
    choose_layer,
    locate,
    question_attention,
    relative_attention,
    square_box,
    tile_boxes,
)


class CropUnavailable(Exception):
    """The edge could not deliver a crop; the message says why in one line."""


@dataclass(frozen=True, eq=False)
class Frame:
    """A global frame as the server holds it."""

    image: np.ndarray | VisualTokens  # (h, w, 3) uint8 BGR, decoded; or its visual tokens
    geometry: GlobalGeometry
    stamp_ns: int  # the original's stamp, which names it at the edge
    camera: str = ''
    wire_bytes: int = 0  # serialized bytes of the frame (and its geometry) on the uplink


@dataclass(frozen=True, eq=False)
class Crop:
    image: np.ndarray  # (h, w, 3) uint8 BGR, decoded
    applied: Box  # original px actually cut
    wire_bytes: int  # serialized bytes of the reply (uplink)
    request_bytes: int = 0  # serialized bytes of the request (downlink)


class CropSource(Protocol):
    def fetch(self, frame: Frame, box: Box, output_size: tuple[int, int]) -> Crop:
        """The crop of `box` (original px) at `output_size` (w, h); raises CropUnavailable."""


@dataclass(frozen=True)
class PassResult:
    answer: str
    gate: GateMetrics | None  # None when the scores were unusable
    input_tokens: int
    output_tokens: int
    flops: float
    latency_ms: float

    @classmethod
    def of(cls, generation: Generation, gate: GateMetrics | None) -> PassResult:
        return cls(generation.text, gate, generation.input_tokens, generation.output_tokens,
                   generation.flops, generation.seconds * 1e3)


@dataclass
class PipelineResult:
    answer: str = ''
    status: Status = Status.OK  # OK, CROP_UNAVAILABLE, LAYERS_UNAVAILABLE or MODEL_ERROR
    decision: Answered = Answered.NONE  # NONE, GLOBAL, LOCAL_CROP, TOKEN_LAYERS, FALLBACK
    # What the policy asked for: none | crop | tiles | oracle_crop | layers
    refinement: str = 'none'
    reason: str = ''  # one line: the gate's or the failure's
    first: PassResult | None = None
    second: PassResult | None = None  # the last pass, when more than one ran
    middle: list[PassResult] = field(default_factory=list)  # passes between (more layers)
    roi: Box | None = None  # original px: the box requested (the first tile's for 'hd')
    roi_result: RoiResult | None = None
    crop_boxes: list[Box] = field(default_factory=list)  # original px actually cut
    global_bytes: int = 0
    crop_bytes: int = 0
    layer_bytes: int = 0  # token layers: those sent with the frame and those fetched
    layers_used: int = 0  # token layers the answer was decoded from (0..layer_count)
    downlink_bytes: int = 0
    locate_ms: float = 0.0
    fetch_ms: float = 0.0
    total_ms: float = 0.0

    @property
    def uplink_bytes(self) -> int:
        return self.global_bytes + self.crop_bytes + self.layer_bytes

    @property
    def passes(self) -> list[PassResult]:
        """Every pass that ran, in order."""
        return [p for p in (self.first, *self.middle, self.second) if p]

    @property
    def llm_tokens(self) -> int:
        return sum(p.input_tokens + p.output_tokens for p in self.passes)

    @property
    def flops(self) -> float:
        return sum(p.flops for p in self.passes)


def _limit(max_new_tokens: int) -> dict:
    """generate()'s per-call token limit, passed only when set: backends (and test doubles)
    that keep one limit need not know the argument."""
    return {'max_new_tokens': int(max_new_tokens)} if max_new_tokens else {}


def oracle_box(target: Box, geometry: GlobalGeometry, encoder_size: float) -> Box:
    """The ViCrop window a perfect locator would pick: the smallest scale holding the target,
    centred on it and shifted inside the original."""
    longest = max(target.width, target.height)
    scales = [s for s in DEFAULT_SCALES if encoder_size * s >= longest]
    side = encoder_size * (scales[0] if scales else longest / encoder_size)
    return square_box((target.x0 + target.x1) / 2.0, (target.y0 + target.y1) / 2.0, side,
                      geometry)


class TwoStagePipeline:
    """`vicrop_method` (vicrop.method) makes the RoI map: 'rel_att' from the first pass's
    attention and the generic prompt's, 'grad_att' from one more forward and backward pass of
    the question through the backend's `gradient_attention`, 'att' from the first pass's
    attention alone (no generic-prompt pass).

    What is not given (gate, attention_layer, vicrop_method) comes from the backend's model:
    its colvlm.yaml (colvlm_models.settings), else the generic settings the node defaults to.
    """

    def __init__(self, backend: VlmBackend, gate: GateConfig | None = None, *,
                 attention_layer: int | None = None, generic_cache: int = 16,
                 vicrop_method: str | None = None) -> None:
        settings = model_settings(getattr(backend, 'model_path', None))
        self.backend = backend
        self.gate = gate or GateConfig(threshold=settings['gate.threshold'])
        if attention_layer is None and settings['vicrop.layer'] >= 0:
            attention_layer = settings['vicrop.layer']
        vicrop_method = vicrop_method or settings['vicrop.method']
        layer = choose_layer(backend.num_layers) if attention_layer is None else attention_layer
        if not 0 <= layer < backend.num_layers:
            raise ValueError(f'vicrop.layer must be in 0..{backend.num_layers - 1}, got {layer}')
        self.attention_layer = layer
        self.vicrop_method = check_method(vicrop_method)
        # Only relative attention reads the first pass's attention.
        self._first_layer = layer if vicrop_method in ('rel_att', 'att') else None
        self.encoder_size = float(backend.image_size[0])
        self._generic: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._generic_cache = generic_cache

    def _generic_map(self, frame: Frame) -> np.ndarray:
        """The generic prompt's attention for this frame; it does not depend on the question,
        so it is computed once per frame."""
        key = (frame.camera, frame.stamp_ns, id(frame.image))
        if key not in self._generic:
            self._generic[key] = self.backend.image_attention(
                frame.image, GENERIC_PROMPT, self.attention_layer)
            while len(self._generic) > self._generic_cache:
                self._generic.popitem(last=False)
        return self._generic[key]

    def _gate(self, generation: Generation) -> GateMetrics:
        if not np.isfinite(generation.logits).all():
            raise GateError('the model returned NaN or inf scores')
        return measure(generation.logits, self.gate)

    def answer(self, question: str, frame: Frame, crops: CropSource, policy: Policy, *,
               target: Box | None = None, max_new_tokens: int = 0,
               progress: Progress | None = None) -> PipelineResult:
        """`max_new_tokens` limits this answer's passes (0: the backend's own limit)."""
        result = PipelineResult(global_bytes=frame.wire_bytes)
        return self._run(self._answer, result, question, frame, crops, policy, target,
                         _limit(max_new_tokens), progress or no_progress)

    def answer_layers(self, question: str, frame: LayeredFrame, layers: LayerSource,
                      policy: Policy, options: LayerOptions, *, crops: CropSource | None = None,
                      target: Box | None = None, max_new_tokens: int = 0,
                      progress: Progress | None = None) -> PipelineResult:
        """Answer from `frame`'s token layers, asking `layers` for more while `policy` wants
        refinement; bad, missing or undecodable layers give status LAYERS_UNAVAILABLE
        with an answer from the layers that were usable, if any."""
        result = PipelineResult(layer_bytes=frame.wire_bytes)
        return self._run(self._answer_layers, result, question, frame, layers, policy,
                         options, crops, target, _limit(max_new_tokens),
                         progress or no_progress)

    @staticmethod
    def _run(body, result: PipelineResult, *args) -> PipelineResult:
        started = time.perf_counter()
        try:
            body(*args, result)
        except GateError as error:
            result.status, result.decision = Status.MODEL_ERROR, Answered.NONE
            result.answer, result.reason = '', f'model error: {error}'
        result.total_ms = (time.perf_counter() - started) * 1e3
        return result

    def _answer(self, question, frame, crops, policy, target, limit, progress, result) -> None:
        progress(Stage('frame', frame, result))
        first = self.backend.generate([frame.image], question,
                                      attention_layer=self._first_layer, **limit)
        gate = self._gate(first)
        result.first = PassResult.of(first, gate)
        result.answer, result.decision = first.text, Answered.GLOBAL
        decision = policy.decide(gate, DecisionContext(target_box=target))
        result.reason, result.refinement = decision.reason, decision.kind
        progress(Stage('first_pass', frame, result, result.first, decision))
        if decision.refine:
            result.second = self._refine_with_crops(question, decision, first, frame, crops,
                                                    limit, progress, result)

    def _refine_with_crops(self, question: str, decision: Decision, located_from: Generation,
                           frame: Frame, crops: CropSource, limit: dict, progress: Progress,
                           result: PipelineResult) -> PassResult | None:
        """Fetch the crops `decision` calls for (the RoI from `located_from`'s attention)
        and answer from the frame and them; None, with the status set, when no crop came."""
        located = time.perf_counter()
        boxes = self._boxes(decision, question, located_from, frame, result)
        result.locate_ms += (time.perf_counter() - located) * 1e3
        result.roi = boxes[0]
        progress(Stage('crop_requested', frame, result, boxes=tuple(boxes)))
        fetched = time.perf_counter()
        try:
            pieces = [crops.fetch(frame, box, self.backend.image_size) for box in boxes]
        except CropUnavailable as error:
            result.status, result.decision = Status.CROP_UNAVAILABLE, Answered.FALLBACK
            result.reason = f'{result.reason}; crop unavailable: {error}'
            progress(Stage('crop_unavailable', frame, result, message=str(error)))
            return None
        finally:
            result.fetch_ms += (time.perf_counter() - fetched) * 1e3
        result.crop_bytes += sum(p.wire_bytes for p in pieces)
        result.downlink_bytes += sum(p.request_bytes for p in pieces)
        result.crop_boxes = [p.applied for p in pieces]
        progress(Stage('crop_received', frame, result, boxes=tuple(result.crop_boxes)))
        second = self.backend.generate([frame.image, *(p.image for p in pieces)], question,
                                       **limit)
        try:
            gate2 = self._gate(second)
        except GateError:
            gate2 = None  # the first pass stands; the second's scores are not needed to answer
        result.answer, result.decision = second.text, Answered.LOCAL_CROP
        done = PassResult.of(second, gate2)
        progress(Stage('second_pass', frame, result, done))
        return done

    def _answer_layers(self, question, frame: LayeredFrame, source: LayerSource, policy,
                       options: LayerOptions, crops, target, limit, progress, result) -> None:
        progress(Stage('frame', frame, result, layers=len(frame.layers)))
        codec = options.codecs.get(frame.codec_id)
        if codec is None:
            known = ', '.join(options.codecs) or 'none (layers.codec)'
            result.status = Status.LAYERS_UNAVAILABLE
            result.reason = (f'layers unavailable: codec_id {frame.codec_id!r} is not one this '
                             f'server decodes ({known})')
            return
        have, problem = usable_prefix(codec, frame.layers)
        have, short = self._first_layers(source, frame, codec, have, options.first, progress,
                                         result)
        problem = '; '.join(p for p in (problem, short) if p)
        wanted = len(have) if short else max(len(have), min(options.first, codec.layer_count))
        passes: list[PassResult] = []
        try:
            while True:
                if len(have) < wanted:
                    have += self._fetch_layers(source, frame, codec, have, wanted - 1,
                                               progress, result)
                    have = extend_from(codec, have, frame.layers)
                tokens = VisualTokens(codec.decode(have), codec.split)
                generation = self.backend.generate([tokens], question,
                                                   attention_layer=self._first_layer, **limit)
                passes.append(PassResult.of(generation, self._gate(generation)))
                result.answer = generation.text
                result.decision = (Answered.GLOBAL if len(passes) == 1
                                   else Answered.TOKEN_LAYERS)
                decision = policy.decide(passes[-1].gate, DecisionContext(target_box=target))
                result.reason = f'{decision.reason}; layers 0..{len(have) - 1} of ' \
                                f'{codec.layer_count}'
                progress(Stage('first_pass' if len(passes) == 1 else 'second_pass', frame,
                               result, passes[-1], decision, layers=len(have)))
                if short:  # the edge did not give the first layers: ask it no more
                    result.decision = Answered.FALLBACK
                if not decision.refine or short:
                    break
                result.refinement = 'layers'
                if len(have) < codec.layer_count:
                    wanted = min(codec.layer_count, len(have) + options.step)
                    continue
                if options.crop and crops is not None and frame.geometry is not None:
                    passes += self._crop_after_layers(question, decision, generation, tokens,
                                                      frame, crops, limit, progress, result)
                break
        except LayersUnavailable as error:
            problem = f'{problem}; {error}' if problem else str(error)
            result.decision = Answered.FALLBACK if passes else Answered.NONE
            progress(Stage('layers_unavailable', frame, result, layers=len(have),
                           message=str(error)))
        finally:
            result.layers_used = len(have)
            if passes:
                result.first, result.middle = passes[0], passes[1:-1]
                result.second = passes[-1] if len(passes) > 1 else None
        if problem:
            result.status = Status.LAYERS_UNAVAILABLE
            prefix = f'{result.reason}; ' if passes else ''
            result.reason = f'{prefix}layers unavailable: {problem}'

    def _first_layers(self, source: LayerSource, frame: LayeredFrame, codec, have: list,
                      first: int, progress: Progress, result: PipelineResult) -> tuple[list, str]:
        """`have` topped up to the first `first` layers (layers.first) before the first pass:
        those that did not come with the frame (lost on the link) are asked of the edge. When
        it cannot give them, the layers that came and why (else ''); with no usable layer at
        all the loop asks for them, and an edge that cannot give them leaves no answer."""
        wanted = min(first, codec.layer_count)
        if not have or len(have) >= wanted:
            return have, ''
        try:
            fetched = self._fetch_layers(source, frame, codec, have, wanted - 1, progress,
                                         result)
        except LayersUnavailable as error:  # answer from the layers that came
            progress(Stage('layers_unavailable', frame, result, layers=len(have),
                           message=str(error)))
            return have, str(error)
        return extend_from(codec, have + fetched, frame.layers), ''

    def _crop_after_layers(self, question: str, decision: Decision, generation: Generation,
                           tokens: VisualTokens, frame: LayeredFrame, crops: CropSource,
                           limit: dict, progress: Progress,
                           result: PipelineResult) -> list[PassResult]:
        """layers.crop: still unsure with every layer, the pass from the tokens and an RoI
        crop located from `generation`'s attention ([] when no crop came)."""
        result.refinement = 'crop'
        held = Frame(tokens, frame.geometry, frame.stamp_ns, frame.camera)
        cropped = self._refine_with_crops(question, Decision(True, 'crop', decision.reason),
                                          generation, held, crops, limit, progress, result)
        return [cropped] if cropped else []

    def _fetch_layers(self, source: LayerSource, frame: LayeredFrame, codec, have: list,
                      last: int, progress: Progress, result: PipelineResult) -> list:
        first = len(have)
        progress(Stage('layers_requested', frame, result, layers=first,
                       message=f'layers {first}..{last}'))
        fetched = time.perf_counter()
        try:
            reply = source.fetch(frame, first, last, codec.codec_id)
        finally:
            result.fetch_ms += (time.perf_counter() - fetched) * 1e3
        result.layer_bytes += reply.wire_bytes  # counted whether or not the layers are good
        result.downlink_bytes += reply.request_bytes
        check_fetched(codec, have, reply, first, last)
        progress(Stage('layers_received', frame, result, layers=last + 1))
        return list(reply.layers)

    def _boxes(self, decision, question: str, first: Generation, frame: Frame,
               result) -> list[Box]:
        geometry = frame.geometry
        if decision.kind == 'tiles':
            return tile_boxes(geometry.original_width, geometry.original_height)
        if decision.kind == 'oracle_crop':
            return [oracle_box(decision.box, geometry, self.encoder_size)]
        if self.vicrop_method == 'grad_att':
            att = self.backend.gradient_attention(frame.image, question, self.attention_layer)
        elif self.vicrop_method == 'att':
            att = question_attention(first.attention, self.backend.grid)
        else:
            att = relative_attention(first.attention, self._generic_map(frame),
                                     self.backend.grid)
        roi = locate(att, geometry, self.encoder_size)
        result.roi_result = roi
        return [roi.box]
