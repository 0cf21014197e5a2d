"""Admission and the job queue: which questions the server takes, in what order it answers.

`check_query` refuses a bad request before it waits; `JobQueue` holds at most
`queue.max_size` jobs for one worker thread and refuses more (BUSY) instead of letting the
queue grow; once stopping has begun nothing is queued, the running job finishes and the
waiting ones are handed back to be answered BUSY. Every job admitted reaches exactly one of
`run` or the `stop()` list. Pure: no transport, no model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import threading

from colvlm_msgs.constants import Status
from colvlm_server.parameters import MAX_NEW_TOKENS, SERVER_POLICIES


class Rejected(Exception):
    """A query answered without (or before the end of) the pipeline, with its status."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = Status(status)


@dataclass
class Job:
    query: object        # colvlm/msg/Query
    reply: Callable      # reply(answer), called exactly once
    received: float      # perf_counter s
    received_ns: int     # wall clock ns
    policy: str
    held: tuple | None   # (Frame, frame_id) chosen at admission; None: fetch one when run
    link: object | None  # the camera asked about; None: select views (several cameras)
    progress: Callable | None = None  # the pipeline's stages, for an Ask action goal


def check_query(query, policy: str, question_max_chars: int, layers: bool = True) -> None:
    """Rejected(BAD_REQUEST) naming what is wrong with `query` under `policy`, or nothing;
    `layers` False: this server has no token codec, so policy 'layers' cannot answer."""
    if not query.question.strip():
        raise Rejected(Status.BAD_REQUEST, 'empty question')
    if len(query.question) > question_max_chars:
        raise Rejected(Status.BAD_REQUEST, f'question of {len(query.question)} characters; at '
                                           f'most {question_max_chars} are accepted '
                                           '(question.max_chars)')
    if policy not in SERVER_POLICIES:
        raise Rejected(Status.BAD_REQUEST, f'unknown policy {policy!r}; this server knows '
                                           f'{", ".join(SERVER_POLICIES)}')
    if policy == 'layers' and not layers:
        raise Rejected(Status.BAD_REQUEST, "policy 'layers' needs a token codec and this server "
                                           'has none (layers.codec)')
    if query.max_new_tokens > MAX_NEW_TOKENS:
        raise Rejected(Status.BAD_REQUEST, f'max_new_tokens must be <= {MAX_NEW_TOKENS}, got '
                                           f'{query.max_new_tokens}')


class JobQueue:
    """At most `max_size` waiting jobs, run one at a time by `run` on a worker thread."""

    def __init__(self, max_size: int, run: Callable[[Job], None]):
        self.max_size = max_size
        self._run = run
        self._jobs: deque[Job] = deque()
        self._changed = threading.Condition()  # guards _jobs and _stopping
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name='server-worker', daemon=True)
        self._worker.start()

    def submit(self, job: Job) -> None:
        """Queue `job`, or Rejected(BUSY) when the queue is full or stopping has begun."""
        with self._changed:
            if self._stopping:
                raise Rejected(Status.BUSY, 'the server is shutting down')
            if len(self._jobs) >= self.max_size:
                raise Rejected(Status.BUSY, f'{self.max_size} queries are already waiting')
            self._jobs.append(job)
            self._changed.notify_all()

    def waiting(self) -> int:
        with self._changed:
            return len(self._jobs)

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._jobs or self._stopping)
                if self._stopping:
                    return
                job = self._jobs.popleft()
            self._run(job)

    def stop(self, timeout: float = 60.0) -> list[Job]:
        """Admit nothing more, let the running job finish; the jobs still waiting."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._worker.join(timeout=timeout)
        with self._changed:
            left = list(self._jobs)
            self._jobs.clear()
        return left
