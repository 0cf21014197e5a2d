"""colvlm_msgs.image_codec: round trips, validation messages, image_transport formats, and
the size read from the header before any decode."""

import io

import cv2
import numpy as np
from PIL import Image
import pytest

from colvlm_msgs.image_codec import (
    CODECS,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageTooLarge,
    decode_image,
    encode_image,
    format_string,
    image_size,
    parse_format,
)
from tools.hostile_inputs import forged_jpeg, png_bomb


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


def test_a_truncated_jpeg_is_refused_not_half_decoded():
    data = encode_image(textured(), 'jpeg', 90)
    # libjpeg would fill the missing tail with grey and publish that as a frame.
    with pytest.raises(ImageDecodeError, match='truncated'):
        decode_image(data[:len(data) // 3])
    assert decode_image(data + b'\0' * 100).shape == (120, 160, 3)  # padding is fine


@pytest.mark.parametrize('codec, quality', [('jpeg', 90), ('png', 6), ('webp', 80),
                                            ('webp', 101)])  # 101: cv2's lossless webp
def test_the_header_tells_the_size_of_every_codec(codec, quality):
    flag = {'jpeg': cv2.IMWRITE_JPEG_QUALITY, 'png': cv2.IMWRITE_PNG_COMPRESSION,
            'webp': cv2.IMWRITE_WEBP_QUALITY}[codec]
    ok, buffer = cv2.imencode(f'.{"jpg" if codec == "jpeg" else codec}', textured(37, 53),
                              [flag, quality])
    assert ok and image_size(buffer.tobytes()) == (53, 37)


@pytest.mark.parametrize('kind', ['BMP', 'TIFF', 'PPM'])
def test_other_folder_formats_are_sized_by_their_header_too(kind):
    file = io.BytesIO()
    Image.fromarray(textured(37, 53)).save(file, kind)
    assert image_size(file.getvalue()) == (53, 37)
    assert decode_image(file.getvalue()).shape == (37, 53, 3)


def test_a_small_jpeg_declaring_a_huge_size_is_refused_before_decoding():
    data = forged_jpeg(30000, 30000)
    assert len(data) < 1000 and image_size(data) == (30000, 30000)
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data)  # 2.7 GB if decoded: refused from the 9 header bytes
    assert '30000x30000' in str(caught.value) and str(DEFAULT_MAX_PIXELS) in str(caught.value)
    assert isinstance(caught.value, ImageDecodeError) and '\n' not in str(caught.value)


def test_a_png_zlib_bomb_is_refused_by_its_header():
    bomb = png_bomb(7000, 7000)  # 49 MP of zeros in about 50 kB
    with pytest.raises(ImageTooLarge, match='7000x7000'):
        decode_image(bomb)
    with pytest.raises(ImageTooLarge):
        decode_image(encode_image(textured(), 'png', 6), max_pixels=160 * 120 - 1)
    assert decode_image(encode_image(textured(), 'png', 6), max_pixels=160 * 120).shape == (
        120, 160, 3)


@pytest.mark.parametrize('data', [b'\xff\xd8\xff\xda' + b'\0' * 20,  # a scan before any frame
                                  b'\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR' + b'\0' * 8,  # 0x0
                                  b'\x89PNG\r\n\x1a\n not really an image',  # no IHDR
                                  b'RIFF\0\0\0\0WEBPVP8 ' + b'\0' * 20])
def test_headers_without_a_size_are_refused(data):
    with pytest.raises(ImageDecodeError, match='no readable size'):
        decode_image(data)


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
