"""
Shared test helpers: the daemon's room composed on a fake clock, clients on
StringTransports, and line readers. The pytest fixtures built on them are
in C{tests/conftest.py}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from chatroom.core.room import Room
from chatroom.core.session import Sessions
from chatroom.features.history import HistorySettings
from chatroom.features.moderation import Moderation, ModerationSettings
from chatroom.limits import ClientLimits, ConnectionLimits, RoomLimits
from chatroom.tap import compose, line_factory
from chatroom.transports.line.protocol import LineFactory, LineProtocol
from chatroom.transports.line.writer import TurnFlusher
from chatroom.wire import ServerLine, parse_line

START = 1_795_000_000.0
UNLIMITED = ClientLimits(flood_rate=0, nick_rate=0)


@dataclass
class Server:
    """
    The daemon's room, its sessions and a line factory, on a fake clock.
    """

    clock: Clock
    room: Room
    sessions: Sessions
    moderation: Moderation
    factory: LineFactory


def make_server(
    limits: ClientLimits = UNLIMITED,
    *,
    moderation: ModerationSettings | None = None,
    connection_limits: ConnectionLimits | None = None,
    e2e: bool = True,
    clock: Clock | None = None,
    flusher: TurnFlusher | None = None,
    history: HistorySettings | None = None,
    cloak: Callable[[str], str] | None = None,
    room_limits: RoomLimits | None = None,
) -> Server:
    """
    The room as the daemon composes it (moderation, E2E unless C{e2e} is
    false, history if C{history} is given, cloaks with C{cloak}), with flood
    control off unless C{limits} says otherwise, so tests can send many
    lines at once.
    """
    if clock is None:
        clock = Clock()
        clock.advance(START)
    sessions, feature = compose(
        clock,
        moderation or ModerationSettings(),
        limits,
        connection_limits,
        e2e,
        history=history,
        cloak=cloak,
        room_limits=room_limits,
    )
    return Server(clock, sessions.room, sessions, feature, line_factory(sessions, flusher, e2e))


class StringClient:
    """
    One client connected to a transport's factory through a
    L{StringTransport}; each transport's client class says which protocol
    its factory builds.
    """

    protocol_type: type[Any] = Protocol

    def __init__(self, factory: Factory, port: int, host: str = "127.0.0.1") -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol = factory.buildProtocol(self.transport.getPeer())
        assert isinstance(protocol, self.protocol_type)
        self.protocol: Any = protocol
        protocol.makeConnection(self.transport)

    @property
    def member_name(self) -> str | None:
        member = self.protocol.session.member
        return None if member is None else member.name

    def send(self, line: str | bytes, end: bytes = b"\r\n") -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.protocol.dataReceived(data + end)

    def raw(self) -> bytes:
        """
        The bytes received since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    def disconnect(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionLost()))


class FakeClient(StringClient):
    """
    One client connected to a L{LineFactory} through a L{StringTransport}.
    """

    protocol_type = LineProtocol
    protocol: LineProtocol

    def lines(self) -> list[ServerLine]:
        """
        The lines received since the last call.
        """
        data = self.raw()
        assert data == b"" or data.endswith(b"\r\n"), data
        return [parse_line(raw) for raw in data.split(b"\r\n")[:-1]]


def make_room(limits: ClientLimits = UNLIMITED) -> tuple[Room, Clock, LineFactory]:
    """
    A room on a fake clock and its line factory (see L{make_server}).
    """
    server = make_server(limits)
    return server.room, server.clock, server.factory


def connect_named(factory: LineFactory, *names: str) -> list[FakeClient]:
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
