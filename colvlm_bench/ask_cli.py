"""Ask the server a question (colvlm/ask) and print its answer with what it cost.

Exit status: 0 when the answer's status is OK, 1 for any other status, 2 when no answer came
within --timeout (no server, or a server too busy to answer).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

EXIT_OK, EXIT_STATUS, EXIT_TIMEOUT = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('question', help='the question, e.g. "What is written on the sign?"')
    parser.add_argument('--namespace', default='', help="the server's namespace, e.g. cam0")
    parser.add_argument('--timeout', type=float, default=60.0, metavar='S',
                        help='seconds to wait for the answer (default: 60)')
    parser.add_argument('--policy', default='', help="global | entropy | always | random | hd | "
                        "layers (default: the server's)")
    parser.add_argument('--camera', default='', help="camera namespace (default: the server's)")
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    parser.add_argument('--transport', choices=('auto', 'ros', 'dds'), default=None,
                        help='middleware backend (default: COLVLM_TRANSPORT or auto)')


def run(args: argparse.Namespace) -> int:
    from colvlm_msgs import stamps
    from colvlm_msgs.transport import ServiceTimeout, create_node

    if not args.timeout > 0:
        print(f'colvlm ask: --timeout must be > 0, got {args.timeout}', file=sys.stderr)
        return EXIT_TIMEOUT
    query_id = uuid.uuid4().hex[:12]
    try:
        node = create_node(f'ask_{query_id}', args.namespace, backend=args.transport)
    except ValueError as error:
        print(f'colvlm ask: {error}', file=sys.stderr)
        return EXIT_TIMEOUT
    try:
        ask = node.service_type('colvlm/srv/Ask')
        request = ask.Request()
        query = request.query
        query.query_id, query.question = query_id, args.question
        query.policy, query.camera = args.policy, args.camera
        stamps.fill(query.header.stamp, node.now_ns())
        client = node.create_client('colvlm/srv/Ask', 'colvlm/ask')
        try:
            answer = client.call(request, timeout=args.timeout).answer
        except ServiceTimeout as error:
            print(f'colvlm ask: {error}', file=sys.stderr)
            return EXIT_TIMEOUT
    finally:
        node.shutdown()
    from colvlm_msgs.constants import Status

    fields = named(to_plain(answer))
    print(json.dumps(fields) if args.json else describe(fields))
    return EXIT_OK if answer.status == Status.OK else EXIT_STATUS


def named(fields: dict) -> dict:
    """An answer's plain fields plus `status_name` and `decision_name` ('OK', 'GLOBAL')."""
    from colvlm_msgs.constants import decision_name, status_name

    fields['status_name'] = status_name(fields['status'])
    fields['decision_name'] = decision_name(fields['decision'])
    return fields


def to_plain(message):
    """A message as JSON-ready values: nested messages as dicts, arrays as lists."""
    if hasattr(message, 'get_fields_and_field_types'):  # rclpy
        names = list(message.get_fields_and_field_types())
    elif hasattr(message, '__dataclass_fields__'):  # the dds backend's classes
        names = list(message.__dataclass_fields__)
    elif isinstance(message, (list, tuple)) or hasattr(message, 'tolist'):
        return [to_plain(item) for item in list(message)]
    elif isinstance(message, (bytes, bytearray)):
        return list(message)
    else:
        return message.item() if hasattr(message, 'item') else message
    return {name: to_plain(getattr(message, name)) for name in names}


def describe(a: dict) -> str:
    """The answer and its metrics as a few human-readable lines."""
    lines = [f'answer: {a["answer"]!r}',
             f'status: {a["status_name"]} ({a["status_message"]})',
             f'decision: {a["decision_name"]}, policy {a["policy"]}, camera {a["camera"]}, '
             f'model {a["model_id"]}']
    for title, metrics in (('first pass', a['first_pass']), ('second pass', a['second_pass'])):
        if metrics['ran']:
            lines.append(
                f'{title}: {metrics["answer"]!r}; min-entropy {metrics["min_entropy"]:.3f}, '
                f'shannon {metrics["shannon_entropy"]:.3f}, renyi {metrics["renyi_entropy"]:.3f}'
                f' nats (alpha {a["renyi_alpha"]:g}, {a["gate_aggregate"]}, threshold '
                f'{a["gate_threshold"]:g}); {metrics["input_tokens"]} in, '
                f'{metrics["output_tokens"]} out tokens; {metrics["gflops"]:.3f} GFLOP; '
                f'{metrics["latency_ms"]:.1f} ms')
    roi = a['roi']
    if roi['width'] and roi['height']:
        lines.append(f'roi: x {roi["x_offset"]}, y {roi["y_offset"]}, {roi["width"]}x'
                     f'{roi["height"]} px of the original')
    lines.append(f'bytes: uplink {a["uplink_bytes"]} (global {a["uplink_global_bytes"]}, crop '
                 f'{a["uplink_crop_bytes"]}, layers {a["uplink_layer_bytes"]}), downlink '
                 f'{a["downlink_bytes"]}')
    lines.append(f'ms: total {a["total_ms"]:.1f} (queue {a["queue_ms"]:.1f}, locate '
                 f'{a["locate_ms"]:.1f}, fetch {a["fetch_ms"]:.1f})')
    return '\n'.join(lines)
