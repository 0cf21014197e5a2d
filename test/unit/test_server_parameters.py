"""The server's parameter table and its frozen configuration: pure, no middleware."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from colvlm_msgs.params import ParameterError, read_yaml
from colvlm_server.parameters import SERVER_PARAMETERS, SERVER_POLICIES, ServerConfig

SHIPPED = Path(__file__).resolve().parents[2] / 'config' / 'server.yaml'


def config(**overrides) -> ServerConfig:
    values = SERVER_PARAMETERS.resolve(overrides={k.replace('__', '.'): v
                                                  for k, v in overrides.items()})
    return ServerConfig.from_values(values)


def test_shipped_yaml_sets_every_parameter_to_its_default():
    from colvlm_models.settings import GENERIC

    from_file = read_yaml(SHIPPED, 'server')
    # The model's own settings come from its colvlm.yaml (test_model_settings.py).
    assert set(from_file) == set(SERVER_PARAMETERS.specs) - set(GENERIC)
    for name, value in from_file.items():
        assert value == SERVER_PARAMETERS.specs[name].default, name
    shipped = ServerConfig.from_values(SERVER_PARAMETERS.load(SHIPPED, 'server'))
    assert shipped == config()


def test_defaults_describe_the_bundled_model_behind_the_entropy_gate():
    default = config()
    assert (default.model, default.device, default.dtype) == ('bundled', 'cpu', 'float32')
    # The threshold calibrated on the bundled model (README, Results).
    assert default.policy == 'entropy' and default.gate.threshold == 0.2281
    assert default.attention_layer is None and default.default_camera == ''
    assert default.queue_max_size == 4 and default.frame_max_age_s == 5.0
    assert 'oracle' not in SERVER_POLICIES and 'layers' in SERVER_POLICIES
    assert (default.layers_codec, default.layers_step, default.layers_crop) == ('', 1, False)
    assert default.layers_first == 2  # the edge's layers.proactive default
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.policy = 'always'


def test_accelerations_are_off_by_default_and_reach_the_configuration():
    default = config().acceleration
    assert (default.keep_ratio, default.speculative, default.quantize) == (1.0, 'none', 'none')
    assert not default.custom_decode and default.describe() == ''
    chosen = config(tokens__keep_ratio=0.5, tokens__select_layer=1,
                    decode__speculative='draft', decode__draft_model='/models/draft',
                    decode__draft_tokens=4, quantize='int8').acceleration
    assert (chosen.keep_ratio, chosen.select_layer, chosen.speculative, chosen.draft_model,
            chosen.draft_tokens, chosen.quantize) == (0.5, 1, 'draft', '/models/draft', 4,
                                                      'int8')
    assert 'speculative draft' in chosen.describe()


def test_values_reach_the_configuration():
    chosen = config(policy='always', gate__aggregate='mean', gate__metric='renyi',
                    gate__renyi_alpha=3.0, vicrop__layer=2, crop__codec='png',
                    crop__quality=3, camera__default='/front')
    assert chosen.policy == 'always' and chosen.vicrop_layer == 2
    assert (chosen.gate.aggregate, chosen.gate.metric, chosen.gate.renyi_alpha) == (
        'mean', 'renyi', 3.0)
    assert (chosen.crop_codec, chosen.crop_quality, chosen.default_camera) == ('png', 3,
                                                                               '/front')
    assert config(crop__codec='png', crop__quality=0).crop_quality == 0   # the edge's default


@pytest.mark.parametrize('name, value, message', [
    ('gate.threshold', -0.1, 'gate.threshold must be >= 0.0, got -0.1'),
    ('gate.threshold', 'high', "gate.threshold must be float, got 'high'"),
    ('gate.aggregate', 'median', "gate.aggregate must be one of ('mean', 'max', 'first')"),
    ('gate.metric', 'gini', 'gate.metric must be one of'),
    ('gate.random_rate', 1.5, 'gate.random_rate must be <= 1.0, got 1.5'),
    ('policy', 'oracle', "policy must be one of ('global', 'entropy', 'always', 'random', "
                         "'hd', 'layers'), got 'oracle'"),
    ('dtype', 'int8', "dtype must be one of ('float32', 'float16', 'bfloat16'), got 'int8'"),
    ('max_new_tokens', 0, 'max_new_tokens must be >= 1, got 0'),
    ('vicrop.layer', -2, 'vicrop.layer must be >= -1, got -2'),
    ('queue.max_size', 0, 'queue.max_size must be >= 1, got 0'),
    ('frame.max_age_s', -1.0, 'frame.max_age_s must be >= 0.0, got -1.0'),
    ('crop.timeout_s', 0.0, 'crop.timeout_s must be >= 0.01, got 0.0'),
    ('crop.codec', 'gif', 'crop.codec must be one of'),
    ('question.max_chars', True, 'question.max_chars must be int, got True'),
    ('gate.thresold', 1.0, "unknown parameter 'gate.thresold'"),
    ('tokens.keep_ratio', 0.0, 'tokens.keep_ratio must be >= 0.01, got 0.0'),
    ('tokens.keep_ratio', 1.5, 'tokens.keep_ratio must be <= 1.0, got 1.5'),
    ('tokens.select_layer', -1, 'tokens.select_layer must be >= 0, got -1'),
    ('decode.speculative', 'medusa', "decode.speculative must be one of ('none', "
                                     "'prompt_lookup', 'draft'), got 'medusa'"),
    ('decode.speculative', False, 'decode.speculative must be str, got False'),
    ('decode.draft_tokens', 0, 'decode.draft_tokens must be >= 1, got 0'),
    ('quantize', 'fp8', "quantize must be one of ('none', 'int8'), got 'fp8'"),
])
def test_bad_values_name_the_parameter(name, value, message):
    with pytest.raises(ParameterError) as error:
        SERVER_PARAMETERS.resolve(overrides={name: value})
    assert message in str(error.value)


@pytest.mark.parametrize('overrides, message', [
    ({'crop.codec': 'png', 'crop.quality': 90}, 'crop.quality must be in 0..9 for png, got 90'),
    ({'device': ' '}, "device must not be empty, got ''"),
])
def test_cross_field_errors_name_the_parameter(overrides, message):
    values = SERVER_PARAMETERS.resolve(overrides=overrides)
    with pytest.raises(ValueError) as error:
        ServerConfig.from_values(values)
    assert str(error.value) == f'server parameters: {message}'


def test_a_bad_file_value_names_the_file_and_key(tmp_path):
    path = tmp_path / 'server.yaml'
    path.write_text('/**:\n  ros__parameters:\n    gate:\n      threshold: -3\n')
    with pytest.raises(ParameterError) as error:
        SERVER_PARAMETERS.load(path, 'server')
    assert str(error.value) == f'{path}: gate.threshold must be >= 0.0, got -3.0'
