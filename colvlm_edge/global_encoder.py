"""Shrink an original to the server model's encoder input and compress it: the global frame.

The pixels are exactly what `GlobalGeometry.fit` describes (resized to round(original * scale),
pasted or cut at integer offsets), so boxes map between the two images without drift. In
byte-budget mode the quality is searched so that the frame fits one uplink sample. It knows
nothing about transports, stamps or the model itself beyond its input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from colvlm_msgs.geometry import PREPROCESS_MODES, GlobalGeometry
from colvlm_msgs.image_codec import (
    CODECS,
    QUALITY_RANGES,
    check_quality,
    encode_image,
    format_string,
)
from colvlm_msgs.param_fields import check_fields, parameter

# CLIP's image mean (0.48145466, 0.4578275, 0.40821073) * 255 is RGB (122, 116, 104); here it
# is written BGR. LLaVA-1.5 pads with this colour (expand2square), which normalises to ~0, so
# the padding carries no signal into the vision tower.
CLIP_MEAN_BGR = (104, 116, 122)


@dataclass(frozen=True)
class GlobalEncoderConfig:
    """How the global frame is made; validated on construction (errors name field and value).

    quality applies when byte_budget == 0; with a budget (bytes, lossy codecs only) the encoder
    picks the highest quality in [min_quality, 100] that fits.
    """

    # The defaults are the bundled model's encoder input (128 px).
    width: int = parameter('global.width', 128, 'encoder input width', unit='px', min=16,
                           max=4096)
    height: int = parameter('global.height', 128, 'encoder input height', unit='px', min=16,
                            max=4096)
    preprocess: str = parameter('global.preprocess', 'pad', 'how the original becomes the '
                                'encoder input', choices=PREPROCESS_MODES)
    codec: str = parameter('global.codec', 'jpeg', 'codec of global frames', choices=CODECS)
    quality: int = parameter('global.quality', 85, 'jpeg/webp quality 1..100 (png: level '
                             '0..9)', min=0, max=100)
    byte_budget: int = parameter(
        'global.byte_budget', 0, 'bytes per global frame; the highest quality that fits is '
        'used; 0 = off', min=0, max=100_000_000)
    min_quality: int = parameter('global.min_quality', 10, 'lowest quality the byte budget '
                                 'may pick', min=1, max=100)
    pad_color: tuple[int, int, int] = CLIP_MEAN_BGR  # BGR, 0..255; not a node parameter

    def __post_init__(self) -> None:
        check_fields(self)
        color = tuple(self.pad_color) if isinstance(self.pad_color, (tuple, list)) else None
        if color is None or len(color) != 3 or not all(
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255
                for c in color):
            raise ValueError(f'pad_color must be 3 ints 0..255 (BGR), got {self.pad_color!r}')
        object.__setattr__(self, 'pad_color', tuple(int(c) for c in color))
        check_quality(self.codec, self.quality, 'global.quality')
        if self.byte_budget and self.codec == 'png':
            raise ValueError(f'global.byte_budget needs a lossy codec (jpeg or webp), got '
                             f'global.codec {self.codec!r} with byte_budget={self.byte_budget}')
        if self.codec != 'png':
            check_quality(self.codec, self.min_quality, 'global.min_quality')

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the global frame, px."""
        return (self.width, self.height)


@dataclass(frozen=True)
class EncodedGlobal:
    """One encoded global frame and how it was made from its original."""

    data: bytes  # the encoded file
    codec: str
    quality: int  # the quality actually used
    geometry: GlobalGeometry  # original px -> global px
    over_budget: bool = False  # even min_quality did not fit byte_budget

    @property
    def width(self) -> int:
        return self.geometry.global_width

    @property
    def height(self) -> int:
        return self.geometry.global_height

    @property
    def format(self) -> str:
        """image_transport's CompressedImage.format for data."""
        return format_string(self.codec)


def render_geometry(image: np.ndarray, geometry: GlobalGeometry,
                    pad_color: tuple[int, int, int] = CLIP_MEAN_BGR) -> np.ndarray:
    """The pixels geometry describes: image (H, W, 3) uint8 -> (global_h, global_w, 3) uint8.

    Shared with the RoI crop, so crops and global frames map the same way. The result may be a
    view of image (no resize needed) or of a temporary; copy it before writing to it.
    """
    height, width = image.shape[:2]
    if (width, height) != (geometry.original_width, geometry.original_height):
        raise ValueError(f'image is {width}x{height} but the geometry expects '
                         f'{geometry.original_width}x{geometry.original_height}')
    resized_width, resized_height = geometry.resized_size
    if (resized_width, resized_height) == (width, height):
        resized = image
    else:
        # INTER_AREA averages the source pixels a destination pixel covers: no aliasing of
        # fine detail when shrinking. It degrades to bilinear-like blur when enlarging, where
        # INTER_LINEAR is the cheaper equal.
        shrinking = resized_width <= width and resized_height <= height
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resized = cv2.resize(image, (resized_width, resized_height), interpolation=interpolation)
    out_width, out_height = geometry.global_width, geometry.global_height
    offset_x, offset_y = int(geometry.offset_x), int(geometry.offset_y)
    if (resized_width, resized_height) == (out_width, out_height):  # 'resize', or exact fit
        return resized
    if geometry.preprocess == 'center_crop':
        # Offsets are <= 0: the resized image overhangs the frame and is cut. A view is
        # enough: cv2.imencode reads strided arrays.
        return resized[-offset_y:-offset_y + out_height, -offset_x:-offset_x + out_width]
    # copyMakeBorder, not a numpy fill: broadcasting a 3-vector over the canvas costs ~100x
    # more than the border itself.
    return cv2.copyMakeBorder(resized, offset_y, out_height - resized_height - offset_y,
                              offset_x, out_width - resized_width - offset_x,
                              cv2.BORDER_CONSTANT, value=tuple(int(c) for c in pad_color))

class GlobalEncoder:
    """Turns originals into EncodedGlobal frames under one GlobalEncoderConfig."""

    def __init__(self, config: GlobalEncoderConfig) -> None:
        self.config = config
        self._geometry_cache: dict[tuple[int, int], GlobalGeometry] = {}

    def geometry_for(self, original_width: int, original_height: int) -> GlobalGeometry:
        key = (original_width, original_height)
        geometry = self._geometry_cache.get(key)
        if geometry is None:
            config = self.config
            geometry = GlobalGeometry.fit(original_width, original_height, config.width,
                                          config.height, config.preprocess)
            self._geometry_cache[key] = geometry
        return geometry

    def render(self, image: np.ndarray) -> tuple[np.ndarray, GlobalGeometry]:
        """The global frame's pixels (height, width, 3) uint8 BGR, before compression."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] != 3:
            raise ValueError(f'image must be a (H, W, 3) uint8 BGR array, got '
                             f'{getattr(image, "shape", None)} {getattr(image, "dtype", None)}')
        geometry = self.geometry_for(image.shape[1], image.shape[0])
        return render_geometry(image, geometry, self.config.pad_color), geometry

    def encode(self, image: np.ndarray) -> EncodedGlobal:
        """Render and compress one original (H, W, 3) uint8 BGR."""
        pixels, geometry = self.render(image)
        config = self.config
        if not config.byte_budget:
            data = encode_image(pixels, config.codec, config.quality)
            return EncodedGlobal(data, config.codec, config.quality, geometry)
        quality, data, fits = _fit_budget(pixels, config.codec, config.min_quality,
                                          config.byte_budget)
        return EncodedGlobal(data, config.codec, quality, geometry, over_budget=not fits)


def _fit_budget(pixels: np.ndarray, codec: str, min_quality: int,
                budget: int) -> tuple[int, bytes, bool]:
    """(quality, data, fits): the highest quality whose encoding is <= budget bytes.

    Binary search assumes size grows with quality, which jpeg and webp follow closely but not
    strictly; whatever it returns has been measured to fit, so the budget is never broken.
    """
    low_data = encode_image(pixels, codec, min_quality)
    if len(low_data) > budget:
        return min_quality, low_data, False
    best_quality, best_data = min_quality, low_data
    low, high = min_quality + 1, QUALITY_RANGES[codec][1]
    while low <= high:
        middle = (low + high) // 2
        data = encode_image(pixels, codec, middle)
        if len(data) <= budget:
            best_quality, best_data = middle, data
            low = middle + 1
        else:
            high = middle - 1
    return best_quality, best_data, True
