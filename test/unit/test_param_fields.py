"""colvlm_msgs.param_fields: one declaration on a dataclass field gives the parameter table's
row, the check on construction (naming the ROS parameter) and keyword construction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from colvlm_edge.global_encoder import GlobalEncoderConfig
from colvlm_edge.parameters import EDGE_PARAMETERS, EdgeConfig, ViewScoreConfig
from colvlm_edge.roi_crop import CropLimits
from colvlm_edge.token_encoder import TokenLayersConfig
from colvlm_models.accelerate import Acceleration
from colvlm_msgs.param_fields import check_fields, from_parameters, parameter, parameter_specs
from colvlm_server.gate import GateConfig
from colvlm_server.parameters import SERVER_PARAMETERS, ServerConfig
from colvlm_server.views import ViewsConfig


@dataclass(frozen=True)
class Link:
    rate: float = parameter('link.rate', 1.5, 'uplink rate', unit='MB/s', min=0.0, max=10.0)
    mode: str = parameter('link.mode', 'udp', 'transport', choices=('udp', 'tcp'))
    peers: tuple[str, ...] = parameter('link.peers', (), 'peer names')

    def __post_init__(self) -> None:
        check_fields(self)


def test_a_field_declares_its_table_row():
    rate, mode, peers = parameter_specs(Link)
    assert (rate.name, rate.type, rate.default, rate.min, rate.max) == \
        ('link.rate', 'float', 1.5, 0.0, 10.0)
    assert rate.description == 'uplink rate, MB/s'
    assert (mode.type, mode.choices) == ('str', ('udp', 'tcp'))
    assert (peers.type, peers.default) == ('str_array', [])


@pytest.mark.parametrize('kwargs, message', [
    ({'rate': 11.0}, 'link.rate must be <= 10.0, got 11.0'),
    ({'rate': 'fast'}, "link.rate must be float, got 'fast'"),
    ({'mode': 'quic'}, "link.mode must be one of ('udp', 'tcp'), got 'quic'"),
    ({'peers': ('a', 3)}, "link.peers must be str_array, got ('a', 3)"),
])
def test_construction_in_code_is_checked_naming_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        Link(**kwargs)


def test_values_are_normalised_and_built_by_keyword():
    link = Link(rate=np.int64(2), peers=['a', 'b'])
    assert link.rate == 2.0 and type(link.rate) is float and link.peers == ('a', 'b')
    built = from_parameters(Link, {'link.rate': 3.0, 'link.peers': ['x'], 'other': 1})
    assert built == Link(rate=3.0, mode='udp', peers=('x',))


@pytest.mark.parametrize('table, group', [
    (SERVER_PARAMETERS, GateConfig), (SERVER_PARAMETERS, Acceleration),
    (SERVER_PARAMETERS, ViewsConfig), (EDGE_PARAMETERS, GlobalEncoderConfig),
    (EDGE_PARAMETERS, CropLimits), (EDGE_PARAMETERS, TokenLayersConfig),
    (EDGE_PARAMETERS, ViewScoreConfig), (SERVER_PARAMETERS, ServerConfig),
    (EDGE_PARAMETERS, EdgeConfig)])
def test_the_node_tables_are_made_from_the_groups_declarations(table, group):
    """The node's table, its docs and the library's checks read one declaration: the
    library's default is the node's."""
    for spec in parameter_specs(group):
        assert table.specs[spec.name] == spec
    assert from_parameters(group, table.resolve()) == group()


@pytest.mark.parametrize('table, config', [(SERVER_PARAMETERS, ServerConfig),
                                           (EDGE_PARAMETERS, EdgeConfig)])
def test_every_row_of_a_node_table_is_declared_on_its_config(table, config):
    assert [spec.name for spec in parameter_specs(config)] == list(table.specs)
