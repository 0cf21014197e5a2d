"""The port's actions on the rclpy backend (rclpy.action), in one process: feedback, result,
cancel. Runs where ROS 2 and colvlm's built interfaces are installed; skipped elsewhere."""

from __future__ import annotations

import threading
import uuid

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (no ROS 2 on this machine)')
pytest.importorskip('colvlm.action', reason='colvlm interfaces not built (run colcon build)')

TIMEOUT_S = 30.0
SUCCEEDED, CANCELED = 4, 5  # action_msgs/msg/GoalStatus


@pytest.fixture
def node():
    from colvlm_msgs.transport import create_node

    made = create_node('ros_actions_test', f'ros_{uuid.uuid4().hex[:6]}', backend='ros')
    yield made
    made.shutdown()


def test_feedback_and_result_through_rclpy_actions(node):
    types = node.action_type('colvlm/action/Ask')

    def execute(goal):
        for stage in ('frame', 'first_pass'):
            goal.publish_feedback(types.Feedback(stage_name=stage,
                                                 query_id=goal.goal.query.query_id))
        result = types.Result()
        result.answer.query_id, result.answer.answer = goal.goal.query.query_id, 'global'
        return result

    node.create_action_server('colvlm/action/Ask', 'colvlm/ask', execute)
    client = node.create_action_client('colvlm/action/Ask', 'colvlm/ask')
    assert client.wait_for_server(TIMEOUT_S)
    seen, changed = [], threading.Condition()

    def on_feedback(feedback) -> None:
        with changed:
            seen.append((feedback.stage_name, feedback.query_id))
            changed.notify_all()

    goal = types.Goal()
    goal.query.query_id = 'ros-goal'
    sent = client.send_goal(goal, TIMEOUT_S, on_feedback)
    code, result = sent.result(TIMEOUT_S)
    assert sent.accepted and len(sent.goal_id) == 16
    assert code == SUCCEEDED and result.answer.answer == 'global'
    with changed:
        assert changed.wait_for(lambda: len(seen) == 2, TIMEOUT_S)
    assert seen == [('frame', 'ros-goal'), ('first_pass', 'ros-goal')]


def test_a_cancelled_goal_ends_canceled_with_its_result(node):
    types = node.action_type('colvlm/action/Ask')
    started = threading.Event()

    def execute(goal):
        started.set()
        assert goal.cancel_requested.wait(TIMEOUT_S)
        goal.canceled()
        result = types.Result()
        result.answer.status = result.answer.STATUS_CANCELED
        return result

    node.create_action_server('colvlm/action/Ask', 'colvlm/ask', execute)
    client = node.create_action_client('colvlm/action/Ask', 'colvlm/ask')
    assert client.wait_for_server(TIMEOUT_S)
    sent = client.send_goal(types.Goal(), TIMEOUT_S)
    assert started.wait(TIMEOUT_S)
    assert sent.cancel(TIMEOUT_S) == 0  # ERROR_NONE
    code, result = sent.result(TIMEOUT_S)
    assert code == CANCELED and result.answer.status == result.answer.STATUS_CANCELED
