"""What a camera does to a drawn scene: lighting (white balance, an illumination gradient or
a soft shadow), a small perspective warp, defocus or motion blur, sensor noise and JPEG.

Each function takes its magnitude explicitly and its randomness from the generator passed in;
none knows about objects or questions (the warp returns its homography so that the caller
can move its boxes).
"""

from __future__ import annotations

import cv2
import numpy as np


def white_balance(rng: np.random.Generator, image: np.ndarray, amount: float) -> np.ndarray:
    """Scale each channel by a gain in [1 - amount, 1 + amount], as a camera's auto white
    balance misjudges the light."""
    gains = rng.uniform(1.0 - amount, 1.0 + amount, size=3).astype(np.float32)  # (3,) BGR
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def illumination(rng: np.random.Generator, image: np.ndarray, depth: float) -> np.ndarray:
    """Darken by up to `depth` (0..1): a linear gradient across the image or a soft-edged
    shadow. Brightness is scaled evenly over channels, so hue and saturation are kept."""
    height, width = image.shape[:2]
    if rng.random() < 0.5:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        along = (np.arange(width, dtype=np.float32)[None, :] * np.float32(np.cos(angle))
                 + np.arange(height, dtype=np.float32)[:, None] * np.float32(np.sin(angle)))
        along = (along - along.min()) / max(float(along.max() - along.min()), 1.0)  # (H, W)
        gain = 1.0 - depth * along
    else:
        mask = np.zeros((height, width), np.float32)
        center = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (int(rng.integers(width // 6, width // 2)),
                int(rng.integers(height // 6, height // 2)))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        soft = max(3, int(min(height, width) * rng.uniform(0.05, 0.15))) | 1
        mask = cv2.GaussianBlur(mask, (0, 0), soft / 3.0)
        gain = 1.0 - depth * mask  # (H, W) float32
    return np.clip(image.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def perspective(rng: np.random.Generator, width: int, height: int,
                degrees: float) -> np.ndarray:
    """A `(3, 3) float64` homography of a camera tilted by up to `degrees` about both image
    axes and rolled by up to half of it, about the image centre."""
    tilt_x, tilt_y = np.radians(rng.uniform(-degrees, degrees, size=2))
    roll = np.radians(rng.uniform(-degrees / 2.0, degrees / 2.0))
    focal = float(max(width, height))  # about a 53-degree field of view
    intrinsics = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0],
                           [0.0, 0.0, 1.0]])
    rotation = (_rotation(2, roll) @ _rotation(1, tilt_y) @ _rotation(0, tilt_x))
    return intrinsics @ rotation @ np.linalg.inv(intrinsics)


def warp_box(homography: np.ndarray,
             box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """The bounding box of the warped box corners (it holds everything drawn in `box`: a
    small warp maps a box onto a convex quadrilateral)."""
    x0, y0, x1, y1 = box
    corners = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float64)  # (1, 4, 2)
    moved = cv2.perspectiveTransform(corners, homography)[0]
    return (float(moved[:, 0].min()), float(moved[:, 1].min()), float(moved[:, 0].max()),
            float(moved[:, 1].max()))


def apply_warp(image: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Warp a colour image into its own frame, reflecting at the edges as if the scene went
    on."""
    height, width = image.shape[:2]
    return cv2.warpPerspective(image, homography, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)


def warp_labels(labels: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Warp an `(H, W) int16` label map by nearest neighbour; what comes in from outside is
    background (-1), never a reflected object."""
    height, width = labels.shape
    return cv2.warpPerspective(labels, homography, (width, height), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=-1)


def blur(rng: np.random.Generator, image: np.ndarray, defocus: float,
         motion: float) -> np.ndarray:
    """Gaussian defocus of sigma `defocus` px, then a linear motion smear `motion` px long in
    a random direction; either may be 0."""
    if defocus > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), defocus)
    if motion >= 1.0:
        size = int(np.ceil(motion)) | 1
        kernel = np.zeros((size, size), np.float32)
        angle = rng.uniform(0.0, np.pi)
        half = motion / 2.0
        centre = size // 2
        start = (centre - half * np.cos(angle), centre - half * np.sin(angle))
        end = (centre + half * np.cos(angle), centre + half * np.sin(angle))
        cv2.line(kernel, (int(round(start[0])), int(round(start[1]))),
                 (int(round(end[0])), int(round(end[1]))), 1.0, 1, cv2.LINE_AA)
        image = cv2.filter2D(image, -1, kernel / kernel.sum(),
                             borderType=cv2.BORDER_REFLECT_101)
    return image


def sensor_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Add read noise of `sigma` grey levels plus shot noise that grows with brightness
    (sigma at mid grey), partly shared between channels as in a demosaicked sensor."""
    if sigma <= 0.0:
        return image
    pixels = image.astype(np.float32)
    shot = np.sqrt(pixels / 128.0)  # (H, W, 3): 1 at mid grey
    shared = rng.normal(0.0, 1.0, size=image.shape[:2] + (1,)).astype(np.float32)
    own = rng.normal(0.0, 1.0, size=image.shape).astype(np.float32)
    noise = sigma * (0.5 + 0.5 * shot) * (0.6 * shared + 0.8 * own)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode at JPEG `quality` (1..100) and decode: the artefacts a JPEG camera stream has."""
    ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError('JPEG encoding failed')
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix
