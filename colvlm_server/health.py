"""The server's health: what /diagnostics reports each second and the 10 s status line reads.

`AnswerStats` counts answers by status, crops asked and failed, and keeps the latencies of
the recent answers the worker ran (p50/p95). `link_report` judges one camera's link from the
age of its newest frame and whether its edge's services are there; `server_report` turns the
server's figures into one DiagnosticStatus. `ServerDiagnostics` gathers the figures once per
report from a node and publishes them (colvlm_msgs.diagnostics fills the array). Pure apart
from ServerDiagnostics, which only calls the transport port.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
import threading

from colvlm_msgs.constants import Decision, Status, status_name
from colvlm_msgs.diagnostics import (
    DIAGNOSTICS_PERIOD_S,
    DIAGNOSTICS_QOS,
    DIAGNOSTICS_TOPIC,
    ERROR,
    OK,
    WARN,
    Report,
    diagnostic_array,
)

LATENCY_WINDOW = 200  # answers; p50/p95 are over the latest this many the worker ran
# Answered at admission, without the worker: their latency says nothing of the model's.
_NOT_RUN = (Status.BAD_REQUEST, Status.BUSY)


def percentile(values, q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of values; 0.0 for none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats' surprises
    return float(ordered[int(rank) - 1])


class AnswerStats:
    """Answers by status name, crops asked and failed, recent latencies; thread-safe."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.crops_asked = self.crops_failed = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)  # ms
        self._lock = threading.Lock()

    def record(self, status: int, decision: int, total_ms: float) -> None:
        with self._lock:
            name = status_name(status)
            self.counts[name] = self.counts.get(name, 0) + 1
            failed = status == Status.CROP_UNAVAILABLE
            self.crops_failed += failed
            self.crops_asked += failed or decision == Decision.LOCAL_CROP
            if status not in _NOT_RUN:
                self._latencies.append(total_ms)

    def snapshot(self) -> dict:
        with self._lock:
            latencies = list(self._latencies)
            return {'counts': dict(self.counts), 'crops asked': self.crops_asked,
                    'crops failed': self.crops_failed,
                    'latency p50 ms': percentile(latencies, 50),
                    'latency p95 ms': percentile(latencies, 95)}


def link_level(age_s: float | None, services: bool, warn_age_s: float,
               error_age_s: float) -> tuple[int, str]:
    """(level, message) of one camera link: ERROR when the edge's services are absent or no
    frame came for error_age_s, WARN when the newest is older than warn_age_s (0 = off)."""
    if not services:
        return ERROR, "the edge's services are absent"
    if age_s is None:
        return WARN, 'no frame yet'
    if error_age_s and age_s > error_age_s:
        return ERROR, f'no frame for {age_s:.1f} s'
    if warn_age_s and age_s > warn_age_s:
        return WARN, f'newest frame {age_s:.1f} s old'
    return OK, 'receiving frames'


def link_report(name: str, figures: dict, warn_age_s: float, error_age_s: float) -> Report:
    """The DiagnosticStatus of one link from its figures (ServerDiagnostics.figures)."""
    level, message = link_level(figures['age s'], figures['services'], warn_age_s,
                                error_age_s)
    values = dict(figures, **{'age s': '' if figures['age s'] is None else figures['age s']})
    return Report(name, level, message, values, figures['camera'])


def server_report(name: str, figures: dict) -> Report:
    """The server's own DiagnosticStatus: ERROR when a query failed inside, else OK."""
    values = {key: value for key, value in figures.items() if key not in ('counts', 'links')}
    for status, count in sorted(figures['counts'].items()):
        values[f'answers {status.lower()}'] = count
    errors = figures['counts'].get('MODEL_ERROR', 0)
    level, message = (WARN, f'{errors} model errors') if errors else (OK, 'serving')
    return Report(name, level, message, values)


def status_line(figures: dict) -> str:
    """The server's periodic INFO line, from the same figures /diagnostics reports."""
    counts = ', '.join(f'{name.lower()} {n}' for name, n in sorted(figures['counts'].items()))
    frames = []
    for name, link in figures['links'].items():
        age = f', newest {link["age s"]:.1f} s old' if link['age s'] is not None else ''
        frames.append(f'{name + " " if name else ""}{link["frames"]}{age}')
    return (f'answered: {counts or "nothing"}; queue {figures["queue"]}/'
            f'{figures["queue max"]}; frames {"; ".join(frames)}; dropped frames '
            f'{figures["dropped frames"]}; stamped ahead {figures["stamped ahead"]}; latency '
            f'p50 {figures["latency p50 ms"]:.0f} ms p95 {figures["latency p95 ms"]:.0f} ms; '
            f'crops asked {figures["crops asked"]} failed {figures["crops failed"]}')


class ServerDiagnostics:
    """Publishes the server's status and one status per camera link every
    DIAGNOSTICS_PERIOD_S; `figures` is the callable that gathers them (ServerNode.figures)."""

    def __init__(self, node, figures: Callable[[], dict], warn_age_s: float,
                 error_age_s: float) -> None:
        self.node, self.figures = node, figures
        self.warn_age_s, self.error_age_s = warn_age_s, error_age_s
        self.name = f'{node.resolve_name("colvlm")}: server'
        self._publisher = node.create_publisher('diagnostic_msgs/msg/DiagnosticArray',
                                                DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        node.create_timer(DIAGNOSTICS_PERIOD_S, self.publish)

    def reports(self, figures: dict) -> list[Report]:
        reports = [server_report(self.name, figures)]
        for link in figures['links'].values():
            reports.append(link_report(f'{self.name}: link {link["camera"]}', link,
                                       self.warn_age_s, self.error_age_s))
        return reports

    def publish(self) -> None:
        self._publisher.publish(diagnostic_array(self.node.message_type, self.node.now_ns(),
                                                 self.reports(self.figures())))
