"""colvlm_edge.roi_crop.crop_roi: box arithmetic, clamping, rejections, exact pixels, mapping."""

import numpy as np
import pytest

from colvlm_edge.frame_buffer import FrameBuffer
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.roi_crop import CropLimits, CropRejected, crop_roi
from colvlm_msgs.geometry import Box
from colvlm_msgs.image_codec import decode_image


def original(height=480, width=640, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)  # (H, W, 3) uint8 BGR


def test_png_crop_at_its_own_size_equals_a_direct_slice():
    image = original()
    result = crop_roi(image, (100, 50, 64, 48), output_size=(64, 48), codec='png', quality=3)
    assert result.applied_box == (100, 50, 64, 48) and not result.clamped
    assert np.array_equal(decode_image(result.data), image[50:98, 100:164])
    assert result.original_size == (640, 480)
    assert result.format == 'bgr8; png compressed bgr8'


def test_margin_grows_the_box_on_every_side():
    image = original()
    result = crop_roi(image, (100, 50, 64, 48), margin=10, output_size=(84, 68), codec='png',
                      quality=1)
    assert result.applied_box == (90, 40, 84, 68) and not result.clamped
    assert np.array_equal(decode_image(result.data), image[40:108, 90:174])
    assert 'margin 10' in result.message


@pytest.mark.parametrize('roi, margin, applied', [
    ((-20, -10, 50, 40), 0, (0, 0, 30, 30)),  # off the top-left corner
    ((600, 450, 100, 100), 0, (600, 450, 40, 30)),  # off the bottom-right corner
    ((5, 5, 20, 20), 10, (0, 0, 35, 35)),  # inside, but the margin is not
    ((-100, 100, 1000, 50), 0, (0, 100, 640, 50)),  # wider than the image
])
def test_partly_outside_is_clamped_and_reported(roi, margin, applied):
    image = original()
    result = crop_roi(image, roi, margin=margin, output_size=applied[2:], codec='png',
                      quality=1)
    assert result.applied_box == applied and result.clamped
    assert 'clamped' in result.message
    x, y, w, h = applied
    assert np.array_equal(decode_image(result.data), image[y:y + h, x:x + w])


@pytest.mark.parametrize('roi, reason', [
    ((700, 10, 50, 50), 'wholly outside'),
    ((-60, 10, 50, 50), 'wholly outside'),
    ((10, 480, 50, 50), 'wholly outside'),
    ((10, 10, 0, 50), 'no area'),
    ((10, 10, 50, -5), 'no area'),
    ((10, 10, 50), 'roi must be 4 ints'),
    ((10.5, 10, 50, 50), 'roi must be 4 ints'),
])
def test_bad_boxes_are_rejected(roi, reason):
    with pytest.raises(CropRejected, match=reason) as caught:
        crop_roi(original(), roi)
    assert isinstance(caught.value, ValueError) and '\n' not in str(caught.value)


@pytest.mark.parametrize('kwargs, reason', [
    ({'output_size': (2000, 100)}, 'exceeds the maximum 1344x1344'),
    ({'output_size': (100, -1)}, 'output_size must be positive'),
    ({'output_size': (100, 0)}, 'output_size must be positive'),
    ({'codec': 'gif'}, 'codec must be one of'),
    ({'codec': 'jpeg', 'quality': 0}, 'quality must be in 1..100'),
    ({'codec': 'jpeg', 'quality': 101}, 'quality must be in 1..100'),
    ({'codec': 'png', 'quality': 10}, 'quality must be in 0..9'),
    ({'margin': -1}, 'margin'),
])
def test_bad_requests_are_rejected(kwargs, reason):
    with pytest.raises(CropRejected, match=reason):
        crop_roi(original(), (10, 10, 50, 50), **kwargs)


def test_codec_outside_the_allowed_set_is_rejected():
    limits = CropLimits(allowed_codecs=('jpeg',))
    with pytest.raises(CropRejected, match=r"codec must be one of \('jpeg',\), got 'png'"):
        crop_roi(original(), (10, 10, 50, 50), codec='png', limits=limits)


def test_defaults_fill_unset_fields():
    limits = CropLimits(default_output_size=(224, 160), default_codec='webp', default_quality=70)
    result = crop_roi(original(), (10, 10, 50, 50), output_size=(0, 0), codec='', limits=limits)
    assert (result.output_size, result.codec, result.quality) == ((224, 160), 'webp', 70)
    assert decode_image(result.data).shape == (160, 224, 3)
    # A png request without a quality must not inherit jpeg's 1..100 default.
    assert crop_roi(original(), (10, 10, 50, 50), codec='png').quality in range(10)


def test_padding_keeps_aspect_and_maps_back_to_original():
    image = np.zeros((480, 640, 3), np.uint8)
    image[200:220, 300:340] = 255  # a bright 40x20 bar in the box below
    result = crop_roi(image, (280, 190, 100, 40), output_size=(200, 200), codec='png',
                      quality=1)
    geometry = result.geometry
    assert geometry.preprocess == 'pad' and geometry.scale_x == geometry.scale_y == 2.0
    assert (geometry.offset_x, geometry.offset_y) == (0.0, 60.0)
    decoded = decode_image(result.data)
    ys, xs = np.nonzero(decoded.max(axis=2) > 128)
    found = Box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert found == result.to_crop(Box(300, 200, 340, 220)) == Box(40, 80, 120, 120)
    assert result.to_original(found) == Box(300, 200, 340, 220)


def test_limits_validation():
    with pytest.raises(ValueError, match='max_output_width'):
        CropLimits(max_output_width=0)
    with pytest.raises(ValueError, match='default_output_size'):
        CropLimits(max_output_width=100, default_output_size=(336, 336))
    with pytest.raises(ValueError, match='allowed_codecs'):
        CropLimits(allowed_codecs=('bmp',))
    with pytest.raises(ValueError, match='crop.codec'):
        CropLimits(allowed_codecs=('png',))
    with pytest.raises(ValueError, match='crop.quality'):
        CropLimits(default_quality=0)


def test_crops_the_read_only_views_the_frame_buffer_hands_out():
    image = original()
    buffer = FrameBuffer(max_frames=2, max_bytes=image.nbytes)
    buffer.put(1, image)
    _, stored = buffer.get(1)
    assert not stored.flags.writeable
    result = crop_roi(stored, (10, 20, 30, 40), output_size=(30, 40), codec='png', quality=1)
    assert np.array_equal(decode_image(result.data), image[20:60, 10:40])
    for preprocess in ('pad', 'center_crop', 'resize'):
        config = GlobalEncoderConfig(preprocess=preprocess)
        assert decode_image(GlobalEncoder(config).encode(stored).data).shape == (128, 128, 3)
