"""A second process for the transport tests: one colvlm node doing one role, driven by stdin.

Roles:
  talker    publishes `count` Query messages when told `publish COUNT` on stdin
  server    serves colvlm/crop_roi (echoes the request) and answers colvlm/query on colvlm/answer
  malformed writes a sample that does not decode (a non-UTF-8 string) on colvlm/query,
            then a valid one
Prints 'ready' once its endpoints exist, and exits on 'quit' or end of stdin.
"""

from __future__ import annotations

import sys
import time

from colvlm_msgs.transport import create_node


def _wait_for_subscriber(publisher, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while publisher.subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)


def talker(node) -> None:
    query_type = node.message_type('colvlm/msg/Query')
    publisher = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    print('ready', flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ['publish']:
            _wait_for_subscriber(publisher)
            for index in range(int(command[1])):
                publisher.publish(query_type(query_id=f'q{index}', question=f'question {index}'))
            print('published', flush=True)
        elif command[:1] == ['quit']:
            return


def server(node) -> None:
    crop_type = node.service_type('colvlm/srv/CropRoi')
    answer_type = node.message_type('colvlm/msg/Answer')
    answers = node.create_publisher('colvlm/msg/Answer', 'colvlm/answer', 'answers')

    def crop(request):
        roi = request.roi
        payload = bytes(range(256)) * (request.output_width // 256 + 1)
        response = crop_type.Response(
            success=True, status_message=f'margin={request.margin}', applied_roi=roi,
            original_width=request.output_width, original_height=request.output_height)
        response.image.format = request.codec
        response.image.data = list(payload[:request.output_width])
        response.image.header.stamp = request.frame_stamp
        return response

    def on_query(query) -> None:
        answers.publish(answer_type(query_id=query.query_id, question=query.question,
                                    answer=query.question.upper(), status=0))

    node.create_service('colvlm/srv/CropRoi', 'colvlm/crop_roi', crop)
    node.create_subscription('colvlm/msg/Query', 'colvlm/query', on_query, 'queries')
    print('ready', flush=True)
    for line in sys.stdin:
        if line.strip() == 'quit':
            return


def malformed(node) -> None:
    from cyclonedds._clayer import ddspy_write  # the binding's raw write: bytes as they are

    query_type = node.message_type('colvlm/msg/Query')
    publisher = node.create_publisher('colvlm/msg/Query', 'colvlm/query', 'queries')
    print('ready', flush=True)
    for line in sys.stdin:
        if line.strip() == 'send':
            _wait_for_subscriber(publisher)
            # Cyclone DDS itself drops samples whose CDR does not fit the type; a string
            # that is not UTF-8 gets past it and must be caught by colvlm's decoding.
            valid = query_type(query_id='MARK').serialize(use_version_2=False)
            broken = valid.replace(b'MARK', b'\xff\xfe\xfd\xfc')
            truncated = valid[:12] + (0x7FFFFFF0).to_bytes(4, 'little')
            for sample in (truncated, broken):
                ddspy_write(publisher.writer._ref, sample)
            publisher.publish(query_type(query_id='after', question='still serving?'))
            print('sent', flush=True)
        elif line.strip() == 'quit':
            return


def main() -> int:
    role, namespace = sys.argv[1], sys.argv[2]
    node = create_node(f'peer_{role}', namespace)
    try:
        {'talker': talker, 'server': server, 'malformed': malformed}[role](node)
    finally:
        node.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
