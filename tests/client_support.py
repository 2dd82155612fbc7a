"""
Helpers for the client tests: a recording view, a hand-driven endpoint, server lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.application.internet import backoffPolicy
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from chatroom.client.protocol import ChatClientProtocol, Lock
from chatroom.e2e.client import KeyChanged, Secure
from chatroom.wire import Kind, ServerLine, format_line

T0 = 1_790_000_000.0


def server_line(kind: Kind, source: str = "*", text: str = "", args: tuple[str, ...] = ()) -> bytes:
    """
    One server line as the daemon sends it, line ending included.
    """
    return format_line(T0, kind, source, text, args) + b"\r\n"


def arrival(name: str, *others: str) -> bytes:
    """
    What the daemon sends a new client called C{name}, with C{others} there.
    """
    members = (*others, name)
    return (
        server_line(Kind.WELCOME, "*", f"Welcome, you are {name}.", (name,))
        + server_line(Kind.JOIN, name, f"{name} joined")
        + server_line(Kind.LIST, "*", f"users 1-{len(members)} of {len(members)}", members)
    )


@dataclass
class RecordingView:
    """
    A L{chatroom.client.protocol.ChatView} that keeps what it is told, in order.
    """

    events: list[tuple[str, object]] = field(default_factory=list)

    def connecting(self, address: str) -> None:
        self.events.append(("connecting", address))

    def connected(self, address: str) -> None:
        self.events.append(("connected", address))

    def disconnected(self, reason: str) -> None:
        self.events.append(("disconnected", reason))

    def retrying(self, delay: float) -> None:
        self.events.append(("retrying", delay))

    def line_received(self, line: ServerLine) -> None:
        self.events.append(("line", line))

    def name_changed(self, name: str) -> None:
        self.events.append(("name", name))

    def notice(self, text: str) -> None:
        self.events.append(("notice", text))

    def lock_changed(self, lock: Lock) -> None:
        self.events.append(("lock", lock))

    def secure_message(self, message: Secure) -> None:
        self.events.append(("secure", message))

    def key_changed(self, change: KeyChanged) -> None:
        self.events.append(("key changed", change))

    def warning(self, text: str) -> None:
        self.events.append(("warning", text))

    def of(self, kind: str) -> list[object]:
        """
        The values of every event of C{kind}, in order.
        """
        return [value for event, value in self.events if event == kind]

    @property
    def lines(self) -> list[ServerLine]:
        return [line for line in self.of("line") if isinstance(line, ServerLine)]


POLICY = backoffPolicy(initialDelay=1.0, maxDelay=60.0, factor=2.0, jitter=lambda: 0.0)


class FakeEndpoint:
    """
    An endpoint whose connection attempts the test completes by hand.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[Deferred[IProtocol], IProtocolFactory]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt: Deferred[IProtocol] = Deferred()
        self.attempts.append((attempt, factory))
        return attempt

    def accept(self) -> tuple[ChatClientProtocol, StringTransport]:
        """
        Let the latest attempt succeed on a plain in-memory transport.
        """
        attempt, factory = self.attempts[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6697))
        assert isinstance(protocol, ChatClientProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        attempt.callback(protocol)
        return protocol, transport

    def refuse(self) -> None:
        self.attempts[-1][0].errback(Failure(error.ConnectionRefusedError()))
