"""Hostile image files for the abuse probes and their tests: tiny files that declare huge sizes.

`forged_jpeg(w, h)` is a real 8x8 JPEG (about 600 bytes) whose frame header says w x h, as an
attacker would send it; `png_bomb(w, h)` is a valid grey PNG of w x h zero pixels, compressed
about 1000:1 by zlib (20000x20000 is under 1 MB on the wire and 400 MB decoded).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def forged_jpeg(width: int, height: int, quality: int = 50) -> bytes:
    """An 8x8 JPEG whose SOF header declares width x height (the scan data stays 8x8)."""
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    data = bytearray(buffer.tobytes())
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):  # walk to the frame header
        position += 2 + int.from_bytes(data[position + 2:position + 4], 'big')
    data[position + 5:position + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack('>I', len(body)) + kind + body
            + struct.pack('>I', zlib.crc32(kind + body) & 0xFFFFFFFF))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of width x height zeros; built row by row, never held whole."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row's pixels
    body = b''.join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header) + _chunk(b'IDAT', body)
            + _chunk(b'IEND', b''))
