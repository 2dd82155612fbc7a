"""
The write path: lines queued per connection and written once per reactor
turn, in order, and nothing lost; over TLS through the fast path too.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from zope.interface import implementer

from chatroom.core.events import Said
from chatroom.tls import create_local_ca, load_server_options
from chatroom.transports.line.codec import encode
from chatroom.transports.line.protocol import LineProtocol
from chatroom.transports.line.writer import RECORD_PLAINTEXT, LineWriter, TLSLineWriter, TurnFlusher
from chatroom.wire import parse_line
from tests.helpers import Server, make_server


class RecordingTransport(StringTransport):
    """
    A StringTransport that also remembers each write separately.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class Receiver(Protocol):
    """
    The TLS client's side: keeps everything it receives.
    """

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class BrokenTransport(StringTransport):
    def write(self, data: bytes) -> None:
        raise OSError("the connection broke")


def test_without_a_flusher_each_line_is_written_at_once() -> None:
    transport = RecordingTransport()
    writer = LineWriter(transport)
    writer.write(b"one\r\n")
    writer.write(b"two\r\n")
    assert transport.writes == [b"one\r\n", b"two\r\n"]


def test_lines_wait_for_the_turn_and_leave_as_one_write() -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    first, second = RecordingTransport(), RecordingTransport()
    a, b = flusher.writer(first), flusher.writer(second)
    a.write(b"1\r\n")
    b.write(b"x\r\n")
    a.write(b"2\r\n")
    a.write(b"3\r\n")
    assert first.writes == second.writes == []
    assert len(clock.getDelayedCalls()) == 1  # one flush for every connection
    clock.advance(0)
    assert first.writes == [b"1\r\n2\r\n3\r\n"]
    assert second.writes == [b"x\r\n"]
    assert clock.getDelayedCalls() == []


# Each step: queue a line for one of three connections, or end the turn.
steps = st.lists(st.one_of(st.tuples(st.integers(0, 2), st.binary(min_size=1, max_size=40)), st.none()))


@given(steps)
def test_every_line_arrives_once_and_in_order(script: list[tuple[int, bytes] | None]) -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    transports = [RecordingTransport() for _ in range(3)]
    writers = [flusher.writer(t) for t in transports]
    expected: list[list[bytes]] = [[], [], []]
    turns = 0
    for step in script:
        if step is None:
            clock.advance(0)
            turns += 1
        else:
            index, line = step
            writers[index].write(line)
            expected[index].append(line)
    clock.advance(0)
    for transport, lines in zip(transports, expected, strict=True):
        assert transport.value() == b"".join(lines)
        assert len(transport.writes) <= turns + 1


def test_close_writes_the_queued_lines_first_and_drops_later_ones() -> None:
    clock = Clock()
    transport = RecordingTransport()
    writer = TurnFlusher(clock).writer(transport)
    writer.write(b"last words\r\n")
    writer.close()
    assert transport.value() == b"last words\r\n"
    assert transport.disconnecting
    writer.write(b"too late\r\n")
    clock.advance(0)
    assert transport.value() == b"last words\r\n"


def test_discard_forgets_the_queue() -> None:
    clock = Clock()
    transport = RecordingTransport()
    writer = TurnFlusher(clock).writer(transport)
    writer.write(b"never sent\r\n")
    writer.discard()
    writer.write(b"nor this\r\n")
    clock.advance(0)
    assert transport.value() == b""


def test_a_broken_connection_does_not_hold_back_the_others() -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    healthy = RecordingTransport()
    broken = flusher.writer(BrokenTransport())
    fine = flusher.writer(healthy)
    broken.write(b"lost\r\n")
    fine.write(b"delivered\r\n")
    with capturedLogs() as events:
        clock.advance(0)
    assert healthy.value() == b"delivered\r\n"
    assert [e["log_failure"].value.args for e in events if "log_failure" in e] == [("the connection broke",)]


def room_with(count: int) -> tuple[Clock, Server, list[StringTransport]]:
    clock = Clock()
    server = make_server(clock=clock, flusher=TurnFlusher(clock))
    factory = server.factory
    transports = []
    for _ in range(count):
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        transports.append(transport)
    clock.advance(0)
    for transport in transports:
        transport.clear()
    return clock, server, transports


def protocols(server: Server) -> list[LineProtocol]:
    """
    The line protocols of the room's members, in join order.
    """
    by_member = {}
    for session in server.sessions.open:
        assert isinstance(session.connection, LineProtocol)
        by_member[session.member] = session.connection
    return [by_member[member] for member in server.room.members]


def messages(transport: StringTransport) -> list[tuple[str, str]]:
    lines = [parse_line(raw) for raw in transport.value().splitlines()]
    return [(line.source, line.text) for line in lines if line.kind == "message"]


def test_chat_reaches_everyone_in_order_each_turn() -> None:
    clock, server, transports = room_with(3)
    alice, bob, _ = protocols(server)
    alice.dataReceived(b"a1\na2\n")
    bob.dataReceived(b"b1\n")
    alice.dataReceived(b"a3\n")
    assert [t.value() for t in transports] == [b"", b"", b""]
    clock.advance(0)
    expected = [("guest1", "a1"), ("guest1", "a2"), ("guest2", "b1"), ("guest1", "a3")]
    for transport in transports:
        assert messages(transport) == expected


def test_quit_writes_what_is_queued_before_closing() -> None:
    clock, server, transports = room_with(2)
    alice = protocols(server)[0]
    alice.dataReceived(b"goodbye all\n/quit\n")
    assert transports[0].disconnecting
    assert messages(transports[0]) == [("guest1", "goodbye all")]
    clock.advance(0)
    assert messages(transports[1]) == [("guest1", "goodbye all")]


# TLS, in memory: the server side is Twisted's TLS wrapper, as under listenSSL.


def tls_pair(tmp_path: Path, server_factory: Any, clock: Clock) -> tuple[iosim.IOPump, Receiver]:
    certs = tmp_path / "certs"
    ca = create_local_ca(certs, datetime.datetime.now(datetime.UTC))
    server_options = load_server_options(certs / "server.pem", certs / "server-key.pem")
    client_options = optionsForClientTLS("localhost", Certificate.loadPEM(ca.read_bytes()))
    server = TLSMemoryBIOFactory(server_options, False, server_factory, clock).buildProtocol(None)
    received = Receiver()
    client = TLSMemoryBIOFactory(client_options, True, ClientFactory.forProtocol(lambda: received), clock)
    client_protocol = client.buildProtocol(None)
    pump = iosim.connect(
        server,
        iosim.makeFakeServer(server),
        client_protocol,
        iosim.makeFakeClient(client_protocol),
        greet=False,
        clock=clock,
    )
    pump.flush()
    return pump, received


def test_tls_lines_arrive_whole_and_in_order(tmp_path: Path) -> None:
    clock = Clock()
    server = make_server(clock=clock, flusher=TurnFlusher(clock))
    room = server.room
    pump, received = tls_pair(tmp_path, server.factory, clock)
    (protocol,) = protocols(server)
    writer = protocol._writer
    assert isinstance(writer, TLSLineWriter) and writer._ssl is not None
    # Many lines in one turn: more than one TLS record's worth.
    events = [Said(clock.seconds(), "guest1", f"{i:05d} " + "x" * 200) for i in range(200)]
    lines = [encode(event) for event in events]
    assert sum(map(len, lines)) > RECORD_PLAINTEXT
    for event in events:
        room.broadcast(event)
    pump.flush()
    for event in events[:3]:
        room.broadcast(event)
    pump.flush()
    data = received.data
    assert data.endswith(b"".join(lines) + b"".join(lines[:3]))
    assert parse_line(data.splitlines()[0]).kind == "welcome"


@implementer(IHandshakeListener)
class EarlyWriter(Protocol):
    """
    Writes through a L{TurnFlusher} before and as the handshake completes.
    """

    def __init__(self, flusher: TurnFlusher) -> None:
        self.flusher = flusher

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.writer = self.flusher.writer(self.transport)
        self.writer.write(b"early\r\n")
        self.flusher.flush()

    def handshakeCompleted(self) -> None:
        # The wrapper still holds "early" here, for a moment.
        self.writer.write(b"at handshake\r\n")
        self.flusher.flush()


def test_tls_writes_before_the_handshake_are_not_overtaken(tmp_path: Path) -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    protocols: list[EarlyWriter] = []

    class Factory(ClientFactory):
        def buildProtocol(self, addr: Any) -> EarlyWriter:
            protocols.append(EarlyWriter(flusher))
            return protocols[-1]

    pump, received = tls_pair(tmp_path, Factory(), clock)
    (early,) = protocols
    early.writer.write(b"late 1\r\n")
    early.writer.write(b"late 2\r\n")
    pump.flush()
    assert received.data == b"early\r\nat handshake\r\nlate 1\r\nlate 2\r\n"
