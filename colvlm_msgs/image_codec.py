"""Image payload codecs shared by the edge and the server: BGR arrays to file bytes and back.

Formats follow image_transport's compressed transport (`"bgr8; jpeg compressed bgr8"`), so a
`sensor_msgs/CompressedImage` from either end is readable by rqt and compressed_image_transport.
It knows nothing about messages, geometry or byte budgets; it only encodes and decodes.

Quality means what the codec means by it: jpeg and webp take 1..100 (higher = better, more
bytes); png is lossless and takes its zlib compression level 0..9 (higher = smaller, slower),
the same convention as `colvlm/srv/CropRoi.quality` and image_transport's `png_level`.

Decoding reads the size the file declares before decoding a pixel (`image_size`, a parser of
the JPEG, PNG and WebP headers; Pillow's lazy open for the other formats a folder may hold)
and refuses more than `max_pixels`: a 600-byte JPEG or a PNG zlib bomb can declare
30000x30000, which cv2.imdecode would allocate in full. A JPEG without its end-of-image
marker is refused too, not half-decoded.
"""

from __future__ import annotations

import io
import warnings

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


# 40 MP: above any camera colvlm serves (8K is 33 MP), below what hurts a board (120 MB BGR).
DEFAULT_MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """Bytes that no codec could turn into an image."""


class ImageTooLarge(ImageDecodeError):
    """An image whose declared size is over the pixel limit; nothing of it was decoded."""


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


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode jpeg/webp/png file bytes into a (H, W, 3) uint8 BGR image.

    Grey or alpha images come back as 3-channel BGR, 16-bit ones scaled to 8 bits, so callers
    see one layout whatever the sender chose. ImageTooLarge when the header declares more
    than max_pixels, ImageDecodeError when the size cannot be read or the bytes are corrupt.
    """
    data = bytes(data)
    check_pixels(data, max_pixels)
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-_EOI_WINDOW:]:
        raise ImageDecodeError(f'cannot decode jpeg of {len(data)} bytes: truncated '
                               '(no end-of-image marker)')
    buffer = np.frombuffer(data, dtype=np.uint8)
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


def check_pixels(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) the image file declares, if within max_pixels; else ImageTooLarge."""
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageTooLarge(f'image of {len(data)} bytes declares {width}x{height} = '
                            f'{width * height} pixels, over the limit of {max_pixels}')
    return width, height


# Padding or a trailer after a JPEG's end-of-image marker is common; a truncated file has none.
_EOI_WINDOW = 4096


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) px from the header of an image file, without decoding it."""
    data = bytes(data)
    if not data:
        raise ImageDecodeError('cannot decode image: no bytes')
    if data[:2] == b'\xff\xd8':
        size = _jpeg_size(data)
    elif data[:8] == b'\x89PNG\r\n\x1a\n':
        size = (_be(data, 16, 4), _be(data, 20, 4)) if data[12:16] == b'IHDR' else None
    elif data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        size = _webp_size(data)
    else:
        size = _pillow_size(data)
    if size is None or min(size) < 1:
        raise ImageDecodeError(f'cannot decode image of {len(data)} bytes (starts '
                               f'{data[:8]!r}): no readable size in its header')
    return size


def _be(data: bytes, offset: int, length: int) -> int:
    return int.from_bytes(data[offset:offset + length], 'big')


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame header's size: walk the marker segments up to the first SOFn."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length field
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # image ended or scan began before any frame header
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return _be(data, position + 7, 2), _be(data, position + 5, 2)
        position += 2 + _be(data, position + 2, 2)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b'VP8 ' and data[23:26] == b'\x9d\x01\x2a':
        return (int.from_bytes(data[26:28], 'little') & 0x3FFF,
                int.from_bytes(data[28:30], 'little') & 0x3FFF)
    if chunk == b'VP8L' and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], 'little')
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b'VP8X' and len(data) >= 30:
        return (int.from_bytes(data[24:27], 'little') + 1,
                int.from_bytes(data[27:30], 'little') + 1)
    return None


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    """Other formats a folder may hold (bmp, tiff, pnm): Pillow reads only their header."""
    from PIL import Image

    with warnings.catch_warnings():
        # Pillow's own bomb check warns or raises by its fixed limit; ours is max_pixels.
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Image.DecompressionBombError:
            return 2**31, 2**31  # over Pillow's limit, far over any sane max_pixels
        except Exception:  # noqa: BLE001 - Pillow raises many kinds for unreadable bytes
            return None


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
