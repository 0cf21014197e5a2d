"""Geometry <-> message conversions (colvlm_msgs.geometry): what the edge writes the server
reads back exactly, through the real message classes and their CDR bytes."""

from __future__ import annotations

from colvlm_msgs.geometry import (
    Box,
    GlobalGeometry,
    fill_geometry_message,
    fill_roi,
    geometry_from_message,
    roi_box,
)
from colvlm_msgs.typesupport import message_class


def test_a_frame_geometry_survives_the_wire():
    cls = message_class('colvlm/msg/FrameGeometry')
    geometry = GlobalGeometry.fit(1280, 720, 336, 336, 'pad')
    message = fill_geometry_message(cls(), geometry)
    received = cls.deserialize(message.serialize(use_version_2=False))
    back = geometry_from_message(received)
    assert (back.original_width, back.original_height, back.global_width,
            back.global_height, back.preprocess) == (1280, 720, 336, 336, 'pad')
    for name in ('scale_x', 'scale_y', 'offset_x', 'offset_y'):
        assert abs(getattr(back, name) - getattr(geometry, name)) <= 1e-6 * max(
            1.0, abs(getattr(geometry, name))), name
    box = back.to_original(back.to_global(Box(100, 50, 300, 250)))
    assert abs(box.x1 - 300) < 1e-3 and abs(box.y0 - 50) < 1e-3


def test_a_region_of_interest_round_trips_and_never_goes_negative():
    roi = fill_roi(message_class('sensor_msgs/msg/RegionOfInterest')(), 10, 20, 110, 70)
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (10, 20, 100, 50)
    assert roi_box(roi) == Box(10, 20, 110, 70)
    inverted = fill_roi(message_class('sensor_msgs/msg/RegionOfInterest')(), 50, 50, 40, 40)
    assert (inverted.width, inverted.height) == (0, 0)
