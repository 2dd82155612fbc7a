"""
Counting attempts per key over a sliding time window.
"""

from __future__ import annotations

from collections import deque


class AttemptLimiter:
    """
    Allows at most C{limit} attempts per key in any C{window} seconds.

    Memory stays bounded: a key keeps at most C{limit} times, and a key
    whose last attempt is older than the window is forgotten.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        # Ordered by each key's latest attempt, stalest first, so forgetting
        # old keys only ever looks at the front.
        self._attempts: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """
        How many seconds C{key} must wait before its next attempt (0: none).
        """
        self._forget(now)
        times = self._attempts.get(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(times[0] + self.window - now, 0.0)

    def record(self, key: str, now: float) -> None:
        """
        Count one attempt by C{key} at C{now}.
        """
        self._forget(now)
        times = self._attempts.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._attempts[key] = times

    def _forget(self, now: float) -> None:
        while self._attempts:
            key, times = next(iter(self._attempts.items()))
            if times[-1] + self.window > now:
                return
            del self._attempts[key]

    def __len__(self) -> int:
        return len(self._attempts)
