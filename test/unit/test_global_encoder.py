"""colvlm_edge.global_encoder: pixels match GlobalGeometry, byte budgets hold, config checks."""

import cv2
import numpy as np
import pytest

from colvlm_edge.global_encoder import (
    CLIP_MEAN_BGR,
    EncodedGlobal,
    GlobalEncoder,
    GlobalEncoderConfig,
)
from colvlm_msgs.geometry import Box
from colvlm_msgs.image_codec import decode_image, encode_image


def photo_like(height=540, width=960, seed=0):
    """Gradients, blobs, edges, text and sensor noise: compresses roughly like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width * 200 + 30, y / height * 180 + 40,
                      np.sin(x / 37.0) * np.cos(y / 23.0) * 60 + 120], -1)
    for _ in range(25):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(float(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, center, int(rng.integers(5, 80)), color, -1)
    image = np.clip(image, 0, 255).astype(np.uint8)  # putText draws on 8-bit images only
    for row in range(8):
        cv2.putText(image, 'colvlm edge 0123', (20, 40 + row * 60), cv2.FONT_HERSHEY_SIMPLEX,
                    0.9, (250, 250, 250), 2)
    noisy = image + rng.normal(0, 4, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)  # (H, W, 3) uint8 BGR


def bright_box(image, threshold=128):
    """Bounding box (x0, y0, x1, y1) and centroid (x, y) of the pixels above threshold."""
    grey = image.max(axis=2).astype(np.float64)
    ys, xs = np.nonzero(grey > threshold)
    weights = grey[ys, xs]
    centroid = ((xs + 0.5) * weights).sum() / weights.sum(), \
        ((ys + 0.5) * weights).sum() / weights.sum()
    return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), centroid


@pytest.mark.parametrize('preprocess', ['pad', 'center_crop', 'resize'])
@pytest.mark.parametrize('size', [(336, 336), (384, 256)])
def test_marker_lands_where_the_geometry_says(preprocess, size):
    original = np.zeros((540, 960, 3), np.uint8)  # (H, W, 3) uint8 BGR
    marker = Box(400, 230, 440, 270)  # px, inside the centre crop of every mode
    original[230:270, 400:440] = 255
    config = GlobalEncoderConfig(width=size[0], height=size[1], preprocess=preprocess,
                                 pad_color=(0, 0, 0), codec='png', quality=1)
    encoded = GlobalEncoder(config).encode(original)
    decoded = decode_image(encoded.data)
    assert decoded.shape == (size[1], size[0], 3)
    expected = encoded.geometry.to_global(marker)
    (x0, y0, x1, y1), (cx, cy) = bright_box(decoded, threshold=20)
    assert cx == pytest.approx((expected.x0 + expected.x1) / 2, abs=0.25)
    assert cy == pytest.approx((expected.y0 + expected.y1) / 2, abs=0.25)
    assert abs(x0 - expected.x0) <= 1 and abs(x1 - expected.x1) <= 1
    assert abs(y0 - expected.y0) <= 1 and abs(y1 - expected.y1) <= 1


def test_pad_fills_the_margins_with_pad_color():
    config = GlobalEncoderConfig(preprocess='pad', codec='png', quality=1)
    encoded = GlobalEncoder(config).encode(photo_like())
    decoded = decode_image(encoded.data)
    top = int(encoded.geometry.offset_y)
    assert top > 0 and encoded.geometry.offset_x == 0
    assert (decoded[:top] == CLIP_MEAN_BGR).all()
    assert (decoded[top + encoded.geometry.resized_size[1]:] == CLIP_MEAN_BGR).all()


def test_encoded_global_reports_what_it_is():
    encoded = GlobalEncoder(GlobalEncoderConfig(codec='webp', quality=70)).encode(photo_like())
    assert isinstance(encoded, EncodedGlobal)
    assert (encoded.width, encoded.height, encoded.codec, encoded.quality) == (128, 128, 'webp',
                                                                               70)
    assert encoded.format == 'bgr8; webp compressed bgr8' and not encoded.over_budget
    assert decode_image(encoded.data).shape == (128, 128, 3)


@pytest.mark.parametrize('codec', ['jpeg', 'webp'])
def test_byte_budget_is_honoured_and_grows_quality(codec):
    image = photo_like()
    pixels, _ = GlobalEncoder(GlobalEncoderConfig()).render(image)
    low, high = len(encode_image(pixels, codec, 30)), len(encode_image(pixels, codec, 90))
    assert low < high
    picked = []
    for budget in (low + (high - low) // 5, low + (high - low) * 4 // 5):
        config = GlobalEncoderConfig(codec=codec, byte_budget=budget, min_quality=10)
        encoded = GlobalEncoder(config).encode(image)
        assert len(encoded.data) <= budget and not encoded.over_budget
        # The search stops only after the next quality up was measured not to fit.
        assert len(encode_image(pixels, codec, encoded.quality + 1)) > budget
        picked.append(encoded.quality)
    assert 30 <= picked[0] < picked[1] <= 90


def test_budget_below_min_quality_is_flagged():
    config = GlobalEncoderConfig(byte_budget=200, min_quality=20)
    encoded = GlobalEncoder(config).encode(photo_like())
    assert encoded.over_budget and encoded.quality == 20 and len(encoded.data) > 200


def test_generous_budget_reaches_quality_100():
    encoded = GlobalEncoder(GlobalEncoderConfig(byte_budget=10_000_000)).encode(photo_like())
    assert encoded.quality == 100 and not encoded.over_budget


def test_enlarging_a_small_original_works():
    original = photo_like(100, 120)
    for preprocess in ('pad', 'center_crop', 'resize'):
        config = GlobalEncoderConfig(preprocess=preprocess, codec='png', quality=1)
        encoded = GlobalEncoder(config).encode(original)
        assert decode_image(encoded.data).shape == (128, 128, 3)


@pytest.mark.parametrize('field, value', [('width', 0), ('height', -3), ('width', 33.6),
                                          ('preprocess', 'squash'), ('pad_color', (1, 2)),
                                          ('pad_color', (0, 0, 256)), ('codec', 'gif'),
                                          ('quality', 0), ('byte_budget', -1),
                                          ('min_quality', 0), ('min_quality', 101)])
def test_config_errors_name_field_and_value(field, value):
    with pytest.raises(ValueError, match=field) as caught:
        GlobalEncoderConfig(**{field: value})
    assert repr(value) in str(caught.value) or str(value) in str(caught.value)


def test_png_with_byte_budget_is_refused():
    with pytest.raises(ValueError, match='byte_budget needs a lossy codec'):
        GlobalEncoderConfig(codec='png', quality=6, byte_budget=10_000)


def test_render_rejects_non_bgr_arrays():
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        GlobalEncoder(GlobalEncoderConfig()).encode(np.zeros((10, 10), np.uint8))
