"""colvlm_edge.roi_crop.RateLimiter: a sliding window, driven by a fake clock."""

import pytest

from colvlm_edge.roi_crop import RateLimiter


class FakeClock:
    def __init__(self):
        self.now = 1000.0  # s

    def __call__(self):
        return self.now


def test_burst_beyond_the_limit_is_refused():
    clock = FakeClock()
    limiter = RateLimiter(3, 1.0, clock=clock)
    assert [limiter.allow() for _ in range(5)] == [True, True, True, False, False]
    assert limiter.refused == 2


def test_window_slides():
    clock = FakeClock()
    limiter = RateLimiter(2, 1.0, clock=clock)
    assert limiter.allow() and limiter.allow()  # t = 0.0
    clock.now += 0.5
    assert not limiter.allow()
    clock.now += 0.49  # t = 0.99: both still inside the window
    assert not limiter.allow()
    clock.now += 0.01  # t = 1.0: both left the window
    assert limiter.allow() and limiter.allow()
    assert not limiter.allow()


def test_refused_calls_do_not_extend_the_wait():
    clock = FakeClock()
    limiter = RateLimiter(1, 2.0, clock=clock)
    assert limiter.allow()
    for _ in range(10):
        clock.now += 0.1
        assert not limiter.allow()
    clock.now += 1.0  # 2.0 s after the allowed request
    assert limiter.allow()


def test_steady_rate_at_the_limit_is_always_allowed():
    clock = FakeClock()
    limiter = RateLimiter(4, 1.0, clock=clock)
    for _ in range(50):
        assert limiter.allow()
        clock.now += 0.25  # exact in binary floating point


@pytest.mark.parametrize('args, name', [((0, 1.0), 'max_requests'), ((1.5, 1.0), 'max_requests'),
                                        ((3, 0), 'per_seconds'), ((3, -1.0), 'per_seconds')])
def test_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        RateLimiter(*args)
