"""The edge's health: what its frame source is doing, and the report /diagnostics carries.

`SourceHealth` follows the source through its states and counts the frames it delivers;
`EdgeDiagnostics` publishes it as one DiagnosticStatus (colvlm_msgs.diagnostics fills the
array). It knows nothing about transports, buffers or encoders.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
import threading
import time

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

# starting: before the first frame; running; ended: no more frames; failed: it raised;
# stopped: the node is shutting down; topic: frames come from a subscription.
SOURCE_STATES = ('starting', 'running', 'ended', 'failed', 'stopped', 'topic')
FPS_WINDOW_S = 5.0  # s; the frame rate is measured over the frames of this last span


class SourceHealth:
    """The state of one frame source, its cause when it failed, its frames and frame rate."""

    def __init__(self, name: str, state: str = 'starting',
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.state = state
        self.cause = ''  # why it failed, one line
        self.frames = 0
        self._clock = clock
        self._times: deque[float] = deque(maxlen=1024)  # clock times of recent frames, s
        self._lock = threading.Lock()

    def frame(self) -> None:
        with self._lock:
            self.frames += 1
            self._times.append(self._clock())
            if self.state == 'starting':
                self.state = 'running'

    def set_state(self, state: str, cause: str = '') -> None:
        if state not in SOURCE_STATES:
            raise ValueError(f'state must be one of {SOURCE_STATES}, got {state!r}')
        with self._lock:
            if self.state != 'failed':  # a failure stays reported, whatever follows
                self.state, self.cause = state, cause

    def fps(self) -> float:
        """Frames per second over the last FPS_WINDOW_S (0 when none came in it)."""
        with self._lock:
            now = self._clock()
            while self._times and now - self._times[0] > FPS_WINDOW_S:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-6)

    def level(self, new_problems: bool) -> tuple[int, str]:
        """(diagnostic level, message): ERROR once failed, WARN when ended or when frames were
        dropped or refused since the last report, else OK."""
        if self.state == 'failed':
            return ERROR, f'source failed: {self.cause}'
        if self.state == 'ended':
            return WARN, 'source ended: no new frames'
        if new_problems:
            return WARN, f'source {self.state}; frames dropped or refused'
        return OK, f'source {self.state}'


def status_line(uplink: str, figures: dict, evictions: int, cause: str = '') -> str:
    """The edge's periodic INFO line, from its figures (EdgeNode.figures)."""
    cause = f' ({cause})' if cause else ''
    return (f'uplink: {uplink}; source {figures["source"]}{cause}, {figures["frames"]} frames; '
            f'buffer {figures["buffer frames"]} frames {figures["buffer bytes"]} B, '
            f'{evictions} evicted; dropped frames {figures["dropped frames"]}; refused images '
            f'{figures["refused images"]}; crops refused {figures["crops refused"]}')


class EdgeDiagnostics:
    """Publishes an edge's health on /diagnostics every DIAGNOSTICS_PERIOD_S: its source state
    and figures, WARN when frames were dropped or refused since the previous report."""

    def __init__(self, node, health: SourceHealth, figures: Callable[[], dict],
                 hardware_id: str) -> None:
        self.node, self.health, self.figures = node, health, figures
        self.hardware_id = hardware_id
        self.name = f'colvlm edge: {node.resolve_name("colvlm")}'
        self._problems_reported = 0  # drops + refusals at the last report
        self._publisher = node.create_publisher('diagnostic_msgs/msg/DiagnosticArray',
                                                DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        node.create_timer(DIAGNOSTICS_PERIOD_S, self.publish)

    def publish(self) -> None:
        figures = self.figures()
        problems = figures['dropped frames'] + figures['refused images']
        level, message = self.health.level(problems > self._problems_reported)
        self._problems_reported = problems
        self._publisher.publish(diagnostic_array(
            self.node.message_type, self.node.now_ns(),
            [Report(self.name, level, message, figures, self.hardware_id)]))
