"""`colvlm/ask` as an action (colvlm/action/Ask): the question of the Ask service, answered by
the same queue and pipeline, with each stage the pipeline reaches sent as feedback (stages.py)
and a cancel that answers at once.

Goal = Query, Result = Answer. A cancel accepted before the answer ends the goal CANCELED
with an Answer of status CANCELED: the caller stops waiting (for the edge's frame or crop,
for the model) there and then, and the query, which still holds its place in the queue or
its wait on the edge, is dropped at its next stage without another pass. An answer that
came first stands (the goal SUCCEEDED). Wiring only: the node's `submit` does the work.
"""

from __future__ import annotations

import threading
import time

from colvlm_msgs import stamps
from colvlm_msgs.constants import Status
from colvlm_msgs.geometry import fill_roi
from colvlm_msgs.transport.port import GoalHandle, Node
from colvlm_server.answers import new_answer, set_status
from colvlm_server.jobs import Rejected
from colvlm_server.stages import Stage

ACTION_TYPE = 'colvlm/action/Ask'
_CANCEL_POLL_S = 0.05  # how often a waiting goal looks at its cancel flag


def fill_feedback(feedback, stage: Stage, query_id: str, elapsed_ms: float) -> None:
    """`feedback` (an Ask Feedback message) saying what `stage` says."""
    feedback.stage = getattr(feedback, f'STAGE_{stage.name.upper()}')
    feedback.stage_name, feedback.query_id, feedback.elapsed_ms = stage.name, query_id, \
        elapsed_ms
    feedback.camera = stage.frame.camera
    stamps.fill(feedback.frame_stamp, stage.frame.stamp_ns)
    feedback.layers, feedback.message = stage.layers, stage.message
    feedback.uplink_bytes = stage.result.uplink_bytes
    if stage.done is not None:
        feedback.answer = stage.done.answer
        if stage.done.gate is not None:
            feedback.min_entropy = stage.done.gate.min_entropy
            feedback.gate_threshold = stage.done.gate.gate_threshold
    if stage.decision is not None:
        feedback.refine, feedback.refinement = stage.decision.refine, stage.decision.kind
        feedback.message = feedback.message or stage.decision.reason
    elif stage.done is not None:
        feedback.refinement = 'none'  # the last pass the policy allows: nothing follows it
    if stage.boxes:
        box = stage.boxes[0]
        fill_roi(feedback.roi, box.x0, box.y0, box.x1, box.y1)


class AskAction:
    """The action server of `server` (a ServerNode: its `submit`, config and model id)."""

    def __init__(self, node: Node, server):
        self.node, self.server = node, server
        types = node.action_type(ACTION_TYPE)
        self._feedback_type, self._result_type = types.Feedback, types.Result
        self._answer_type = node.message_type('colvlm/msg/Answer')
        node.create_action_server(ACTION_TYPE, 'colvlm/ask', self.execute)

    def execute(self, goal: GoalHandle):
        query = goal.goal.query
        started = time.perf_counter()
        answered: list = []
        reached: list[str] = []
        ended = threading.Event()

        def reply(answer) -> None:
            answered.append(answer)
            ended.set()

        def progress(stage: Stage) -> None:
            if goal.cancel_requested.is_set():
                raise Rejected(Status.CANCELED, f'cancelled by the caller before {stage.name}')
            reached.append(stage.name)
            feedback = self._feedback_type()
            fill_feedback(feedback, stage, query.query_id,
                          (time.perf_counter() - started) * 1e3)
            goal.publish_feedback(feedback)

        self.server.submit(query, reply, progress=progress)
        while not ended.wait(_CANCEL_POLL_S):
            if goal.cancel_requested.is_set():
                break
        if answered:  # an answer that came first stands, even with a cancel on its way
            return self._result_type(answer=answered[0])
        goal.canceled()
        return self._result_type(answer=self._cancelled(query, reached, started))

    def _cancelled(self, query, reached: list[str], started: float):
        server = self.server
        answer = new_answer(self._answer_type, query, query.policy or server.config.policy,
                            '' if server.several else server.camera, server.model_id,
                            server.config.gate)
        where = f'after {reached[-1]}' if reached else 'before the frame was chosen'
        set_status(answer, Status.CANCELED, f'cancelled by the caller {where}')
        stamps.fill(answer.header.stamp, self.node.now_ns())
        answer.total_ms = (time.perf_counter() - started) * 1e3
        return answer
