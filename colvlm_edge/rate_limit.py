"""Token buckets per client, by request count and by cost, so one caller cannot starve another.

Each client (the transport's caller id: a request-writer GUID on dds) has two buckets: one of
requests, refilled at `max_requests` per `per_seconds` and holding at most `max_requests`;
one of cost (output pixels of a crop), refilled at `cost_per_s` and holding at least the
dearest single request. A request passes when both hold enough, and then takes its share.
A flood of cheap requests empties only its own client's request bucket; a few dear ones only
its own cost bucket. Clients are forgotten least recently seen first beyond `max_clients`
(a forgotten client comes back with full buckets, so the bound is for memory, not fairness).
It knows nothing about crops or transports. Thread-safe.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
import threading
import time
from typing import Optional

import numpy as np


def _positive(name: str, value: object, integer: bool = False) -> float:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        raise ValueError(f'{name} must be a positive {"int" if integer else "number"}, '
                         f'got {value!r}')
    return value


class ClientLimiter:
    """`allow(client, cost)`: whether client may make a request of that cost now."""

    def __init__(self, max_requests: int, per_seconds: float,
                 cost_per_s: Optional[float] = None, cost_burst: float = 0.0,
                 max_clients: int = 1024, clock: Callable[[], float] = time.monotonic,
                 what: str = 'requests') -> None:
        self.what = what  # what is counted, for the refusal message
        self.max_requests = int(_positive('max_requests', max_requests, integer=True))
        self.per_seconds = float(_positive('per_seconds', per_seconds))
        self.cost_per_s = None if cost_per_s is None else float(
            _positive('cost_per_s', cost_per_s))
        # One second's cost, but never less than the dearest request the caller allows, which
        # would otherwise never pass.
        self.cost_burst = 0.0 if self.cost_per_s is None else max(self.cost_per_s,
                                                                  float(cost_burst))
        self.max_clients = int(_positive('max_clients', max_clients, integer=True))
        self._clock = clock
        self._lock = threading.Lock()
        # client -> [requests held, cost held, clock time of the last refill (s)]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self.refused = 0

    def refusal(self) -> str:
        """The status message of a refused request."""
        cost = '' if self.cost_per_s is None else f' or {self.cost_per_s:g} px/s'
        return (f'refused: over {self.max_requests} {self.what} in {self.per_seconds:g} s'
                f'{cost} for this client')

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._buckets)

    def allow(self, client: str = '', cost: float = 0.0) -> bool:
        """True (and the request counted) if both of client's buckets hold enough, else False."""
        with self._lock:
            now = self._clock()
            bucket = self._bucket(str(client), now)
            elapsed = max(0.0, now - bucket[2])
            bucket[0] = min(float(self.max_requests),
                            bucket[0] + elapsed * self.max_requests / self.per_seconds)
            if self.cost_per_s is not None:
                bucket[1] = min(self.cost_burst, bucket[1] + elapsed * self.cost_per_s)
            bucket[2] = now
            cost = min(float(cost), self.cost_burst) if self.cost_per_s is not None else 0.0
            if bucket[0] < 1.0 or bucket[1] < cost:
                self.refused += 1
                return False
            bucket[0] -= 1.0
            bucket[1] -= cost
            return True

    def _bucket(self, client: str, now: float) -> list[float]:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = [float(self.max_requests), self.cost_burst, now]
            self._buckets[client] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(client)
        return bucket


def request_limiters(max_requests: int, per_seconds: float, pixels_per_s: float,
                     largest_crop: int) -> tuple[ClientLimiter, ClientLimiter]:
    """The edge's two: crops by count and output pixels, frame requests by count, per client
    (largest_crop px: the dearest crop allowed, which must pass on a full bucket)."""
    return (ClientLimiter(max_requests, per_seconds, pixels_per_s, cost_burst=largest_crop,
                          what='crop requests'),
            ClientLimiter(max_requests, per_seconds, what='frame requests'))
