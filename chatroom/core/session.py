"""
The per-connection policy every transport shares.

A transport frames and decodes its protocol and hands each client line to a
L{Session}; the session does everything else: admission, the handshake and
first-line deadlines, keepalive pings, flood control (lines, names, bad
input), the send-queue cap, joining and leaving the room, running commands
in order, and turning every broken rule into one error reply, in one place.
L{Sessions} keeps the open sessions of one process, counts connections per
address and closes them all at shutdown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.core.commands import Command
from chatroom.core.errors import ChatError
from chatroom.core.events import ChatEvent, ErrorReply, Event, Ping
from chatroom.core.ports import Connection, MemberRecord
from chatroom.core.room import Room
from chatroom.limits import ClientLimits, ConnectionCounter, ConnectionLimits, TokenBucket

# Seconds a dropped client's last lines get to drain before the connection is aborted.
DROP_GRACE = 10.0
# Commands waiting while an earlier one of the same member finishes (a
# store round trip, a password check); flood control keeps it far lower.
MAX_WAITING = 100


class Session:
    """
    One client connection's life in the room, whatever its transport.

    @ivar member: The member, once joined and until it leaves.
    """

    log = Logger()

    def __init__(self, sessions: Sessions, connection: Connection) -> None:
        self.sessions = sessions
        self.room = sessions.room
        self.connection = connection
        self.clock = clock = sessions.clock
        limits = self.limits = sessions.limits
        self.host = connection.host
        self.member: MemberRecord | None = None
        self._admitted = False
        self._complained = False
        self._flooding = 0
        self._lines_bucket = TokenBucket(clock, limits.flood_rate, limits.flood_burst)
        self._nick_bucket = TokenBucket(clock, limits.nick_rate, limits.nick_burst)
        self._bad_bucket = TokenBucket(clock, limits.bad_input_rate, limits.bad_input_burst)
        self._timer: IDelayedCall | None = None
        self._running = False
        self._waiting: deque[Command] = deque()
        self._dropped = False
        self._closing = False
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
        return True

    def ready(self) -> None:
        """
        The connection can carry lines (its handshake is done): join the
        room, unless the address is banned.
        """
        if not self._admitted or self.member is not None or self._closing:
            return
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
        self.member = member
        self.log.info("{name} joined from {address}", name=member.name, address=member.address)
        self._set_timer(self.limits.first_line_timeout, self._time_out, "no line received in time")
        if self._waiting:
            self._set_timer(self.limits.ping_interval, self._ping)
            self.run(self._waiting.popleft())

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
        self.sessions.forget(self)
        if self._admitted:
            self._admitted = False
            self.sessions.connections.release(self.host)
        member, self.member = self.member, None
        if member is not None:
            self.room.leave(member, "disconnected" if clean else "connection lost")
            self.log.info("{name} left", name=member.name)

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
        # Any line shows the client is alive: the keepalive starts over.
        self._set_timer(self.limits.ping_interval, self._ping)
        if not self._lines_bucket.take():
            self._flooding += 1
            if self.limits.flood_kick and self._flooding >= self.limits.flood_kick:
                self.drop("kicked for flooding")
            elif self._flooding == 1:
                self.reply(f"flood: slow down, at most {self.limits.flood_rate:g} lines per second")
            return False
        self._flooding = 0
        return True

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
        if self._running:
            if len(self._waiting) >= MAX_WAITING:
                self.reply("too many commands at once: wait for the answers")
                return
            self._waiting.append(command)
            return
        self._execute(command)
        while self._waiting and not self._running and self.member is not None and not self._closing:
            self._execute(self._waiting.popleft())

    def _execute(self, command: Command) -> None:
        member = self.member
        assert member is not None
        if command.name == "pong":
            return
        try:
            if command.name == "nick" and not self._nick_bucket.take():
                raise ChatError("too many name changes: wait a little before the next")
            result = self.room.execute(member, command)
        except Exception:
            self._failed(Failure(), command, member)
            return
        if result is None:
            return
        # Commands run one at a time: later ones wait until this one is done
        # (at once, unless a store or a password check takes a round trip).
        self._running = True
        result.addErrback(self._failed, command, member)
        result.addBoth(self._finished)

    def _finished(self, result: object) -> None:
        self._running = False
        if self._waiting and self.member is not None and not self._closing:
            self.run(self._waiting.popleft())

    def _failed(self, failure: Failure, command: Command, member: MemberRecord) -> None:
        if failure.check(ChatError):
            self.reply(str(failure.value), member)
            return
        # A bug in one handler must not take the connection or the room down.
        self.log.failure("command {command!r} from {name} failed", failure, command=command, name=member.name)
        self.reply("internal error: the command failed", member)

    def reply(self, text: str, member: MemberRecord | None = None) -> None:
        """
        Tell this session's member C{text} as an error reply (if C{member}
        is given: only while that member is still this session's).
        """
        if self.member is not None and (member is None or member is self.member):
            self.receive(ErrorReply(self.clock.seconds(), text))

    # The member's side of the fan-out (a Recipient)

    def receive(self, event: Event) -> None:
        member = self.member
        if (
            member is not None
            and member.filters
            and isinstance(event, ChatEvent)
            and event.sender != member.name
            and member.hides(event.filtered_text)
        ):
            return
        connection = self.connection
        data = connection.encode(event)
        cap = self.limits.send_queue
        if cap and connection.queued() + len(data) > cap:
            # The client is not reading: drop it rather than buffer forever.
            self.drop(f"send queue over {cap} bytes: not reading", at_once=True)
            return
        connection.write(data)

    def _send(self, event: Event) -> None:
        # Outside the room (a refusal): no member, no cap to mind.
        self.connection.write(self.connection.encode(event))

    def close(self) -> None:
        """
        The room has let the member go (quit, kick, ban, shutdown): lines
        still arriving before the connection ends must not act for it.
        """
        self._closing = True
        self._waiting.clear()
        self.connection.close()

    # Ending it

    def drop(self, reason: str, at_once: bool = False) -> None:
        """
        Remove the client from the room, telling it and everyone why, and
        close the connection: after its output drains (within
        L{DROP_GRACE} seconds), or C{at_once} for a client that is not
        reading anyway.
        """
        if self._dropped:
            return
        self._dropped = True
        member = self.member
        if member is not None:
            if not at_once:
                self.reply(f"disconnected: {reason}")
            self.member = None
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
        self.connection.abort()

    # Timeouts and keepalive

    def _set_timer(self, delay: float, call: Callable[..., object] | None, *args: Any) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(delay, call, *args) if delay > 0 and call else None

    def _time_out(self, reason: str) -> None:
        if self.member is None:
            self.log.info("{host}: {why}", host=self.host, why=reason)
            self.abort()
        else:
            self.drop(reason)

    def _ping(self) -> None:
        if self.member is None:
            return
        token = f"{self.clock.seconds():.0f}"
        self.receive(Ping(self.clock.seconds(), token))
        self._set_timer(self.limits.ping_timeout, self._time_out, "ping timeout")


class Sessions:
    """
    The open sessions of one daemon process, on every transport.

    @ivar open: Every session whose connection is not yet lost, joined or not.
    """

    def __init__(
        self,
        room: Room,
        clock: IReactorTime,
        limits: ClientLimits | None = None,
        connection_limits: ConnectionLimits | None = None,
    ) -> None:
        self.room = room
        self.clock = clock
        self.limits = limits if limits is not None else ClientLimits()
        self.connections = ConnectionCounter(clock, connection_limits or ConnectionLimits())
        self.open: set[Session] = set()
        self._drained: list[Deferred[None]] = []

    def session(self, connection: Connection) -> Session:
        """
        A new session for C{connection}; call its L{Session.opened} next.
        """
        return Session(self, connection)

    def opened(self, session: Session) -> None:
        self.open.add(session)

    def forget(self, session: Session) -> None:
        """
        Note that C{session}'s connection is gone.
        """
        self.open.discard(session)
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
