"""Launch test (colcon test on a ROS 2 machine): `colvlm.launch.py source:=<folder>` as a
user runs it, then the `colvlm` command colcon installed asks on the `ros` backend. A folder
of four images loops by default, so the first question after the server's ready line is
answered OK (a folder played once was over before the model had loaded: NO_FRAME).

Run by `add_launch_test` (launch_testing); plain pytest skips it where ROS 2 is absent.
"""

import re
import shutil
import subprocess
import tempfile
import unittest
import uuid

import pytest

pytest.importorskip('launch_testing', reason='launch_testing (ROS 2) is absent')

import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from launch.substitutions import PathJoinSubstitution  # noqa: E402
from launch_ros.substitutions import FindPackageShare  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402

NAMESPACE = f'launch_test_{uuid.uuid4().hex[:6]}'


@pytest.mark.launch_test
def generate_test_description():
    from colvlm_bench.glyphvqa import write_dataset

    folder = tempfile.mkdtemp(prefix='colvlm_launch_')
    write_dataset(folder, n_images=4, seed=3)
    both = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare('colvlm'), 'launch', 'colvlm.launch.py'])),
        launch_arguments={'namespace': NAMESPACE, 'source': f'{folder}/images'}.items())
    return launch.LaunchDescription([both, launch_testing.actions.ReadyToTest()]), {}


class TestAsk(unittest.TestCase):
    def test_the_installed_colvlm_asks_and_the_first_answer_is_ok(self, proc_output):
        proc_output.assertWaitFor(
            expected_output=re.compile(rf'ready: .*serving /{NAMESPACE}/colvlm/ask'),
            timeout=240, stream='stderr')
        command = shutil.which('colvlm')
        self.assertIsNotNone(command, 'no colvlm on PATH: is the workspace sourced?')
        result = subprocess.run(
            [command, 'ask', 'What color is the circle?', '--namespace', NAMESPACE,
             '--transport', 'ros', '--timeout', '120'],
            capture_output=True, text=True, timeout=240)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn('OK', result.stdout)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        # SIGINT from the launch service ends both nodes; rclpy may report it as -2.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
