"""
The line transport: a thin C{LineReceiver} adapter between a socket and a
core L{Session}.

L{LineProtocol} frames and decodes client lines, parses them against the
room's command registry and hands each one to its session; the session does
everything else (limits, timeouts, the room, error replies). Events come
back through the protocol's L{Connection} side, encoded once per event by
the shared L{LineCodec} and written through the per-turn writer.

C{LineReceiver} frames lines up to the longest line there is (an
end-to-end line); the protocol keeps a partial line to at most
L{MAX_LINE_BYTES} (plus a line ending) until its first bytes show it is an
end-to-end line (the factory's C{long_prefix}), and drops the rest of a
line that grew past what it may be. The transport
also turns on TCP keepalive with the session's limits, so a peer that
vanished without closing is found although it never has to type.
"""

from __future__ import annotations

import socket
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
from chatroom.limits import ClientLimits
from chatroom.transports.line.codec import LineCodec
from chatroom.transports.line.connection import ConnectionSide
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


def keep_alive(transport: Any, limits: ClientLimits) -> bool:
    """
    Turn TCP keepalive on for C{transport}'s socket (for TLS, the TCP
    transport under it), probing after C{limits.keepalive_idle} seconds of
    silence, every C{keepalive_interval} seconds, C{keepalive_count} times;
    unacknowledged output gets the same time (C{TCP_USER_TIMEOUT}).

    @return: Whether the options were set on a socket.
    """
    if limits.keepalive_idle <= 0:
        return False
    # Over TLS, the TCP transport the TLS protocol wraps holds the socket.
    tcp = getattr(transport, "transport", None) if ISSLTransport.providedBy(transport) else None
    tcp = tcp or transport
    set_keep_alive = getattr(tcp, "setTcpKeepAlive", None)
    get_handle = getattr(tcp, "getHandle", None)
    if set_keep_alive is None or get_handle is None:
        return False
    handle = get_handle()
    if not isinstance(handle, socket.socket):
        return False
    set_keep_alive(True)
    options = [
        ("TCP_KEEPIDLE", limits.keepalive_idle),
        ("TCP_KEEPINTVL", max(limits.keepalive_interval, 1)),
        ("TCP_KEEPCNT", max(limits.keepalive_count, 1)),
        (
            "TCP_USER_TIMEOUT",
            1000 * (limits.keepalive_idle + limits.keepalive_interval * limits.keepalive_count),
        ),
    ]
    for name, value in options:
        option = getattr(socket, name, None)
        if option is not None:
            handle.setsockopt(socket.IPPROTO_TCP, option, value)
    return True


@implementer(IHandshakeListener)
class LineProtocol(ConnectionSide, LineReceiver):
    """
    One client connection speaking the line protocol.

    The client joins the room once its TLS handshake is complete (at once
    over a plain transport, as in tests), so a failed handshake is never
    announced to anyone.
    """

    delimiter = b"\n"
    __slots__ = (
        "_codec",
        "_discarding",
        "_exceeded",
        "_head",
        "_leftover",
        "_partial",
        "factory",
        "host",
        "port",
        "session",
    )

    def __init__(self, factory: LineFactory) -> None:
        self.factory = factory
        # LineReceiver frames the longest line there is; _allowance() holds
        # every other line to the plain limit while it is still partial.
        self.MAX_LENGTH = factory.max_frame
        self.host = "?"
        self.port = 0
        self._discarding = False
        self._leftover = b""
        self._exceeded = False
        # The partial line LineReceiver holds: its size and first bytes.
        self._partial = 0
        self._head = b""
        ConnectionSide.__init__(self)
        self._codec = factory.codec

    # Connection events

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self._transport: _Transport = transport
        flusher = self.factory.flusher
        self.use_writer(flusher.writer(transport) if flusher else LineWriter(transport))
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
        # A member that only reads is never asked to type: the kernel finds a vanished peer.
        keep_alive(transport, self.session.limits)
        self.watch_sends()
        if not tls:
            self.session.ready()

    def handshakeCompleted(self) -> None:
        self.session.ready()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._writer.discard()
        self.clearLineBuffer()
        self.session.lost(clean=reason.check(ConnectionDone) is not None)

    # The Connection port, for the session

    def deliver(self, event: Event, cap: int) -> int:
        # The hot path, once per member for every event told to the room:
        # every connection gets the bytes the codec made for the first.
        codec = self._codec
        data = codec.data if event is codec.event else codec.encode(event)
        if self._paused:
            return self._queue(data, cap)
        pending = self._pending
        if pending:
            pending.append(data)
        else:
            self._writer.write(data)
        return len(data)

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
            self._exceeded = False
            super().dataReceived(data)
            if self._exceeded:
                # lineLengthExceeded took LineReceiver's buffer: go on after it.
                data, self._leftover = self._leftover, b""
                continue
            self._track(data)
            if self._partial > self._allowance():
                # A partial line already too long for what it is.
                self.clearLineBuffer()
                self._partial, self._head = 0, b""
                self._discarding = True
                self.session.bad_input(self.factory.too_long, "an over-long line")
            self.session.buffering(self._partial)
            return

    def _track(self, data: bytes) -> None:
        # What LineReceiver now holds of a line: what followed the last line end.
        end = data.rfind(self.delimiter)
        head = len(self.factory.long_prefix)
        if end >= 0:
            self._partial = len(data) - end - 1
            self._head = data[end + 1 : end + 1 + head]
        else:
            self._partial += len(data)
            if len(self._head) < head:
                self._head = (self._head + data)[:head]

    def _allowance(self) -> int:
        # The plain allowance, until the line is known to be a long (E2E) one.
        prefix = self.factory.long_prefix
        if prefix and self._head.lower() == prefix:
            return int(self.MAX_LENGTH)
        return MAX_LINE_BYTES + 1

    def lineLengthExceeded(self, line: bytes) -> None:
        # Either the buffer filled up with no line end (drop until one
        # comes), or a complete line was too long (go on after it).
        self._exceeded = True
        self._partial, self._head = 0, b""
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
        # A pasted tab is a space, not a control character.
        text = text.replace("\t", " ")
        if has_control_characters(text):
            session.bad_input("control characters are not allowed in a line", "control characters")
            return
        if text.isascii():
            size = len(text)
        else:
            # Counted as normalised: normalisation can make a line longer.
            text = normalize_text(text)
            size = len(text.encode("utf-8"))
        if not session.text_received(size):
            return
        try:
            command = session.room.commands.parse(text)
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
