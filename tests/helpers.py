"""
Shared test helpers: clients on StringTransports, and line readers.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from chatroom.limits import ClientLimits
from chatroom.protocol import ChatFactory, ChatProtocol
from chatroom.room import Room
from chatroom.wire import ServerLine, parse_line

START = 1_795_000_000.0
UNLIMITED = ClientLimits(flood_rate=0, nick_rate=0)


class FakeClient:
    """
    One client connected to a L{ChatFactory} through a L{StringTransport}.
    """

    def __init__(self, factory: ChatFactory, port: int, host: str = "127.0.0.1") -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol = factory.buildProtocol(self.transport.getPeer())
        assert isinstance(protocol, ChatProtocol)
        self.protocol = protocol
        protocol.makeConnection(self.transport)

    def send(self, line: str | bytes, end: bytes = b"\r\n") -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.protocol.dataReceived(data + end)

    def lines(self) -> list[ServerLine]:
        """
        The lines received since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), data
        return [parse_line(raw) for raw in data.split(b"\r\n")[:-1]]

    def disconnect(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionLost()))


def make_room(limits: ClientLimits = UNLIMITED) -> tuple[Room, Clock, ChatFactory]:
    """
    A room on a fake clock and its factory; flood control is off unless
    C{limits} says otherwise, so tests can send many lines at once.
    """
    clock = Clock()
    clock.advance(START)
    room = Room(clock)
    return room, clock, ChatFactory(room, limits)


def connect_named(factory: ChatFactory, *names: str) -> list[FakeClient]:
    """
    Connect one client per name, rename each, and clear everything received.
    """
    clients = []
    for port, name in enumerate(names, start=40001):
        client = FakeClient(factory, port)
        client.send(f"/nick {name}")
        clients.append(client)
    for client in clients:
        client.lines()
    return clients
