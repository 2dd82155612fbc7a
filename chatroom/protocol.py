"""
The per-connection protocol: bytes in, lines out, and nothing else.

L{ChatProtocol} frames and decodes lines, hands each one to the command
parser and the room, and turns every rule broken into one error line. The
room's rules live in L{chatroom.room}; the line format in L{chatroom.wire}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, ISSLTransport, ITransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom.commands import ParseError, parse_command
from chatroom.room import ChatError, Member, Room
from chatroom.wire import Kind, has_control_characters, normalize_text

# The longest line a client may send, in bytes, line ending excluded. 4 KiB
# holds a long paragraph even in 4-byte UTF-8 characters, while keeping what
# one connection can make the server buffer small.
MAX_LINE_BYTES = 4096


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

    def __init__(self, room: Room) -> None:
        self.room = room
        self.member: Member | None = None
        self._discarding = False
        self._leftover = b""
        self._complained = False

    # Connection events

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._transport: ITransport = self.transport
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            # Without it Nagle's algorithm and delayed ACKs hold back lines.
            set_no_delay(True)
        if not ISSLTransport.providedBy(self.transport):
            self._join()

    def handshakeCompleted(self) -> None:
        self._join()

    def _join(self) -> None:
        peer: Any = self._transport.getPeer()
        self.member = self.room.join(self, getattr(peer, "host", "?"), getattr(peer, "port", 0))
        self.log.info("{name} joined from {address}", name=self.member.name, address=self.member.address)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        member, self.member = self.member, None
        if member is not None:
            clean = reason.check(ConnectionDone) is not None
            self.room.leave(member, "disconnected" if clean else "connection lost")
            self.log.info("{name} left", name=member.name)

    # Recipient, for the room

    def deliver(self, line: bytes) -> None:
        self._transport.write(line)

    def close(self) -> None:
        self._transport.loseConnection()

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
        if member is None:
            return
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
        self.room.tell(self.member, Kind.ERROR, reply)
        if not self._complained:
            # Logged once per connection: a client repeating it is not news.
            self._complained = True
            self.log.info("{name} sent {what}", name=self.member.name, what=what)


class ChatFactory(ServerFactory):
    """
    Builds a L{ChatProtocol} for every connection, all sharing one room.
    """

    noisy = False

    def __init__(self, room: Room) -> None:
        self.room = room

    def buildProtocol(self, addr: Any) -> ChatProtocol:
        protocol = ChatProtocol(self.room)
        protocol.factory = self
        return protocol
