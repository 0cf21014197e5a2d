"""colvlm_edge.frame_buffer: bounds, eviction order, lookup and the reasons for a miss."""

import threading

import numpy as np
import pytest

from colvlm_edge.frame_buffer import FrameBuffer, FrameNotFound


def frame(value=0, height=4, width=5):
    return np.full((height, width, 3), value, np.uint8)  # (H, W, 3) uint8, 60 bytes


def test_exact_get_and_latest():
    buffer = FrameBuffer(max_frames=3, max_bytes=10_000)
    assert buffer.latest() is None
    for stamp in (100, 200, 300):
        buffer.put(stamp, frame(stamp // 100))
    stamp, image = buffer.get(200)
    assert stamp == 200 and image[0, 0, 0] == 2
    assert buffer.latest()[0] == 300
    assert (buffer.frames, buffer.bytes, buffer.evictions) == (3, 180, 0)


def test_count_bound_evicts_oldest():
    buffer = FrameBuffer(max_frames=2, max_bytes=10_000)
    for stamp in (10, 20, 30):
        buffer.put(stamp, frame())
    assert buffer.stamps() == [20, 30]
    assert buffer.evictions == 1 and buffer.frames == 2 and buffer.bytes == 120


def test_byte_bound_evicts_until_it_fits():
    buffer = FrameBuffer(max_frames=100, max_bytes=150)  # two 60-byte frames fit, not three
    for stamp in (1, 2, 3, 4):
        buffer.put(stamp, frame())
        assert buffer.bytes <= 150
    assert buffer.stamps() == [3, 4]
    big = np.zeros((5, 8, 3), np.uint8)  # 120 bytes: both old frames must go
    buffer.put(5, big)
    assert buffer.stamps() == [5] and buffer.bytes == 120 and buffer.evictions == 4


def test_frame_larger_than_max_bytes_is_refused():
    buffer = FrameBuffer(max_frames=4, max_bytes=59)
    with pytest.raises(ValueError, match='larger than max_bytes=59'):
        buffer.put(1, frame())
    assert buffer.frames == 0


def test_same_stamp_replaces():
    buffer = FrameBuffer(max_frames=4, max_bytes=10_000)
    buffer.put(7, frame(1))
    buffer.put(7, frame(2, height=2))
    assert buffer.frames == 1 and buffer.bytes == 30
    assert buffer.get(7)[1][0, 0, 0] == 2


def test_nearest_within_tolerance():
    buffer = FrameBuffer(max_frames=10, max_bytes=10_000)
    for stamp in (1000, 2000, 3000):
        buffer.put(stamp, frame())
    assert buffer.get(2300, tolerance_ns=400)[0] == 2000
    assert buffer.get(2600, tolerance_ns=400)[0] == 3000
    assert buffer.get(2500, tolerance_ns=500)[0] == 2000  # ties go to the earlier frame
    assert buffer.get(3400, tolerance_ns=400)[0] == 3000
    with pytest.raises(FrameNotFound):
        buffer.get(2500, tolerance_ns=499)


def test_miss_says_evicted_or_never_seen():
    buffer = FrameBuffer(max_frames=2, max_bytes=10_000)
    for stamp in (100, 200, 300, 400):
        buffer.put(stamp, frame())
    with pytest.raises(FrameNotFound, match='was evicted') as caught:
        buffer.get(100)
    assert isinstance(caught.value, KeyError)
    assert str(caught.value).startswith('frame 100 was evicted')  # plain text, no quotes
    with pytest.raises(FrameNotFound, match='was never seen'):
        buffer.get(500)
    with pytest.raises(FrameNotFound, match='was never seen'):
        buffer.get(50)
    with pytest.raises(FrameNotFound, match='never seen .*empty'):
        FrameBuffer(max_frames=2, max_bytes=10).get(1)


def test_returned_images_are_read_only():
    buffer = FrameBuffer(max_frames=2, max_bytes=10_000)
    buffer.put(1, frame())
    with pytest.raises(ValueError):
        buffer.get(1)[1][0, 0, 0] = 9


@pytest.mark.parametrize('kwargs, name', [({'max_frames': 0, 'max_bytes': 1}, 'max_frames'),
                                          ({'max_frames': 1, 'max_bytes': -5}, 'max_bytes'),
                                          ({'max_frames': 1.5, 'max_bytes': 9}, 'max_frames')])
def test_bad_bounds(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FrameBuffer(**kwargs)


def test_bad_stamps_and_tolerance():
    buffer = FrameBuffer(max_frames=2, max_bytes=1000)
    with pytest.raises(ValueError, match='stamp_ns'):
        buffer.put(1.5, frame())
    with pytest.raises(ValueError, match='tolerance_ns'):
        buffer.get(1, tolerance_ns=-1)


def test_concurrent_writers_and_readers_keep_the_bounds():
    buffer = FrameBuffer(max_frames=8, max_bytes=8 * 60)
    errors = []

    def write(offset):
        for index in range(500):
            buffer.put(offset + index * 4, frame())

    def read():
        for _ in range(500):
            latest = buffer.latest()
            if latest is not None:
                try:
                    buffer.get(latest[0])
                except FrameNotFound:
                    pass  # evicted between the two calls: allowed
            if buffer.frames > 8 or buffer.bytes > 480:
                errors.append((buffer.frames, buffer.bytes))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert buffer.frames == 8 and buffer.bytes == 480
    assert buffer.evictions == 4 * 500 - 8
    assert buffer.stamps() == sorted(buffer.stamps())
