"""linkbench's asker: runs beside the server (its namespace), publishes Queries on
`colvlm/query` and times the Answers on `colvlm/answer`, one JSON line per command.

Commands on stdin, one JSON object a line; each gets one JSON line on stdout:
  {"op": "ask", "id": ID, "question": Q, "timeout_s": S}  -> the answer's fields, or
                                                              status "NO_ANSWER" after S
  {"op": "counts", "ids": [...], "grace_s": S}            -> answers received per id, after S
Queries ask for a fresh frame (taken after the question), so each answer's latency includes
the camera, the uplink and the model. Only colvlm_msgs is imported: no torch here.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid

from colvlm_msgs import stamps
from colvlm_msgs.transport import create_node


class Asker:
    """A node that asks on the topic pair and keeps every answer it hears, by query id."""

    def __init__(self, namespace: str):
        self.node = create_node(f'linkbench_{uuid.uuid4().hex[:6]}', namespace)
        self._query_type = self.node.message_type('colvlm/msg/Query')
        answer_type = self.node.message_type('colvlm/msg/Answer')
        self._names = {}
        for prefix in ('STATUS_', 'DECISION_'):
            self._names[prefix] = {getattr(answer_type, name): name[len(prefix):]
                                   for name in dir(answer_type) if name.startswith(prefix)}
        self._publisher = self.node.create_publisher('colvlm/msg/Query', 'colvlm/query',
                                                     'queries')
        self._answers: dict[str, list[tuple[float, object]]] = {}
        self._changed = threading.Condition()
        self.node.create_subscription('colvlm/msg/Answer', 'colvlm/answer', self._on_answer,
                                      'answers')

    def _on_answer(self, answer) -> None:
        with self._changed:
            self._answers.setdefault(answer.query_id, []).append((time.monotonic(), answer))
            self._changed.notify_all()

    def ask(self, query_id: str, question: str, timeout_s: float) -> dict:
        query = self._query_type()
        query.query_id, query.question, query.fresh_frame = query_id, question, True
        stamps.fill(query.header.stamp, self.node.now_ns())
        sent = time.monotonic()
        self._publisher.publish(query)
        with self._changed:
            self._changed.wait_for(lambda: query_id in self._answers, timeout_s)
            received = self._answers.get(query_id)
        if not received:
            return {'id': query_id, 'status': 'NO_ANSWER', 'latency_ms': None}
        arrived, answer = received[0]
        return {
            'id': query_id, 'status': self._names['STATUS_'].get(answer.status, answer.status),
            'decision': self._names['DECISION_'].get(answer.decision, answer.decision),
            'status_message': answer.status_message, 'answer': answer.answer,
            'policy': answer.policy, 'latency_ms': (arrived - sent) * 1e3,
            'server_total_ms': answer.total_ms, 'fetch_ms': answer.fetch_ms,
            'locate_ms': answer.locate_ms, 'queue_ms': answer.queue_ms,
            'first_pass_ms': answer.first_pass.latency_ms,
            'second_pass_ms': answer.second_pass.latency_ms if answer.second_pass.ran else 0.0,
            'uplink_bytes': answer.uplink_bytes, 'uplink_global_bytes':
            answer.uplink_global_bytes, 'uplink_crop_bytes': answer.uplink_crop_bytes,
            'downlink_bytes': answer.downlink_bytes,
        }

    def counts(self, ids: list[str], grace_s: float) -> dict:
        time.sleep(grace_s)  # a duplicate would arrive after the first
        with self._changed:
            return {'counts': {query_id: len(self._answers.get(query_id, ())) for query_id in ids}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--namespace', default='', help="the server's namespace")
    args = parser.parse_args()
    asker = Asker(args.namespace)
    print(json.dumps({'ready': True}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command['op'] == 'ask':
                reply = asker.ask(command['id'], command['question'], command['timeout_s'])
            elif command['op'] == 'counts':
                reply = asker.counts(command['ids'], command['grace_s'])
            else:
                reply = {'error': f'unknown op {command["op"]!r}'}
            print(json.dumps(reply), flush=True)
    finally:
        asker.node.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
