"""
The attempt limiter.
"""

from __future__ import annotations

from chatroom.ratelimit import AttemptLimiter


def test_one_attempt_per_window() -> None:
    limiter = AttemptLimiter(1, 5.0)
    assert limiter.wait("a", 100.0) == 0.0
    limiter.record("a", 100.0)
    assert limiter.wait("a", 101.0) == 4.0
    assert limiter.wait("b", 101.0) == 0.0
    assert limiter.wait("a", 105.0) == 0.0


def test_several_attempts_per_sliding_window() -> None:
    limiter = AttemptLimiter(3, 60.0)
    for now in (0.0, 10.0, 20.0):
        assert limiter.wait("a", now) == 0.0
        limiter.record("a", now)
    assert limiter.wait("a", 30.0) == 30.0
    # The first attempt slides out of the window at 60: one more is allowed.
    assert limiter.wait("a", 60.0) == 0.0
    limiter.record("a", 60.0)
    assert limiter.wait("a", 61.0) == 9.0


def test_old_keys_are_forgotten() -> None:
    limiter = AttemptLimiter(1, 5.0)
    for i in range(1000):
        limiter.record(f"key{i}", i / 1000)
    assert len(limiter) == 1000
    limiter.record("late", 5.5)
    assert len(limiter) == 500
    limiter.record("a", 4.0 + 7.0)
    assert len(limiter) == 1
