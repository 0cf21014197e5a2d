"""sensor_msgs Image / CompressedImage -> (H, W, 3) uint8 BGR, as cv_bridge would convert.

Works on any object with the messages' attributes (rclpy, rosbags, the dds backend's types),
so it needs neither ROS nor cv_bridge. It knows nothing about topics or stamps.
"""

from __future__ import annotations

import cv2
import numpy as np

from colvlm_msgs.image_codec import DEFAULT_MAX_PIXELS, ImageTooLarge, decode_image

# encoding -> (channels, cv2 conversion to BGR or None when it already is BGR)
ENCODINGS = {
    'bgr8': (3, None),
    'rgb8': (3, cv2.COLOR_RGB2BGR),
    'mono8': (1, cv2.COLOR_GRAY2BGR),
    'bgra8': (4, cv2.COLOR_BGRA2BGR),
    'rgba8': (4, cv2.COLOR_RGBA2BGR),
}


def _as_bytes_array(data: object) -> np.ndarray:
    """msg.data as a flat uint8 array: bytes (rclpy), ndarray (rosbags) or a list of ints."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_from_ros(msg: object, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The (H, W, 3) uint8 BGR image in a sensor_msgs Image or CompressedImage-like msg.

    Compressed images are decoded whatever their format says (the file bytes tell);
    ImageDecodeError (a ValueError) when they are corrupt, ImageTooLarge (one) when their
    header declares more than max_pixels. Raw images honour step (row padding); unsupported
    encodings raise ValueError naming them.
    """
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        return decode_image(_as_bytes_array(msg.data).tobytes(), max_pixels)
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ValueError(f'image encoding must be one of {tuple(ENCODINGS)}, got {encoding!r}')
    channels, conversion = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height * width > max_pixels:
        raise ImageTooLarge(f'image {width}x{height} {encoding} is over the limit of '
                            f'{max_pixels} pixels')
    data = _as_bytes_array(msg.data)
    row_bytes = width * channels
    if height < 1 or width < 1 or step < row_bytes or data.size < height * step:
        raise ValueError(f'image {width}x{height} {encoding} with step {step} does not fit '
                         f'its {data.size} data bytes')
    rows = data[:height * step].reshape(height, step)[:, :row_bytes]  # (H, step) -> (H, W*C)
    pixels = rows.reshape(height, width, channels)  # (H, W, C) uint8
    if conversion is None:
        return pixels.copy()  # own the pixels: msg.data may be reused or read-only
    return cv2.cvtColor(pixels, conversion)  # (H, W, 3) uint8 BGR
