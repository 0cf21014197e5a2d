"""Actions on the `ros` backend: the port's action server and client as thin wrappers of
rclpy.action, in the node's reentrant callback group.

rclpy runs `execute` as the goal's execute callback on an executor thread (it may block: the
executor has several), accepts every goal and every cancel request, and ends a goal as the
port says: CANCELED when `execute` called `canceled()`, ABORTED when it raised, else
SUCCEEDED. Client calls wait on rclpy's futures with a timeout, as RosClient does.
"""

from __future__ import annotations

from collections.abc import Callable
import threading

from rclpy.action import ActionClient, ActionServer, CancelResponse

from colvlm_msgs.transport import port


class RosGoalHandle(port.GoalHandle):
    def __init__(self, handle):
        self._handle = handle
        self.goal_id, self.goal = bytes(handle.goal_id.uuid), handle.request
        self.cancel_requested = threading.Event()
        self.end_canceled = False

    def publish_feedback(self, feedback) -> None:
        self._handle.publish_feedback(feedback)

    def canceled(self) -> None:
        if not self.cancel_requested.is_set():
            raise RuntimeError('goal was not asked to cancel: it cannot end CANCELED')
        self.end_canceled = True


class RosActionServer(port.ActionServer):
    def __init__(self, node, action_class, name: str, execute: Callable, group, logger):
        self.action = node.resolve_topic_name(name)
        self._execute, self._result, self._logger = execute, action_class.Result, logger
        self._running: dict[bytes, RosGoalHandle] = {}
        self._lock = threading.Lock()
        self._server = ActionServer(node, action_class, name, execute_callback=self._run,
                                    cancel_callback=self._on_cancel, callback_group=group)

    def _on_cancel(self, handle) -> CancelResponse:
        with self._lock:
            ours = self._running.get(bytes(handle.goal_id.uuid))
        if ours is not None:
            ours.cancel_requested.set()
        return CancelResponse.ACCEPT

    def _run(self, handle):
        ours = RosGoalHandle(handle)
        with self._lock:
            self._running[ours.goal_id] = ours
        if handle.is_cancel_requested:  # cancelled before it started
            ours.cancel_requested.set()
        try:
            result = self._execute(ours)
        except Exception as error:
            self._logger.error(f'action {self.action}: a goal failed: {error!r}')
            handle.abort()
            return self._result()
        finally:
            with self._lock:
                self._running.pop(ours.goal_id, None)
        if ours.end_canceled and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.succeed()
        return result

    def destroy(self) -> None:
        self._server.destroy()


def _wait(future, timeout: float, what: str):
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        raise port.ServiceTimeout(f'{what} did not answer within {timeout:.1f} s')
    return future.result()


class RosClientGoal(port.ClientGoal):
    def __init__(self, handle, action: str):
        self._handle, self._action = handle, action
        self.goal_id, self.accepted = bytes(handle.goal_id.uuid), bool(handle.accepted)

    def result(self, timeout: float) -> tuple[int, object]:
        response = _wait(self._handle.get_result_async(), timeout,
                         f'action {self._action!r} (get_result)')
        return int(response.status), response.result

    def cancel(self, timeout: float) -> int:
        response = _wait(self._handle.cancel_goal_async(), timeout,
                         f'action {self._action!r} (cancel_goal)')
        return int(response.return_code)


class RosActionClient(port.ActionClient):
    def __init__(self, node, action_class, name: str, group):
        self.action = node.resolve_topic_name(name)
        self._client = ActionClient(node, action_class, name, callback_group=group)

    def wait_for_server(self, timeout: float) -> bool:
        return self._client.wait_for_server(timeout_sec=timeout)

    def send_goal(self, goal, timeout: float,
                  feedback: Callable | None = None) -> RosClientGoal:
        if not self._client.wait_for_server(timeout_sec=timeout):
            raise port.ServiceTimeout(f'action {self.action!r} is not available (no server '
                                      f'within {timeout:.1f} s)')
        on_feedback = (lambda message: feedback(message.feedback)) if feedback else None
        handle = _wait(self._client.send_goal_async(goal, feedback_callback=on_feedback),
                       timeout, f'action {self.action!r} (send_goal)')
        return RosClientGoal(handle, self.action)
