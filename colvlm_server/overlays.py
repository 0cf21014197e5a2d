"""What the server looked at, for RViz and Foxglove: each answer's ViCrop box on the global frame
as a `visualization_msgs/ImageMarker` on `colvlm/roi`, and, when asked for, that frame with the
box and the answer drawn on it as a `sensor_msgs/CompressedImage` on `colvlm/annotated/compressed`.

The Answer's RoI is in original pixels (what the edge cut); the marker is in global-frame
pixels, the picture the edge published on `<camera>/global/compressed` with the same stamp,
mapped by that frame's GlobalGeometry (colvlm_msgs/geometry.py). ImageMarker has no text type:
the box's colour says the decision and the answer text is drawn on the annotated image only.
The fill functions take message instances of any backend's classes; they know nothing of
queues or transports.
"""

from __future__ import annotations

import cv2
import numpy as np

from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision, first_line
from colvlm_msgs.geometry import Box, GlobalGeometry, roi_box
from colvlm_msgs.image_codec import encode_image, format_string

MARKER_TOPIC = 'colvlm/roi'
ANNOTATED_TOPIC = 'colvlm/annotated/compressed'  # image_transport's <base>/compressed
MARKER_NAMESPACE = 'colvlm/roi'
MARKER_ID = 0  # one box per server: each answer's marker replaces the previous one
POLYGON, ADD, REMOVE = 3, 0, 1  # visualization_msgs/ImageMarker constants
LINE_WIDTH_PX = 2.0
ANNOTATED_QUALITY = 80
# (r, g, b), 0..1, by decision: a crop that was used green, a wanted crop not received orange.
_COLORS = {Decision.LOCAL_CROP: (0.1, 0.9, 0.2), Decision.FALLBACK: (1.0, 0.6, 0.0)}
_OTHER_COLOR = (0.2, 0.6, 1.0)


def global_roi(answer, geometry: GlobalGeometry | None) -> Box | None:
    """The Answer's RoI (original px) in global-frame px, clipped to the frame; None when the
    answer used no crop or the box falls outside the frame."""
    roi = roi_box(answer.roi)
    if roi.area <= 0 or geometry is None:
        return None
    frame = Box(0.0, 0.0, float(geometry.global_width), float(geometry.global_height))
    box = geometry.to_global(roi).intersection(frame)
    return box if box.area > 0 else None


def decision_color(decision: int) -> tuple[float, float, float]:
    return _COLORS.get(decision, _OTHER_COLOR)


def fill_marker(marker, answer, geometry: GlobalGeometry | None):
    """`marker` (a visualization_msgs/ImageMarker) outlining the answer's RoI on the global
    frame it was asked about (stamp and frame_id of that frame), or removing the previous box
    when the answer used none; returns `marker`."""
    stamps.fill(marker.header.stamp, stamps.to_ns(answer.frame_stamp))
    marker.header.frame_id = answer.header.frame_id
    marker.ns, marker.id = MARKER_NAMESPACE, MARKER_ID
    box = global_roi(answer, geometry)
    if box is None:
        marker.action = REMOVE
        return marker
    marker.type, marker.action, marker.scale = POLYGON, ADD, LINE_WIDTH_PX
    point, color = type(marker.position), type(marker.outline_color)
    marker.points = [point(x=float(x), y=float(y), z=0.0) for x, y in
                     ((box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1))]
    r, g, b = decision_color(answer.decision)
    marker.outline_color = color(r=r, g=g, b=b, a=1.0)
    marker.filled = 0
    return marker


def annotate(image: np.ndarray, box: Box | None, text: str, decision: int) -> np.ndarray:
    """A copy of `image` ((h, w, 3) uint8 BGR) with `box` outlined and `text` on a dark band
    at the top."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    r, g, b = decision_color(decision)
    bgr = (int(b * 255), int(g * 255), int(r * 255))
    if box is not None:
        cv2.rectangle(out, (int(box.x0), int(box.y0)), (int(box.x1) - 1, int(box.y1) - 1),
                      bgr, max(1, round(LINE_WIDTH_PX)))
    if text:
        scale = max(0.3, out.shape[1] / 640)
        (_, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(out, (0, 0), (out.shape[1], height + baseline + 4), (0, 0, 0), -1)
        cv2.putText(out, text, (2, height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, bgr, 1,
                    cv2.LINE_AA)
    return out


def fill_annotated(message, answer, image, geometry: GlobalGeometry | None):
    """`message` (a sensor_msgs/CompressedImage): the global frame `image` with the answer's
    box and text, JPEG, stamped as the frame; returns `message`, or None when `image` is not
    a picture (policy 'layers' holds visual tokens)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        return None
    text = first_line(answer.answer or answer.status_message)
    drawn = annotate(image, global_roi(answer, geometry), text, answer.decision)
    stamps.fill(message.header.stamp, stamps.to_ns(answer.frame_stamp))
    message.header.frame_id = answer.header.frame_id
    message.format = format_string('jpeg')
    message.data = list(encode_image(drawn, 'jpeg', ANNOTATED_QUALITY))
    return message


class RoiOverlays:
    """Publishes each answer's marker, and its annotated frame when `annotated_image` is set.
    A drawing or publishing failure is logged and never stops the answer."""

    def __init__(self, node, annotated_image: bool):
        self.node = node
        self._marker_type = node.message_type('visualization_msgs/msg/ImageMarker')
        # Markers follow answers (reliable, none lost); annotated frames follow frames.
        self._markers = node.create_publisher('visualization_msgs/msg/ImageMarker',
                                              MARKER_TOPIC, 'answers')
        self._image_type = self._images = None
        if annotated_image:
            self._image_type = node.message_type('sensor_msgs/msg/CompressedImage')
            self._images = node.create_publisher('sensor_msgs/msg/CompressedImage',
                                                 ANNOTATED_TOPIC, 'frames')

    def publish(self, answer, frame) -> None:
        """`frame`: the server's held global frame the answer is about (pipeline.Frame)."""
        geometry = getattr(frame, 'geometry', None)
        try:
            self._markers.publish(fill_marker(self._marker_type(), answer, geometry))
            if self._images is not None:
                image = fill_annotated(self._image_type(), answer,
                                       getattr(frame, 'image', None), geometry)
                if image is not None:
                    self._images.publish(image)
        except Exception as error:  # an overlay is a debugging aid; the answer goes out
            self.node.logger.warning(f'RoI overlay for {answer.query_id!r} not published: '
                                     f'{first_line(error)}')
