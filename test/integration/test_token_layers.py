"""Token layers on the bundled model: visual tokens stand in for pixels, the shipped codec
refines real tokens layer by layer, `colvlm eval --policy layers` asks for layers only when
unsure, and an edge and a server as two processes over real DDS, where the server asks the
edge's `colvlm/request_layers` for more layers. Bad layers and a lost edge are tested on the
in-memory transport in test/unit/test_token_layers_node.py.
"""

from __future__ import annotations

import threading
import uuid

from conftest import module_dds_env
import numpy as np
from processes import START_TIMEOUT_S, colvlm
import pytest

from colvlm_bench.evaluate import Evaluator, FolderFrames, LayerSettings, wire_size
from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset
from colvlm_edge.global_encoder import GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.wire import token_layer_message
from colvlm_models.tiny_vlm import bundled_model_path
from colvlm_models.vlm import TransformersVlm, VisualTokens
from colvlm_msgs import stamps
from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.token_codec import TokenCodec, cosine_similarity, payload_size
from colvlm_msgs.transport import create_node
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
        assert (result.status, result.layers_used, result.refinement) == ('ok', 1, 'none')
        assert result.uplink_bytes == result.layer_bytes > payload_size(
            64 * shipped.layer_coefficients[0], shipped.layer_bits[0])
        assert result.downlink_bytes == 0 and len(result.passes) == 1

    unsure = evaluator.run('layers', GateConfig(threshold=0.0))
    refined = [r.result for r in unsure if r.result.refinement == 'layers']
    assert refined, 'no answer was unsure at threshold 0'
    payload_all = sum(payload_size(64 * c, b) for c, b in
                      zip(shipped.layer_coefficients, shipped.layer_bits, strict=True))
    for result in refined:
        assert (result.status, result.decision) == ('ok', 'token_layers')
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


# -- two processes over DDS ----------------------------------------------------------------
@pytest.fixture(scope='module')
def env():
    with module_dds_env() as env:
        yield env


@pytest.fixture(scope='module')
def edge(env):
    process = colvlm('edge', '--namespace', NAMESPACE, '--source', 'synthetic',
                     '-p', 'publish.mode=rate', '-p', 'publish.rate_hz=2.0',
                     '-p', 'layers.enabled=true', '-p', 'layers.proactive=1', env=env)
    try:
        process.wait_for(r'\bready: .*token layers pca4-tower', START_TIMEOUT_S)
        yield process
    finally:
        process.kill()


@pytest.fixture(scope='module')
def server(env, edge):
    # Threshold 0: every answer with any doubt asks for more layers.
    process = colvlm('server', '--namespace', NAMESPACE, '-p', 'policy=layers',
                     '-p', 'gate.threshold=0.0', '-p', 'frame.max_age_s=0.0',
                     '-p', 'layers.timeout_s=5.0', env=env)
    try:
        process.wait_for(r'\bready: model', START_TIMEOUT_S)
        yield process
    finally:
        process.kill()


class LayerClient:
    """Asks the server; sees the layers the edge sends unasked."""

    def __init__(self):
        self.node = create_node(f'test_layers_{uuid.uuid4().hex[:6]}', NAMESPACE)
        self.sent: dict[int, int] = {}  # stamp -> serialized bytes of the layers sent unasked
        self._seen = threading.Condition()
        self.node.create_subscription('colvlm/msg/TokenLayer', 'colvlm/token_layers',
                                      self._on_layer, 'token_layers')
        self.ask_type = self.node.service_type('colvlm/srv/Ask')
        self._ask = self.node.create_client('colvlm/srv/Ask', 'colvlm/ask')

    def _on_layer(self, message) -> None:
        with self._seen:
            stamp = stamps.to_ns(message.header.stamp)
            self.sent[stamp] = self.sent.get(stamp, 0) + self.node.serialized_size(message)
            self._seen.notify_all()

    def edge_stamps(self) -> list[int]:
        with self._seen:
            return sorted(self.sent)

    def wait_for_layers(self, frames: int = 2) -> int:
        """The stamp of the edge's newest frame but one, once `frames` have been seen (the
        server, a subscriber like this client, holds it too by then)."""
        with self._seen:
            assert self._seen.wait_for(lambda: len(self.edge_stamps()) >= frames, TIMEOUT_S)
        return self.edge_stamps()[-2]

    def ask(self, stamp_ns: int, question='What is written on the red sign?'):
        request = self.ask_type.Request()
        request.query.query_id = uuid.uuid4().hex[:8]
        request.query.question = question
        request.query.policy = 'layers'
        stamps.fill(request.query.frame_stamp, stamp_ns)
        answer = self._ask.call(request, timeout=TIMEOUT_S).answer
        assert answer.query_id == request.query.query_id
        return answer


@pytest.fixture(scope='module')
def client(server):
    client = LayerClient()
    yield client
    client.node.shutdown()


def test_the_server_asks_the_edge_for_more_layers(client):
    stamp = client.wait_for_layers()
    shipped = codec()
    answer = client.ask(stamp)
    assert answer.status == Status.OK, answer.status_message
    assert answer.answer and answer.policy == 'layers'
    assert stamps.to_ns(answer.frame_stamp) == stamp
    if answer.decision == Decision.GLOBAL:
        pytest.fail(f'layer 0 was enough at threshold 0: {answer.status_message}')
    assert answer.decision == Decision.TOKEN_LAYERS
    assert answer.second_pass.ran and f'layers 0..3 of {shipped.layer_count}' in \
        answer.status_message
    # The layer sent unasked, then replies carrying layers 1..3.
    payload_rest = sum(payload_size(64 * c, b) for c, b in
                       zip(shipped.layer_coefficients[1:], shipped.layer_bits[1:], strict=True))
    assert answer.uplink_layer_bytes > client.sent[stamp] + payload_rest
    assert answer.uplink_global_bytes == answer.uplink_crop_bytes == 0
    assert answer.uplink_bytes == answer.uplink_layer_bytes and answer.downlink_bytes > 0


def test_layer_messages_are_counted_as_the_edge_sends_them():
    """The eval's byte counts are the serialized TokenLayer messages, as on the wire."""
    from colvlm_msgs.typesupport import message_class
    layer = codec().encode(np.ones((64, 128), np.float32))[0]
    message = token_layer_message(message_class('colvlm/msg/TokenLayer'), layer, 5, 'camera')
    assert wire_size(message) > len(layer.payload) + len(layer.codec_id)
