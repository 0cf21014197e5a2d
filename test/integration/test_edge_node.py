"""The edge as its own process over real DDS: global frames out, crops served by stamp."""

from __future__ import annotations

import queue
import signal
import time

from conftest import spawn
import cv2
import numpy as np
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
    process = spawn(['-m', 'colvlm_bench.cli', 'edge', '--source', str(folder),
                     '--namespace', 'cam0', '-p', 'source.loop=true', '-p', 'source.fps=10',
                     '-p', 'crop.max_requests=12', '-p', 'crop.window_s=600',
                     '-p', 'status.period_s=0.5'], dds_env)
    yield process
    if process.poll() is None:
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
    edge_process.send_signal(signal.SIGINT)
    # communicate() drains both pipes while it waits: a full pipe would block the child.
    _, log = edge_process.communicate(timeout=TIMEOUT_S)
    assert edge_process.returncode == 0, log[-2000:]
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
    process = spawn(['-m', 'colvlm_bench.cli', 'edge', '--source', 'synthetic', *flags],
                    dds_env)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 2
    errors = [line for line in stderr.splitlines() if '[ERROR]' in line]
    assert len(errors) == 1 and culprit in errors[0], stderr
    assert 'Traceback' not in stderr


def test_on_request_mode_publishes_only_when_asked(originals, dds_env):
    folder, images = originals
    process = spawn(['-m', 'colvlm_bench.cli', 'edge', '--source', str(folder),
                     '--namespace', 'cam1', '-p', 'publish.mode=on_request',
                     '-p', 'source.fps=20'], dds_env)
    client = create_node('on_request_client', 'cam1')
    try:
        frames = queue.Queue()
        client.create_subscription('sensor_msgs/msg/CompressedImage', 'colvlm/global/compressed',
                                   frames.put, 'frames')
        service = client.create_client('colvlm/srv/RequestFrame', 'colvlm/request_frame')
        request_type = client.service_type('colvlm/srv/RequestFrame').Request
        response = service.call(request_type(), timeout=TIMEOUT_S)
        while not response.success:   # the source may not have produced a frame yet
            time.sleep(0.1)
            response = service.call(request_type(), timeout=TIMEOUT_S)
        asked = stamps.to_ns(response.frame_stamp)
        frame = first(frames, lambda f: stamps.to_ns(f.header.stamp) == asked)
        assert decode_image(bytes(frame.data)).shape == (128, 128, 3)
        # Nothing newer than the last frame of a finished, non-looping source.
        time.sleep(0.5)
        while not frames.empty():
            frames.get()
        latest = service.call(request_type(), timeout=TIMEOUT_S)
        again = request_type()
        again.newer_than = latest.frame_stamp
        refused = service.call(again, timeout=TIMEOUT_S)
        assert not refused.success and 'no frame newer' in refused.status_message
        time.sleep(0.5)
        published = []
        while not frames.empty():
            published.append(stamps.to_ns(frames.get().header.stamp))
        assert published in ([], [stamps.to_ns(latest.frame_stamp)])  # only what was asked
    finally:
        client.shutdown()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=TIMEOUT_S)


def test_the_buffer_keeps_published_originals_not_every_camera_frame(originals, dds_env):
    """20 camera frames a second, 2 published, 2 kept: a published frame can still be
    cropped after many camera frames, and is gone once two newer ones were published."""
    folder, _ = originals
    process = spawn(['-m', 'colvlm_bench.cli', 'edge', '--source', str(folder),
                     '--namespace', 'cam2', '-p', 'source.loop=true', '-p', 'source.fps=20',
                     '-p', 'publish.mode=rate', '-p', 'publish.rate_hz=2',
                     '-p', 'buffer.max_frames=2'], dds_env)
    client = create_node('buffer_client', 'cam2')
    try:
        geometries = queue.Queue()
        client.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                   geometries.put, 'frame_info')
        service = client.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')
        crop = client.service_type('colvlm/srv/CropRoi')

        def ask(stamp_ns: int):
            request = crop.Request(output_width=32, output_height=32)
            stamps.fill(request.frame_stamp, stamp_ns)
            request.roi.width, request.roi.height = 64, 64
            return service.call(request, timeout=TIMEOUT_S)

        stamp_ns = stamps.to_ns(first(geometries).header.stamp)
        time.sleep(0.3)  # about 6 camera frames, no newer published one yet
        kept = ask(stamp_ns)
        assert kept.success, kept.status_message
        newer = [stamps.to_ns(first(geometries, lambda g: stamps.to_ns(g.header.stamp)
                                    > stamp_ns).header.stamp)]
        newer.append(stamps.to_ns(first(geometries, lambda g: stamps.to_ns(g.header.stamp)
                                        > newer[0]).header.stamp))
        gone = ask(stamp_ns)
        assert not gone.success and 'evicted' in gone.status_message, gone.status_message
        assert ask(newer[-1]).success
    finally:
        client.shutdown()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=TIMEOUT_S)
