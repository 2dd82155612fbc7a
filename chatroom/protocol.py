"""
The per-connection protocol: bytes in, lines out, and nothing else.

L{ChatProtocol} frames and decodes lines, hands each one to the command
parser and the room, and turns every rule broken into one error line. It
also enforces the per-connection limits of L{chatroom.limits}: admission,
timeouts, keepalive, flood control and the send-queue cap. The room's rules
live in L{chatroom.room}; the line format in L{chatroom.wire}.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom.commands import ParseError, parse_command
from chatroom.limits import ClientLimits, ConnectionCounter, ConnectionLimits, TokenBucket
from chatroom.room import ChatError, Member, Room
from chatroom.wire import SERVER_SOURCE, Kind, has_control_characters, normalize_text
from chatroom.writer import LineWriter, TurnFlusher

# The longest line a client may send, in bytes, line ending excluded. 4 KiB
# holds a long paragraph even in 4-byte UTF-8 characters, while keeping what
# one connection can make the server buffer small.
MAX_LINE_BYTES = 4096
# Seconds a dropped client's last lines get to drain before the connection is aborted.
DROP_GRACE = 10.0


class _Transport(Protocol):
    """
    What this protocol uses of its (TCP or TLS) transport.
    """

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...


@implementer(IPushProducer)
class _SendQueueWatch:
    """
    Registered with the transport so that it says when its write buffer is
    full (paused) and drained again (resumed).

    @ivar queued: Bytes written while paused.
    """

    def __init__(self) -> None:
        self.paused = False
        self.queued = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.queued = 0

    def stopProducing(self) -> None:
        self.resumeProducing()


@implementer(IHandshakeListener)
class ChatProtocol(LineReceiver):
    """
    One client connection to the room.

    The client joins the room once its TLS handshake is complete (at once
    over a plain transport, as in tests), so a failed handshake is never
    announced to anyone.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE_BYTES
    too_long = f"line too long: at most {MAX_LINE_BYTES} bytes per line"
    log = Logger()

    def __init__(self, factory: ChatFactory) -> None:
        self.factory = factory
        self.room = factory.room
        self.limits = factory.limits
        clock = factory.clock
        self.clock = clock
        self.member: Member | None = None
        self.host = "?"
        self._admitted = False
        self._discarding = False
        self._leftover = b""
        self._complained = False
        self._watch = _SendQueueWatch()
        self._flooding = 0
        self._lines_bucket = TokenBucket(clock, self.limits.flood_rate, self.limits.flood_burst)
        self._nick_bucket = TokenBucket(clock, self.limits.nick_rate, self.limits.nick_burst)
        self._bad_bucket = TokenBucket(clock, self.limits.bad_input_rate, self.limits.bad_input_burst)
        self._timer: IDelayedCall | None = None
        self._dropped = False
        self._closing = False

    # Connection events

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self._transport: _Transport = transport
        flusher = self.factory.flusher
        self._writer = flusher.writer(transport) if flusher else LineWriter(transport)
        peer: Any = transport.getPeer()
        self.host, self.port = getattr(peer, "host", "?"), getattr(peer, "port", 0)
        self.factory.connections_open.add(self)
        tls = ISSLTransport.providedBy(transport)
        if tls:
            # Also bounds a refused client that never finishes its handshake.
            self._set_timer(self.limits.handshake_timeout, self._time_out, "TLS handshake timeout")
        refusal = self.factory.connections.admit(self.host)
        if refusal is not None:
            self.log.info("refused {host}: {why}", host=self.host, why=refusal)
            self._say_and_close(refusal)
            return
        self._admitted = True
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            # Without it Nagle's algorithm and delayed ACKs hold back lines.
            set_no_delay(True)
        transport.registerProducer(self._watch, True)
        if not tls:
            self._join()

    def handshakeCompleted(self) -> None:
        if self._admitted and self.member is None:
            self._join()

    def _join(self) -> None:
        refusal = self.room.moderation.refusal(self.host)
        if refusal is not None:
            self.log.info("refused a connection from banned {host}", host=self.host)
            self.deliver(refusal)
            self.close()
            return
        self.member = self.room.join(self, self.host, self.port)
        self.log.info("{name} joined from {address}", name=self.member.name, address=self.member.address)
        self._set_timer(self.limits.first_line_timeout, self._time_out, "no line received in time")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._writer.discard()
        self._set_timer(0, None)
        self.factory.forget(self)
        if self._admitted:
            self._admitted = False
            self.factory.connections.release(self.host)
        member, self.member = self.member, None
        if member is not None:
            clean = reason.check(ConnectionDone) is not None
            self.room.leave(member, "disconnected" if clean else "connection lost")
            self.log.info("{name} left", name=member.name)

    # Recipient, for the room

    def deliver(self, line: bytes) -> None:
        watch = self._watch
        if watch.paused:
            # The client is not reading: count what piles up, and drop it
            # once that passes the cap, so it cannot make us buffer forever.
            watch.queued += len(line)
            if watch.queued > self.limits.send_queue:
                self.drop(f"send queue over {self.limits.send_queue} bytes: not reading", at_once=True)
                return
        self._writer.write(line)

    def close(self) -> None:
        # The room has let the member go (quit, kick, ban, shutdown): lines
        # still arriving before the connection ends must not act for it.
        self._closing = True
        # A registered producer would hold the connection open forever.
        self._transport.unregisterProducer()
        self._writer.close()

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
        member, self.member = self.member, None
        if member is not None:
            if not at_once:
                self.room.tell(member, Kind.ERROR, f"disconnected: {reason}")
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
        self._writer.discard()
        self._transport.abortConnection()

    def _say_and_close(self, text: str) -> None:
        self._transport.write(self.room.line(Kind.ERROR, SERVER_SOURCE, text))
        self._transport.loseConnection()

    # Timeouts and keepalive

    def _set_timer(self, delay: float, call: Any, *args: Any) -> None:
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
        self.room.tell(self.member, Kind.PING, f"reply with /pong {token}", (token,))
        self._set_timer(self.limits.ping_timeout, self._time_out, "ping timeout")

    # Framing

    def dataReceived(self, data: bytes) -> None:
        while data:
            if self._discarding:
                # The rest of an over-long line: drop it up to its end.
                end = data.find(self.delimiter)
                if end < 0:
                    return
                self._discarding = False
                data = data[end + 1 :]
                continue
            super().dataReceived(data)
            data, self._leftover = self._leftover, b""

    def lineLengthExceeded(self, line: bytes) -> None:
        # Either the buffer filled up with no line end (drop until one
        # comes), or a complete line was too long (go on after it).
        end = line.find(self.delimiter)
        if end < 0:
            self._discarding = True
        else:
            self._leftover = line[end + 1 :]
        self._refuse(self.too_long, "an over-long line")

    def lineReceived(self, line: bytes) -> None:
        member = self.member
        if member is None or self._closing:
            return
        # Any line shows the client is alive: the keepalive starts over.
        self._set_timer(self.limits.ping_interval, self._ping)
        if not self._lines_bucket.take():
            self._flooding += 1
            if self.limits.flood_kick and self._flooding >= self.limits.flood_kick:
                self.drop("kicked for flooding")
            elif self._flooding == 1:
                rate = self.limits.flood_rate
                self.room.tell(member, Kind.ERROR, f"flood: slow down, at most {rate:g} lines per second")
            return
        self._flooding = 0
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse("invalid UTF-8: send text encoded as UTF-8", "invalid UTF-8")
            return
        if has_control_characters(text):
            self._refuse("control characters are not allowed in a line", "control characters")
            return
        try:
            command = parse_command(normalize_text(text))
            if command.name == "pong":
                return
            if command.name == "nick" and not self._nick_bucket.take():
                raise ChatError("too many name changes: wait a little before the next")
            self.room.execute(member, command)
        except (ParseError, ChatError) as e:
            self.room.tell(member, Kind.ERROR, str(e))
        except Exception:
            # A bug in one handler must not take the connection or the room down.
            self.log.failure("command {line!r} from {name} failed", line=text, name=member.name)
            self.room.tell(member, Kind.ERROR, "internal error: the command failed")

    def _refuse(self, reply: str, what: str) -> None:
        if self.member is None:
            return
        if not self._bad_bucket.take():
            self.drop(f"too much bad input ({what})")
            return
        self.room.tell(self.member, Kind.ERROR, reply)
        if not self._complained:
            # Logged once per connection: a client repeating it is not news.
            self._complained = True
            self.log.info("{name} sent {what}", name=self.member.name, what=what)


class ChatFactory(ServerFactory):
    """
    Builds a L{ChatProtocol} for every connection, all sharing one room.

    @ivar connections_open: Every connection not yet lost, joined or not.
    """

    noisy = False

    def __init__(
        self,
        room: Room,
        limits: ClientLimits | None = None,
        connection_limits: ConnectionLimits | None = None,
        clock: IReactorTime | None = None,
        flusher: TurnFlusher | None = None,
    ) -> None:
        """
        @param flusher: Batches each connection's lines into one write per
            reactor turn; without it every line is written at once.
        """
        self.room = room
        self.flusher = flusher
        self.clock = clock if clock is not None else room.clock
        self.limits = limits if limits is not None else ClientLimits()
        self.connections = ConnectionCounter(self.clock, connection_limits or ConnectionLimits())
        self.connections_open: set[ChatProtocol] = set()

        self._drained: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> ChatProtocol:
        return ChatProtocol(self)

    def forget(self, protocol: ChatProtocol) -> None:
        """
        Note that C{protocol}'s connection is gone.
        """
        self.connections_open.discard(protocol)
        if not self.connections_open:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def close_all(self, text: str, grace: float) -> Deferred[None]:
        """
        Tell every member C{text} and close every connection, giving output
        C{grace} seconds to drain before aborting what is left.

        @return: Fires once every connection is gone.
        """
        self.room.close(text)
        if not self.connections_open:
            return succeed(None)
        drained: Deferred[None] = Deferred()
        self._drained.append(drained)
        for protocol in list(self.connections_open):
            if protocol.member is None:
                protocol.abort()
        timer = self.clock.callLater(grace, self._abort_all)

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        drained.addBoth(stop_timer)
        return drained

    def _abort_all(self) -> None:
        for protocol in list(self.connections_open):
            protocol.abort()
