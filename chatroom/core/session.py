"""
The per-connection policy every transport shares.

A transport frames and decodes its protocol and hands each client line to a
L{Session}; the session does everything else: admission, the handshake and
join deadlines, keepalive pings (for clients that answer them), flood
control (lines, bytes, names, bad input), the cost of answers (fake lag),
the send-queue cap, joining and leaving the room, running commands in
order, and turning every broken rule into one error reply, in one place.
L{Sessions} keeps the open sessions of one process, counts connections per
address and handshakes, bounds the memory of all of them together and
closes them all at shutdown.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.core.commands import Command
from chatroom.core.errors import ChatError
from chatroom.core.events import ChatEvent, ErrorReply, Event, GroupSealed, Ping, Sealed
from chatroom.core.metering import Meter, NoMeter
from chatroom.core.ports import Connection, MemberRecord
from chatroom.core.room import Room
from chatroom.limits import (
    ClientLimits,
    ConnectionCounter,
    ConnectionLimits,
    TokenBucket,
    address_key,
    is_loopback,
)

# Seconds a dropped client's last lines get to drain before the connection is aborted.
DROP_GRACE = 10.0
# Commands waiting while an earlier one of the same member finishes (a
# store round trip, a password check); flood control keeps it far lower.
MAX_WAITING = 100
# Commands that build a member's filter pattern again, and what each of its
# characters costs in answer bytes (compiling is slower than sending).
FILTER_COMMANDS = frozenset({"filter", "unfilter"})
FILTER_COST = 8


class Session:
    """
    One client connection's life in the room, whatever its transport.

    @ivar member: The member, once joined and until it leaves.
    @ivar transport: The transport's kind (C{line}), for the metrics.
    """

    log = Logger()
    # Slots, not a dict: from 30 attributes on, CPython stops sharing an
    # instance dict's keys and every attribute is slower to read; a
    # delivery reads several.
    __slots__ = (
        "_admitted",
        "_alive_at",
        "_answer_bucket",
        "_answered",
        "_answering",
        "_answers_pings",
        "_bad_bucket",
        "_bytes_bucket",
        "_cap",
        "_closing",
        "_complained",
        "_dropped",
        "_filtering",
        "_flooding",
        "_joining",
        "_keeping_alive",
        "_lag",
        "_lines_bucket",
        "_metered",
        "_nick_bucket",
        "_partial",
        "_pumping",
        "_running",
        "_send_queue",
        "_timer",
        "_waiting",
        "budget_key",
        "clock",
        "connection",
        "held",
        "host",
        "limits",
        "member",
        "meter",
        "room",
        "sessions",
        "transport",
    )

    def __init__(
        self, sessions: Sessions, connection: Connection, transport: str = "unknown", pings: bool = False
    ) -> None:
        """
        @param transport: The transport's kind, for the metrics.
        @param pings: Whether the transport's protocol answers pings by
            itself (IRC's PING); otherwise only a client that once answered
            one (C{/pong}) is pinged.
        """
        self.sessions = sessions
        self.transport = transport
        self.meter = sessions.meter
        self._metered = not isinstance(sessions.meter, NoMeter)
        self.room = sessions.room
        self.connection = connection
        self.clock = clock = sessions.clock
        limits = self.limits = sessions.limits
        self._send_queue = limits.send_queue
        self.host = connection.host
        # What the address's byte budget is kept under (once, not for every line).
        self.budget_key = sessions.address_of(self.host)
        self.member: MemberRecord | None = None
        # Read for every delivery, kept here so that one touches no other
        # object (in a big room each would be cold in the cache): the
        # send-queue cap (0 outside the room) and whether filters are set.
        self._cap = 0
        self._filtering = False
        self._admitted = False
        self._complained = False
        self._flooding = 0
        self._lines_bucket = TokenBucket(clock, limits.flood_rate, limits.flood_burst)
        self._nick_bucket = TokenBucket(clock, limits.nick_rate, limits.nick_burst)
        self._bad_bucket = TokenBucket(clock, limits.bad_input_rate, limits.bad_input_burst)
        self._bytes_bucket = TokenBucket(clock, limits.byte_rate, limits.byte_burst)
        self._answer_bucket = TokenBucket(clock, limits.answer_rate, limits.answer_burst)
        self._timer: IDelayedCall | None = None
        # Whether the timer is the keepalive's, and when the last line came.
        self._keeping_alive = False
        self._alive_at = 0.0
        self._lag: IDelayedCall | None = None
        self._running = False
        self._pumping = False
        self._waiting: deque[Command] = deque()
        self._dropped = False
        self._closing = False
        # Whether the client has answered a ping (sent /pong): only then is it pinged.
        self._answers_pings = pings
        # Bytes of answers to the command being carried out, while it runs.
        self._answering = False
        self._answered = 0
        # Bytes this session holds: its send queue and its partial line.
        self.held = 0
        self._partial = 0
        # Joining takes a round trip with a shared member directory: lines
        # that come meanwhile wait for it.
        self._joining = False

    # The connection's life, as its transport reports it

    def opened(self, handshake: bool) -> bool:
        """
        The connection is open; admit it or turn it away.

        @param handshake: Whether a (TLS) handshake comes first; then the
            transport calls L{ready} once it is done, else call it now.
        @return: Whether it was admitted.
        """
        self.sessions.opened(self)
        if handshake:
            # Also bounds a refused client that never finishes its handshake.
            self._set_timer(self.limits.handshake_timeout, self._time_out, "TLS handshake timeout")
        refusal = self.sessions.connections.admit(self.host)
        if refusal is not None:
            self.log.info("refused {host}: {why}", host=self.host, why=refusal)
            self._send(ErrorReply(self.clock.seconds(), refusal))
            self.connection.close()
            return False
        self._admitted = True
        if handshake:
            self.sessions.handshake_started(self)
        return True

    def ready(self) -> None:
        """
        The connection can carry lines (its handshake is done): join the
        room, unless the address is banned.
        """
        self.sessions.handshake_done(self)
        if not self._admitted or self.member is not None or self._closing:
            return
        # Joining takes a store round trip; it must not take for ever.
        self._set_timer(self.limits.first_line_timeout, self._time_out, "could not join in time")
        refusal = self.room.refusal(self.host)
        if refusal is not None:
            self.log.info("refused a connection from banned {host}", host=self.host)
            self._send(refusal)
            self.close()
            return
        self._joining = True
        self.room.join(self, self.host, self.connection.port).addCallbacks(self._joined, self._join_failed)

    def _joined(self, member: MemberRecord) -> None:
        self._joining = False
        if self._closing:
            # The connection went while the room let it in.
            self.room.leave(member, "connection lost")
            return
        self._member_is(member)
        self.meter.member_joined(self.transport)
        self.log.info(
            "{name} (#{member_id}) joined from {address}",
            name=member.name,
            member_id=member.id,
            address=member.address,
        )
        # A member may only read: no deadline for its first line, and no
        # pings until it has shown it answers them (TCP keepalive finds a
        # vanished peer), unless its protocol always does (IRC).
        if self._answers_pings:
            self._keep_alive()
        else:
            self._set_timer(0, None)
        # Lines that came while the join took its round trip, in order.
        self._pump()

    def _join_failed(self, failure: Failure) -> None:
        self._joining = False
        self._waiting.clear()
        if failure.check(ChatError):
            # A store that cannot take members now (it says why).
            self.log.info("could not join {host}: {why}", host=self.host, why=str(failure.value))
            self._send(ErrorReply(self.clock.seconds(), str(failure.value)))
        else:
            self.log.failure("joining {host} to the room failed", failure, host=self.host)
            self._send(ErrorReply(self.clock.seconds(), "internal error: could not join the room"))
        self.close()

    def lost(self, clean: bool) -> None:
        """
        The connection is gone (C{clean}: closed in an orderly way).
        """
        self._closing = True
        self._waiting.clear()
        self._set_timer(0, None)
        self._stop_lag()
        self._partial = 0
        self._account(0)
        if self._admitted:
            self._admitted = False
            self.sessions.connections.release(self.host)
        self.sessions.forget(self)
        member = self.member
        self._member_is(None)
        if member is not None:
            self.meter.member_left(self.transport)
            self.room.leave(member, "disconnected" if clean else "connection lost")
            self.log.info("{name} left", name=member.name)

    def _member_is(self, member: MemberRecord | None) -> None:
        self.member = member
        self._cap = self._send_queue if member is not None else 0
        self._filtering = member is not None and bool(member.filters)

    # Input, as the transport decodes it

    def line_received(self) -> bool:
        """
        Count one line from the client, whatever it holds.

        @return: Whether to go on with it: the member is in the room, not
            leaving, and not flooding.
        """
        member = self.member
        if self._closing:
            return False
        if member is None:
            # Kept for the join under way (flood control still counts it).
            return self._joining and self._lines_bucket.take()
        if self._answers_pings:
            self._keep_alive()
        if not self._lines_bucket.take():
            return self._flood(f"at most {self.limits.flood_rate:g} lines per second")
        return True

    def text_received(self, size: int) -> bool:
        """
        Count C{size} bytes of one line's text, as normalised (after
        L{line_received} let the line through).

        @return: Whether to go on with it: neither this connection nor its
            address has sent more bytes than it may.
        """
        if self._closing or (self.member is None and not self._joining):
            return False
        if not self._bytes_bucket.take(size):
            return self._flood(f"at most {self.limits.byte_rate:g} bytes per second")
        if self.budget_key and not self.sessions.address_bucket(self.budget_key).take(size):
            return self._flood(
                f"at most {self.limits.address_byte_rate:g} bytes per second from your address"
            )
        # Within every budget: the next refusal is a new flood, told once.
        self._flooding = 0
        return True

    def _flood(self, limit: str) -> bool:
        self.meter.flood_refused(self.transport)
        self._flooding += 1
        if self.limits.flood_kick and self._flooding >= self.limits.flood_kick:
            self.drop("kicked for flooding")
        elif self._flooding == 1:
            self.reply(f"flood: slow down, {limit}")
        return False

    def buffering(self, size: int) -> None:
        """
        The transport holds C{size} bytes of a partial line from the client.
        """
        self._partial = size
        self._account(self.connection.queued())

    def drained(self) -> None:
        """
        The connection's send queue has drained.
        """
        self._account(0)

    def release(self) -> None:
        """
        The connection was aborted: what it held is let go.
        """
        self._partial = 0
        self._account(0)

    def _account(self, queued: int) -> None:
        held = queued + self._partial
        if held != self.held:
            before, self.held = self.held, held
            self.sessions.held_changed(held - before)

    def bad_input(self, reply: str, what: str) -> None:
        """
        The client sent a line that cannot be a command (C{what}): reply,
        and drop a client that keeps doing it.
        """
        member = self.member
        if member is None or self._closing:
            return
        if not self._bad_bucket.take():
            self.drop(f"too much bad input ({what})")
            return
        self.reply(reply)
        if not self._complained:
            # Logged once per connection: a client repeating it is not news.
            self._complained = True
            self.log.info("{name} sent {what}", name=member.name, what=what)

    def run(self, command: Command) -> None:
        """
        Carry out C{command}, after any earlier command still under way.
        """
        if self._closing:
            return
        if self._joining and self.member is None:
            if len(self._waiting) >= MAX_WAITING:
                return
            self._waiting.append(command)
            return
        if self.member is None:
            return
        if len(self._waiting) >= MAX_WAITING:
            self.reply("too many commands at once: wait for the answers", command=command.name)
            return
        self._waiting.append(command)
        self._pump()

    def _pump(self) -> None:
        # Commands run one at a time, in order: later ones wait while one is
        # under way (a store or a password check takes a round trip) or
        # while the answers so far are paid for (fake lag).
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._waiting and not self._running and self.member is not None and not self._closing:
                self._execute(self._waiting.popleft())
        finally:
            self._pumping = False

    def _execute(self, command: Command) -> None:
        member = self.member
        assert member is not None
        if command.name == "pong":
            if not self._answers_pings:
                self._answers_pings = True
                self._keep_alive()
            return
        renaming = command.name == "nick"
        filters = len(member.filters) if command.name in FILTER_COMMANDS else None
        self._answering, self._answered = True, 0
        try:
            if renaming:
                self._check_rename(member, command.args[0])
            result = self.room.execute(member, command)
        except Exception:
            self._failed(Failure(), command, member)
            renaming = False
            result = None
        finally:
            self._answering = False
        if filters is not None:
            # Filters change only by the member's own /filter and /unfilter.
            self._filtering = bool(member.filters)
        if filters is not None and filters != len(member.filters):
            # The member's filter pattern was built again: charged like an
            # answer of a few times its size, so changing filters over and
            # over is paid for by the one who does it.
            self._answered += FILTER_COST * sum(map(len, member.filters))
        # A command costs what its answers weigh.
        self._answer_bucket.charge(self._answered)
        if result is None:
            if renaming:
                self._nick_bucket.take()
            self._lag_if_owed()
            return
        self._running = True
        if renaming:
            # Only a rename that happens uses up the allowance.
            result.addCallback(lambda ignored: self._nick_bucket.take())
        result.addErrback(self._failed, command, member)
        result.addBoth(self._finished)

    def _check_rename(self, member: MemberRecord, name: str) -> None:
        problem = self.room.rename_problem(member, name)
        if problem is not None:
            raise problem
        wait = self._nick_bucket.wait(1.0)
        if wait > 0:
            raise ChatError(f"too many name changes: wait {math.ceil(wait)}s before the next")

    def _finished(self, result: object) -> None:
        self._running = False
        self._lag_if_owed()
        self._pump()

    def _lag_if_owed(self) -> None:
        wait = self._answer_bucket.wait()
        if wait > 0 and not self._closing:
            self._running = True
            self._lag = self.clock.callLater(wait, self._lag_over)

    def _lag_over(self) -> None:
        self._lag = None
        self._running = False
        self._pump()

    def _stop_lag(self) -> None:
        if self._lag is not None and self._lag.active():
            self._lag.cancel()
        self._lag = None

    def _failed(self, failure: Failure, command: Command, member: MemberRecord) -> None:
        if failure.check(ChatError):
            self.reply(str(failure.value), member, getattr(failure.value, "code", ""), command.name)
            return
        # A bug in one handler must not take the connection or the room down.
        self.log.failure("command {command!r} from {name} failed", failure, command=command, name=member.name)
        self.reply("internal error: the command failed", member, command=command.name)

    def reply(self, text: str, member: MemberRecord | None = None, code: str = "", command: str = "") -> None:
        """
        Tell this session's member C{text} as an error reply (if C{member}
        is given: only while that member is still this session's), with
        the L{ChatError} C{code} and the name of the failed C{command}, if
        any.
        """
        if self.member is not None and (member is None or member is self.member):
            self.receive(ErrorReply(self.clock.seconds(), text, code, command))

    # The member's side of the fan-out (a Recipient)

    def receive(self, event: Event) -> None:
        if self._filtering and isinstance(event, ChatEvent) and self._hides(event):
            return
        # Not a bound method kept here: one object more to bring into the cache.
        size = self.connection.deliver(event, self._cap)
        if size < 0:
            # The client is not reading: drop it rather than buffer forever.
            self.drop(f"send queue over {self._send_queue} bytes: not reading", past_cap=True)
            return
        if self._answering and not isinstance(event, ChatEvent | Sealed | GroupSealed):
            self._answered += size
        if self._metered:
            self.meter.delivered(self.transport, size)

    def _hides(self, event: ChatEvent) -> bool:
        # The member's own lines always come back to it.
        member = self.member
        return (
            member is not None
            and event.sender != member.name
            and member.hides_folded(self.sessions.folded(event))
        )

    def queue_grew(self, queued: int) -> None:
        """
        The connection's send queue grew to C{queued} bytes that the client
        has not taken.
        """
        self._account(queued)

    def _send(self, event: Event) -> None:
        # Outside the room (a refusal): no member, no cap to mind.
        self.connection.deliver(event, 0)

    def close(self) -> None:
        """
        The room has let the member go (quit, kick, ban, shutdown): lines
        still arriving before the connection ends must not act for it.
        """
        self._closing = True
        self._waiting.clear()
        self.connection.close()

    # Ending it

    def drop(self, reason: str, at_once: bool = False, past_cap: bool = False) -> None:
        """
        Remove the client from the room, telling it and everyone why, and
        close the connection: after its output drains (within
        L{DROP_GRACE} seconds), or C{at_once} (then only the others are
        told).

        @param past_cap: The send queue is full: the line that says why is
            written past the cap, the last one the client gets.
        """
        if self._dropped:
            if at_once:
                self.abort()
            return
        self._dropped = True
        self.meter.dropped(self.transport, reason)
        member = self.member
        if member is not None:
            self.meter.member_left(self.transport)
            if past_cap:
                self.connection.deliver(ErrorReply(self.clock.seconds(), f"disconnected: {reason}"), 0)
            elif not at_once:
                self.reply(f"disconnected: {reason}")
            self._member_is(None)
            self.room.leave(member, reason)
            self.log.info("dropped {name}: {why}", name=member.name, why=reason)
        if at_once:
            self.abort()
        else:
            self.close()
            self._set_timer(DROP_GRACE, self.abort)

    def abort(self) -> None:
        """
        Close the connection at once, dropping unsent output.
        """
        self._closing = True
        self._stop_lag()
        self.connection.abort()

    # Timeouts and keepalive

    def _set_timer(self, delay: float, call: Callable[..., object] | None, *args: Any) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, call, *args) if delay > 0 and call else None
        self._keeping_alive = False

    def _keep_alive(self) -> None:
        # A line shows the client is alive: the keepalive starts over. The
        # timer stays: when it fires it waits out what is left since the
        # last line, so a busy client costs no new timer per line.
        self._alive_at = self.clock.seconds()
        if not self._keeping_alive:
            self._set_timer(self.limits.ping_interval, self._ping)
            self._keeping_alive = True

    def _time_out(self, reason: str) -> None:
        if self.member is None:
            self.log.info("{host}: {why}", host=self.host, why=reason)
            self.meter.dropped(self.transport, reason)
            self.abort()
        else:
            self.drop(reason)

    def _ping(self) -> None:
        if self.member is None or not self._answers_pings:
            return
        left = self._alive_at + self.limits.ping_interval - self.clock.seconds()
        if left > 0:
            self._set_timer(left, self._ping)
            self._keeping_alive = True
            return
        token = f"{self.clock.seconds():.0f}"
        self.receive(Ping(self.clock.seconds(), token))
        self._set_timer(self.limits.ping_timeout, self._time_out, "ping timeout")


class Sessions:
    """
    The open sessions of one daemon process, on every transport.

    Memory: every session's send queue (past what its socket holds) and
    partial line count against one budget, C{limits.memory_budget}. Past
    it, the sessions holding the most are dropped at once, largest first,
    until the total is back under nine tenths of the budget; what a single
    client may hold is bounded by the send-queue cap and the line length.

    @ivar open: Every session whose connection is not yet lost, joined or not.
    @ivar held: Bytes all sessions hold together (send queues and partial lines).
    """

    log = Logger()

    def __init__(
        self,
        room: Room,
        clock: IReactorTime,
        limits: ClientLimits | None = None,
        connection_limits: ConnectionLimits | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.room = room
        self.clock = clock
        self.meter: Meter = meter if meter is not None else NoMeter()
        self.limits = limits if limits is not None else ClientLimits()
        self.connection_limits = connection_limits or ConnectionLimits()
        self.connections = ConnectionCounter(clock, self.connection_limits)
        self.open: set[Session] = set()
        self.held = 0
        self._peak = 0
        self._enforcing = False
        # Oldest first: the one closed when too many are in their handshake.
        self._handshaking: dict[Session, None] = {}
        self._address_buckets: dict[str, TokenBucket] = {}
        self._folded_event: Event | None = None
        self._folded = ""
        self._drained: list[Deferred[None]] = []

    def session(self, connection: Connection, transport: str = "unknown", pings: bool = False) -> Session:
        """
        A new session for C{connection} of transport kind C{transport}
        (see L{Session.__init__}); call its L{Session.opened} next.
        """
        return Session(self, connection, transport, pings)

    def opened(self, session: Session) -> None:
        if session not in self.open:
            self.meter.connection_opened(session.transport)
        self.open.add(session)

    def handshake_started(self, session: Session) -> None:
        """
        C{session} is admitted and starts its handshake; past the cap of
        handshakes at once, the oldest still in its handshake is closed.
        """
        cap = self.connection_limits.handshakes
        while cap and len(self._handshaking) >= cap:
            oldest = next(iter(self._handshaking))
            del self._handshaking[oldest]
            self.log.info("{host}: too many handshakes at once, closed the oldest", host=oldest.host)
            oldest.abort()
        self._handshaking[session] = None

    def handshake_done(self, session: Session) -> None:
        self._handshaking.pop(session, None)

    @property
    def handshaking(self) -> int:
        """
        How many connections are in their handshake.
        """
        return len(self._handshaking)

    def address_of(self, host: str) -> str:
        """
        What C{host}'s byte budget is kept under (L{address_key}), or an
        empty string if the address is exempt from it.
        """
        if self.connection_limits.exempt_loopback and is_loopback(host):
            return ""
        return address_key(host)

    def address_bucket(self, key: str) -> TokenBucket:
        """
        The byte budget all connections from the address C{key}
        (L{address_of}) share.
        """
        bucket = self._address_buckets.get(key)
        if bucket is None:
            self._forget_address_buckets(2)
            limits = self.limits
            bucket = self._address_buckets[key] = TokenBucket(
                self.clock, limits.address_byte_rate, limits.address_byte_burst
            )
        return bucket

    @property
    def address_budgets(self) -> int:
        """
        How many addresses' byte budgets are kept.
        """
        return len(self._address_buckets)

    def _forget_address_buckets(self, most: int) -> None:
        # A bucket outlives its address's connections until it is full again
        # (reconnecting does not refill it); the oldest few are looked at
        # whenever one is made, so there are about as many as addresses.
        buckets = self._address_buckets
        for key in list(itertools.islice(buckets, most)):
            bucket = buckets.pop(key)
            if not bucket.full() or self.connections.open_from(key) > 0:
                # Still in use: to the back of the line.
                buckets[key] = bucket

    def folded(self, event: ChatEvent) -> str:
        """
        C{event}'s filtered text, casefolded: once per event, however many
        members' filters look at it.
        """
        if event is not self._folded_event:
            self._folded = event.filtered_text.casefold()
            self._folded_event = event
        return self._folded

    def held_changed(self, delta: int) -> None:
        """
        A session holds C{delta} more bytes; past the budget, drop the
        largest holders.
        """
        self.held += delta
        if self.held > self._peak:
            self._peak = self.held
        budget = self.limits.memory_budget
        if not budget or self.held <= budget or self._enforcing:
            return
        self._enforcing = True
        try:
            for session in sorted(self.open, key=lambda s: s.held, reverse=True):
                if self.held <= budget * 0.9 or session.held == 0:
                    break
                self.log.warn(
                    "memory budget of {budget} bytes exceeded: dropping {host}, holding {held}",
                    budget=budget,
                    host=session.host,
                    held=session.held,
                )
                session.drop(f"server memory budget exceeded: you held {session.held} bytes", at_once=True)
                session.release()
        finally:
            self._enforcing = False

    def take_peak(self) -> int:
        """
        The most L{held} has been since the last call.
        """
        peak, self._peak = self._peak, self.held
        return peak

    def forget(self, session: Session) -> None:
        """
        Note that C{session}'s connection is gone.
        """
        if session in self.open:
            self.meter.connection_closed(session.transport)
        self.open.discard(session)
        self._handshaking.pop(session, None)
        if self._address_buckets and self.connections.open_from(session.host) == 0:
            bucket = self._address_buckets.get(session.budget_key)
            if bucket is not None and bucket.full():
                del self._address_buckets[session.budget_key]
        if not self.open:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def close_all(self, event: Event, grace: float) -> Deferred[None]:
        """
        Tell every member C{event} and close every connection, giving output
        C{grace} seconds to drain before aborting what is left.

        @return: Fires once every connection is gone.
        """
        self.room.close(event)
        if not self.open:
            return succeed(None)
        drained: Deferred[None] = Deferred()
        self._drained.append(drained)
        for session in list(self.open):
            if session.member is None:
                session.abort()
        timer = self.clock.callLater(grace, self._abort_all)

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        drained.addBoth(stop_timer)
        return drained

    def _abort_all(self) -> None:
        for session in list(self.open):
            session.abort()
