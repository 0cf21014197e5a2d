"""Where a global frame's pixels come from in the original image, and back.

The edge shrinks each original to the server model's encoder input by one of three
preprocessings; the server finds regions on the global frame and asks for crops in original
pixels. Both ends use this one description, so a box survives the round trip exactly. The
conversions to and from messages (colvlm/msg/FrameGeometry, sensor_msgs/RegionOfInterest)
live here too, reading fields by name so any backend's classes do; it knows nothing about
codecs or transports.
"""

from __future__ import annotations

from dataclasses import dataclass

PREPROCESS_MODES = ('pad', 'center_crop', 'resize')


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, [x0, x1) x [y0, y1), in some image's pixels (floats allowed)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def intersection(self, other: Box) -> Box:
        return Box(max(self.x0, other.x0), max(self.y0, other.y0),
                   min(self.x1, other.x1), min(self.y1, other.y1))


@dataclass(frozen=True)
class GlobalGeometry:
    """x_global = x_original * scale_x + offset_x (same for y), all in pixels."""

    original_width: int
    original_height: int
    global_width: int
    global_height: int
    preprocess: str
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    @classmethod
    def fit(cls, original_width: int, original_height: int, global_width: int,
            global_height: int, preprocess: str) -> GlobalGeometry:
        """The geometry of shrinking an original into a global_width x global_height frame.

        pad keeps the aspect ratio and centres the image on a filled canvas (LLaVA-1.5's
        'pad' image aspect ratio); center_crop keeps the aspect ratio and cuts the longer
        side (CLIP's processor); resize stretches. Resized sizes are whole pixels, so the
        mapping is exactly what cv2.resize + paste did.
        """
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f'preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}')
        for name, value in (('original_width', original_width),
                            ('original_height', original_height),
                            ('global_width', global_width), ('global_height', global_height)):
            if int(value) <= 0:
                raise ValueError(f'{name} must be positive, got {value!r}')
        if preprocess == 'resize':
            return cls(original_width, original_height, global_width, global_height, preprocess,
                       global_width / original_width, global_height / original_height, 0.0, 0.0)
        pick = min if preprocess == 'pad' else max
        scale = pick(global_width / original_width, global_height / original_height)
        resized_width = max(1, round(original_width * scale))
        resized_height = max(1, round(original_height * scale))
        # Integer offsets: the resized image is pasted (or cut) at whole pixels.
        offset_x = (global_width - resized_width) // 2
        offset_y = (global_height - resized_height) // 2
        return cls(original_width, original_height, global_width, global_height, preprocess,
                   resized_width / original_width, resized_height / original_height,
                   float(offset_x), float(offset_y))

    @property
    def resized_size(self) -> tuple[int, int]:
        """(width, height) of the original after scaling, before padding or cutting."""
        return (round(self.original_width * self.scale_x),
                round(self.original_height * self.scale_y))

    def to_global(self, box: Box) -> Box:
        sx, sy, ox, oy = self.scale_x, self.scale_y, self.offset_x, self.offset_y
        return Box(box.x0 * sx + ox, box.y0 * sy + oy, box.x1 * sx + ox, box.y1 * sy + oy)

    def to_original(self, box: Box) -> Box:
        sx, sy, ox, oy = self.scale_x, self.scale_y, self.offset_x, self.offset_y
        return Box((box.x0 - ox) / sx, (box.y0 - oy) / sy, (box.x1 - ox) / sx, (box.y1 - oy) / sy)

    def original_box(self) -> Box:
        return Box(0.0, 0.0, float(self.original_width), float(self.original_height))


_GEOMETRY_FIELDS = ('original_width', 'original_height', 'global_width', 'global_height',
                    'preprocess', 'scale_x', 'scale_y', 'offset_x', 'offset_y')


def geometry_from_message(message) -> GlobalGeometry:
    """The GlobalGeometry a colvlm/msg/FrameGeometry carries."""
    return GlobalGeometry(*(getattr(message, name) for name in _GEOMETRY_FIELDS))


def fill_geometry_message(message, geometry: GlobalGeometry):
    """`message` (a colvlm/msg/FrameGeometry) carrying `geometry`; returns `message`."""
    for name in _GEOMETRY_FIELDS:
        setattr(message, name, getattr(geometry, name))
    return message


def fill_roi(roi, x0: float, y0: float, x1: float, y1: float):
    """`roi` (a sensor_msgs/RegionOfInterest) set to box edges in px; returns `roi`."""
    roi.x_offset, roi.y_offset = int(x0), int(y0)
    roi.width, roi.height = max(0, int(x1) - int(x0)), max(0, int(y1) - int(y0))
    return roi


def roi_box(roi) -> Box:
    """The Box a sensor_msgs/RegionOfInterest covers."""
    return Box(roi.x_offset, roi.y_offset, roi.x_offset + roi.width, roi.y_offset + roi.height)
