"""colvlm/roi: each answer's ViCrop box as a visualization_msgs/ImageMarker in global-frame
pixels, decoded by rosbags as ROS 2 would, and the optional annotated frame."""

from __future__ import annotations

import queue

from node_harness import TIMEOUT_S, UNSURE, Rig
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from colvlm_msgs.constants import Decision
from colvlm_msgs.geometry import GlobalGeometry, fill_roi, roi_box
from colvlm_msgs.image_codec import decode_image
from colvlm_msgs.typesupport import message_class
from colvlm_server.overlays import ADD, POLYGON, REMOVE, fill_annotated, fill_marker, global_roi

Answer = message_class('colvlm/msg/Answer')
ImageMarker = message_class('visualization_msgs/msg/ImageMarker')
CompressedImage = message_class('sensor_msgs/msg/CompressedImage')
# A 640x480 original padded into 320x320: scale 0.5, 40 px bands above and below.
GEOMETRY = GlobalGeometry.fit(640, 480, 320, 320, 'pad')


def answer_with_roi(x0, y0, x1, y1, decision=Decision.LOCAL_CROP):
    answer = Answer(answer='STOP', decision=int(decision))
    answer.header.frame_id = 'camera'
    answer.frame_stamp.sec, answer.frame_stamp.nanosec = 1_700_000_000, 5
    fill_roi(answer.roi, x0, y0, x1, y1)
    return answer


def corners(marker) -> list[tuple[float, float]]:
    return [(p.x, p.y) for p in marker.points]


def test_marker_is_the_answers_roi_in_global_frame_pixels():
    marker = fill_marker(ImageMarker(), answer_with_roi(100, 80, 300, 240), GEOMETRY)
    assert (marker.type, marker.action, marker.ns, marker.id) == (POLYGON, ADD, 'colvlm/roi', 0)
    # x: 100 * 0.5 = 50 .. 150; y: 80 * 0.5 + 40 = 80 .. 240 * 0.5 + 40 = 160.
    assert corners(marker) == [(50, 80), (150, 80), (150, 160), (50, 160)]
    assert (marker.header.stamp.sec, marker.header.stamp.nanosec) == (1_700_000_000, 5)
    assert marker.header.frame_id == 'camera'
    assert marker.outline_color.g > marker.outline_color.r and marker.outline_color.a == 1.0


def test_no_crop_removes_the_previous_box_and_boxes_are_clipped_to_the_frame():
    assert fill_marker(ImageMarker(), answer_with_roi(0, 0, 0, 0), GEOMETRY).action == REMOVE
    assert fill_marker(ImageMarker(), answer_with_roi(0, 0, 10, 10), None).action == REMOVE
    clipped = global_roi(answer_with_roi(600, 400, 900, 700), GEOMETRY)
    assert (clipped.x0, clipped.y0, clipped.x1, clipped.y1) == (300, 240, 320, 320)


def test_marker_cdr_decodes_in_the_ros2_type_stores():
    marker = fill_marker(ImageMarker(), answer_with_roi(100, 80, 300, 240), GEOMETRY)
    data = marker.serialize(use_version_2=False)
    for store in (Stores.ROS2_JAZZY, Stores.ROS2_HUMBLE):
        decoded = get_typestore(store).deserialize_cdr(data, 'visualization_msgs/msg/ImageMarker')
        assert [(p.x, p.y) for p in decoded.points] == corners(marker)
        assert (decoded.type, decoded.scale, decoded.ns) == (POLYGON, marker.scale, 'colvlm/roi')
        assert decoded.header.stamp.sec == 1_700_000_000


def test_annotated_frame_outlines_the_box_and_skips_visual_tokens():
    image = np.zeros((320, 320, 3), np.uint8)
    answer = answer_with_roi(100, 80, 300, 240)
    message = fill_annotated(CompressedImage(), answer, image, GEOMETRY)
    drawn = decode_image(bytes(message.data))
    assert drawn.shape == image.shape and message.format == 'bgr8; jpeg compressed bgr8'
    left_edge = drawn[100:140, 50].astype(int)  # (40, 3) BGR on the box's left side
    assert left_edge[:, 1].mean() > 150 > left_edge[:, 2].mean()
    assert drawn[200, 200].max() < 40  # inside the box: untouched
    assert fill_annotated(CompressedImage(), answer, object(), GEOMETRY) is None


@pytest.mark.parametrize('annotated', [False, True])
def test_server_publishes_the_box_of_each_answer(annotated):
    rig = Rig(**{'debug.annotated_image': annotated})
    markers, images = queue.Queue(), queue.Queue()
    rig.client.create_subscription('visualization_msgs/msg/ImageMarker', 'colvlm/roi',
                                   markers.put, 'answers')
    rig.client.create_subscription('sensor_msgs/msg/CompressedImage',
                                   'colvlm/annotated/compressed', images.put, 'frames')
    try:
        stamp = rig.feed()
        cropped = rig.ask(f'{UNSURE} what is written?', policy='entropy')
        assert cropped.decision == Decision.LOCAL_CROP
        marker = markers.get(timeout=TIMEOUT_S)
        geometry = rig.server.links[0].frames.geometry(stamp)
        box = geometry.to_global(roi_box(cropped.roi))
        assert corners(marker) == [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1),
                                   (box.x0, box.y1)]
        assert marker.header.stamp == cropped.frame_stamp
        rig.ask('what is written?', policy='entropy')
        assert markers.get(timeout=TIMEOUT_S).action == REMOVE
        if annotated:
            for _ in range(2):
                frame = decode_image(bytes(images.get(timeout=TIMEOUT_S).data))
                assert frame.shape[:2] == (geometry.global_height, geometry.global_width)
        assert images.empty()
    finally:
        rig.close()
