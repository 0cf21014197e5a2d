"""Ask the server a question (colvlm/ask) and print its answer with what it cost.

By default the question is about the camera's newest frame (the server asks the edge for one
when it holds none fresh). `--stamp NS` names a frame by its header stamp; `--image FILE`
plays the camera: the file goes to the edge's image topic and the question names the frame
the edge makes of it (the edge must read that topic: `--source topic:camera/image_raw/compressed`).

`--action` asks through the colvlm/ask action instead of the service and prints each stage
as the server reaches it (frame chosen, first pass with its min-entropy and the gate's
decision, crop or token layers asked for and received, second pass) before the answer; Ctrl-C
cancels the goal.

Exit status: 0 when the answer's status is OK, 1 for any other status, 2 when no answer came
within --timeout (no server, or a server too busy to answer) or the command line is wrong.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
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
    parser.add_argument('--json', action='store_true', help='print one JSON object (with '
                        '--action, one per stage first)')
    parser.add_argument('--action', action='store_true',
                        help='ask through the colvlm/ask action and print each stage as it '
                             'comes (Ctrl-C cancels)')
    aim = parser.add_mutually_exclusive_group()
    aim.add_argument('--stamp', type=int, default=None, metavar='NS',
                     help='ask about the frame with this header stamp, ns (the server holds '
                          'the newest 8)')
    aim.add_argument('--image', default=None, metavar='FILE',
                     help='ask about this picture: publish it on --image-topic, for an edge '
                          'reading that topic, and ask about the frame made of it')
    parser.add_argument('--image-topic', default=None, metavar='TOPIC',
                        help="the edge's image topic for --image (default: "
                             'camera/image_raw/compressed, under --namespace)')
    parser.add_argument('--transport', choices=('auto', 'ros', 'dds'), default=None,
                        help='middleware backend (default: COLVLM_TRANSPORT or auto)')


def run(args: argparse.Namespace) -> int:
    from colvlm_bench.camera_client import IMAGE_TOPIC, CameraClient
    from colvlm_msgs.constants import Status

    try:
        image = _check(args)
        client = CameraClient(f'ask_{uuid.uuid4().hex[:12]}', args.namespace, args.transport,
                              camera=image is not None,
                              image_topic=args.image_topic or IMAGE_TOPIC)
    except ValueError as error:
        print(f'colvlm ask: {error}', file=sys.stderr)
        return EXIT_TIMEOUT
    try:
        answer = _ask(client, args, image)
    finally:
        client.close()
    if answer is None:
        return EXIT_TIMEOUT
    fields = named(to_plain(answer))
    print(json.dumps(fields) if args.json else describe(fields))
    return EXIT_OK if answer.status == Status.OK else EXIT_STATUS


def _check(args: argparse.Namespace) -> Path | None:
    """The picture to show, if any; ValueError naming the bad flag."""
    if not args.timeout > 0:
        raise ValueError(f'--timeout must be > 0, got {args.timeout}')
    if args.stamp is not None and args.stamp <= 0:
        raise ValueError(f'--stamp must be a positive stamp in ns, got {args.stamp}')
    if args.image is None:
        return None
    image = Path(args.image)
    if not image.is_file():
        raise ValueError(f'--image {args.image}: no such file')
    return image


def _ask(client, args: argparse.Namespace, image: Path | None):
    """The Answer, or None after one line saying what did not come."""
    import time

    from colvlm_msgs.transport import ServiceTimeout

    service = client.ask_service
    deadline = time.monotonic() + args.timeout
    if not client.wait_for_server(min(1.0, args.timeout), args.action):
        print(f'colvlm ask: waiting up to {args.timeout:g} s for a server on {service} '
              f'(colvlm server --namespace {args.namespace or "NS"})', file=sys.stderr)
    stamp_ns = args.stamp or 0
    if image is not None:
        stamp_ns = time.time_ns()
        if not client.show(image, stamp_ns, max(0.1, deadline - time.monotonic())):
            print(f'colvlm ask: no global frame of {image} from the edge within '
                  f'{args.timeout:g} s; does an edge read '
                  f'{client.node.resolve_name(client.image_topic)} (colvlm edge --source '
                  f'topic:{client.image_topic})?', file=sys.stderr)
            return None
    try:
        return client.ask(uuid.uuid4().hex[:12], args.question,
                          max(0.1, deadline - time.monotonic()), stamp_ns=stamp_ns,
                          policy=args.policy, camera=args.camera, shown=image is not None,
                          feedback=_feedback_printer(args.json) if args.action else None)
    except ServiceTimeout:
        if client.wait_for_server(0.0, args.action):
            print(f'colvlm ask: the server on {service} did not answer within '
                  f'{args.timeout:g} s (busy? a longer --timeout waits longer)',
                  file=sys.stderr)
        else:
            print(f'colvlm ask: no answer from {service} within {args.timeout:g} s: is a '
                  'server running there, on the same ROS_DOMAIN_ID?', file=sys.stderr)
        return None


def _feedback_printer(as_json: bool):
    def show(feedback) -> None:
        print(json.dumps(to_plain(feedback)) if as_json else describe_stage(feedback),
              flush=True)

    return show


def describe_stage(f) -> str:
    """One line for an Ask action Feedback: 'first_pass: ...'."""
    roi = f'x {f.roi.x_offset}, y {f.roi.y_offset}, {f.roi.width}x{f.roi.height} px'
    uplink = f'uplink {f.uplink_bytes} B so far'
    if f.stage_name == 'frame':
        text = f'camera {f.camera}, frame {f.frame_stamp.sec}.{f.frame_stamp.nanosec:09d}'
    elif f.stage_name in ('first_pass', 'second_pass'):
        then = f'refine: {f.refinement}' if f.refine else 'the answer stands'
        text = f'{f.answer!r}, min-entropy {f.min_entropy:.3f} nats (threshold ' \
               f'{f.gate_threshold:g}); {then}' + (f' ({f.message})' if f.message else '')
    elif f.stage_name == 'crop_requested':
        text = f'{roi} of the original'
    elif f.stage_name == 'crop_received':
        text = f'{roi} cut; {uplink}'
    elif f.stage_name == 'layers_received':
        text = f'{f.layers} layers held; {uplink}'
    else:  # layers_requested and the fetches that failed say it in their message
        text = f.message
    return f'{f.stage_name}: {text} [{f.elapsed_ms:.0f} ms]'


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
