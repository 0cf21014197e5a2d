"""Launch test (colcon test on a ROS 2 machine): edge and server from their installed entry
points, one question over `colvlm/ask`, an answer with content, clean exits.

Run by `add_launch_test` (launch_testing); plain pytest skips it where ROS 2 is absent.
"""

import time
import unittest
import uuid

import pytest

pytest.importorskip('launch_testing', reason='launch_testing (ROS 2) is absent')

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402

NAMESPACE = f'launch_test_{uuid.uuid4().hex[:6]}'


@pytest.mark.launch_test
def generate_test_description():
    env = {'COLVLM_TRANSPORT': 'ros', 'HF_HUB_OFFLINE': '1'}
    edge = launch_ros.actions.Node(
        package='colvlm', executable='edge_node', name='edge', namespace=NAMESPACE,
        parameters=[{'source.uri': 'synthetic', 'source.fps': 2.0}], additional_env=env,
        output='screen')
    server = launch_ros.actions.Node(
        package='colvlm', executable='server_node', name='server', namespace=NAMESPACE,
        parameters=[{'policy': 'always'}], additional_env=env, output='screen')
    description = launch.LaunchDescription([edge, server,
                                            launch_testing.actions.ReadyToTest()])
    return description, {'edge': edge, 'server': server}


class TestAsk(unittest.TestCase):
    def test_a_question_gets_an_answer_with_its_costs(self, proc_output, server):
        from colvlm.srv import Ask
        import rclpy

        proc_output.assertWaitFor('ready', process=server, timeout=180, stream='stderr')
        rclpy.init()
        try:
            node = rclpy.create_node('colvlm_launch_test_client')
            client = node.create_client(Ask, f'/{NAMESPACE}/colvlm/ask')
            self.assertTrue(client.wait_for_service(timeout_sec=30.0))
            request = Ask.Request()
            request.query.query_id = 'launch-test-1'
            request.query.question = 'What color is the circle?'
            answer = None
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline:  # until the server has a frame from the edge
                future = client.call_async(request)
                rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
                answer = future.result().answer
                if answer.status != answer.STATUS_NO_FRAME:
                    break
                time.sleep(0.5)  # the edge sends 2 frames/s: a no-frame answer comes at once
            self.assertEqual(answer.query_id, 'launch-test-1')
            self.assertEqual(answer.status, answer.STATUS_OK, answer.status_message)
            self.assertEqual(answer.decision, answer.DECISION_LOCAL_CROP)
            self.assertGreater(answer.uplink_crop_bytes, 0)
            self.assertEqual(answer.uplink_bytes,
                             answer.uplink_global_bytes + answer.uplink_crop_bytes)
            node.destroy_node()
        finally:
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        # SIGINT from the launch service ends both nodes; rclpy may report it as -2.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
