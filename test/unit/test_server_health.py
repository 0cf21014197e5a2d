"""colvlm_server.health and the server's /diagnostics: percentiles, answer figures, a camera
link's level from its newest frame's age and its edge's services, and a subscriber on the
in-memory transport seeing the server's and each link's status change once frames stop and
the edge is gone (the server's clock is a fake one, so no timing is asserted)."""

from __future__ import annotations

import queue

from node_harness import TIMEOUT_S, Rig
import pytest

from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.diagnostics import DIAGNOSTICS_QOS, ERROR, OK, WARN
from colvlm_server.health import (
    AnswerStats,
    link_level,
    link_report,
    percentile,
    server_report,
    status_line,
)


def test_percentiles_are_nearest_rank():
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 95) == 7.0
    values = list(range(1, 101))
    assert percentile(values, 50) == 50.0 and percentile(values, 95) == 95.0
    assert percentile([3, 1, 2], 50) == 2.0 and percentile([3, 1, 2], 95) == 3.0


def test_answer_stats_count_statuses_crops_and_latencies_of_run_answers():
    stats = AnswerStats()
    stats.record(Status.OK, Decision.GLOBAL, 10.0)
    stats.record(Status.OK, Decision.LOCAL_CROP, 30.0)
    stats.record(Status.CROP_UNAVAILABLE, Decision.GLOBAL, 20.0)
    stats.record(Status.BUSY, Decision.GLOBAL, 0.1)  # answered at admission: no latency
    figures = stats.snapshot()
    assert figures['counts'] == {'OK': 2, 'CROP_UNAVAILABLE': 1, 'BUSY': 1}
    assert (figures['crops asked'], figures['crops failed']) == (2, 1)
    assert (figures['latency p50 ms'], figures['latency p95 ms']) == (20.0, 30.0)


@pytest.mark.parametrize('age_s, services, level', [
    (0.5, True, OK), (4.0, True, WARN), (20.0, True, ERROR), (None, True, WARN),
    (0.5, False, ERROR), (1000.0, True, OK)])
def test_a_links_level_follows_its_newest_frames_age(age_s, services, level):
    thresholds = (0.0, 0.0) if age_s == 1000.0 else (3.0, 15.0)  # 0 = off
    assert link_level(age_s, services, *thresholds)[0] == level


def _figures(age_s):
    link = {'camera': '/cam0', 'frames': 4, 'age s': age_s, 'services': True}
    return dict(AnswerStats().snapshot(), links={'cam0': link}, model='m', device='cpu',
                queue=1, **{'queue max': 8, 'dropped frames': 2, 'stamped ahead': 0})


def test_reports_and_the_status_line_read_the_same_figures():
    figures = _figures(4.0)
    server = server_report('/cam0/colvlm: server', figures)
    link = link_report('/cam0/colvlm: server: link /cam0', figures['links']['cam0'], 3.0, 15.0)
    assert server.level == OK and server.values['dropped frames'] == 2
    assert server.values['model'] == 'm' and server.values['queue'] == 1
    assert link.level == WARN and link.values['frames'] == 4 and link.hardware_id == '/cam0'
    line = status_line(figures)
    assert 'queue 1/8' in line and 'cam0 4, newest 4.0 s old' in line
    assert 'dropped frames 2' in line and 'crops asked 0 failed 0' in line


def _levels(reports: queue.Queue, server_name: str, wanted: int) -> dict:
    """The next server report (server and link statuses by name) whose link level is
    `wanted`; fails after TIMEOUT_S."""
    while True:
        array = reports.get(timeout=TIMEOUT_S)
        statuses = {status.name: status for status in array.status}
        if server_name not in statuses:
            continue  # the edge's own report
        links = [status for name, status in statuses.items() if ': link ' in name]
        if links and all(status.level == wanted for status in links):
            return statuses


def test_a_subscriber_sees_the_camera_link_warn_then_fail():
    rig = Rig(**{'diagnostics.warn_age_s': 5.0, 'diagnostics.error_age_s': 60.0})
    try:
        server_node = rig.server.node
        stamp_ns = rig.feed()
        clock = [stamp_ns]
        server_node.now_ns = lambda: clock[0]  # the server's clock, moved by hand
        monitor = rig.node('monitor', '')
        reports = queue.Queue()
        monitor.create_subscription('diagnostic_msgs/msg/DiagnosticArray', '/diagnostics',
                                    reports.put, DIAGNOSTICS_QOS)
        name = rig.server.diagnostics.name
        assert name == '/cam0/colvlm: server'
        statuses = _levels(reports, name, OK)  # published by the node's 1 Hz timer
        values = {item.key: item.value for item in statuses[name].values}
        assert values['model'] == 'scripted' and values['device'] == 'cpu'
        link = statuses[f'{name}: link /cam0']
        assert {item.key: item.value for item in link.values}['frames'] == '1'
        clock[0] += int(10e9)  # frames stopped 10 s ago
        rig.server.diagnostics.publish()
        assert 'newest frame 10.0 s old' in _levels(reports, name, WARN)[
            f'{name}: link /cam0'].message
        clock[0] += int(100e9)
        rig.server.diagnostics.publish()
        _levels(reports, name, ERROR)
        clock[0] = stamp_ns  # fresh again, but the edge goes away
        next(node for node in rig.nodes if node.name == 'edge').shutdown()
        rig.server.diagnostics.publish()
        assert 'services are absent' in _levels(reports, name, ERROR)[
            f'{name}: link /cam0'].message
    finally:
        rig.close()
