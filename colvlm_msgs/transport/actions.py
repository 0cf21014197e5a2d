"""ROS 2 actions on the port's own services and topics: rcl_action's wire, for the dds and
memory backends (the ros backend uses rclpy.action).

An action `<name>` is three services and two topics: `<name>/_action/send_goal` (the goal
and its 16-byte UUID; accepted or not), `<name>/_action/get_result` (answered when the goal
has ended), `<name>/_action/cancel_goal` (action_msgs/srv/CancelGoal), `<name>/_action/
feedback` (FeedbackMessage: the goal's UUID and its feedback) and `<name>/_action/status`
(action_msgs/msg/GoalStatusArray, transient local), with rcl_action's default QoS. The
server accepts every goal whose UUID is new and runs `execute` on a thread of its own; a
get_result request waits on its service handler thread (the port lets a handler block) until
the goal ends. As rcl's, the client's `wait_for_server` waits for the three services and
for publishers on the feedback and status topics (so that no early feedback is lost).
Ended goals are kept for rcl's default result timeout (15 min), at most `KEPT_GOALS` of
them. It knows the wire, nothing of what a goal means. `PortActions` gives a node class
(dds, memory) the port's action methods.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
import time
import uuid

from colvlm_msgs import stamps
from colvlm_msgs.qos import QosProfile
from colvlm_msgs.transport import port

# rcl_action's defaults: feedback as rmw_qos_profile_default, status latched for late joiners.
FEEDBACK_QOS = QosProfile('action_feedback', depth=10)
STATUS_QOS = QosProfile('action_status', durability='transient_local', depth=1)
RESULT_KEEP_S = 900.0      # rcl_action's default result_timeout
KEPT_GOALS = 256           # ended goals held for get_result, newest first
_STATUS = 'action_msgs/msg/GoalStatus'
_CANCEL = 'action_msgs/srv/CancelGoal'


class PortActions:
    """The port's action methods for a port.WireTypesNode (mixed in before it)."""

    def action_type(self, name: str):
        return self._types.action(name)

    def create_action_server(self, action_type: str, name: str,
                             execute: Callable) -> PortActionServer:
        return PortActionServer(self, action_type, name, execute)

    def create_action_client(self, action_type: str, name: str) -> PortActionClient:
        return PortActionClient(self, action_type, name)


def action_topics(name: str) -> dict[str, str]:
    """The five endpoint names of action `name`, by role."""
    return {role: f'{name}/_action/{role}'
            for role in ('send_goal', 'get_result', 'cancel_goal', 'feedback', 'status')}


class _Goal(port.GoalHandle):
    def __init__(self, server: PortActionServer, goal_id: bytes, goal, stamp_ns: int):
        self.goal_id, self.goal, self.stamp_ns = goal_id, goal, stamp_ns
        self.cancel_requested = threading.Event()
        self.ended = threading.Event()
        self.status = server.codes.STATUS_ACCEPTED
        self.result = None
        self.ended_at = 0.0             # monotonic s
        self.end_canceled = False
        self._server = server

    def publish_feedback(self, feedback) -> None:
        self._server.publish_feedback(self, feedback)

    def canceled(self) -> None:
        if not self.cancel_requested.is_set():
            raise RuntimeError('goal was not asked to cancel: it cannot end CANCELED')
        self.end_canceled = True


class PortActionServer(port.ActionServer):
    def __init__(self, node: port.Node, action_type: str, name: str, execute: Callable):
        self._node, self._execute = node, execute
        self._types = node.action_type(action_type)
        self.action = node.resolve_name(name)
        self.codes = node.message_type(_STATUS)
        self._goals: dict[bytes, _Goal] = {}
        self._lock = threading.Lock()
        topics = action_topics(name)
        self._feedback = node.create_publisher(self._types.feedback_message.name,
                                               topics['feedback'], FEEDBACK_QOS)
        self._status = node.create_publisher('action_msgs/msg/GoalStatusArray',
                                             topics['status'], STATUS_QOS)
        node.create_service(self._types.send_goal.name, topics['send_goal'], self._send_goal)
        node.create_service(self._types.get_result.name, topics['get_result'],
                            self._get_result)
        node.create_service(_CANCEL, topics['cancel_goal'], self._cancel_goal)
        self._publish_status()  # no goals yet: what a status reader joining now is told

    def _send_goal(self, request):
        goal_id = bytes(request.goal_id.uuid)
        response = self._types.send_goal.Response()
        with self._lock:
            self._forget_old()
            if goal_id in self._goals:  # rcl refuses a UUID it already holds
                return response
            goal = _Goal(self, goal_id, request.goal, self._node.now_ns())
            self._goals[goal_id] = goal
        self._publish_status()
        threading.Thread(target=self._run, args=(goal,), name=f'{self.action} goal',
                         daemon=True).start()
        response.accepted = True
        stamps.fill(response.stamp, goal.stamp_ns)
        return response

    def _run(self, goal: _Goal) -> None:
        self._set_status(goal, self.codes.STATUS_EXECUTING)
        try:
            goal.result = self._execute(goal)
            status = self.codes.STATUS_CANCELED if goal.end_canceled \
                else self.codes.STATUS_SUCCEEDED
        except Exception as error:
            self._node.logger.error(f'action {self.action}: a goal failed: {error!r}')
            goal.result, status = self._types.Result(), self.codes.STATUS_ABORTED
        goal.ended_at = time.monotonic()
        self._set_status(goal, status)
        goal.ended.set()

    def _get_result(self, request):
        with self._lock:
            goal = self._goals.get(bytes(request.goal_id.uuid))
        response = self._types.get_result.Response()
        if goal is None:
            return response  # status UNKNOWN: no such goal (or it was forgotten)
        goal.ended.wait()
        response.status, response.result = goal.status, goal.result
        return response

    def _cancel_goal(self, request):
        """CancelGoal.srv's policy: a zero UUID names every goal, a stamp every goal accepted
        at or before it; only goals still accepted or executing are cancelled."""
        response = self._node.service_type(_CANCEL).Response()
        goal_id = bytes(request.goal_info.goal_id.uuid)
        before_ns = stamps.to_ns(request.goal_info.stamp)
        every = not any(goal_id)
        with self._lock:
            unknown = not every and goal_id not in self._goals
            named = [g for g in self._goals.values()
                     if (every and not before_ns) or g.goal_id == goal_id
                     or (before_ns and g.stamp_ns <= before_ns)]
            live = (self.codes.STATUS_ACCEPTED, self.codes.STATUS_EXECUTING)
            chosen = [g for g in named if g.status in live]
            for goal in chosen:
                goal.status = self.codes.STATUS_CANCELING
        if not chosen:
            response.return_code = (
                response.ERROR_UNKNOWN_GOAL_ID if unknown and not named
                else response.ERROR_GOAL_TERMINATED if named else response.ERROR_REJECTED)
            return response
        for goal in chosen:
            goal.cancel_requested.set()
            response.goals_canceling.append(self._goal_info(goal))
        self._publish_status()
        return response

    def publish_feedback(self, goal: _Goal, feedback) -> None:
        message = self._feedback_type()
        message.goal_id.uuid, message.feedback = list(goal.goal_id), feedback
        self._feedback.publish(message)

    @property
    def _feedback_type(self) -> type:
        return self._node.message_type(self._types.feedback_message.name)

    def _set_status(self, goal: _Goal, status: int) -> None:
        with self._lock:
            # A cancel accepted meanwhile stays CANCELING until the goal ends.
            if not (status == self.codes.STATUS_EXECUTING
                    and goal.status == self.codes.STATUS_CANCELING):
                goal.status = status
        self._publish_status()

    def _goal_info(self, goal: _Goal):
        info = self._node.message_type('action_msgs/msg/GoalInfo')()
        info.goal_id.uuid = list(goal.goal_id)
        stamps.fill(info.stamp, goal.stamp_ns)
        return info

    def _publish_status(self) -> None:
        with self._lock:
            goals = list(self._goals.values())
        message = self._node.message_type('action_msgs/msg/GoalStatusArray')()
        message.status_list = [self.codes(goal_info=self._goal_info(goal), status=goal.status)
                               for goal in goals]
        self._status.publish(message)

    def _forget_old(self) -> None:
        """Drop ended goals past the result timeout, and the oldest beyond KEPT_GOALS."""
        now = time.monotonic()
        ended = sorted((g for g in self._goals.values() if g.ended.is_set()),
                       key=lambda g: g.ended_at)
        for index, goal in enumerate(ended):
            if now - goal.ended_at > RESULT_KEEP_S or index < len(ended) - KEPT_GOALS:
                del self._goals[goal.goal_id]


class _ClientGoal(port.ClientGoal):
    def __init__(self, client: PortActionClient, goal_id: bytes, accepted: bool):
        self.goal_id, self.accepted, self._client = goal_id, accepted, client

    def result(self, timeout: float) -> tuple[int, object]:
        request = self._client.types.get_result.Request()
        request.goal_id.uuid = list(self.goal_id)
        response = self._client.get_result.call(request, timeout)
        return int(response.status), response.result

    def cancel(self, timeout: float) -> int:
        request = self._client.cancel_goal_type.Request()
        request.goal_info.goal_id.uuid = list(self.goal_id)
        return int(self._client.cancel_goal.call(request, timeout).return_code)


class PortActionClient(port.ActionClient):
    def __init__(self, node: port.Node, action_type: str, name: str):
        self.types = node.action_type(action_type)
        self.action = node.resolve_name(name)
        topics = action_topics(name)
        self.send = node.create_client(self.types.send_goal.name, topics['send_goal'])
        self.get_result = node.create_client(self.types.get_result.name, topics['get_result'])
        self.cancel_goal_type = node.service_type(_CANCEL)
        self.cancel_goal = node.create_client(_CANCEL, topics['cancel_goal'])
        self._feedback: dict[bytes, Callable] = {}
        self._lock = threading.Lock()
        self._topics = (
            node.create_subscription(self.types.feedback_message.name, topics['feedback'],
                                     self._on_feedback, FEEDBACK_QOS),
            node.create_subscription('action_msgs/msg/GoalStatusArray', topics['status'],
                                     lambda _: None, STATUS_QOS))

    def _on_feedback(self, message) -> None:
        with self._lock:
            callback = self._feedback.get(bytes(message.goal_id.uuid))
        if callback is not None:
            callback(message.feedback)

    def wait_for_server(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not all(client.wait_for_service(max(0.0, deadline - time.monotonic()))
                   for client in (self.send, self.get_result, self.cancel_goal)):
            return False
        while any(topic.publisher_count() == 0 for topic in self._topics):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def send_goal(self, goal, timeout: float, feedback: Callable | None = None) -> _ClientGoal:
        goal_id = uuid.uuid4().bytes
        if feedback is not None:  # before sending: the first feedback may come at once
            with self._lock:
                self._feedback[goal_id] = feedback
        request = self.types.send_goal.Request(goal=goal)
        request.goal_id.uuid = list(goal_id)
        try:
            accepted = bool(self.send.call(request, timeout).accepted)
        except port.ServiceTimeout:
            with self._lock:
                self._feedback.pop(goal_id, None)
            raise
        return _ClientGoal(self, goal_id, accepted)
