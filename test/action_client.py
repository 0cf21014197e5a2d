"""A raw client of the colvlm/ask action for tests: rcl_action's client side written out by
hand on one node's plain service clients and subscriptions (send_goal, get_result and
cancel_goal; the feedback and status topics), with the types colvlm builds from Ask.action.
It works on any backend whose node has colvlm's wire types (memory, dds)."""

from __future__ import annotations

import threading
import uuid

from colvlm_msgs.qos import QosProfile
from colvlm_msgs.transport.actions import action_topics

TIMEOUT_S = 30.0
SUCCEEDED, CANCELED, UNKNOWN = 4, 5, 0  # action_msgs/msg/GoalStatus
ERROR_NONE, ERROR_UNKNOWN_GOAL_ID, ERROR_GOAL_TERMINATED = 0, 2, 3  # CancelGoal's codes


class RawAskClient:
    """rcl_action's client side by hand, on one node's plain clients and subscriptions."""

    def __init__(self, node):
        self.node = node
        topics = action_topics('colvlm/ask')
        self.send = node.create_client('colvlm/action/Ask_SendGoal', topics['send_goal'])
        self.result = node.create_client('colvlm/action/Ask_GetResult', topics['get_result'])
        self.cancel = node.create_client('action_msgs/srv/CancelGoal', topics['cancel_goal'])
        self.feedback: dict[bytes, list] = {}
        self.statuses: list = []
        self._changed = threading.Condition()
        # Deeper than rcl_action's keep-last 10: a token-layers goal sends 11 stages, and under
        # load the callback thread can fall behind the publisher by all of them, so depth 10
        # drops the first ('frame') from the history before it is taken.
        node.create_subscription('colvlm/action/Ask_FeedbackMessage', topics['feedback'],
                                 self._on_feedback, QosProfile('feedback', depth=100))
        node.create_subscription('action_msgs/msg/GoalStatusArray', topics['status'],
                                 self._on_status,
                                 QosProfile('status', durability='transient_local', depth=1))

    def wait_ready(self) -> bool:
        """As rcl's client: the three services have a server and the status topic a
        publisher (its latched status arrived, so the topics' readers are matched)."""
        with self._changed:
            latched = self._changed.wait_for(lambda: self.statuses, TIMEOUT_S)
        return latched and all(client.wait_for_service(TIMEOUT_S)
                               for client in (self.send, self.result, self.cancel))

    def _on_feedback(self, message) -> None:
        with self._changed:
            self.feedback.setdefault(bytes(message.goal_id.uuid), []).append(message.feedback)
            self._changed.notify_all()

    def _on_status(self, message) -> None:
        with self._changed:
            self.statuses.append({bytes(s.goal_info.goal_id.uuid): s.status
                                  for s in message.status_list})
            self._changed.notify_all()

    def send_goal(self, question: str, goal_id: bytes | None = None, **fields):
        request = self.node.service_type('colvlm/action/Ask_SendGoal').Request()
        request.goal_id.uuid = list(goal_id or uuid.uuid4().bytes)
        request.goal.query.query_id, request.goal.query.question = 'q1', question
        for name, value in fields.items():
            setattr(request.goal.query, name, value)
        response = self.send.call(request, timeout=TIMEOUT_S)
        return bytes(request.goal_id.uuid), response

    def get_result(self, goal_id: bytes):
        request = self.node.service_type('colvlm/action/Ask_GetResult').Request()
        request.goal_id.uuid = list(goal_id)
        return self.result.call(request, timeout=TIMEOUT_S)

    def cancel_goal(self, goal_id: bytes):
        request = self.node.service_type('action_msgs/srv/CancelGoal').Request()
        request.goal_info.goal_id.uuid = list(goal_id)
        return self.cancel.call(request, timeout=TIMEOUT_S)

    def stages(self, goal_id: bytes, until: str | None = None, count: int = 0) -> list[str]:
        """The stage names received for `goal_id`, once `until` is among them and there are
        at least `count`."""
        def arrived() -> bool:
            names = self._names(goal_id)
            return (until is None or until in names) and len(names) >= count

        with self._changed:
            assert self._changed.wait_for(arrived, TIMEOUT_S), self._names(goal_id)
            return self._names(goal_id)

    def _names(self, goal_id: bytes) -> list[str]:
        return [f.stage_name for f in self.feedback.get(goal_id, [])]

    def wait_status(self, goal_id: bytes, wanted: int) -> None:
        with self._changed:
            assert self._changed.wait_for(
                lambda: self.statuses and self.statuses[-1].get(goal_id) == wanted, TIMEOUT_S)
