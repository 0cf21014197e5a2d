"""PipelineResult -> colvlm/msg/Answer: every field an answer carries, filled in one place.

Pure: it takes an Answer instance (of any backend's class) and plain values, and knows
nothing of queues, cameras or transports. The pipeline's status and decision are already
`Status`/`Decision` (generated from Answer.msg), so they go into the message as they are.
"""

from __future__ import annotations

from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.geometry import fill_roi
from colvlm_server.gate import GateConfig
from colvlm_server.pipeline import PipelineResult


def new_answer(answer_type: type, query, policy: str, camera: str, model_id: str,
               gate: GateConfig):
    """An Answer to `query` with what is known before any pass runs (status OK, no answer)."""
    return answer_type(
        query_id=query.query_id, question=query.question, policy=policy, camera=camera,
        model_id=model_id, gate_aggregate=gate.aggregate, gate_threshold=gate.threshold,
        renyi_alpha=gate.renyi_alpha)


def echoed_question(question: str, max_chars: int) -> str:
    """The question an answer repeats: a refused over-long one only in part (issue 19: a 1 MB
    question came back whole), its length said."""
    if len(question) <= max_chars:
        return question
    return f'{question[:max_chars]}... ({len(question)} characters)'


def set_status(answer, status: Status, message: str) -> None:
    """A query answered without a model answer (rejected, failed): status, message, no text."""
    answer.status, answer.status_message = int(status), message
    answer.answer, answer.decision = '', int(Decision.NONE)


def fill_answer(answer, result: PipelineResult, stamp_ns: int, frame_id: str) -> None:
    """The pipeline's answer about the frame `stamp_ns`: text, status, both passes' metrics,
    the RoI actually cut and every byte and millisecond it cost."""
    answer.header.frame_id = frame_id
    stamps.fill(answer.frame_stamp, stamp_ns)
    answer.status, answer.decision = int(result.status), int(result.decision)
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
    answer.uplink_global_bytes, answer.uplink_crop_bytes = result.global_bytes, result.crop_bytes
    answer.uplink_layer_bytes = result.layer_bytes
    answer.uplink_bytes, answer.downlink_bytes = result.uplink_bytes, result.downlink_bytes
    answer.locate_ms, answer.fetch_ms = result.locate_ms, result.fetch_ms


def add_bytes(answer, result: PipelineResult) -> None:
    """Count another pass's bytes on `answer` (a view whose answer was not kept: its frames
    and crops crossed the link all the same)."""
    answer.uplink_global_bytes += result.global_bytes
    answer.uplink_crop_bytes += result.crop_bytes
    answer.uplink_layer_bytes += result.layer_bytes
    answer.uplink_bytes += result.uplink_bytes
    answer.downlink_bytes += result.downlink_bytes


def append_message(answer, note: str) -> None:
    answer.status_message = f'{answer.status_message}; {note}' if answer.status_message \
        else note
