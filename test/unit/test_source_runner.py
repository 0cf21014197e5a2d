"""colvlm_edge.source_runner and colvlm_edge.health on an edge node over the in-memory
transport: a source that raises (a real bag corrupted mid-file) ends with one ERROR line naming
it and its cause and shows as failed in the status line and on /diagnostics; a stop asked for
is silent; the sources' warnings carry the node's prefix; the DiagnosticArray's CDR is the
one ROS 2 tools read (rosbags as the reference)."""

from __future__ import annotations

import logging
import queue
import threading

from node_harness import TIMEOUT_S, edge_config, noise_image
import pytest
from rosbags.typesys import Stores, get_typestore

from colvlm_edge.health import DIAGNOSTICS_QOS, ERROR, OK, WARN, SourceHealth
from colvlm_edge.node import EdgeNode
from colvlm_edge.source_runner import SOURCES_LOGGER, log_sources_through, run_source
from colvlm_edge.sources import BagSource, Frame, SyntheticSource
from colvlm_edge.wire import UplinkCounter
from colvlm_msgs.transport.memory import MemoryBus, MemoryNode
from tools.hostile_inputs import corrupt_sqlite_bag


class Lines(logging.Handler):
    """Every line a node logs, as (level name, message)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record):
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture
def rig():
    made = []

    def make(source: str = 'synthetic'):
        bus = MemoryBus()
        node = MemoryNode('edge', 'cam0', bus=bus)
        edge = EdgeNode(node, edge_config(node, **{'source.uri': source}))
        lines = Lines()
        node.logger.addHandler(lines)
        node.logger.setLevel(logging.INFO)  # the memory node's logger defers to the root's
        client = MemoryNode('monitor', 'cam0', bus=bus)
        reports = queue.Queue()
        client.create_subscription('diagnostic_msgs/msg/DiagnosticArray', '/diagnostics',
                                   reports.put, DIAGNOSTICS_QOS)
        made.append((node, client, lines))
        return edge, lines.lines, reports

    yield make
    for node, client, lines in made:
        node.logger.removeHandler(lines)
        node.logger.setLevel(logging.NOTSET)
        client.shutdown()
        node.shutdown()


def report(edge, reports):
    """The next DiagnosticArray the edge publishes, asked for now."""
    edge.diagnostics.publish()
    return reports.get(timeout=TIMEOUT_S)


def test_a_bag_corrupted_mid_file_ends_the_source_with_one_error_line(rig, tmp_path):
    bag = corrupt_sqlite_bag(tmp_path / 'bag')
    edge, lines, reports = rig(str(bag))
    run_source(edge, BagSource(bag), 1000.0, threading.Event())
    errors = [message for level, message in lines if level == 'ERROR']
    assert len(errors) == 1 and str(bag) in errors[0] and 'malformed' in errors[0]
    assert '\n' not in errors[0]
    assert not [m for _, m in lines if 'ended' in m]
    assert edge.health.state == 'failed' and 0 < edge.health.frames < 30
    edge.log_status()
    assert 'source failed (' in lines[-1][1] and 'malformed' in lines[-1][1]
    (status,) = report(edge, reports).status
    assert status.level == ERROR and 'malformed' in status.message
    values = {item.key: item.value for item in status.values}
    assert values['source'] == 'failed' and int(values['frames']) == edge.health.frames


def test_a_source_that_ends_says_so_and_a_stopped_one_is_silent(rig):
    edge, lines, reports = rig()
    run_source(edge, SyntheticSource(count=3, width=160, height=120), 1000.0, threading.Event())
    assert lines[-1] == ('INFO', 'source synthetic ended') and edge.health.frames == 3
    (status,) = report(edge, reports).status
    assert status.level == WARN and 'ended' in status.message

    edge, lines, _ = rig()
    stop = threading.Event()
    stop.set()  # SIGINT before the first frame is read
    run_source(edge, SyntheticSource(width=160, height=120), 1000.0, stop)
    assert lines == [] and edge.health.state == 'stopped'


def test_diagnostics_report_the_figures_and_warn_on_new_drops(rig):
    edge, _, reports = rig()
    first = report(edge, reports)
    assert first.header.stamp.sec > 0
    (status,) = first.status
    assert status.level == OK and status.name == 'colvlm edge: /cam0/colvlm'
    assert status.hardware_id == 'camera'
    keys = [item.key for item in status.values]
    for key in ('source', 'fps', 'frames', 'dropped frames', 'refused images', 'crops refused',
                'buffer bytes', 'uplink B/s'):
        assert key in keys
    edge.on_frame(Frame(1_000_000_000, noise_image(64, 48), 'camera'))
    edge.on_frame(Frame(2_000_000_000, 'not an image', 'camera'))  # dropped
    (status,) = report(edge, reports).status
    assert status.level == WARN
    values = {item.key: item.value for item in status.values}
    assert values['dropped frames'] == '1' and int(values['buffer bytes']) == 64 * 48 * 3
    (status,) = report(edge, reports).status  # nothing new lost since
    assert status.level == OK


def test_the_diagnostic_array_is_the_cdr_ros_2_tools_read(rig):
    edge, _, reports = rig()
    message = report(edge, reports)
    data = message.serialize(use_version_2=False)
    decoded = get_typestore(Stores.ROS2_JAZZY).deserialize_cdr(
        data, 'diagnostic_msgs/msg/DiagnosticArray')
    (status,) = decoded.status
    assert status.level == OK and status.name == 'colvlm edge: /cam0/colvlm'
    assert [(v.key, v.value) for v in status.values] == [
        (v.key, v.value) for v in message.status[0].values]


def test_the_sources_warnings_go_through_the_nodes_logger(rig):
    edge, lines, _ = rig()
    log_sources_through(edge.node.logger)
    logging.getLogger(f'{SOURCES_LOGGER}.folder').warning('skipping %s: %s', 'x.png', 'why')
    assert lines == [('WARNING', 'skipping x.png: why')]


def test_health_states_and_fps():
    now = [100.0]
    health = SourceHealth('synthetic', clock=lambda: now[0])
    assert health.fps() == 0.0 and health.level(False) == (OK, 'source starting')
    for _ in range(11):
        health.frame()
        now[0] += 0.2
    assert health.state == 'running' and health.fps() == pytest.approx(5.0)
    health.set_state('failed', 'OSError: gone')
    health.set_state('stopped')  # a failure stays reported
    assert health.level(False) == (ERROR, 'source failed: OSError: gone')
    with pytest.raises(ValueError, match='state must be one of'):
        health.set_state('sleeping')


def test_the_uplink_rate_counts_the_last_five_seconds_of_every_kind():
    now = [50.0]
    uplink = UplinkCounter(clock=lambda: now[0])
    assert uplink.bytes_per_s() == 0.0
    uplink.add('global', 4000)
    now[0] += 2.0
    uplink.add('crop', 6000)
    assert uplink.bytes_per_s() == pytest.approx(10000 / UplinkCounter.RATE_WINDOW_S)
    now[0] += 4.0  # the global frame is now 6 s old, the crop 4 s
    assert uplink.bytes_per_s() == pytest.approx(6000 / UplinkCounter.RATE_WINDOW_S)
    assert uplink.summary() == 'crop 1 msgs 6000 B, global 1 msgs 4000 B'  # totals stay
