"""colvlm_msgs.image_codec: round trips, validation messages, image_transport formats."""

import cv2
import numpy as np
import pytest

from colvlm_msgs.image_codec import (
    CODECS,
    ImageDecodeError,
    decode_image,
    encode_image,
    format_string,
    parse_format,
)


def textured(height=120, width=160, seed=0):
    """A smooth gradient plus noise: compresses like a photo, not like a flat test card."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    noise = rng.normal(0, 12, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)  # (H, W, 3) uint8 BGR


def test_png_round_trip_is_exact():
    image = textured()
    assert np.array_equal(decode_image(encode_image(image, 'png', 3)), image)


@pytest.mark.parametrize('codec', ['jpeg', 'webp'])
def test_lossy_round_trip_is_close_and_quality_costs_bytes(codec):
    image = textured()
    high = encode_image(image, codec, 95)
    low = encode_image(image, codec, 20)
    assert len(low) < len(high)
    decoded = decode_image(high)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).mean() < 8


def test_codec_error_names_parameter_and_value():
    with pytest.raises(ValueError, match=r"codec must be one of \('jpeg', 'webp', 'png'\), "
                                         r"got 'gif'"):
        encode_image(textured(), 'gif', 80)


@pytest.mark.parametrize('codec, quality', [('jpeg', 0), ('jpeg', 101), ('webp', 0),
                                            ('png', 10), ('png', -1), ('jpeg', 80.0),
                                            ('jpeg', True)])
def test_quality_out_of_range(codec, quality):
    with pytest.raises(ValueError, match='quality'):
        encode_image(textured(), codec, quality)


@pytest.mark.parametrize('image', [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                   np.zeros((0, 4, 3), np.uint8), [[0, 0, 0]]])
def test_bad_images_are_refused(image):
    with pytest.raises(ValueError, match='image_bgr'):
        encode_image(image, 'png', 3)


@pytest.mark.parametrize('data', [b'', b'not an image at all', b'\xff\xd8\xff' + b'\0' * 64])
def test_corrupt_bytes_raise_one_line_decode_error(data):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert isinstance(caught.value, ValueError)
    assert '\n' not in str(caught.value)


def test_truncated_jpeg_raises_or_decodes_to_bgr():
    data = encode_image(textured(), 'jpeg', 90)
    # libjpeg may fill a truncated tail with grey instead of failing; either is acceptable,
    # but never an exception of another type or a malformed array.
    try:
        image = decode_image(data[:len(data) // 3])
    except ImageDecodeError:
        return
    assert image.shape == (120, 160, 3)


def test_grey_and_alpha_pngs_decode_to_bgr():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    ok, buffer = cv2.imencode('.png', grey)
    assert ok
    decoded = decode_image(buffer.tobytes())
    assert decoded.shape == (8, 8, 3)
    assert np.array_equal(decoded[..., 0], grey)
    bgra = np.dstack([textured(8, 8), np.full((8, 8), 128, np.uint8)])
    ok, buffer = cv2.imencode('.png', bgra)
    assert decode_image(buffer.tobytes()).shape == (8, 8, 3)


@pytest.mark.parametrize('codec', CODECS)
def test_format_string_round_trip(codec):
    assert format_string(codec) == f'bgr8; {codec} compressed bgr8'
    assert parse_format(format_string(codec)) == codec


@pytest.mark.parametrize('text, codec', [('rgb8; jpeg compressed bgr8', 'jpeg'),
                                         ('jpeg', 'jpeg'), ('PNG', 'png'), ('jpg', 'jpeg'),
                                         ('mono8; png compressed mono8', 'png')])
def test_parse_format_accepts_image_transport_variants(text, codec):
    assert parse_format(text) == codec


@pytest.mark.parametrize('text', ['', 'gif', '16UC1; compressedDepth png', 'bgr8; '])
def test_parse_format_rejects_others(text):
    with pytest.raises(ValueError, match='format must name one of'):
        parse_format(text)
