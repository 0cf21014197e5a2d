"""The token-layer codec: round trips, progressive refinement, the quantization bound, the
artifact, and every kind of bad layer named in one line (numpy only; real tokens in
test/integration/test_token_layers.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from colvlm_msgs.token_codec import (
    EncodedLayer,
    LayerError,
    TokenCodec,
    cosine_similarity,
    pack_bits,
    payload_size,
    unpack_bits,
)
from colvlm_server.token_layers import LayerFetch, LayersUnavailable, check_fetched, usable_prefix

DIM, TOKENS = 24, 16


def _tokens(rng, n: int) -> np.ndarray:
    """(n, DIM) tokens with a falling spectrum, like a vision tower's (float32)."""
    mixing = rng.normal(size=(DIM, DIM)) * (0.6 ** np.arange(DIM))[:, None]
    return (rng.normal(size=(n, DIM)) @ mixing + 3.0).astype(np.float32)


@pytest.fixture(scope='module')
def codec() -> TokenCodec:
    return TokenCodec.fit(_tokens(np.random.default_rng(0), 2000), [2, 6, 16], [8, 6, 4])


@pytest.fixture
def frame_tokens() -> np.ndarray:
    return _tokens(np.random.default_rng(1), TOKENS)


@pytest.mark.parametrize('bits', range(1, 17))
def test_bit_packing_round_trips(bits):
    values = np.random.default_rng(bits).integers(0, 2 ** bits, 37).astype(np.uint32)
    packed = pack_bits(values, bits)
    assert len(packed) == payload_size(37, bits)
    np.testing.assert_array_equal(unpack_bits(packed, 37, bits), values)


def test_fit_orders_directions_and_reports_variance(codec):
    shares = codec.info['explained_variance_by_layer']
    assert len(shares) == 3 and abs(sum(shares) - 1.0) < 1e-6
    assert shares[0] > shares[1] > shares[2]  # coarse first
    np.testing.assert_allclose(codec.components @ codec.components.T, np.eye(DIM), atol=1e-5)


def test_error_falls_with_every_layer_and_all_layers_are_exact_up_to_quantization(
        codec, frame_tokens):
    layers = codec.encode(frame_tokens)
    assert [layer.layer_index for layer in layers] == [0, 1, 2]
    errors = [np.linalg.norm(codec.decode(layers[:k]) - frame_tokens) for k in (1, 2, 3)]
    mean_only = np.linalg.norm(codec.mean - frame_tokens)
    assert mean_only > errors[0] > errors[1] > errors[2]
    similarity = [cosine_similarity(codec.decode(layers[:k]), frame_tokens) for k in (1, 2, 3)]
    assert similarity == sorted(similarity)
    per_token = np.linalg.norm(codec.decode(layers) - frame_tokens, axis=1)
    bound = codec.quantization_bound(layers)
    assert per_token.max() <= bound * (1 + 1e-3) + 1e-5
    # Quantization is all that is lost: more bits, proportionally less error.
    fine = TokenCodec(codec.mean, codec.components, [2, 6, 16], [16, 16, 16])
    assert np.abs(fine.decode(fine.encode(frame_tokens)) - frame_tokens).max() < 1e-3


def test_payload_sizes_follow_the_bits(codec, frame_tokens):
    for layer, count, bits in zip(codec.encode(frame_tokens), [2, 6, 16], [8, 6, 4],
                                  strict=True):
        assert (layer.coefficient_count, layer.bits) == (count, bits)
        assert len(layer.payload) == TOKENS * count * bits // 8


def test_a_constant_layer_decodes(codec):
    tokens = np.tile(codec.mean, (4, 1))  # all coefficients zero
    np.testing.assert_allclose(codec.decode(codec.encode(tokens)), tokens, atol=1e-5)


def test_artifact_round_trips_and_the_id_names_its_contents(codec, frame_tokens, tmp_path):
    path = codec.save(tmp_path / 'codec.npz')
    loaded = TokenCodec.load(path)
    assert loaded.codec_id == codec.codec_id and loaded.split == 'tower'
    np.testing.assert_array_equal(loaded.decode(codec.encode(frame_tokens)),
                                  codec.decode(codec.encode(frame_tokens)))
    other = TokenCodec.fit(_tokens(np.random.default_rng(5), 2000), [2, 6, 16], [8, 6, 4])
    assert other.codec_id != codec.codec_id
    regrouped = TokenCodec(codec.mean, codec.components, [4, 4, 16], [8, 6, 4])
    assert regrouped.codec_id != codec.codec_id
    with np.load(path) as data:
        arrays = dict(data)
    arrays['components'] = other.components  # a swapped basis under the old id
    np.savez(tmp_path / 'tampered.npz', **arrays)
    with pytest.raises(ValueError, match='tampered.npz: stored codec_id'):
        TokenCodec.load(tmp_path / 'tampered.npz')
    with pytest.raises(ValueError, match='missing.npz'):
        TokenCodec.load(tmp_path / 'missing.npz')


@pytest.mark.parametrize('coefficients, bits, why', [
    ([2, 6, 15], [8, 6, 4], 'sum to the token dim'),
    ([2, 6, 16], [8, 6], 'same length'),
    ([2, 6, 16], [8, 0, 4], 'layer_bits'),
    ([0, 8, 16], [8, 6, 4], '>= 1 each'),
])
def test_bad_layer_plans_are_refused(codec, coefficients, bits, why):
    with pytest.raises(ValueError, match=why):
        TokenCodec(codec.mean, codec.components, coefficients, bits)


def _bad(codec, tokens):
    layers = codec.encode(tokens)
    other = TokenCodec.fit(_tokens(np.random.default_rng(9), 500), [2, 6, 16], [8, 6, 4])
    return {
        'empty': ([], 'no layers'),
        'out of order': ([layers[1], layers[0]], 'out of order: 1, 0'),
        'duplicated': ([layers[0], layers[0], layers[1]], 'layer 0 is duplicated'),
        'gap': ([layers[0], layers[2]], 'layer 1 is missing'),
        'no layer 0': ([layers[1]], 'layer 0 is missing'),
        'other basis': ([other.encode(tokens)[0]], f'codec_id {other.codec_id!r}'),
        'short payload': ([replace(layers[0], payload=layers[0].payload[:-1])],
                          'payload is 31 bytes, expected 32'),
        'wrong bits': ([replace(layers[0], bits=4)], 'bits 4, expected 8'),
        'wrong width': ([replace(layers[0], coefficient_count=3)],
                        'coefficient_count 3, expected 2'),
        'wrong dim': ([replace(layers[0], token_dim=DIM + 1)], f'token_dim {DIM + 1}'),
        'wrong layer count': ([replace(layers[0], layer_count=5)], 'layer_count 5'),
        'index past the end': ([replace(layers[0], layer_index=7)], 'outside 0..2'),
        'NaN scale': ([replace(layers[0], scale=float('nan'))], 'scale nan'),
        'two frames': ([layers[0], codec.encode(tokens[:8])[1]],
                       'disagree on token_count'),
    }


@pytest.mark.parametrize('case', [
    'empty', 'out of order', 'duplicated', 'gap', 'no layer 0', 'other basis',
    'short payload', 'wrong bits', 'wrong width', 'wrong dim', 'wrong layer count',
    'index past the end', 'NaN scale', 'two frames'])
def test_bad_layers_are_refused_in_one_line_naming_the_culprit(codec, frame_tokens, case):
    layers, why = _bad(codec, frame_tokens)[case]
    with pytest.raises(LayerError) as raised:
        codec.decode(layers)
    assert why in str(raised.value) and '\n' not in str(raised.value)


def test_usable_prefix_keeps_the_good_run_from_layer_0(codec, frame_tokens):
    layers = codec.encode(frame_tokens)
    assert usable_prefix(codec, [layers[1], layers[0]]) == ([layers[0], layers[1]], '')
    assert usable_prefix(codec, [layers[0], layers[0]])[1] == ''  # a frame sent twice
    prefix, problem = usable_prefix(codec, [layers[0], layers[2]])
    assert prefix == [layers[0]] and problem == 'layer 1 is missing (got 0, 2)'
    changed = replace(layers[1], scale=layers[1].scale * 2)
    prefix, problem = usable_prefix(codec, [layers[0], layers[1], changed])
    assert len(prefix) == 2 and 'layer 1 arrived twice with different contents' in problem
    broken = replace(layers[0], payload=b'')
    prefix, problem = usable_prefix(codec, [broken, layers[1]])
    assert prefix == [] and 'payload is 0 bytes' in problem


def test_check_fetched_wants_exactly_the_layers_asked_for(codec, frame_tokens):
    layers = codec.encode(frame_tokens)
    check_fetched(codec, layers[:1], LayerFetch(layers[1:3], 10), 1, 2)
    with pytest.raises(LayersUnavailable, match=r'asked for layers 1..2, the edge sent \[1\]'):
        check_fetched(codec, layers[:1], LayerFetch(layers[1:2], 10), 1, 2)
    other = codec.encode(frame_tokens[:8])
    with pytest.raises(LayersUnavailable, match='bad layers: .*token_count'):
        check_fetched(codec, layers[:1], LayerFetch(other[1:2], 10), 1, 1)


def test_layers_come_from_messages_field_by_field(codec, frame_tokens):
    from colvlm_edge.wire import token_layer_message
    from colvlm_msgs.typesupport import message_class

    layer = codec.encode(frame_tokens)[1]
    message = token_layer_message(message_class('colvlm/msg/TokenLayer'), layer, 1234, 'cam')
    back = EncodedLayer.from_message(message)
    assert back.payload == layer.payload and back.codec_id == layer.codec_id
    assert np.float32(back.scale) == np.float32(layer.scale)
    np.testing.assert_array_equal(codec.decode([codec.encode(frame_tokens)[0], back]),
                                  codec.decode(codec.encode(frame_tokens)[:2]))
