"""Offline evaluation: the server's pipeline over a Glyph-VQA style data set, per policy.

An `InProcessEdge` plays the edge without a middleware: it encodes global frames and cuts
crops with the edge's own functions and counts the serialized size of the very messages the
edge node would send. Every policy runs through `TwoStagePipeline.answer`, as in the node.
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

import cv2
import numpy as np

from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.glyphvqa.questions import Question, is_correct
from colvlm_edge.roi_crop import CropLimits, CropRejected, crop_roi
from colvlm_edge.wire import fill_crop_response, global_frame_messages
from colvlm_msgs.geometry import Box
from colvlm_msgs.image_codec import decode_image
from colvlm_msgs.typesupport import message_class, service_classes
from colvlm_server.gate import GateConfig, make_policy
from colvlm_server.pipeline import Crop, CropUnavailable, Frame, PipelineResult, TwoStagePipeline
from colvlm_server.vicrop import box_hit
from colvlm_server.vlm import Generation, VlmBackend

POLICIES = ('global', 'entropy', 'always', 'random', 'hd', 'oracle')


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


class MemoBackend(VlmBackend):
    """A backend that answers a repeated (images, question, layer) from memory."""

    def __init__(self, backend: VlmBackend) -> None:
        self.inner = backend
        self.model_id, self.num_layers = backend.model_id, backend.num_layers
        self.image_size, self.grid = backend.image_size, backend.grid
        self._memo: dict[tuple, object] = {}

    @staticmethod
    def _key(images: Sequence[np.ndarray], *rest) -> tuple:
        digest = hashlib.blake2b(digest_size=16)
        for image in images:
            digest.update(np.ascontiguousarray(image).tobytes())
        return (digest.hexdigest(), *rest)

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
    order = np.argsort(scores, kind='mergesort')
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float('nan')


def summarize(policy: str, records: list[Record], gate: GateConfig) -> dict:
    """The metrics.json object of one policy setting.

    Accuracies and AUROCs count scored questions only (`n_scored` of `n`); bytes, tokens,
    latency and RoI hits count every question answered.
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

    def entropy_auroc(rows: list[Record]) -> float:
        return auroc([r.result.first.gate.min_entropy for r in rows],
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
        'llm_tokens_mean': _mean(r.llm_tokens for r in results),
        'gflops_mean': _mean(r.flops / 1e9 for r in results),
        'latency_ms_mean': _mean(sum(p.latency_ms for p in (r.first, r.second) if p)
                                 + r.locate_ms for r in results),
        'status_counts': {s: sum(r.status == s for r in results)
                          for s in sorted({r.status for r in results})},
        'min_entropy_auroc': entropy_auroc(scored),
        'min_entropy_auroc_text': entropy_auroc(text_scored),
    }
    if policy == 'entropy':
        metrics['threshold'] = gate.threshold
    if policy == 'random':
        metrics['random_rate'] = gate.random_rate
    return {k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in metrics.items()}


class FrameProvider(Protocol):
    """Where an evaluation's originals come from, by the key a question names."""

    def original(self, key: str) -> np.ndarray:
        """The (H, W, 3) uint8 BGR original `key` names; OSError when it cannot be read."""


class FolderFrames:
    """Originals stored as image files; a key is a path relative to the folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def original(self, key: str) -> np.ndarray:
        image = cv2.imread(str(self.folder / key), cv2.IMREAD_COLOR)  # (H, W, 3) uint8 BGR
        if image is None:
            raise OSError(f'cannot read image {self.folder / key}')
        return image


class Evaluator:
    """Runs policies over a data set through one pipeline; frames are encoded once each.

    `frames` is a FrameProvider, or a data set folder (its image files).
    """

    def __init__(self, backend: VlmBackend, frames: FrameProvider | str | Path,
                 questions: list[Question], encoder: GlobalEncoderConfig | None = None,
                 progress: bool = True) -> None:
        self.backend = MemoBackend(backend)
        self.frames = FolderFrames(frames) if isinstance(frames, (str, Path)) else frames
        self.questions = questions
        width, height = backend.image_size
        self.edge = InProcessEdge(encoder or GlobalEncoderConfig(width=width, height=height))
        self.progress = progress
        self._frames: dict[str, Frame] = {}

    def _frame(self, question: Question) -> Frame:
        name = question.image
        if name not in self._frames:
            # Stamps in order of first use: the same whatever provider the originals come from.
            self._frames[name] = self.edge.frame(self.frames.original(name),
                                                 stamp_ns=len(self._frames) + 1)
        return self._frames[name]

    def run(self, policy_name: str, gate: GateConfig, label: str = '') -> list[Record]:
        pipeline = TwoStagePipeline(self.backend, gate)
        policy = make_policy(policy_name, gate)
        records = []
        iterator = self.questions
        if self.progress:
            from tqdm import tqdm
            iterator = tqdm(iterator, desc=label or policy_name, unit='q', leave=False)
        for question in iterator:
            frame = self._frame(question)
            target = Box(*question.target) if question.target else None
            result = pipeline.answer(question.question, frame, self.edge, policy,
                                     target=target)
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
