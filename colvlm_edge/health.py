"""The edge's health: what its frame source is doing, and the report /diagnostics carries.

`SourceHealth` follows the source through its states and counts the frames it delivers;
`diagnostic_array` fills a `diagnostic_msgs/DiagnosticArray` as ROS 2 drivers publish it (one
DiagnosticStatus, figures as key/value strings) from whatever message types the node's
transport hands it. It knows nothing about transports, buffers or encoders.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
import threading
import time

from colvlm_msgs import stamps
from colvlm_msgs.qos import QosProfile

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2
DIAGNOSTICS_TOPIC = '/diagnostics'
DIAGNOSTICS_PERIOD_S = 1.0  # s; diagnostic_updater's default rate
# ROS 2's default publisher QoS, which diagnostic_aggregator and rqt_runtime_monitor expect.
DIAGNOSTICS_QOS = QosProfile(name='diagnostics', reliability='reliable', durability='volatile',
                             history='keep_last', depth=10)
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


def diagnostic_array(message_type: Callable[[str], type], stamp_ns: int, name: str,
                     hardware_id: str, level: int, message: str, values: dict):
    """A DiagnosticArray of one DiagnosticStatus; message_type is the node's type look-up."""
    array = message_type('diagnostic_msgs/msg/DiagnosticArray')()
    stamps.fill(array.header.stamp, stamp_ns)
    status = message_type('diagnostic_msgs/msg/DiagnosticStatus')()
    # rclpy holds a `byte` field as bytes of length one, the dds types as an int.
    status.level = bytes([level]) if isinstance(status.level, bytes) else level
    status.name, status.message, status.hardware_id = name, message, hardware_id
    key_value = message_type('diagnostic_msgs/msg/KeyValue')
    items = []
    for key, value in values.items():
        item = key_value()
        item.key, item.value = str(key), f'{value:.2f}' if isinstance(value, float) else str(value)
        items.append(item)
    status.values = items
    array.status = [status]
    return array


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
            self.node.message_type, self.node.now_ns(), self.name, self.hardware_id, level,
            message, figures))
