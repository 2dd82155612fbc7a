"""
Token buckets and connection counting, on a fake clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from chatroom.limits import AttemptLimiter, ConnectionCounter, ConnectionLimits, TokenBucket, address_key


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(clock, rate=2, burst=5)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.5)
    assert bucket.take() and not bucket.take()
    clock.advance(100)
    assert sum(bucket.take() for _ in range(10)) == 5


def test_bucket_with_no_rate_is_unlimited() -> None:
    bucket = TokenBucket(Clock(), rate=0, burst=1)
    assert all(bucket.take() for _ in range(1000))


def test_ipv6_counts_by_slash_64() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") == "192.0.2.7"


def test_per_address_limit_and_release() -> None:
    counter = ConnectionCounter(Clock(), ConnectionLimits(per_address=2, rate=0))
    assert counter.admit("192.0.2.1") is None
    assert counter.admit("192.0.2.1") is None
    assert "too many connections" in (counter.admit("192.0.2.1") or "")
    assert counter.admit("192.0.2.2") is None
    counter.release("192.0.2.1")
    assert counter.admit("192.0.2.1") is None
    assert counter.total == 3


def test_ipv6_neighbours_share_a_limit() -> None:
    counter = ConnectionCounter(Clock(), ConnectionLimits(per_address=1, rate=0))
    assert counter.admit("2001:db8::1") is None
    assert counter.admit("2001:db8::2") is not None
    assert counter.admit("2001:db8:1::1") is None


def test_rate_limit_slides_with_the_clock() -> None:
    clock = Clock()
    counter = ConnectionCounter(clock, ConnectionLimits(per_address=0, rate=3, window=10))
    for _ in range(3):
        assert counter.admit("192.0.2.1") is None
        counter.release("192.0.2.1")
    assert "new connections" in (counter.admit("192.0.2.1") or "")
    clock.advance(10)
    assert counter.admit("192.0.2.1") is None


def test_total_cap_and_loopback_exemption() -> None:
    counter = ConnectionCounter(Clock(), ConnectionLimits(total=3, per_address=1, rate=1))
    assert [counter.admit("127.0.0.1") for _ in range(3)] == [None] * 3
    assert counter.admit("192.0.2.1") == "the server is full: try again later"
    strict = ConnectionCounter(Clock(), ConnectionLimits(per_address=1, exempt_loopback=False))
    assert strict.admit("::1") is None and strict.admit("::1") is not None


def test_rate_history_is_forgotten_once_old() -> None:
    clock = Clock()
    counter = ConnectionCounter(clock, ConnectionLimits(rate=5, window=10))
    for n in range(1000):
        host = f"10.0.{n // 256}.{n % 256}"
        assert counter.admit(host) is None
        counter.release(host)
    clock.advance(11)
    counter.admit("192.0.2.9")
    assert len(counter._new) == 1


def test_one_attempt_per_window() -> None:
    clock = Clock()
    clock.advance(100)
    limiter = AttemptLimiter(clock, 1, 5.0)
    assert limiter.wait("a") == 0.0
    limiter.record("a")
    clock.advance(1)
    assert limiter.wait("a") == 4.0
    assert limiter.wait("b") == 0.0
    clock.advance(4)
    assert limiter.wait("a") == 0.0


def test_several_attempts_per_sliding_window() -> None:
    clock = Clock()
    limiter = AttemptLimiter(clock, 3, 60.0)
    for _ in range(3):
        assert limiter.wait("a") == 0.0
        limiter.record("a")
        clock.advance(10)
    assert limiter.wait("a") == 30.0
    # The first attempt slides out of the window at 60: one more is allowed.
    clock.advance(30)
    assert limiter.wait("a") == 0.0
    limiter.record("a")
    clock.advance(1)
    assert limiter.wait("a") == 9.0


def test_old_attempt_keys_are_forgotten() -> None:
    clock = Clock()
    limiter = AttemptLimiter(clock, 1, 5.0)
    for i in range(1000):
        limiter.record(f"key{i}")
        clock.advance(0.001)
    assert len(limiter) == 1000
    clock.advance(4.5)
    limiter.record("late")
    assert len(limiter) == 500
    clock.advance(5)
    limiter.record("a")
    assert len(limiter) == 1
