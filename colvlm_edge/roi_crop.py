"""Cut a detail-preserving crop out of a full-resolution original, as the server asked.

The requested box grows by a margin, is clamped to the image, and the cut is fitted into the
output size by the same 'pad' preprocessing as the global frame, so the server can map crop
pixels back to original pixels (`CropResult.to_original`). Bad requests raise CropRejected with
a one-line reason for the service's status_message. It knows nothing about stamps, buffers or
transports (colvlm_edge.rate_limit refuses request floods).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from colvlm_edge.global_encoder import CLIP_MEAN_BGR, render_geometry
from colvlm_msgs.geometry import Box, GlobalGeometry
from colvlm_msgs.image_codec import CODECS, check_quality, encode_image, format_string
from colvlm_msgs.param_fields import check_fields, parameter

# Used when a request names a codec but no quality, and the default quality is on another scale.
FALLBACK_QUALITY = {'jpeg': 90, 'webp': 90, 'png': 6}


class CropRejected(ValueError):
    """A crop request the edge will not serve; str() is the status message."""


@dataclass(frozen=True)
class CropLimits:
    """What the edge allows a crop request to ask for, and what it uses when a field is unset."""

    # 1344 px: 4x a 336 px encoder input (LLaVA-1.5's).
    max_output_width: int = parameter('crop.max_output_width', 1344, 'largest crop output '
                                      'width', unit='px', min=16, max=8192)
    max_output_height: int = parameter('crop.max_output_height', 1344, 'largest crop output '
                                       'height', unit='px', min=16, max=8192)
    default_codec: str = parameter('crop.codec', 'jpeg', 'codec of crops when the request '
                                   'names none', choices=CODECS)
    default_quality: int = parameter('crop.quality', 90, 'quality of crops when the request '
                                     'names none', min=0, max=100)
    # Not node parameters: the node sets the output size to its global.width/height.
    allowed_codecs: tuple[str, ...] = CODECS
    default_output_size: tuple[int, int] = (128, 128)  # (w, h) px: the encoder input
    pad_color: tuple[int, int, int] = CLIP_MEAN_BGR  # BGR

    def __post_init__(self) -> None:
        check_fields(self)
        allowed = tuple(self.allowed_codecs)
        if not allowed or any(codec not in CODECS for codec in allowed):
            raise ValueError(f'allowed_codecs must be a non-empty subset of {CODECS}, '
                             f'got {self.allowed_codecs!r}')
        object.__setattr__(self, 'allowed_codecs', allowed)
        size = tuple(self.default_output_size)
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in size) \
                or size[0] > self.max_output_width or size[1] > self.max_output_height:
            raise ValueError(f'default_output_size must be (w, h) positive ints within the '
                             f'maximum {self.max_output_width}x{self.max_output_height}, '
                             f'got {self.default_output_size!r}')
        object.__setattr__(self, 'default_output_size', (int(size[0]), int(size[1])))
        if self.default_codec not in allowed:
            raise ValueError(
                f'crop.codec must be one of {allowed}, got {self.default_codec!r}')
        check_quality(self.default_codec, self.default_quality, 'crop.quality')


@dataclass(frozen=True)
class CropResult:
    """An encoded crop and where it came from."""

    data: bytes  # the encoded file
    codec: str
    quality: int
    applied_box: tuple[int, int, int, int]  # (x, y, w, h) px in the original, after clamping
    clamped: bool  # the box (with margin) was cut to the image
    original_size: tuple[int, int]  # (w, h) px
    geometry: GlobalGeometry  # applied-box px (origin at its corner) -> output px, 'pad'
    message: str  # what was done, including any clamping

    @property
    def output_size(self) -> tuple[int, int]:
        """(w, h) px of the encoded crop."""
        return (self.geometry.global_width, self.geometry.global_height)

    @property
    def format(self) -> str:
        return format_string(self.codec)

    def to_original(self, box: Box) -> Box:
        """A box in the crop's output px -> the same box in original px."""
        local = self.geometry.to_original(box)
        x, y = self.applied_box[:2]
        return Box(local.x0 + x, local.y0 + y, local.x1 + x, local.y1 + y)

    def to_crop(self, box: Box) -> Box:
        """A box in original px -> the same box in the crop's output px."""
        x, y = self.applied_box[:2]
        return self.geometry.to_global(Box(box.x0 - x, box.y0 - y, box.x1 - x, box.y1 - y))


def crop_roi(image: np.ndarray, roi: tuple[int, int, int, int], margin: int = 0,
             output_size: Optional[tuple[int, int]] = None, codec: Optional[str] = None,
             quality: Optional[int] = None, limits: CropLimits = CropLimits()) -> CropResult:
    """Crop roi (x, y, w, h) px of image (H, W, 3) uint8 BGR, grown by margin px per side.

    output_size None or (0, 0), codec None or '', quality None take the limits' defaults.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        raise ValueError(f'image must be a (H, W, 3) uint8 BGR array, got '
                         f'{getattr(image, "shape", None)} {getattr(image, "dtype", None)}')
    height, width = image.shape[:2]
    x, y, w, h = _check_roi(roi)
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise CropRejected(f'margin must be an int >= 0 px, got {margin!r}')
    frame = Box(0, 0, width, height)
    if w <= 0 or h <= 0:
        raise CropRejected(f'roi {(x, y, w, h)} has no area (w and h must be > 0)')
    requested = Box(x, y, x + w, y + h)
    if requested.intersection(frame).area <= 0:
        raise CropRejected(f'roi {(x, y, w, h)} lies wholly outside the {width}x{height} image')
    grown = Box(x - margin, y - margin, x + w + margin, y + h + margin)
    cut = grown.intersection(frame)
    applied = (int(cut.x0), int(cut.y0), int(cut.width), int(cut.height))
    clamped = cut != grown

    out_width, out_height = _output_size(output_size, limits)
    codec = limits.default_codec if not codec else codec
    if codec not in limits.allowed_codecs:
        raise CropRejected(f'codec must be one of {limits.allowed_codecs}, got {codec!r}')
    if quality is None:
        # default_quality is on the default codec's scale; png's 0..9 is not jpeg's 1..100.
        same_scale = (codec == 'png') == (limits.default_codec == 'png')
        quality = limits.default_quality if same_scale else FALLBACK_QUALITY[codec]
    try:
        quality = check_quality(codec, quality)
    except ValueError as error:
        raise CropRejected(str(error)) from None

    ax, ay, aw, ah = applied
    geometry = GlobalGeometry.fit(aw, ah, out_width, out_height, 'pad')
    pixels = render_geometry(image[ay:ay + ah, ax:ax + aw], geometry, limits.pad_color)
    data = encode_image(pixels, codec, quality)
    message = f'cropped {applied} of {width}x{height} to {out_width}x{out_height} {codec}'
    if margin:
        message += f' (roi {(x, y, w, h)} + margin {margin})'
    if clamped:
        message = f'clamped to the image: {message}'
    return CropResult(data, codec, quality, applied, clamped, (width, height), geometry,
                      message)


def _check_roi(roi: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    try:
        values = tuple(roi)
    except TypeError:
        values = ()
    if len(values) != 4 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise CropRejected(f'roi must be 4 ints (x, y, w, h) px, got {roi!r}')
    return tuple(int(v) for v in values)


def _output_size(output_size: Optional[tuple[int, int]], limits: CropLimits) -> tuple[int, int]:
    if output_size is None:
        return limits.default_output_size
    try:
        out_width, out_height = output_size
    except (TypeError, ValueError):
        raise CropRejected(f'output_size must be (w, h) px, got {output_size!r}') from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
               for v in (out_width, out_height)):
        raise CropRejected(f'output_size must be (w, h) ints px, got {output_size!r}')
    if (out_width, out_height) == (0, 0):
        return limits.default_output_size
    if out_width < 1 or out_height < 1:
        raise CropRejected(f'output_size must be positive (or (0, 0) for the default), '
                           f'got {output_size!r}')
    if out_width > limits.max_output_width or out_height > limits.max_output_height:
        raise CropRejected(f'output_size {out_width}x{out_height} exceeds the maximum '
                           f'{limits.max_output_width}x{limits.max_output_height}')
    return int(out_width), int(out_height)


def crop_cost(output_width: int, output_height: int, limits: CropLimits) -> int:
    """Output pixels a request asks for, as a rate limiter counts them: (0, 0) is the default
    size, anything over the maximum costs the maximum (crop_roi refuses it anyway)."""
    if (output_width, output_height) == (0, 0):
        output_width, output_height = limits.default_output_size
    return (min(max(int(output_width), 1), limits.max_output_width)
            * min(max(int(output_height), 1), limits.max_output_height))
