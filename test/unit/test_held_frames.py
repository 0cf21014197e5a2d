"""The server's frame and token-layer stores (colvlm_server/held_frames.py): they forget by
arrival, not by stamp, and are bounded in count and bytes; a half frame is forgotten after
UNPAIRED_S; a frame holds at most the codec's layer count. Pure: no transport, a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from colvlm_msgs.geometry import GlobalGeometry
from colvlm_msgs.token_codec import EncodedLayer
from colvlm_server.held_frames import UNPAIRED_S, FrameStore, LayerStore


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def geometry(width: int = 8, height: int = 6) -> GlobalGeometry:
    return GlobalGeometry(original_width=2 * width, original_height=2 * height,
                          global_width=width, global_height=height, preprocess='resize',
                          scale_x=0.5, scale_y=0.5, offset_x=0.0, offset_y=0.0)


def image(width: int = 8, height: int = 6) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)  # (h, w, 3) uint8 BGR, 144 B at 8x6


def add_frame(store: FrameStore, stamp_ns: int) -> None:
    store.add_image(stamp_ns, image(), 'camera', 100)
    store.add_geometry(stamp_ns, geometry(), 50)


def held(store: FrameStore, stamps) -> list[int]:
    return [stamp for stamp in stamps if store.get(stamp) is not None]


def test_frames_are_forgotten_by_arrival_not_by_stamp():
    store = FrameStore('/cam0', keep=3)
    for stamp in (100, 200, 300):
        add_frame(store, stamp)
    add_frame(store, 50)  # an old stamp, arriving last (a replayed or re-sent frame)
    assert held(store, (50, 100, 200, 300)) == [50, 200, 300]  # 100 came first, went first
    assert store.latest()[0].stamp_ns == 300 and store.completed == 4


def test_a_frame_stamped_in_the_future_is_forgotten_once_newer_ones_arrived():
    store = FrameStore('/cam0', keep=3)
    add_frame(store, 10**20)
    assert store.latest()[0].stamp_ns == 10**20  # newest while held
    for stamp in (100, 200, 300):
        add_frame(store, stamp)
    assert store.get(10**20) is None and store.latest()[0].stamp_ns == 300


def test_frames_are_bounded_in_bytes_and_an_image_over_the_bound_is_refused():
    store = FrameStore('/cam0', keep=8, max_bytes=int(2.5 * image().nbytes))
    for stamp in (1, 2, 3):
        add_frame(store, stamp)
    assert held(store, (1, 2, 3)) == [2, 3] and store.held_bytes() == 2 * image().nbytes
    with pytest.raises(ValueError, match=r'frame 4 of /cam0: image of 4800 B, more than'):
        store.add_image(4, image(40, 40), 'camera', 100)
    assert held(store, (1, 2, 3, 4)) == [2, 3]


def test_images_waiting_for_their_geometry_go_before_complete_frames():
    store = FrameStore('/cam0', keep=8, max_bytes=3 * image().nbytes)
    add_frame(store, 1)
    add_frame(store, 2)
    store.add_image(3, image(), 'camera', 100)  # its geometry never comes
    store.add_image(4, image(), 'camera', 100)  # over the bound: the waiting 3 goes first
    assert store.held_bytes() == 3 * image().nbytes and held(store, (1, 2)) == [1, 2]
    store.add_geometry(3, geometry(), 50)
    assert store.get(3) is None  # its image was forgotten; the geometry waits on its own


def test_a_half_frame_is_forgotten_after_a_short_time():
    clock = Clock()
    store = FrameStore('/cam0', clock=clock)
    store.add_image(1, image(), 'camera', 100)
    store.add_geometry(2, geometry(), 50)
    assert store.held_bytes() == image().nbytes and store.geometry(2) is not None
    clock.now += UNPAIRED_S + 0.1
    assert store.held_bytes() == 0 and store.expired == 2
    store.add_geometry(1, geometry(), 50)  # too late: no frame
    assert store.latest() is None


def layer(index: int = 0, payload: bytes = b'\0' * 16) -> EncodedLayer:
    return EncodedLayer(codec_id='pca4-tower-128-000000000000', layer_index=index,
                        layer_count=4, token_count=64, token_dim=128, coefficient_count=4,
                        bits=4, scale=1.0, zero_point=0.0, payload=payload)


def test_a_frame_holds_at_most_the_codecs_layer_count():
    store = LayerStore('/cam0', per_frame=4)
    for index in range(4):
        store.add(7, layer(index), 100, 'camera')
    with pytest.raises(ValueError, match='frame 7 of /cam0: 4 are held already'):
        store.add(7, layer(1), 100, 'camera')
    assert len(store.get(7)[0].layers) == 4 and store.held_bytes() == 400


def test_layers_are_bounded_in_bytes_by_the_arrival_of_their_frame():
    store = LayerStore('/cam0', per_frame=4, max_bytes=1000)
    store.add(1, layer(0), 300, 'camera')
    store.add(2, layer(0), 300, 'camera')
    store.add(1, layer(1), 300, 'camera')  # more of frame 1: it keeps its place
    store.add(3, layer(0), 300, 'camera')  # over 1000 B: frame 1, the first arrived, goes
    assert store.get(1) is None and store.held_bytes() == 600
    assert store.latest()[0].stamp_ns == 3
    with pytest.raises(ValueError, match='token layers of frame 4 of /cam0: 2000 B'):
        store.add(4, layer(0), 2000, 'camera')
