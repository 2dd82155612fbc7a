"""
The line transport: a thin C{LineReceiver} adapter between a socket and a
core L{Session}.

L{LineProtocol} frames and decodes client lines, parses them against the
room's command registry and hands each one to its session; the session does
everything else (limits, timeouts, the room, error replies). Events come
back through the protocol's L{Connection} side, encoded once per event by
the shared L{LineCodec} and written through the per-turn writer.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IPushProducer, ISSLTransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom.core.commands import ParseError
from chatroom.core.events import Event
from chatroom.core.session import Session, Sessions
from chatroom.transports.line.codec import LineCodec
from chatroom.transports.line.writer import LineWriter, TurnFlusher
from chatroom.wire import has_control_characters, normalize_text

# The longest line a client may send, in bytes, line ending excluded. 4 KiB
# holds a long paragraph even in 4-byte UTF-8 characters, while keeping what
# one connection can make the server buffer small.
MAX_LINE_BYTES = 4096


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
class LineProtocol(LineReceiver):
    """
    One client connection speaking the line protocol.

    The client joins the room once its TLS handshake is complete (at once
    over a plain transport, as in tests), so a failed handshake is never
    announced to anyone.
    """

    delimiter = b"\n"

    def __init__(self, factory: LineFactory) -> None:
        self.factory = factory
        self.MAX_LENGTH = factory.max_frame
        self.host = "?"
        self.port = 0
        self._discarding = False
        self._leftover = b""
        self._watch = _SendQueueWatch()
        self._codec = factory.codec
        self._producing = False

    # Connection events

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self._transport: _Transport = transport
        flusher = self.factory.flusher
        self._writer = flusher.writer(transport) if flusher else LineWriter(transport)
        peer: Any = transport.getPeer()
        self.host, self.port = getattr(peer, "host", "?"), getattr(peer, "port", 0)
        self.session: Session = self.factory.sessions.session(self, "line")
        tls = ISSLTransport.providedBy(transport)
        if not self.session.opened(handshake=tls):
            return
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            # Without it Nagle's algorithm and delayed ACKs hold back lines.
            set_no_delay(True)
        transport.registerProducer(self._watch, True)
        self._producing = True
        if not tls:
            self.session.ready()

    def handshakeCompleted(self) -> None:
        self.session.ready()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._writer.discard()
        self.session.lost(clean=reason.check(ConnectionDone) is not None)

    # The Connection port, for the session

    def encode(self, event: Event) -> bytes:
        return self._codec.encode(event)

    def write(self, data: bytes) -> None:
        if self._watch.paused:
            # The client is not reading: count what piles up (the session
            # drops it past the cap).
            self._watch.queued += len(data)
        self._writer.write(data)

    def queued(self) -> int:
        return self._watch.queued

    def close(self) -> None:
        if self._producing:
            # A registered producer would hold the connection open forever.
            self._producing = False
            self._transport.unregisterProducer()
        self._writer.close()

    def abort(self) -> None:
        self._writer.discard()
        self._transport.abortConnection()

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
        self.session.bad_input(self.factory.too_long, "an over-long line")

    def lineReceived(self, line: bytes) -> None:
        session = self.session
        line = line.removesuffix(b"\r")
        factory = self.factory
        if len(line) > MAX_LINE_BYTES and (
            len(line) > factory.long_limit
            or not factory.long_prefix
            or line[: len(factory.long_prefix)].lower() != factory.long_prefix
        ):
            session.bad_input(factory.too_long, "an over-long line")
            return
        if not session.line_received():
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            session.bad_input("invalid UTF-8: send text encoded as UTF-8", "invalid UTF-8")
            return
        if has_control_characters(text):
            session.bad_input("control characters are not allowed in a line", "control characters")
            return
        try:
            command = session.room.commands.parse(normalize_text(text))
        except ParseError as e:
            session.reply(str(e))
            return
        session.run(command)


class LineFactory(ServerFactory):
    """
    Builds a L{LineProtocol} for every connection, all sharing one room.

    @ivar long_prefix: Lines starting with it (lower case) may be up to
        C{long_limit} bytes (end-to-end envelopes); every other line is
        held to L{MAX_LINE_BYTES}.
    """

    noisy = False

    def __init__(
        self,
        sessions: Sessions,
        flusher: TurnFlusher | None = None,
        long_prefix: bytes = b"",
        long_limit: int = MAX_LINE_BYTES,
    ) -> None:
        """
        @param flusher: Batches each connection's lines into one write per
            reactor turn; without it every line is written at once.
        """
        self.sessions = sessions
        self.flusher = flusher
        self.codec = LineCodec()
        self.long_prefix = long_prefix.lower()
        self.long_limit = long_limit
        # One more byte for the \r of a \r\n line ending, which the framing keeps.
        self.max_frame = max(long_limit, MAX_LINE_BYTES) + 1
        self.too_long = f"line too long: at most {MAX_LINE_BYTES} bytes per line" + (
            f" ({long_limit} for {long_prefix.decode().strip()} lines)" if long_prefix else ""
        )

    def buildProtocol(self, addr: Any) -> LineProtocol:
        return LineProtocol(self)
