"""The one INFO line the server logs per answered question: what was asked (shortened), the
status, the decision, the answer and the latency, so that a log shows each query without a
client. It reads an Answer message and knows nothing else."""

from __future__ import annotations

from colvlm_msgs.constants import decision_name, status_name

QUESTION_CHARS = 48  # of the question shown; the Answer on the wire has it whole


def shorten(text: str, limit: int = QUESTION_CHARS) -> str:
    text = ' '.join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + '…'


def answer_line(answer, question: str) -> str:
    """e.g. "query 1f3a: 'What is written on the red sign?' -> 'AB12' (OK, local_crop,
    812 ms)"; a status other than OK says why."""
    status = status_name(answer.status)
    why = '' if status == 'OK' or not answer.status_message else \
        f': {shorten(answer.status_message, 120)}'
    return (f'query {answer.query_id}: {shorten(question)!r} -> {shorten(answer.answer)!r} '
            f'({status}, {decision_name(answer.decision).lower()}, {answer.total_ms:.0f} ms)'
            f'{why}')
