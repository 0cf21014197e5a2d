"""Token layers between an edge node and a server node on the in-memory transport, with the
shipped codec and a scripted model: the server asks the edge for more layers only while
unsure, bad layers are reported on the Answer, and a lost edge leaves the answer from the
layers that came (DDS end to end: test/integration/test_token_layers.py)."""

from __future__ import annotations

import dataclasses
import time

from node_harness import TIMEOUT_S, UNSURE, Rig, ScriptedVlm, status
import numpy as np
import pytest

from colvlm_edge.token_encoder import TokenLayerEncoder
from colvlm_edge.wire import token_layer_message
from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision
from colvlm_msgs.token_codec import TokenCodec
from colvlm_msgs.typesupport import message_class
from colvlm_server.token_layers import LayerOptions


def _codec() -> TokenCodec:
    return TokenCodec.load(bundled_model_path() / 'token_codec_tower.npz')


@pytest.fixture
def rig():
    made = []

    def build(**server_params) -> Rig:
        codec, backend = _codec(), ScriptedVlm()
        options = LayerOptions({codec.codec_id: codec}, 1, False)
        made.append(Rig(backend, tokens=TokenLayerEncoder(backend, codec),
                        edge_params={'layers.enabled': True, 'layers.proactive': 1},
                        layer_options=options, **{'policy': 'layers', **server_params}))
        return made[-1]

    yield build
    for one in made:
        one.close()


def _held(setup: Rig, stamp_ns: int) -> None:
    """Wait until the server holds token layers of `stamp_ns`."""
    assert setup.server.links[0].layers.wait_for(stamp_ns, TIMEOUT_S) is not None


def _stamp(ns: int):
    return stamps.fill(message_class('builtin_interfaces/msg/Time')(), ns)


def test_a_sure_answer_needs_only_the_layer_sent_with_the_frame(rig):
    setup = rig()
    stamp = setup.feed()
    _held(setup, stamp)
    answer = setup.ask(frame_stamp=_stamp(stamp))
    assert status(answer) == 'OK', answer.status_message
    assert answer.decision == Decision.GLOBAL and 'layers 0..0 of 4' in answer.status_message
    sent = setup.edges['cam0'].uplink
    assert answer.uplink_layer_bytes == sent.bytes['layers'] and sent.messages['layers'] == 1
    assert answer.downlink_bytes == 0


def test_the_server_asks_the_edge_for_more_layers_while_unsure(rig):
    setup = rig()
    stamp = setup.feed()
    _held(setup, stamp)
    answer = setup.ask(f'{UNSURE}: what is written?', frame_stamp=_stamp(stamp))
    assert status(answer) == 'OK', answer.status_message
    assert answer.decision == Decision.TOKEN_LAYERS and answer.second_pass.ran
    assert 'layers 0..3 of 4' in answer.status_message
    sent = setup.edges['cam0'].uplink
    assert sent.messages['layers'] == 1 + 3  # the one sent unasked, three replies
    assert answer.uplink_layer_bytes == sent.bytes['layers']
    assert answer.uplink_bytes == answer.uplink_layer_bytes and answer.downlink_bytes > 0
    assert answer.uplink_global_bytes == answer.uplink_crop_bytes == 0


def _bad_layer(stamp_ns: int, **changes):
    good = _codec().encode(np.zeros((64, 128), np.float32))[0]
    return token_layer_message(message_class('colvlm/msg/TokenLayer'),
                               dataclasses.replace(good, **changes), stamp_ns, 'camera')


@pytest.mark.parametrize('changes, expected', [
    ({'codec_id': 'pca4-tower-128-000000000000'},
     "codec_id 'pca4-tower-128-000000000000' is not one this server decodes"),
    ({'payload': b'\x00' * 7}, 'layer 0 payload is 7 bytes, expected 256'),
    ({'layer_index': 1, 'coefficient_count': 12, 'bits': 6, 'payload': b'\x00' * 576},
     'layer 0 is missing'),
])
def test_bad_layers_are_reported_and_the_server_keeps_serving(rig, changes, expected):
    setup = rig()
    layers = setup.client.create_publisher('colvlm/msg/TokenLayer', 'colvlm/token_layers',
                                           'token_layers')
    # The server forgets frames by arrival, so any stamp would be held; near now, as tests keep.
    stamp = time.time_ns()
    layers.publish(_bad_layer(stamp, **changes))
    _held(setup, stamp)
    answer = setup.ask(frame_stamp=_stamp(stamp))
    assert status(answer) == 'LAYERS_UNAVAILABLE', answer.status_message
    assert expected in answer.status_message and '\n' not in answer.status_message
    fine = setup.feed()
    _held(setup, fine)
    assert status(setup.ask(frame_stamp=_stamp(fine))) == 'OK'


def test_a_lost_edge_leaves_the_answer_from_the_layers_that_came(rig):
    setup = rig(**{'layers.timeout_s': 0.2})
    stamp = setup.feed()
    _held(setup, stamp)
    sent = setup.edges['cam0'].uplink.bytes['layers']
    setup.edges['cam0'].node.shutdown()
    answer = setup.ask(f'{UNSURE}?', frame_stamp=_stamp(stamp))
    assert status(answer) == 'LAYERS_UNAVAILABLE', answer.status_message
    assert answer.decision == Decision.FALLBACK and answer.answer
    assert 'layers unavailable' in answer.status_message
    assert answer.uplink_layer_bytes == sent


def test_no_layers_yet_hints_at_the_edge_setting(rig):
    answer = rig(**{'frame.fresh_timeout_s': 0.3}).ask()
    assert status(answer) == 'NO_FRAME' and 'layers.enabled' in answer.status_message
