"""Camera-style backgrounds and clutter: real photos, colour textures, flat fills, and strokes,
lines and blobs of any colour.

Photos are the sample images that installed packages ship (scikit-image's `skimage/data`,
scikit-learn's `datasets/images`, matplotlib's `sample_data`), read as files with OpenCV and
never by importing those packages; matplotlib is a dependency, so at least one photo is there
wherever colvlm runs. A scene drawn with a photo background depends on which photos are
installed: `available_photos()` names them, and data sets record the list.
Clutter is thinner (strokes <= 5 px) or smaller (blobs <= 24 px) than any object, so it
cannot be taken for a shape (>= 80 px) or a sign (a filled rectangle holding text).
"""

from __future__ import annotations

from functools import lru_cache
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from colvlm_bench.glyphvqa.background import render_background

# (package, file inside it): colour photos first, then greyscale ones; text-like images and
# synthetic ones are left out.
PHOTO_FILES = (
    ('skimage', 'data/astronaut.png'), ('skimage', 'data/chelsea.png'),
    ('skimage', 'data/coffee.png'), ('skimage', 'data/motorcycle_left.png'),
    ('skimage', 'data/rocket.jpg'), ('skimage', 'data/hubble_deep_field.jpg'),
    ('skimage', 'data/camera.png'), ('skimage', 'data/brick.png'),
    ('skimage', 'data/grass.png'), ('skimage', 'data/gravel.png'),
    ('skimage', 'data/moon.png'), ('skimage', 'data/coins.png'),
    ('sklearn', 'datasets/images/china.jpg'), ('sklearn', 'datasets/images/flower.jpg'),
    ('matplotlib', 'mpl-data/sample_data/grace_hopper.jpg'),
)
CLUTTER_MAX_STROKE = 5  # px, stroke and line width
CLUTTER_MAX_BLOB = 12  # px, blob semi-axis


@lru_cache(maxsize=1)
def available_photos() -> tuple[str, ...]:
    """'package/file' names of the PHOTO_FILES installed here, in table order."""
    return tuple(f'{package}/{name}' for package, name in PHOTO_FILES
                 if _photo_path(package, name) is not None)


def render_camera_background(rng: np.random.Generator, height: int, width: int,
                             kind: str) -> tuple[np.ndarray, str]:
    """A `(height, width, 3) uint8 BGR` background of `kind` ('photo', 'texture', 'flat' or
    'procedural', the clean style's) and its description, e.g. 'photo:skimage/data/coffee.png'.
    """
    if kind == 'photo':
        photos = available_photos()
        name = photos[int(rng.integers(len(photos)))]
        return _photo_crop(rng, _load_photo(name), height, width), f'photo:{name}'
    if kind == 'texture':
        return _color_texture(rng, height, width), 'texture'
    if kind == 'flat':
        color = rng.integers(0, 256, size=3)
        image = np.empty((height, width, 3), np.uint8)
        image[:] = color
        return image, 'flat'
    if kind == 'procedural':
        image, drawn = render_background(rng, height, width)
        return image, drawn
    raise ValueError(f"background kind must be one of ('photo', 'texture', 'flat', "
                     f"'procedural'), got {kind!r}")


def draw_clutter(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Draw `count` strokes, straight lines and blobs of random colours on `image` in place."""
    height, width = image.shape[:2]
    for _ in range(count):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        start = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        choice = rng.random()
        if choice < 0.4:  # a curved stroke: a short random walk
            steps = int(rng.integers(3, 9))
            heading = rng.uniform(0.0, 2.0 * np.pi)
            points = [start]
            for _ in range(steps):
                heading += rng.normal(0.0, 0.5)
                points.append(points[-1] + rng.uniform(8, 30) * np.array(
                    [np.cos(heading), np.sin(heading)]))
            cv2.polylines(image, [np.rint(points).astype(np.int32)], False, color,
                          int(rng.integers(1, CLUTTER_MAX_STROKE + 1)), cv2.LINE_AA)
        elif choice < 0.7:  # a straight line, possibly long but thin
            angle = rng.uniform(0.0, np.pi)
            end = start + rng.uniform(20, 400) * np.array([np.cos(angle), np.sin(angle)])
            cv2.line(image, tuple(np.rint(start).astype(int)), tuple(np.rint(end).astype(int)),
                     color, int(rng.integers(1, CLUTTER_MAX_STROKE + 1)), cv2.LINE_AA)
        else:  # a small blob
            axes = tuple(int(a) for a in rng.integers(2, CLUTTER_MAX_BLOB + 1, size=2))
            cv2.ellipse(image, tuple(np.rint(start).astype(int)), axes,
                        float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)


def _photo_path(package: str, name: str) -> Path | None:
    # find_spec locates a package without running it: these are read as plain files.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / name
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=32)
def _load_photo(name: str) -> np.ndarray:
    package, _, file_name = name.partition('/')
    path = _photo_path(package, file_name)
    image = None if path is None else cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f'could not read the sample photo {name}')
    return image  # (h, w, 3) uint8 BGR; greyscale files come back as three equal channels


def _photo_crop(rng: np.random.Generator, photo: np.ndarray, height: int,
                width: int) -> np.ndarray:
    """A random crop of `photo` with the output's aspect ratio, maybe mirrored, resized."""
    photo_h, photo_w = photo.shape[:2]
    scale = rng.uniform(0.5, 1.0)  # the crop's share of the largest crop that fits
    crop_w = min(photo_w, photo_h * width / height) * scale
    crop_h = crop_w * height / width
    x0 = rng.uniform(0, photo_w - crop_w)
    y0 = rng.uniform(0, photo_h - crop_h)
    crop = photo[int(y0):int(y0 + crop_h), int(x0):int(x0 + crop_w)]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (width, height),
                      interpolation=cv2.INTER_LINEAR)


def _color_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Value noise in unrestricted colours: a coarse random grid, smoothly upsampled, with a
    finer octave and grain."""
    image = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((int(rng.integers(40, 200)), 0.7), (int(rng.integers(8, 30)), 0.3)):
        grid_h, grid_w = max(2, height // cell + 2), max(2, width // cell + 2)
        base = rng.uniform(0, 255, size=3)
        grid = base + rng.normal(0.0, 60.0, size=(grid_h, grid_w, 3))
        image += weight * cv2.resize(grid.astype(np.float32), (width, height),
                                     interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0.0, 4.0, size=(height, width, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
