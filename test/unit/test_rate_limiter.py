"""colvlm_edge.rate_limit.ClientLimiter: token buckets per client, by count and by cost,
driven by a fake clock."""

import pytest

from colvlm_edge.rate_limit import ClientLimiter, request_limiters


class FakeClock:
    def __init__(self):
        self.now = 1000.0  # s

    def __call__(self):
        return self.now


def test_burst_beyond_the_limit_is_refused():
    limiter = ClientLimiter(3, 1.0, clock=FakeClock())
    assert [limiter.allow('a') for _ in range(5)] == [True, True, True, False, False]
    assert limiter.refused == 2


def test_the_bucket_refills_at_the_rate():
    clock = FakeClock()
    limiter = ClientLimiter(2, 1.0, clock=clock)  # 2 per s, 2 at most held
    assert limiter.allow('a') and limiter.allow('a')
    assert not limiter.allow('a')
    clock.now += 0.5  # one request's worth
    assert limiter.allow('a')
    assert not limiter.allow('a')
    clock.now += 100.0  # never more than the burst
    assert [limiter.allow('a') for _ in range(3)] == [True, True, False]


def test_steady_rate_at_the_limit_is_always_allowed():
    clock = FakeClock()
    limiter = ClientLimiter(4, 1.0, clock=clock)
    for _ in range(50):
        assert limiter.allow('a')
        clock.now += 0.25  # exact in binary floating point


def test_one_client_flooding_does_not_take_another_clients_requests():
    clock = FakeClock()
    limiter = ClientLimiter(3, 1.0, clock=clock)
    flood = [limiter.allow('flooder') for _ in range(100)]
    assert sum(flood) == 3
    assert all(limiter.allow('asker') for _ in range(3))
    assert limiter.clients == 2


def test_cost_is_limited_per_client_and_the_dearest_request_can_pass():
    clock = FakeClock()
    # 10 requests/s, 1000 px/s, one request of up to 5000 px allowed on a full bucket.
    limiter = ClientLimiter(10, 1.0, cost_per_s=1000, cost_burst=5000, clock=clock)
    assert limiter.allow('big', 5000)
    assert not limiter.allow('big', 5000) and not limiter.allow('big', 100)
    assert limiter.allow('small', 100)  # its own bucket is full
    clock.now += 5.0
    assert limiter.allow('big', 10**9)  # more than the burst costs the burst
    assert 'px/s' in limiter.refusal() and 'for this client' in limiter.refusal()


def test_clients_beyond_the_bound_are_forgotten_oldest_first():
    limiter = ClientLimiter(1, 60.0, max_clients=2, clock=FakeClock())
    assert limiter.allow('a') and limiter.allow('b') and limiter.allow('c')
    assert limiter.clients == 2
    assert not limiter.allow('c') and limiter.allow('a')  # a was forgotten: a full bucket


def test_the_edges_two_limiters():
    crops, frames = request_limiters(5, 1.0, 1000.0, 4000)
    assert crops.cost_burst == 4000 and frames.cost_per_s is None
    assert 'crop requests' in crops.refusal() and 'frame requests' in frames.refusal()


@pytest.mark.parametrize('args, name', [((0, 1.0), 'max_requests'), ((1.5, 1.0), 'max_requests'),
                                        ((3, 0), 'per_seconds'), ((3, -1.0), 'per_seconds'),
                                        ((3, 1.0, 0), 'cost_per_s')])
def test_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        ClientLimiter(*args)
