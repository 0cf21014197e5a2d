"""The server's decode.max_pixels on the in-memory transport: a global frame whose header
declares more is dropped with one line and counted, never decoded nor held; frames within the
limit still arrive (the codec's header parsing: test_image_codec.py)."""

from __future__ import annotations

import time

from node_harness import TIMEOUT_S, Rig

from colvlm_msgs import stamps
from tools.hostile_inputs import forged_jpeg


def test_a_frame_declaring_too_many_pixels_is_dropped_and_counted(caplog):
    rig = Rig(**{'decode.max_pixels': 200 * 200})
    try:
        publisher = rig.client.create_publisher('sensor_msgs/msg/CompressedImage',
                                                'colvlm/global/compressed', 'frames')
        bomb = rig.client.message_type('sensor_msgs/msg/CompressedImage')(
            format='jpeg', data=list(forged_jpeg(30000, 30000)))
        stamps.fill(bomb.header.stamp, time.time_ns())
        publisher.publish(bomb)
        deadline = time.monotonic() + TIMEOUT_S
        while rig.server.dropped_frames < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rig.server.dropped_frames == 1
        (line,) = [r.getMessage() for r in caplog.records if '30000x30000' in r.getMessage()]
        assert 'over the limit of 40000' in line and '\n' not in line
        rig.feed()  # the edge's own 160x120 frames are still held
        assert rig.server.dropped_frames == 1
    finally:
        rig.close()
