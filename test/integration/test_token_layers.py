"""Token layers on the bundled model: visual tokens stand in for pixels, the shipped codec
refines real tokens layer by layer, `colvlm eval --policy layers` asks for layers only when
unsure. The edge and the server exchanging layers are tested over real DDS in
test/integration/test_server_over_dds.py, and in detail (bad layers, a lost edge) on the
in-memory transport in test/unit/test_token_layers_node.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from colvlm_bench.evaluate import Evaluator, FolderFrames, LayerSettings, wire_size
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.wire import token_layer_message
from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_models.vlm import TransformersVlm, VisualTokens
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.token_codec import TokenCodec, cosine_similarity, payload_size
from colvlm_server.gate import GateConfig

NAMESPACE = 'cam_layers'
TIMEOUT_S = 60.0


@pytest.fixture(scope='module')
def bundled() -> TransformersVlm:
    return TransformersVlm('bundled', progress=False)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('glyph') / 'data', n_images=3, seed=8080)


def codec(split: str = 'tower') -> TokenCodec:
    return TokenCodec.load(bundled_model_path() / f'token_codec_{split}.npz')


def global_frames(data, count: int) -> list[np.ndarray]:
    """Global frames as the edge renders them (before compression)."""
    encoder = GlobalEncoder(GlobalEncoderConfig(width=128, height=128))
    names = sorted({q.image for q in load_dataset(data)})[:count]
    return [encoder.render(FolderFrames(data).original(name))[0] for name in names]


@pytest.mark.parametrize('split', ['tower', 'projector'])
def test_visual_tokens_stand_in_for_the_pixels_they_came_from(bundled, data, split):
    image = global_frames(data, 1)[0]
    question = load_dataset(data)[0].question
    from_pixels = bundled.generate([image], question)
    tokens = bundled.visual_tokens(image, split)
    assert tokens.shape == (64, codec(split).token_dim)
    from_tokens = bundled.generate([VisualTokens(tokens, split)], question)
    assert from_tokens.text == from_pixels.text
    np.testing.assert_allclose(from_tokens.logits, from_pixels.logits, atol=1e-3)
    assert from_tokens.input_tokens == from_pixels.input_tokens


@pytest.mark.parametrize('split', ['tower', 'projector'])
def test_the_shipped_codec_refines_real_tokens_with_every_layer(bundled, data, split):
    shipped = codec(split)
    for image in global_frames(data, 3):
        tokens = bundled.visual_tokens(image, split)
        layers = shipped.encode(tokens)
        similarity = [cosine_similarity(shipped.decode(layers[:k]), tokens)
                      for k in range(1, shipped.layer_count + 1)]
        assert all(np.diff(similarity) > 0), similarity
        assert similarity[-1] > 0.99
        error = np.linalg.norm(shipped.decode(layers) - tokens, axis=1).max()
        assert error <= shipped.quantization_bound(layers) * 1.01 + 1e-4


def test_eval_policy_layers_asks_for_more_only_while_unsure(bundled, data):
    questions = load_dataset(data)[:8]
    evaluator = Evaluator(bundled, data, questions, progress=False)
    evaluator.enable_layers('bundled', LayerSettings(proactive=1))
    shipped = codec()

    sure = evaluator.run('layers', GateConfig(threshold=100.0))  # never unsure enough
    for record in sure:
        result = record.result
        assert (result.status, result.layers_used, result.refinement) == (Status.OK, 1, 'none')
        assert result.uplink_bytes == result.layer_bytes > payload_size(
            64 * shipped.layer_coefficients[0], shipped.layer_bits[0])
        assert result.downlink_bytes == 0 and len(result.passes) == 1

    unsure = evaluator.run('layers', GateConfig(threshold=0.0))
    refined = [r.result for r in unsure if r.result.refinement == 'layers']
    assert refined, 'no answer was unsure at threshold 0'
    payload_all = sum(payload_size(64 * c, b) for c, b in
                      zip(shipped.layer_coefficients, shipped.layer_bits, strict=True))
    for result in refined:
        assert (result.status, result.decision) == (Status.OK, Decision.TOKEN_LAYERS)
        assert result.layers_used == shipped.layer_count == len(result.passes)
        assert result.layer_bytes > payload_all and result.downlink_bytes > 0
    for record, first in zip(unsure, sure, strict=True):
        # The first pass is the same pass: layer 0 alone.
        assert record.result.first.answer == first.result.answer


def test_eval_refuses_a_codec_of_another_split(bundled, data):
    evaluator = Evaluator(bundled, data, load_dataset(data)[:1], progress=False)
    with pytest.raises(ValueError, match="fitted at split 'projector', not 'tower'"):
        evaluator.enable_layers('bundled', LayerSettings(split='tower'),
                                str(bundled_model_path() / 'token_codec_projector.npz'))


def test_layer_messages_are_counted_as_the_edge_sends_them():
    """The eval's byte counts are the serialized TokenLayer messages, as on the wire."""
    from colvlm_msgs.typesupport import message_class
    layer = codec().encode(np.ones((64, 128), np.float32))[0]
    message = token_layer_message(message_class('colvlm/msg/TokenLayer'), layer, 5, 'camera')
    assert wire_size(message) > len(layer.payload) + len(layer.codec_id)
