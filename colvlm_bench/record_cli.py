"""Record colvlm's queries, answers and global frames into a rosbag2 (mcap or sqlite3).

`colvlm record OUT --namespace cam0` subscribes to colvlm/query, colvlm/answer,
colvlm/global/compressed and colvlm/global/geometry in the namespace and writes what arrives,
as its CDR bytes with each type's definition, until Ctrl-C, SIGTERM or --duration; then it
closes the bag so that `ros2 bag info/play` and rosbags read it. ROS_DOMAIN_ID and
ROS_AUTOMATIC_DISCOVERY_RANGE select the network as for any ROS 2 node.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

PROG = 'colvlm record'
# (topic relative to the namespace, type, QoS profile); frames last so --no-frames cuts them.
TOPICS = (
    ('colvlm/query', 'colvlm/msg/Query', 'queries'),
    ('colvlm/answer', 'colvlm/msg/Answer', 'answers'),
    ('colvlm/global/compressed', 'sensor_msgs/msg/CompressedImage', 'frames'),
    ('colvlm/global/geometry', 'colvlm/msg/FrameGeometry', 'frame_info'),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('out', metavar='OUT', help='bag folder to create (must not exist)')
    parser.add_argument('--namespace', default='', help='camera namespace, e.g. cam0')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='storage format (default: %(default)s)')
    parser.add_argument('--duration', type=float, default=0.0, metavar='S',
                        help='stop after S seconds (default: 0, until Ctrl-C or SIGTERM)')
    parser.add_argument('--no-frames', action='store_true',
                        help='record queries and answers only')
    parser.add_argument('--topic', nargs=2, action='append', default=[],
                        metavar=('NAME', 'TYPE'),
                        help='also record NAME (relative or absolute) of TYPE, e.g. image_raw '
                             'sensor_msgs/msg/Image; repeatable')
    parser.add_argument('--status-period', type=float, default=10.0, metavar='S',
                        help='log the message counts every S seconds (default: %(default)s)')
    parser.add_argument('--transport', choices=('auto', 'ros', 'dds'), default=None,
                        help='middleware backend (default: COLVLM_TRANSPORT or auto)')


def topics_to_record(args: argparse.Namespace) -> list:
    from colvlm_msgs.qos import QosProfile
    from colvlm_msgs.recorder import RecordedTopic

    chosen = TOPICS[:2] if args.no_frames else TOPICS
    topics = [RecordedTopic(*entry) for entry in chosen]
    # Best effort matches every publisher; sensor data is usually offered best effort.
    sensor = QosProfile(name='recorded_sensor_data', reliability='best_effort', depth=10)
    for name, msg_type in args.topic:
        qos = sensor if msg_type.startswith('sensor_msgs/') else 'answers'
        topics.append(RecordedTopic(name, msg_type, qos))
    return topics


def serializer(node):
    """The CDR bytes of a received message, as the node's backend sent them on the wire."""
    if node.backend == 'ros':
        from rclpy.serialization import serialize_message
        return serialize_message
    return lambda message: bytes(message.serialize(use_version_2=False))


def run(args: argparse.Namespace) -> int:
    from colvlm_msgs.transport import create_node

    if args.duration < 0 or args.status_period <= 0:
        print(f'{PROG}: --duration must be >= 0 and --status-period > 0', file=sys.stderr)
        return 2
    try:
        node = create_node('recorder', args.namespace, backend=args.transport)
    except (ValueError, OSError) as error:
        print(f'{PROG}: {error}', file=sys.stderr)
        return 2
    from colvlm_msgs.recorder import BagRecorder

    try:
        recorder = BagRecorder(node, args.out, topics_to_record(args), storage=args.storage,
                               serialize=serializer(node))
    except ValueError as error:  # BagError, a bad topic name or type
        print(f'{PROG}: {error}', file=sys.stderr)
        node.shutdown()
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node.logger.info(f'recording {", ".join(recorder.topics)} into {args.out} '
                     f'({args.storage}); Ctrl-C stops')
    status = node.create_timer(args.status_period, lambda: _log_counts(node, recorder))
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not stop.wait(0.1):  # short waits: signal handlers run between them
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        status.cancel()
        recorder.close()
        node.shutdown()
    _log_counts(node, recorder, 'recorded')
    return 0


def _log_counts(node, recorder, what: str = 'recording') -> None:
    counts = ', '.join(f'{topic} {count}' for topic, count in recorder.counts.items())
    node.logger.info(f'{what} {sum(recorder.counts.values())} messages: {counts}')
