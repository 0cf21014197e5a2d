"""The edge node on the in-memory transport: when global frames go out, exact crops by stamp,
refusals with one line, the rate limit, and every byte it sends counted (DDS end to end:
test/integration/test_edge_over_dds.py)."""

from __future__ import annotations

import queue

from node_harness import TIMEOUT_S, ScriptedScorer, edge_config, noise_image
import numpy as np
import pytest

from colvlm_edge.node import EdgeNode
from colvlm_edge.sources import Frame
from colvlm_msgs import stamps
from colvlm_msgs.image_codec import decode_image, encode_image
from colvlm_msgs.transport.memory import MemoryBus, MemoryNode
from tools.hostile_inputs import forged_jpeg

SIZE = (320, 240)  # (w, h) px of the originals
SECOND = 10**9


class EdgeRig:
    """An edge node in /cam0 and a client that sees its frames and calls its services."""

    def __init__(self, scorer=None, tokens=None, **params):
        bus = MemoryBus()
        self.edge_node = MemoryNode('edge', 'cam0', bus=bus)
        self.edge = EdgeNode(self.edge_node, edge_config(self.edge_node, **params), tokens,
                             scorer)
        self.node = MemoryNode('client', 'cam0', bus=bus)
        self.frames: queue.Queue = queue.Queue()
        self.node.create_subscription('colvlm/msg/FrameGeometry', 'colvlm/global/geometry',
                                      self.frames.put, 'frame_info')
        self._crop_type = self.node.service_type('colvlm/srv/CropRoi')
        self._crop = self.node.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')
        self._frame_type = self.node.service_type('colvlm/srv/RequestFrame')
        self._frame = self.node.create_client('colvlm/srv/RequestFrame',
                                              'colvlm/request_frame')

    def read(self, stamp_ns: int, image=None) -> None:
        self.edge.on_frame(Frame(stamp_ns, noise_image(*SIZE) if image is None else image,
                                 'camera'))

    def published(self) -> list[int]:
        """Stamps of the frames published so far (the geometry goes out with each)."""
        got = []
        while not self.frames.empty():
            got.append(stamps.to_ns(self.frames.get().header.stamp))
        return got

    def crop(self, x, y, w, h, stamp_ns, **fields):
        request = self._crop_type.Request(**fields)
        stamps.fill(request.frame_stamp, stamp_ns)
        request.roi.x_offset, request.roi.y_offset = x, y
        request.roi.width, request.roi.height = w, h
        return self._crop.call(request, timeout=TIMEOUT_S)

    def request_frame(self, newer_than_ns: int = 0):
        request = self._frame_type.Request()
        stamps.fill(request.newer_than, newer_than_ns)
        return self._frame.call(request, timeout=TIMEOUT_S)

    def close(self) -> None:
        self.node.shutdown()
        self.edge_node.shutdown()


@pytest.fixture
def rig():
    made = []

    def build(**kwargs) -> EdgeRig:
        made.append(EdgeRig(**kwargs))
        return made[-1]

    yield build
    for one in made:
        one.close()


def _wait_published(rig: EdgeRig, count: int) -> list[int]:
    got = []
    while len(got) < count:
        got.append(stamps.to_ns(rig.frames.get(timeout=TIMEOUT_S).header.stamp))
    return got


def test_every_frame_mode_publishes_each_frame_and_counts_it(rig):
    edge = rig()
    for k in range(3):
        edge.read((k + 1) * SECOND)
    assert _wait_published(edge, 3) == [SECOND, 2 * SECOND, 3 * SECOND]
    assert edge.edge.uplink.messages['global'] == 3 and edge.edge.buffer.frames == 3


def test_rate_mode_publishes_at_the_rate_by_stamp(rig):
    edge = rig(**{'publish.mode': 'rate', 'publish.rate_hz': 2.0})
    for k in range(12):  # 10 camera frames a second for 1.1 s
        edge.read(SECOND + k * SECOND // 10)
    edge.read(3 * SECOND)  # the node knows it published: nothing more queued behind
    assert _wait_published(edge, 4) == [SECOND, SECOND + SECOND // 2, 2 * SECOND, 3 * SECOND]
    assert edge.published() == []
    # The buffer keeps the originals a crop can name: the published ones only.
    assert edge.edge.buffer.frames == 4


def test_on_request_mode_publishes_only_what_is_asked(rig):
    edge = rig(**{'publish.mode': 'on_request'})
    refused = edge.request_frame()
    assert not refused.success and 'no frame newer' in refused.status_message
    edge.read(SECOND)
    edge.read(2 * SECOND)
    asked = edge.request_frame()
    assert asked.success and stamps.to_ns(asked.frame_stamp) == 2 * SECOND
    assert _wait_published(edge, 1) == [2 * SECOND]
    again = edge.request_frame(2 * SECOND)
    assert not again.success and 'no frame newer' in again.status_message
    assert edge.published() == [] and edge.edge.uplink.messages['global'] == 1


def test_crops_are_exact_by_stamp_and_clamped_at_the_border(rig):
    edge = rig()
    original = noise_image(*SIZE, seed=3)
    edge.read(SECOND, original)
    exact = edge.crop(100, 50, 80, 60, SECOND, output_width=80, output_height=60, codec='png')
    assert exact.success and not exact.clamped, exact.status_message
    assert (exact.original_width, exact.original_height) == SIZE
    assert stamps.to_ns(exact.image.header.stamp) == SECOND
    assert np.array_equal(decode_image(bytes(exact.image.data)), original[50:110, 100:180])
    partly = edge.crop(SIZE[0] - 50, 10, 200, 100, SECOND, output_width=50,
                       output_height=100, codec='png')
    assert partly.success and partly.clamped and 'clamp' in partly.status_message
    assert (partly.applied_roi.x_offset, partly.applied_roi.width) == (SIZE[0] - 50, 50)
    assert np.array_equal(decode_image(bytes(partly.image.data)),
                          original[10:110, SIZE[0] - 50:])
    assert edge.edge.uplink.messages['crop'] == 2
    assert edge.edge.uplink.bytes['crop'] == sum(edge.node.serialized_size(r)
                                                 for r in (exact, partly))


@pytest.mark.parametrize('roi, stamp, fields, why', [
    ((0, 0, 10, 10), 12345, {}, 'frame 12345 was never seen'),
    ((SIZE[0] + 10, 0, 50, 50), SECOND, {}, 'outside'),
    ((10, 10, 0, 10), SECOND, {}, 'no area'),
    ((0, 0, 100, 100), SECOND, {'output_width': 5000, 'output_height': 5000}, 'exceeds'),
    ((0, 0, 100, 100), SECOND, {'codec': 'gif'}, 'gif'),
    ((0, 0, 100, 100), SECOND, {'codec': 'jpeg', 'quality': 150}, '150'),
])
def test_bad_crop_requests_are_refused_with_one_line(rig, roi, stamp, fields, why):
    edge = rig()
    edge.read(SECOND)
    refused = edge.crop(*roi, stamp, **fields)
    assert not refused.success and why in refused.status_message
    assert '\n' not in refused.status_message and len(refused.image.data) == 0
    assert 'crop' not in edge.edge.uplink.messages


def test_crops_beyond_the_rate_limit_are_refused(rig):
    edge = rig(**{'crop.max_requests': 3, 'crop.window_s': 600.0})
    edge.read(SECOND)
    answers = [edge.crop(0, 0, 64, 64, SECOND) for _ in range(5)]
    assert [a.success for a in answers] == [True, True, True, False, False]
    assert 'refused: over 3 crop requests' in answers[-1].status_message
    assert edge.edge.limiter.refused == 2


def test_a_flood_of_crops_from_one_client_does_not_starve_another(rig):
    edge = rig(**{'crop.max_requests': 5, 'crop.window_s': 600.0})
    edge.read(SECOND)
    flood = [edge.crop(0, 0, 10, 10, SECOND, output_width=16, output_height=16)
             for _ in range(50)]
    assert sum(a.success for a in flood) == 5
    other = MemoryNode('asker', 'cam0', bus=edge.edge_node.bus)  # another client: own bucket
    try:
        client = other.create_client('colvlm/srv/CropRoi', 'colvlm/crop_roi')
        request = other.service_type('colvlm/srv/CropRoi').Request()
        stamps.fill(request.frame_stamp, SECOND)
        request.roi.width, request.roi.height = 64, 64
        answers = [client.call(request, timeout=TIMEOUT_S) for _ in range(5)]
    finally:
        other.shutdown()
    assert all(a.success for a in answers)
    assert edge.edge.limiter.refused == 45 and edge.edge.limiter.clients == 2


def test_crops_are_limited_by_output_pixels_per_client(rig):
    edge = rig(**{'crop.max_pixels_per_s': 64 * 64, 'crop.max_output_width': 128,
                  'crop.max_output_height': 128, 'crop.window_s': 600.0})
    edge.read(SECOND)
    big = edge.crop(0, 0, 64, 64, SECOND, output_width=128, output_height=128)
    assert big.success  # the largest crop passes on a full bucket
    after = edge.crop(0, 0, 64, 64, SECOND, output_width=16, output_height=16)
    assert not after.success and 'px/s for this client' in after.status_message


def test_frame_requests_are_rate_limited_per_client(rig):
    edge = rig(**{'crop.max_requests': 3, 'crop.window_s': 600.0,
                  'publish.mode': 'on_request'})
    edge.read(SECOND)
    answers = [edge.request_frame() for _ in range(10)]
    assert [a.success for a in answers] == [True] * 3 + [False] * 7
    assert 'refused: over 3 frame requests' in answers[-1].status_message
    assert edge.edge.uplink.messages['global'] == 3  # no re-publish for a refused one


def test_a_topic_frame_declaring_too_many_pixels_is_refused_and_counted(rig):
    edge = rig(**{'decode.max_pixels': 100 * 100})
    message = edge.node.message_type('sensor_msgs/msg/CompressedImage')(
        format='jpeg', data=list(forged_jpeg(13000, 13000)))
    stamps.fill(message.header.stamp, SECOND)
    edge.edge.on_image_message(message)
    assert edge.edge.buffer.frames == 0 and edge.edge.figures()['refused images'] == 1
    small = edge.node.message_type('sensor_msgs/msg/CompressedImage')(
        format='jpeg', data=list(encode_image(noise_image(100, 100), 'jpeg', 80)))
    stamps.fill(small.header.stamp, 2 * SECOND)
    edge.edge.on_image_message(small)
    assert edge.edge.buffer.frames == 1


def test_a_published_original_is_gone_once_newer_ones_fill_the_buffer(rig):
    edge = rig(**{'buffer.max_frames': 2})
    for k in range(3):
        edge.read((k + 1) * SECOND)
    gone = edge.crop(0, 0, 64, 64, SECOND)
    assert not gone.success and 'evicted' in gone.status_message
    assert edge.crop(0, 0, 64, 64, 3 * SECOND).success


def test_a_frame_the_buffer_refuses_is_dropped_and_counted(rig):
    edge = rig(**{'buffer.max_bytes': 1000})
    edge.read(SECOND)
    assert edge.edge.dropped_frames == 1 and edge.edge.buffer.frames == 0
    assert edge.published() == []


class _FailingTokens:
    """A token encoder whose model fails on every frame."""

    codec = None

    def encode(self, pixels):
        raise RuntimeError('tower exploded\nsecond line')


def test_failing_token_layers_cost_only_the_layers(rig, caplog):
    edge = rig(tokens=_FailingTokens(), **{'layers.enabled': True})
    edge.read(SECOND)
    assert _wait_published(edge, 1) == [SECOND]
    assert 'layers' not in edge.edge.uplink.messages
    assert 'no token layers: RuntimeError: tower exploded' in caplog.text


def test_view_scores_refuse_an_empty_question_and_report_a_failing_scorer(rig):
    failing = rig(scorer=ScriptedScorer(RuntimeError('probe broke\nmore')))
    score_type = failing.node.service_type('colvlm/srv/ScoreView')
    client = failing.node.create_client('colvlm/srv/ScoreView', 'colvlm/score_view')
    nothing = client.call(score_type.Request(question='the sign?'), timeout=TIMEOUT_S)
    assert not nothing.success and nothing.status_message == 'no frame read yet'
    failing.read(SECOND)
    empty = client.call(score_type.Request(question='  '), timeout=TIMEOUT_S)
    assert not empty.success and empty.status_message == 'empty question'
    broke = client.call(score_type.Request(question='the sign?'), timeout=TIMEOUT_S)
    assert not broke.success
    assert broke.status_message == f'frame {SECOND}: no score: RuntimeError: probe broke'
    scoring = rig(scorer=ScriptedScorer(0.75))
    scoring.read(SECOND)
    client = scoring.node.create_client('colvlm/srv/ScoreView', 'colvlm/score_view')
    scored = client.call(score_type.Request(question='the sign?'), timeout=TIMEOUT_S)
    assert scored.success and scored.score == 0.75 and scored.concept == 'red sign'
    assert stamps.to_ns(scored.frame_stamp) == SECOND and not scored.abstained
    assert scoring.edge.uplink.bytes['score'] == scoring.node.serialized_size(scored)
