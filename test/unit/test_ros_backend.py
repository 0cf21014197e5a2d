"""The rclpy backend, in one process (runs where ROS 2 is installed; skipped elsewhere)."""

from __future__ import annotations

import queue

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (no ROS 2 on this machine)')
pytest.importorskip('colvlm.msg', reason='colvlm interfaces not built (run colcon build)')


def test_publish_subscribe_and_service_through_rclpy():
    from colvlm_msgs.transport import create_node

    node = create_node('ros_backend_test', 'ros_test', backend='ros')
    try:
        received = queue.Queue()
        node.create_subscription('colvlm/msg/Query', 'colvlm/query', received.put, 'queries')
        publisher = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
        crop = node.service_type('colvlm/srv/CropRoi')
        node.create_service('colvlm/srv/CropRoi', 'colvlm/crop_roi',
                            lambda req: crop.Response(success=True,
                                                      status_message=f'm={req.margin}'))
        client = node.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')
        assert client.call(crop.Request(margin=4), timeout=10.0).status_message == 'm=4'
        query_type = node.message_type('colvlm/msg/Query')
        for _ in range(50):
            publisher.publish(query_type(query_id='ros-1'))
            try:
                assert received.get(timeout=0.2).query_id == 'ros-1'
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError('no message came back through rclpy')
        assert node.serialized_size(query_type(query_id='ros-1')) > 4
    finally:
        node.shutdown()


def test_ros_arguments_decide_the_node_name_and_namespace():
    # launch_ros places a node with `--ros-args -r __ns:=... -r __node:=...`; names resolve
    # against what rcl made of them, not against the constructor's arguments.
    from colvlm_msgs.transport import create_node

    rclpy.init(args=['edge_node', '--ros-args', '-r', '__ns:=/remapped', '-r', '__node:=cam'])
    try:
        node = create_node('edge', 'camera', backend='ros')
        try:
            assert (node.name, node.namespace) == ('cam', '/remapped')
            assert node.resolve_name('colvlm/crop_roi') == '/remapped/colvlm/crop_roi'
            assert node.resolve_name('~/status') == '/remapped/cam/status'
            with pytest.raises(ValueError):
                node.resolve_name('colvlm//crop_roi')
        finally:
            node.shutdown()
    finally:
        rclpy.try_shutdown()


def test_timer_parameters_and_a_call_without_server():
    from rclpy.parameter import Parameter

    from colvlm_edge.parameters import EDGE_PARAMETERS
    from colvlm_msgs.transport import ServiceTimeout, create_node

    node = create_node('ros_backend_misc', 'ros_test_misc', backend='ros')
    try:
        ticks = queue.Queue()
        timer = node.create_timer(0.05, lambda: ticks.put(True))
        assert ticks.get(timeout=5.0)
        timer.cancel()
        values = node.declare_parameters(EDGE_PARAMETERS, {'global.quality': 42})
        assert values['global.quality'] == 42
        assert values['source.uri'] == 'synthetic'
        # The node reads its parameters once: a later set is refused, not silently ignored.
        refused, = node._node.set_parameters([Parameter('global.quality', value=50)])
        assert not refused.successful and 'read-only' in refused.reason
        assert node._node.get_parameter('global.quality').value == 42
        client = node.create_client('colvlm/srv/CropRoi', 'colvlm/nobody_serves_this')
        with pytest.raises(ServiceTimeout, match='nobody_serves_this'):
            client.call(node.service_type('colvlm/srv/CropRoi').Request(), timeout=0.5)
    finally:
        node.shutdown()


def test_a_process_that_shuts_its_node_down_early_exits_cleanly():
    # Jazzy's Executor.shutdown() does not wait for the spinning thread: exiting under it
    # aborted the process (SIGABRT, "terminate called without an active exception").
    import subprocess
    import sys

    code = ('from colvlm_msgs.transport import create_node\n'
            'from colvlm_server.parameters import SERVER_PARAMETERS\n'
            "node = create_node('early_exit', 'ros_test_exit', backend='ros')\n"
            'node.declare_parameters(SERVER_PARAMETERS)\n'
            'node.shutdown()\n')
    for _ in range(3):
        result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr


def test_a_second_interrupt_during_shutdown_is_ignored():
    # A terminal's Ctrl-C reaches `ros2 launch` and its nodes alike, and launch then sends its
    # own SIGINT: that one, arriving inside shutdown(), ended it with a KeyboardInterrupt
    # traceback. Here the second SIGINT is sent as shutdown() starts, every time.
    import subprocess
    import sys

    code = ('import os, signal, threading\n'
            'from colvlm_msgs.transport import create_node\n'
            "node = create_node('second_sigint', 'ros_test_sigint', backend='ros')\n"
            'first_shutdown = node.shutdown\n'
            'def shutdown():\n'
            '    os.kill(os.getpid(), signal.SIGINT)\n'
            '    first_shutdown()\n'
            'node.shutdown = shutdown\n'
            'signal.signal(signal.SIGINT, signal.default_int_handler)\n'
            'threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n'
            'node.spin()\n'
            "print('stopped cleanly')\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and 'stopped cleanly' in result.stdout, result.stderr
    assert 'Traceback' not in result.stderr
