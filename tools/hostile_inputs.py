"""Hostile inputs for the abuse probes (tools/abuse_edge.py) and their tests.

`forged_jpeg(w, h)` is a real 8x8 JPEG (about 600 bytes) whose frame header says w x h, as an
attacker would send it; `png_bomb(w, h)` is a valid grey PNG of w x h zero pixels, compressed
about 1000:1 by zlib (20000x20000 is under 1 MB on the wire and 400 MB decoded);
`corrupt_sqlite_bag(path)` is a rosbag2 whose middle is overwritten, so that it opens and
plays its first frames before the database reports itself malformed.
"""

from __future__ import annotations

from pathlib import Path
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


def corrupt_sqlite_bag(path: Path, frames: int = 30) -> Path:
    """A sqlite3 bag at path of frames 64x64 bgr8 images on /cam/image_raw (stamped 10 s,
    11 s, ...), with 4 kB in the middle of its database overwritten."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = store.types
    rng = np.random.default_rng(0)
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connection = writer.add_connection('/cam/image_raw', 'sensor_msgs/msg/Image',
                                           typestore=store)
        for index in range(frames):
            stamp = types['builtin_interfaces/msg/Time'](sec=10 + index, nanosec=0)
            message = types['sensor_msgs/msg/Image'](
                header=types['std_msgs/msg/Header'](stamp=stamp, frame_id='camera'),
                height=64, width=64, encoding='bgr8', is_bigendian=0, step=64 * 3,
                data=rng.integers(0, 256, 64 * 64 * 3, dtype=np.uint8))
            writer.write(connection, (10 + index) * 10**9,
                         store.serialize_cdr(message, connection.msgtype))
    (database,) = Path(path).glob('*.db3')
    data = bytearray(database.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = b'\xab' * 4096
    database.write_bytes(bytes(data))
    return Path(path)
