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
