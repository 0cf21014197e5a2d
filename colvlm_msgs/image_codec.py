"""Image payload codecs shared by the edge and the server: BGR arrays to file bytes and back.

Formats follow image_transport's compressed transport (`"bgr8; jpeg compressed bgr8"`), so a
`sensor_msgs/CompressedImage` from either end is readable by rqt and compressed_image_transport.
It knows nothing about messages, geometry or byte budgets; it only encodes and decodes.

Quality means what the codec means by it: jpeg and webp take 1..100 (higher = better, more
bytes); png is lossless and takes its zlib compression level 0..9 (higher = smaller, slower),
the same convention as `colvlm/srv/CropRoi.quality` and image_transport's `png_level`.
"""

from __future__ import annotations

import cv2
import numpy as np

# Everything known per codec, in one place: the file extension cv2.imencode wants (image
# transport wants the codec name), its quality flag and the quality range.
_TABLE = {
    'jpeg': ('.jpg', cv2.IMWRITE_JPEG_QUALITY, (1, 100)),
    'webp': ('.webp', cv2.IMWRITE_WEBP_QUALITY, (1, 100)),
    'png': ('.png', cv2.IMWRITE_PNG_COMPRESSION, (0, 9)),
}
CODECS = tuple(_TABLE)
QUALITY_RANGES = {codec: quality for codec, (_, _, quality) in _TABLE.items()}


class ImageDecodeError(ValueError):
    """Bytes that no codec could turn into an image."""


def check_codec(codec: str, name: str = 'codec') -> str:
    if codec not in CODECS:
        raise ValueError(f'{name} must be one of {CODECS}, got {codec!r}')
    return codec


def check_quality(codec: str, quality: int, name: str = 'quality') -> int:
    """The quality as an int, or ValueError naming the parameter, codec and range."""
    check_codec(codec)
    low, high = QUALITY_RANGES[codec]
    # bool is an int subclass; True as a quality is always a caller's mistake.
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
        raise ValueError(f'{name} must be an int in {low}..{high} for {codec}, got {quality!r}')
    if not low <= quality <= high:
        raise ValueError(f'{name} must be in {low}..{high} for {codec}, got {quality!r}')
    return int(quality)


def encode_image(image_bgr: np.ndarray, codec: str, quality: int) -> bytes:
    """Encode a (H, W, 3) uint8 BGR image into the bytes of a jpeg, webp or png file."""
    quality = check_quality(codec, quality)
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 \
            or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        shape = getattr(image_bgr, 'shape', None)
        dtype = getattr(image_bgr, 'dtype', type(image_bgr).__name__)
        raise ValueError(f'image_bgr must be a (H, W, 3) uint8 array, got {shape} {dtype}')
    if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ValueError(f'image_bgr must not be empty, got shape {image_bgr.shape}')
    extension, quality_flag, _ = _TABLE[codec]
    ok, buffer = cv2.imencode(extension, image_bgr, [quality_flag, quality])
    if not ok:
        raise RuntimeError(f'cv2.imencode failed for codec {codec!r}')
    return buffer.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """Decode jpeg/webp/png file bytes into a (H, W, 3) uint8 BGR image.

    Grey or alpha images come back as 3-channel BGR, 16-bit ones scaled to 8 bits, so callers
    see one layout whatever the sender chose.
    """
    buffer = np.frombuffer(bytes(data), dtype=np.uint8)
    if buffer.size == 0:
        raise ImageDecodeError('cannot decode image: no bytes')
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else 'cv2 error'
        raise ImageDecodeError(f'cannot decode image of {buffer.size} bytes: {first_line}') \
            from None
    if image is None:
        raise ImageDecodeError(
            f'cannot decode image of {buffer.size} bytes (starts {bytes(buffer[:8])!r}): '
            'not a readable jpeg, webp or png')
    return image  # (H, W, 3) uint8 BGR


def format_string(codec: str) -> str:
    """image_transport's CompressedImage.format for a bgr8 image in this codec."""
    check_codec(codec)
    return f'bgr8; {codec} compressed bgr8'


def parse_format(format_: str) -> str:
    """The codec named by a CompressedImage.format string.

    Accepts image_transport's `"<encoding>; <codec> compressed <encoding>"` and the bare codec
    names older publishers write (`"jpeg"`, `"png"`); `"jpg"` counts as jpeg.
    """
    text = str(format_).strip().lower()
    if ';' in text:
        text = text.split(';', 1)[1].strip()
    codec = text.split()[0] if text else ''
    codec = 'jpeg' if codec == 'jpg' else codec
    if codec not in CODECS:
        raise ValueError(f'format must name one of {CODECS}, got {format_!r}')
    return codec
