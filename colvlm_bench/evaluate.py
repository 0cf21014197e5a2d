"""Offline evaluation: the server's pipeline over a Glyph-VQA style data set, per policy.

An `InProcessEdge` plays the edge without a middleware: it encodes global frames and cuts
crops with the edge's own functions and counts the serialized size of the very messages the
edge node would send. Every policy runs through `TwoStagePipeline.answer`, as in the node.
Policy 'layers' answers from visual-token layers instead: an `InProcessLayerEdge` runs the
edge's token encoder on the same global frame and serves further layers as
`colvlm/request_layers` would, through `TwoStagePipeline.answer_layers`.
Generations are memoised on (images, question), so sweeping τ re-runs the pipeline at the
cost of the passes it has not seen yet; latencies are those measured when a pass first ran.
Originals come from a frame provider: a data set folder (`colvlm eval`) or frames read from a
bag (`colvlm replay`). A question without reference answers is answered but not scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import hashlib
import math
from pathlib import Path
from typing import Protocol

import numpy as np

from colvlm_bench.glyphvqa.questions import Question, is_correct
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.roi_crop import CropLimits, CropRejected, crop_roi
from colvlm_edge.token_encoder import (
    LayerCache,
    LayerRequestError,
    TokenLayerEncoder,
    TokenLayersConfig,
)
from colvlm_edge.wire import fill_crop_response, global_frame_messages, token_layer_message
from colvlm_models.settings import GENERIC, model_settings
from colvlm_models.vlm import Generation, VisualTokens, VlmBackend, resolve_model
from colvlm_msgs.geometry import Box
from colvlm_msgs.image_codec import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from colvlm_msgs.token_codec import SPLITS, TokenCodec, artifact_name
from colvlm_msgs.typesupport import message_class, service_classes
from colvlm_server.gate import GateConfig, make_policy
from colvlm_server.pipeline import Crop, CropUnavailable, Frame, PipelineResult, TwoStagePipeline
from colvlm_server.token_layers import LayeredFrame, LayerFetch, LayerOptions, LayersUnavailable
from colvlm_server.vicrop import box_hit, check_method

POLICIES = ('global', 'entropy', 'always', 'random', 'hd', 'oracle')  # 'all': image policies
EVAL_POLICIES = (*POLICIES, 'layers')  # 'layers': the token-layer path, named explicitly


def wire_size(message) -> int:
    """Serialized bytes as the `dds` transport counts them (CDR with its 4-byte header)."""
    return len(message.serialize(use_version_2=False))


class InProcessEdge:
    """The edge's global encoder and crop service over image files, without a middleware."""

    def __init__(self, encoder: GlobalEncoderConfig, limits: CropLimits | None = None) -> None:
        self.encoder = GlobalEncoder(encoder)
        self.limits = limits or CropLimits(default_output_size=encoder.size)
        self._image_type = message_class('sensor_msgs/msg/CompressedImage')
        self._geometry_type = message_class('colvlm/msg/FrameGeometry')
        self._crop = service_classes('colvlm/srv/CropRoi')
        self._originals: dict[int, np.ndarray] = {}

    def frame(self, original: np.ndarray, stamp_ns: int, camera: str = 'eval') -> Frame:
        """Encode `original` as the edge publishes it; keep it for crops under `stamp_ns`."""
        encoded = self.encoder.encode(original)
        image_msg, info = global_frame_messages(self._image_type, self._geometry_type, encoded,
                                                stamp_ns, camera)
        self._originals[stamp_ns] = original
        return Frame(decode_image(encoded.data), encoded.geometry, stamp_ns, camera,
                     wire_size(image_msg) + wire_size(info))

    def rendered(self, frame: Frame) -> np.ndarray:
        """The global frame's pixels before compression, as the edge's token encoder sees
        them; `frame` came from frame()."""
        return self.encoder.render(self._originals[frame.stamp_ns])[0]

    def fetch(self, frame: Frame, box: Box, output_size: tuple[int, int]) -> Crop:
        original = self._originals.get(frame.stamp_ns)
        if original is None:
            raise CropUnavailable(f'frame {frame.stamp_ns} is not buffered')
        request = self._crop.Request()
        request.roi.x_offset, request.roi.y_offset = int(box.x0), int(box.y0)
        request.roi.width, request.roi.height = int(box.width), int(box.height)
        request.output_width, request.output_height = (int(v) for v in output_size)
        try:
            result = crop_roi(original, (int(box.x0), int(box.y0), int(box.width),
                                         int(box.height)), output_size=tuple(output_size),
                              limits=self.limits)
        except CropRejected as error:
            raise CropUnavailable(str(error)) from None
        response = fill_crop_response(self._crop.Response(), result, frame.stamp_ns,
                                      frame.camera)
        x, y, w, h = result.applied_box
        return Crop(decode_image(result.data), Box(x, y, x + w, y + h), wire_size(response),
                    wire_size(request))


@dataclass(frozen=True)
class LayerSettings:
    """How evaluation plays the token-layer path: the edge's layers.split and .proactive,
    the server's layers.step and .crop (its layers.first is the proactive count)."""

    split: str = 'tower'
    proactive: int = TokenLayersConfig.proactive  # the edge's default
    step: int = 1
    crop: bool = False

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f'layers split must be one of {SPLITS}, got {self.split!r}')
        for name in ('proactive', 'step'):
            if getattr(self, name) < 1:
                raise ValueError(f'layers {name} must be >= 1, got {getattr(self, name)}')


class InProcessLayerEdge:
    """The edge's token-layer encoder and `colvlm/request_layers`, without a middleware;
    bytes are the serialized TokenLayer messages and RequestLayers replies the edge sends."""

    def __init__(self, encoder: TokenLayerEncoder, proactive: int) -> None:
        if proactive > encoder.codec.layer_count:
            raise ValueError(f'layers proactive {proactive} is more than the '
                             f'{encoder.codec.layer_count} layers of {encoder.codec.codec_id}')
        self.encoder, self.proactive = encoder, proactive
        self.cache = LayerCache(max_frames=1 << 30)
        self._layer_type = message_class('colvlm/msg/TokenLayer')
        self._request = service_classes('colvlm/srv/RequestLayers')

    def frame(self, frame: Frame, pixels: np.ndarray) -> LayeredFrame:
        """Encode the global frame `pixels` (before compression, as the edge does) of
        `frame`; the layered frame carries the layers sent unasked."""
        layers = self.encoder.encode(pixels)
        self.cache.put(frame.stamp_ns, layers, frame.camera)
        sent = layers[:self.proactive]
        size = sum(wire_size(token_layer_message(self._layer_type, layer, frame.stamp_ns,
                                                 frame.camera)) for layer in sent)
        return LayeredFrame(frame.stamp_ns, tuple(sent), frame.camera, size, frame.geometry)

    def fetch(self, frame: LayeredFrame, first: int, last: int, codec_id: str) -> LayerFetch:
        request = self._request.Request(first_layer=first, last_layer=last, codec_id=codec_id)
        response = self._request.Response(success=True)
        try:
            layers, frame_id = self.cache.serve(self.encoder.codec, frame.stamp_ns, first,
                                                last, codec_id)
        except LayerRequestError as error:
            raise LayersUnavailable(f'the edge refused: {error}') from None
        response.layers = [token_layer_message(self._layer_type, layer, frame.stamp_ns,
                                               frame_id) for layer in layers]
        return LayerFetch(list(layers), wire_size(response), wire_size(request))


def load_layer_edge(backend: VlmBackend, model: str, settings: LayerSettings,
                    codec: str = '') -> InProcessLayerEdge:
    """The in-process token-layer edge of `model` (its codec artifact at `settings.split`,
    or `codec`); ValueError with one line when there is none or it does not fit."""
    path = Path(codec) if codec else Path(resolve_model(model)) / artifact_name(settings.split)
    if not path.is_file():
        raise ValueError(f'no token codec at {path}; fit one with python -m tools.fit_token_codec')
    loaded = TokenCodec.load(path)
    if loaded.split != settings.split:
        raise ValueError(f'the codec {path} was fitted at split {loaded.split!r}, not '
                         f'{settings.split!r}')
    return InProcessLayerEdge(TokenLayerEncoder(backend, loaded), settings.proactive)


class MemoBackend(VlmBackend):
    """A backend that answers a repeated (images, question, layer) from memory."""

    def __init__(self, backend: VlmBackend) -> None:
        self.inner = backend
        self.model_id, self.num_layers = backend.model_id, backend.num_layers
        self.model_path = getattr(backend, 'model_path', None)  # its settings (colvlm.yaml)
        self.image_size, self.grid = backend.image_size, backend.grid
        self._memo: dict[tuple, object] = {}

    @staticmethod
    def _key(images: Sequence, *rest) -> tuple:
        digest = hashlib.blake2b(digest_size=16)
        for image in images:
            if isinstance(image, VisualTokens):
                digest.update(image.split.encode())
                image = image.tokens
            digest.update(str(image.shape).encode())
            digest.update(np.ascontiguousarray(image).tobytes())
        return (digest.hexdigest(), *rest)

    def visual_tokens(self, image: np.ndarray, split: str = 'tower') -> np.ndarray:
        key = self._key([image], 'tokens', split)
        if key not in self._memo:
            self._memo[key] = self.inner.visual_tokens(image, split)
        return self._memo[key]

    def generate(self, images, question, *, attention_layer=None) -> Generation:
        key = self._key(images, 'generate', question, attention_layer)
        if key not in self._memo:
            self._memo[key] = self.inner.generate(images, question,
                                                  attention_layer=attention_layer)
        return self._memo[key]

    def image_attention(self, image, prompt, layer) -> np.ndarray:
        key = self._key([image], 'attention', prompt, layer)
        if key not in self._memo:
            self._memo[key] = self.inner.image_attention(image, prompt, layer)
        return self._memo[key]

    def gradient_attention(self, image, prompt, layer) -> np.ndarray:
        key = self._key([image], 'gradient_attention', prompt, layer)
        if key not in self._memo:
            self._memo[key] = self.inner.gradient_attention(image, prompt, layer)
        return self._memo[key]


@dataclass
class Record:
    """One question under one policy setting."""

    question: Question
    result: PipelineResult
    correct: bool | None  # None when the question has no reference answers (not scored)
    first_correct: bool | None
    roi_hit: bool | None  # None when no ViCrop box was computed or there is no target


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """P(score of a positive > score of a negative), ties counted half; NaN if a class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float('nan')
    # Mann-Whitney: the positives' rank sum, tied scores sharing their mean rank.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = mean_rank[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_interval(scores: Sequence[float], positives: Sequence[bool], resamples: int = 1000,
                   level: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """A percentile bootstrap interval of `auroc`, positives and negatives resampled apart (so
    every resample has both); None if a class is empty. With a handful of positives the
    interval is wide, which is the point: it says how much one AUROC can be trusted."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(positives, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    rng = np.random.default_rng(seed)
    flags = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    values = [auroc(np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))], flags)
              for _ in range(resamples)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float('nan')


def summarize(policy: str, records: list[Record], gate: GateConfig,
              vicrop_method: str = GENERIC['vicrop.method']) -> dict:
    """The metrics.json object of one policy setting.

    Accuracies and AUROCs count scored questions only (`n_scored` of `n`); bytes, tokens,
    latency and RoI hits count every question answered. `vicrop_method` is the one the
    records' pipeline located RoIs with.
    """
    graded = [r for r in records if r.correct is not None]
    by_kind: dict[str, list[bool]] = {}
    for record in graded:
        by_kind.setdefault(record.question.kind, []).append(record.correct)
    hits = [r.roi_hit for r in records if r.roi_hit is not None]
    text_hits = [r.roi_hit for r in records
                 if r.roi_hit is not None and r.question.kind == 'text']
    scored = [r for r in graded if r.result.first and r.result.first.gate]
    text_scored = [r for r in scored if r.question.kind == 'text']

    def entropy_auroc(rows: list[Record], measure=auroc):
        return measure([r.result.first.gate.min_entropy for r in rows],
                       [not r.first_correct for r in rows])

    results = [r.result for r in records]
    metrics = {
        'policy': policy, 'n': len(records), 'n_scored': len(graded),
        'accuracy': _mean(r.correct for r in graded),
        'accuracy_by_kind': {k: _mean(v) for k, v in sorted(by_kind.items())},
        'uplink_bytes_mean': _mean(r.uplink_bytes for r in results),
        'downlink_bytes_mean': _mean(r.downlink_bytes for r in results),
        'retransmission_rate': _mean(r.refinement != 'none' for r in results),
        'roi_hit_rate': _mean(hits), 'roi_hit_rate_text': _mean(text_hits),
        'vicrop_method': vicrop_method,
        'llm_tokens_mean': _mean(r.llm_tokens for r in results),
        'gflops_mean': _mean(r.flops / 1e9 for r in results),
        'latency_ms_mean': _mean(sum(p.latency_ms for p in r.passes) + r.locate_ms
                                 for r in results),
        'status_counts': {s.name.lower(): sum(r.status == s for r in results)
                          for s in sorted({r.status for r in results})},
        'min_entropy_auroc': entropy_auroc(scored),
        'min_entropy_auroc_text': entropy_auroc(text_scored),
        # Text answers from the global frame are rarely right, so this AUROC rests on a few
        # of them: its 95% bootstrap interval says how far (null without both classes).
        'min_entropy_auroc_text_ci95': entropy_auroc(text_scored, auroc_interval),
        'n_first_right_text': sum(bool(r.first_correct) for r in text_scored),
        # Within one kind the gate must still tell right from wrong: an overall AUROC can be
        # high only because kinds differ in difficulty (issue 18 asks for both).
        'min_entropy_auroc_by_kind': {
            kind: _none_if_nan(entropy_auroc([r for r in scored if r.question.kind == kind]))
            for kind in sorted({r.question.kind for r in scored})},
    }
    if policy in ('entropy', 'layers'):
        metrics['threshold'] = gate.threshold
    if policy == 'layers':
        metrics['layers_used_mean'] = _mean(r.layers_used for r in results)
    if policy == 'random':
        metrics['random_rate'] = gate.random_rate
    return {k: _none_if_nan(v) for k, v in metrics.items()}


def _none_if_nan(value):
    """None for a NaN float (JSON has no NaN), anything else unchanged."""
    return None if isinstance(value, float) and math.isnan(value) else value


class FrameProvider(Protocol):
    """Where an evaluation's originals come from, by the key a question names."""

    def original(self, key: str) -> np.ndarray:
        """The (H, W, 3) uint8 BGR original `key` names; OSError when it cannot be read."""


class FolderFrames:
    """Originals stored as image files; a key is a path relative to the folder."""

    def __init__(self, folder: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.folder = Path(folder)
        self.max_pixels = max_pixels  # px; as the edge's decode.max_pixels

    def original(self, key: str) -> np.ndarray:
        """The image file, checked by its header's size before a pixel is decoded."""
        path = self.folder / key
        try:
            return decode_image(path.read_bytes(), self.max_pixels)  # (H, W, 3) uint8 BGR
        except ImageDecodeError as error:
            raise OSError(f'cannot read image {path}: {error}') from None


class Evaluator:
    """Runs policies over a data set through one pipeline; frames are encoded once each.

    `frames` is a FrameProvider, or a data set folder (its image files); `vicrop_method` is
    the pipeline's vicrop.method. What is not given comes from the backend's model, as on the
    server node: its colvlm.yaml (colvlm_models.settings), else the generic settings.
    """

    def __init__(self, backend: VlmBackend, frames: FrameProvider | str | Path,
                 questions: list[Question], encoder: GlobalEncoderConfig | None = None,
                 progress: bool = True, vicrop_method: str | None = None) -> None:
        self.settings = model_settings(getattr(backend, 'model_path', None))
        self.vicrop_method = check_method(vicrop_method or self.settings['vicrop.method'])
        self.backend = MemoBackend(backend)
        self.frames = FolderFrames(frames) if isinstance(frames, (str, Path)) else frames
        self.questions = questions
        width, height = backend.image_size
        self.edge = InProcessEdge(encoder or GlobalEncoderConfig(width=width, height=height))
        self.progress = progress
        self._frames: dict[str, Frame] = {}
        self.layer_edge: InProcessLayerEdge | None = None  # set by enable_layers
        self.layer_options = LayerOptions()
        self._layered: dict[str, LayeredFrame] = {}

    def enable_layers(self, model: str, settings: LayerSettings, codec: str = '') -> None:
        """Make policy 'layers' runnable: the model's token codec, as edge and server hold
        it; ValueError with one line when the model has none."""
        self.layer_edge = load_layer_edge(self.backend, model, settings, codec)
        self.layer_options = LayerOptions({self.layer_edge.encoder.codec.codec_id:
                                           self.layer_edge.encoder.codec},
                                          settings.step, settings.crop,
                                          first=settings.proactive)
        self._layered.clear()

    def _layered_frame(self, question: Question) -> LayeredFrame:
        name = question.image
        if name not in self._layered:
            frame = self._frame(question)  # same stamp: a crop after the layers finds it
            self._layered[name] = self.layer_edge.frame(frame, self.edge.rendered(frame))
        return self._layered[name]

    def _frame(self, question: Question) -> Frame:
        name = question.image
        if name not in self._frames:
            # Stamps in order of first use: the same whatever provider the originals come from.
            self._frames[name] = self.edge.frame(self.frames.original(name),
                                                 stamp_ns=len(self._frames) + 1)
        return self._frames[name]

    def run(self, policy_name: str, gate: GateConfig, label: str = '') -> list[Record]:
        layer = self.settings['vicrop.layer']
        pipeline = TwoStagePipeline(self.backend, gate, vicrop_method=self.vicrop_method,
                                    attention_layer=layer if layer >= 0 else None)
        policy = make_policy(policy_name, gate)
        records = []
        iterator = self.questions
        if self.progress:
            from tqdm import tqdm
            iterator = tqdm(iterator, desc=label or policy_name, unit='q', leave=False)
        if policy_name == 'layers' and self.layer_edge is None:
            raise ValueError("policy 'layers' needs enable_layers() first")
        for question in iterator:
            target = Box(*question.target) if question.target else None
            if policy_name == 'layers':
                result = pipeline.answer_layers(
                    question.question, self._layered_frame(question), self.layer_edge, policy,
                    self.layer_options, crops=self.edge, target=target)
            else:
                result = pipeline.answer(question.question, self._frame(question), self.edge,
                                         policy, target=target)
            first_text = result.first.answer if result.first else ''
            hit = None
            if result.roi_result is not None and target is not None:
                hit = box_hit(result.roi_result.box, target)
            records.append(Record(question, result, _score(result.answer, question),
                                  _score(first_text, question), hit))
        return records


def _score(answer: str, question: Question) -> bool | None:
    """Whether `answer` is right; None for a question without reference answers."""
    return is_correct(answer, question.answers) if question.answers else None
