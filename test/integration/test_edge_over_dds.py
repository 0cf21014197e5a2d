"""The edge as its own process over real DDS, end to end: global frames from a folder out,
exact crops served by stamp, refusals, the rate limit, a corrupt file counted, a clean stop on
SIGINT; bad configuration stops start-up with one line. Publish modes, the buffer and crop
errors in detail are tested on the in-memory transport in test/unit/test_edge_node.py."""

from __future__ import annotations

import queue
import signal
import time

import cv2
import numpy as np
from processes import colvlm
import pytest

from colvlm_msgs import stamps
from colvlm_msgs.image_codec import decode_image
from colvlm_msgs.transport import create_node

TIMEOUT_S = 20.0
SIZES = [(640, 480), (800, 600), (1024, 768)]   # (w, h): a frame's size names its file


@pytest.fixture
def originals(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for index, (width, height) in enumerate(SIZES):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)  # (H, W, 3) BGR
        cv2.putText(image, f'F{index}', (50, 200), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 255),
                    8)
        cv2.imwrite(str(tmp_path / f'{index + 1}.png'), image)
        images[(width, height)] = image
    # Sorted first, so it has been read (and refused) before the first frame is published.
    (tmp_path / '0_corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n not really an image')
    return tmp_path, images


@pytest.fixture
def edge_process(originals, dds_env):
    folder, _ = originals
    process = colvlm('edge', '--source', str(folder), '--namespace', 'cam0',
                     '-p', 'source.loop=true', '-p', 'source.fps=10',
                     '-p', 'crop.max_requests=12', '-p', 'crop.window_s=600',
                     '-p', 'status.period_s=0.5', env=dds_env)
    yield process
    process.kill()


def first(received: queue.Queue, predicate=lambda m: True):
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            message = received.get(timeout=0.2)
        except queue.Empty:
            continue
        if predicate(message):
            return message
    raise AssertionError('nothing arrived in time')


def test_edge_publishes_global_frames_and_serves_exact_crops(originals, edge_process):
    _, images = originals
    client = create_node('edge_test_client', 'cam0')
    try:
        frames, geometries = queue.Queue(), queue.Queue()
        client.create_subscription('sensor_msgs/msg/CompressedImage', 'colvlm/global/compressed',
                                   frames.put, 'frames')
        client.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                   geometries.put, 'frame_info')
        frame = first(frames)
        assert frame.format == 'bgr8; jpeg compressed bgr8'
        assert decode_image(bytes(frame.data)).shape == (128, 128, 3)
        stamp_ns = stamps.to_ns(frame.header.stamp)
        geometry = first(geometries, lambda g: stamps.to_ns(g.header.stamp) == stamp_ns)
        size = (geometry.original_width, geometry.original_height)
        assert size in images and geometry.preprocess == 'pad'
        original = images[size]

        crop = client.service_type('colvlm/srv/CropRoi')
        service = client.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')

        def ask(x, y, w, h, stamp=stamp_ns, **fields):
            request = crop.Request(**fields)
            stamps.fill(request.frame_stamp, stamp)
            request.roi.x_offset, request.roi.y_offset = x, y
            request.roi.width, request.roi.height = w, h
            return service.call(request, timeout=TIMEOUT_S)

        exact = ask(100, 150, 200, 120, output_width=200, output_height=120, codec='png')
        assert exact.success and not exact.clamped, exact.status_message
        assert (exact.original_width, exact.original_height) == size
        assert stamps.to_ns(exact.image.header.stamp) == stamp_ns
        pixels = decode_image(bytes(exact.image.data))
        assert np.array_equal(pixels, original[150:270, 100:300])

        partly = ask(size[0] - 50, 10, 200, 100, output_width=50, output_height=100,
                     codec='png')
        assert partly.success and partly.clamped and 'clamp' in partly.status_message
        assert (partly.applied_roi.x_offset, partly.applied_roi.width) == (size[0] - 50, 50)
        assert np.array_equal(decode_image(bytes(partly.image.data)),
                              original[10:110, size[0] - 50:])

        refusals = {
            'never': ask(0, 0, 10, 10, stamp=12345),
            'outside': ask(size[0] + 10, 0, 50, 50),
            'empty': ask(10, 10, 0, 10),
            'too big': ask(0, 0, 100, 100, output_width=5000, output_height=5000),
            'codec': ask(0, 0, 100, 100, codec='gif'),
            'quality': ask(0, 0, 100, 100, codec='jpeg', quality=150),
        }
        for name, response in refusals.items():
            assert not response.success and response.status_message, name
            assert len(response.image.data) == 0, name
        assert 'gif' in refusals['codec'].status_message
        assert '150' in refusals['quality'].status_message
        assert 'outside' in refusals['outside'].status_message

        # Beyond 12 requests in the window the crop service refuses: no free video feed.
        burst = [ask(0, 0, 64, 64) for _ in range(6)]
        assert not burst[-1].success and 'refused' in burst[-1].status_message
        # ...while the node keeps publishing frames.
        later = first(frames, lambda f: stamps.to_ns(f.header.stamp) > stamp_ns)
        assert decode_image(bytes(later.data)).shape == (128, 128, 3)
    finally:
        client.shutdown()
    assert edge_process.stop(signal.SIGINT, TIMEOUT_S) == 0, edge_process.tail()
    log = edge_process.text()
    assert '0_corrupt.png' in log                      # one line naming the bad file
    assert 'dropped frames 1;' in log.splitlines()[-1]  # counted in the final status line
    assert 'crops refused 2' in log and 'uplink: crop ' in log and ', global ' in log


@pytest.mark.parametrize('flag, culprit', [
    ('global.quality=500', 'global.quality must be <= 100, got 500'),
    ('publish.mode=sometimes', "publish.mode must be one of ('every_frame', 'rate', "
                               "'on_request'), got 'sometimes'"),
    # Cross-field checks: png takes levels 0..9 and cannot honour a byte budget.
    ('global.codec=png', 'global.quality must be in 0..9 for png, got 85'),
    ('global.codec=png global.quality=5 global.byte_budget=20000', 'global.byte_budget'),
])
def test_bad_configuration_stops_start_up_with_one_line(dds_env, flag, culprit):
    flags = [item for pair in flag.split() for item in ('-p', pair)]
    process = colvlm('edge', '--source', 'synthetic', *flags, env=dds_env)
    assert process.process.wait(timeout=TIMEOUT_S) == 2
    process.stop()
    stderr = process.text()
    errors = [line for line in stderr.splitlines() if '[ERROR]' in line]
    assert len(errors) == 1 and culprit in errors[0], stderr
    assert 'Traceback' not in stderr
