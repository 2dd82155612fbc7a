"""
Abuse limits, as pure bookkeeping on an injected clock: token buckets for
commands and nick changes, connection counting per address, and attempt
counting (for /oper) per key.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime


class TokenBucket:
    """
    A bucket of C{burst} tokens refilled at C{rate} tokens per second.

    A rate of 0 or less disables the limit: every take succeeds.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated = clock.seconds()

    def _refill(self) -> float:
        now = self.clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        return self._tokens

    def take(self, cost: float = 1.0) -> bool:
        """
        Take C{cost} tokens if there are enough; say whether there were.
        """
        if self.rate <= 0:
            return True
        if self._refill() >= cost:
            self._tokens -= cost
            return True
        return False

    def full(self) -> bool:
        """
        Whether the bucket holds all C{burst} tokens (as if never used).
        """
        return self.rate <= 0 or self._refill() >= self.burst

    def charge(self, cost: float) -> None:
        """
        Take C{cost} tokens whether or not there are enough: the bucket may
        go into debt, which L{wait} then says how long takes to repay.
        """
        if self.rate > 0:
            self._refill()
            self._tokens -= cost

    def wait(self, cost: float = 0.0) -> float:
        """
        Seconds until C{cost} tokens are there (more than none: until the
        bucket is out of debt); 0 if they are now.
        """
        if self.rate <= 0:
            return 0.0
        short = cost - self._refill()
        return max(short, 0.0) / self.rate if short > 0 else 0.0


def address_key(host: str) -> str:
    """
    The unit connections are counted by: the address itself for IPv4, its
    /64 network for IPv6 (one host usually owns a whole /64).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ConnectionLimits:
    """
    Connection limits; 0 disables one.

    @ivar total: Connections at once, from everywhere.
    @ivar per_address: Connections at once from one address (or IPv6 /64).
    @ivar rate: New connections from one address per C{window} seconds.
    @ivar window: The window of the rate limit, in seconds.
    @ivar handshakes: Connections at once still in their (TLS) handshake,
        below C{total}: past it the oldest of them is closed, so sockets
        that never start TLS cannot fill the server.
    @ivar exempt_loopback: Whether loopback addresses skip the per-address limits.
    """

    total: int = 10000
    handshakes: int = 1000
    per_address: int = 10
    rate: int = 20
    window: float = 60.0
    exempt_loopback: bool = True


class ConnectionCounter:
    """
    Decides whether a new connection is admitted, and counts the open ones.
    """

    def __init__(self, clock: IReactorTime, limits: ConnectionLimits) -> None:
        self.clock = clock
        self.limits = limits
        self.total = 0
        self._open: dict[str, int] = {}
        self._new = AttemptLimiter(clock, limits.rate, limits.window)

    def admit(self, host: str) -> str | None:
        """
        Count a new connection from C{host}, or say why it is refused.

        @return: L{None} if admitted (call L{release} when it closes),
            otherwise the reason, for the refused client.
        """
        limits = self.limits
        if limits.total and self.total >= limits.total:
            return "the server is full: try again later"
        key = address_key(host)
        checked = not (limits.exempt_loopback and is_loopback(host))
        if checked and limits.per_address and self._open.get(key, 0) >= limits.per_address:
            return f"too many connections from your address (at most {limits.per_address})"
        if checked and limits.rate:
            if self._new.wait(key) > 0:
                return (
                    f"too many new connections from your address"
                    f" (at most {limits.rate} per {limits.window:g} seconds): try again later"
                )
            self._new.record(key)
        self.total += 1
        self._open[key] = self._open.get(key, 0) + 1
        return None

    def open_from(self, host: str) -> int:
        """
        How many admitted connections from C{host}'s address are open.
        """
        return self._open.get(address_key(host), 0)

    def release(self, host: str) -> None:
        """
        Forget one connection from C{host} that L{admit} admitted.
        """
        key = address_key(host)
        self.total -= 1
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)


@dataclass(frozen=True)
class ClientLimits:
    """
    Per-connection limits and timeouts; a rate or time of 0 disables one.

    @ivar send_queue: Bytes the server queues for a client that is not
        reading, past what the socket takes, before dropping it.
    @ivar flood_rate: Lines per second a client may send, sustained.
    @ivar flood_burst: Lines a client may send at once after a quiet spell.
    @ivar flood_kick: Lines refused for flooding, in a row, before the client
        is disconnected.
    @ivar nick_rate: Name changes per second, sustained.
    @ivar nick_burst: Name changes at once.
    @ivar bad_input_burst: Bad lines (too long, not UTF-8, control
        characters) a client may send before it is dropped; one more is
        forgiven every C{1 / bad_input_rate} seconds.
    @ivar bad_input_rate: See C{bad_input_burst}.
    @ivar handshake_timeout: Seconds to finish the TLS handshake.
    @ivar first_line_timeout: Seconds from the end of the handshake to
        joining the room (a member that only reads is never timed out).
    @ivar ping_interval: Seconds of silence before the server pings a
        client that answers pings (one that has sent C{/pong} once).
    @ivar ping_timeout: Seconds a pinged client has to answer.
    @ivar keepalive_idle: Seconds of silence before TCP keepalive probes start.
    @ivar keepalive_interval: Seconds between TCP keepalive probes.
    @ivar keepalive_count: Unanswered probes before the peer is taken for
        gone: a vanished peer is found within C{keepalive_idle +
        keepalive_interval * keepalive_count} seconds.
    @ivar byte_rate: Bytes per second a client may send, sustained, counted
        after normalisation (which can make a line longer).
    @ivar byte_burst: Bytes a client may send at once (two full E2E lines).
    @ivar address_byte_rate: Bytes per second all clients of one address
        (or IPv6 /64) may send together, sustained.
    @ivar address_byte_burst: Bytes they may send at once.
    @ivar answer_rate: Bytes per second of answers to a client's own
        commands (C{/list}, C{/help}, C{/e2e keys}...); past the burst its
        next commands wait (fake lag) until the answers are paid for.
    @ivar answer_burst: Bytes of answers a client may get at once.
    @ivar memory_budget: Bytes all send queues and partial lines together
        may hold; past it the largest are dropped first.
    """

    send_queue: int = 1024 * 1024
    flood_rate: float = 5.0
    flood_burst: float = 20.0
    flood_kick: int = 50
    nick_rate: float = 0.1
    nick_burst: float = 3.0
    bad_input_burst: float = 10.0
    bad_input_rate: float = 0.1
    handshake_timeout: float = 15.0
    first_line_timeout: float = 60.0
    ping_interval: float = 90.0
    ping_timeout: float = 60.0
    keepalive_idle: int = 60
    keepalive_interval: int = 15
    keepalive_count: int = 4
    byte_rate: float = 16384.0
    byte_burst: float = 140000.0
    address_byte_rate: float = 32768.0
    address_byte_burst: float = 280000.0
    answer_rate: float = 16384.0
    answer_burst: float = 262144.0
    memory_budget: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class RoomLimits:
    """
    Limits of the room as a whole; a rate of 0 disables one.

    @ivar notice_rate: Join and leave lines per second, sustained; past the
        burst, arrivals and departures are collapsed into one C{arrivals}
        line every C{notice_interval} seconds.
    @ivar notice_burst: Join and leave lines at once.
    @ivar notice_interval: Seconds between C{arrivals} summaries.
    @ivar oper_checks: Admin password checks per C{oper_window} seconds,
        from all addresses together.
    @ivar oper_window: See C{oper_checks}.
    @ivar bans_page: Bans per C{/bans} answer.
    """

    notice_rate: float = 5.0
    notice_burst: float = 20.0
    notice_interval: float = 5.0
    oper_checks: int = 20
    oper_window: float = 60.0
    bans_page: int = 50


class AttemptLimiter:
    """
    Allows at most C{limit} attempts per key in any C{window} seconds.

    Memory stays bounded: a key keeps at most C{limit} times, and a key
    whose last attempt is older than the window is forgotten.
    """

    def __init__(self, clock: IReactorTime, limit: int, window: float) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        # Ordered by each key's latest attempt, stalest first, so forgetting
        # old keys only ever looks at the front.
        self._attempts: dict[str, deque[float]] = {}

    def wait(self, key: str) -> float:
        """
        How many seconds C{key} must wait before its next attempt (0: none).
        """
        now = self.clock.seconds()
        self._forget(now)
        times = self._attempts.get(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(times[0] + self.window - now, 0.0)

    def record(self, key: str) -> None:
        """
        Count one attempt by C{key}, now.
        """
        now = self.clock.seconds()
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
