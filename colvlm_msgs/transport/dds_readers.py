"""The `dds` backend's threads between Cyclone DDS and node callbacks, bounded against a
flooding or faulty peer (issue 19).

`ReaderThread` takes each sample off its reader at once into a backlog of at most the
profile's depth and runs the callbacks on a second thread, in order: a reader whose thread
ran the callbacks lost samples from its history in a burst. `LateReplies` holds the service
replies whose caller's reply reader has not matched yet (rmw waits for it before replying;
many new callers at once take seconds to discover) on one thread of its own, so that no
handler thread waits for discovery. Both count and log what they drop, at most once a second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
import logging
import threading
import time

from cyclonedds.core import InstanceState, Policy, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader, InvalidSample
from cyclonedds.util import duration

POLL_S = 0.1  # how often these threads look at the shutdown flag
# rmw waits 100 ms for a caller's reply reader; 60 new callers at once (issue 19, probe 4)
# are discovered in seconds on a busy machine, and a reply written before then is lost.
REPLY_READER_WAIT_S = 10.0
LATE_REPLIES_MAX = 256  # replies waiting for their caller's reader; beyond, the oldest goes
_ANY_SAMPLE = SampleState.Any | ViewState.Any | InstanceState.Any


class DropLog:
    """Counts drops of one kind and logs them at most once per `period_s` (a flood makes one
    line a second, not one a sample)."""

    def __init__(self, logger: logging.Logger, what: str, period_s: float = 1.0):
        self.count = 0
        self._logger, self._what, self._period_s = logger, what, period_s
        self._logged_at, self._logged_count = -float('inf'), 0
        self._lock = threading.Lock()

    def drop(self, why: str) -> None:
        with self._lock:
            self.count += 1
            now = time.monotonic()
            if now - self._logged_at < self._period_s:
                return
            since = self.count - self._logged_count
            self._logged_at, self._logged_count = now, self.count
        more = f' ({since} since the last line, {self.count} in all)' if since > 1 else ''
        self._logger.warning(f'{self._what}: {why}{more}')


class ReaderThread:
    """Takes samples one at a time (one malformed sample costs only itself) into a backlog of
    at most `limit`, the oldest dropped beyond it, as the reader's keep-last history would;
    another thread hands them to `on_sample` in order."""

    def __init__(self, reader: DataReader, on_sample: Callable, on_error: Callable,
                 stop: threading.Event, name: str, limit: int, on_overflow: Callable):
        self.reader = reader
        self._on_sample, self._on_error, self._stop = on_sample, on_error, stop
        self._limit, self._on_overflow = max(1, limit), on_overflow
        self._backlog: deque = deque()
        self._ready = threading.Condition()
        self._waitset = WaitSet(reader.participant)
        self._waitset.attach(ReadCondition(reader, _ANY_SAMPLE))
        self._threads = [threading.Thread(target=self._take, name=name, daemon=True),
                         threading.Thread(target=self._dispatch, name=f'{name} callbacks',
                                          daemon=True)]
        for thread in self._threads:
            thread.start()

    def _take(self) -> None:
        while not self._stop.is_set():
            if self._waitset.wait(duration(seconds=POLL_S)) == 0:
                continue
            while not self._stop.is_set():
                try:
                    samples = self.reader.take(N=1)
                except Exception as error:  # a sample that does not decode
                    self._on_error(error)
                    continue
                if not samples:
                    break
                if isinstance(samples[0], InvalidSample):
                    continue  # an instance-state change (a writer left), not data
                self._queue(samples[0])

    def _queue(self, sample) -> None:
        with self._ready:
            overflow = len(self._backlog) >= self._limit
            if overflow:
                self._backlog.popleft()
            self._backlog.append(sample)
            self._ready.notify()
        if overflow:
            self._on_overflow()

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                if not self._ready.wait_for(lambda: self._backlog, POLL_S):
                    continue
                sample = self._backlog.popleft()
            self._on_sample(sample)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)


def user_data_value(endpoint, key: str) -> str | None:
    """The value of `key=...;` in a discovered endpoint's USER_DATA, or None."""
    try:
        raw = endpoint.qos[Policy.Userdata].data
    except (KeyError, AttributeError, TypeError):
        return None
    for item in raw.decode('ascii', 'replace').rstrip('\0').split(';'):
        name, _, value = item.partition('=')
        if name == key:
            return value
    return None


def reply_reader_matched(writer: DataWriter, client_id: str | None) -> bool:
    """Whether the reply reader of the caller `client_id` is matched to `writer` (a caller
    that does not say who it is is assumed to listen)."""
    if client_id is None:
        return True
    for handle in writer.get_matched_subscriptions():
        endpoint = writer.get_matched_subscription_data(handle)
        if endpoint is not None and user_data_value(endpoint, 'clientid') == client_id:
            return True
    return False


class _Reply:
    __slots__ = ('deadline', 'writer', 'write_lock', 'client_id', 'sample')

    def __init__(self, *fields):
        for name, value in zip(self.__slots__, fields, strict=True):
            setattr(self, name, value)

    def write(self) -> None:
        with self.write_lock:
            self.writer.write(self.sample)


class LateReplies:
    """Replies held until their caller's reply reader matches, at most REPLY_READER_WAIT_S
    each and LATE_REPLIES_MAX in all; written by one thread of the node's own."""

    def __init__(self, stop: threading.Event, logger: logging.Logger):
        self._stop = stop
        self._pending: deque[_Reply] = deque()
        self._lock = threading.Condition()
        self._drops = DropLog(logger, 'service replies dropped')
        self._thread = threading.Thread(target=self._run, name='colvlm-late-replies',
                                        daemon=True)
        self._thread.start()

    def send(self, writer: DataWriter, write_lock: threading.Lock, client_id: str | None,
             sample) -> None:
        """Write `sample` now if its caller listens, else once it does."""
        reply = _Reply(time.monotonic() + REPLY_READER_WAIT_S, writer, write_lock, client_id,
                       sample)
        if reply_reader_matched(writer, client_id):
            reply.write()
            return
        with self._lock:
            if len(self._pending) >= LATE_REPLIES_MAX:
                self._pending.popleft()
                self._drops.drop(f'{LATE_REPLIES_MAX} wait for their callers to be discovered')
            self._pending.append(reply)
            self._lock.notify()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            with self._lock:  # idle until a reply waits
                self._lock.wait_for(lambda: self._pending or self._stop.is_set(), POLL_S)
                pending = list(self._pending)
            done = [reply for reply in pending if self._settle(reply)]
            if done:
                with self._lock:
                    for reply in done:
                        if reply in self._pending:
                            self._pending.remove(reply)

    def _settle(self, reply: _Reply) -> bool:
        """Whether `reply` is done with: written to its now matched caller, or too late."""
        try:
            if reply_reader_matched(reply.writer, reply.client_id):
                reply.write()
                return True
        except Exception as error:  # a writer closing under us; the node is shutting down
            self._drops.drop(f'{error!r}')
            return True
        if time.monotonic() > reply.deadline:
            self._drops.drop(f"the caller's reply reader never matched within "
                             f'{REPLY_READER_WAIT_S:g} s')
            return True
        return False

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
