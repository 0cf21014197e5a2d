"""What edge and server share about `/diagnostics`: the levels, topic, rate and QoS, and the
filling of a `diagnostic_msgs/DiagnosticArray` as ROS 2 drivers publish it (one
DiagnosticStatus per component, figures as key/value strings) from whatever message types the
node's transport hands it. Pure: no node, no transport, no other colvlm layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from colvlm_msgs import stamps
from colvlm_msgs.qos import QosProfile

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2
DIAGNOSTICS_TOPIC = '/diagnostics'
DIAGNOSTICS_PERIOD_S = 1.0  # s; diagnostic_updater's default rate
# ROS 2's default publisher QoS, which diagnostic_aggregator and rqt_runtime_monitor expect.
DIAGNOSTICS_QOS = QosProfile(name='diagnostics', reliability='reliable', durability='volatile',
                             history='keep_last', depth=10)


class Report(NamedTuple):
    """One DiagnosticStatus, before it is a message."""

    name: str
    level: int
    message: str
    values: dict
    hardware_id: str = ''


def diagnostic_array(message_type: Callable[[str], type], stamp_ns: int,
                     reports: Iterable[Report]):
    """A DiagnosticArray of one DiagnosticStatus per report; message_type is the node's
    type look-up."""
    array = message_type('diagnostic_msgs/msg/DiagnosticArray')()
    stamps.fill(array.header.stamp, stamp_ns)
    status_type = message_type('diagnostic_msgs/msg/DiagnosticStatus')
    key_value = message_type('diagnostic_msgs/msg/KeyValue')
    statuses = []
    for report in reports:
        status = status_type()
        # rclpy holds a `byte` field as bytes of length one, the dds types as an int.
        level = report.level
        status.level = bytes([level]) if isinstance(status.level, bytes) else level
        status.name, status.message = report.name, report.message
        status.hardware_id = report.hardware_id
        items = []
        for key, value in report.values.items():
            item = key_value()
            item.key = str(key)
            item.value = f'{value:.2f}' if isinstance(value, float) else str(value)
            items.append(item)
        status.values = items
        statuses.append(status)
    array.status = statuses
    return array
