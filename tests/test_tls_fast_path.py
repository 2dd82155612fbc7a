"""
The TLS fast path (L{TLSLineWriter}): checked once when the flusher is
made, with Twisted's public path when a name it uses is missing; and one
test per hand-back condition, each of which fails with its check deleted
from the writer.

Some of the hand-backs guard the byte stream itself (a write that
overtook data Twisted holds would corrupt the TLS record sequence): those
tests check what the client receives. The others are behind a second line
of defence (OpenSSL refuses the write, or Twisted drops it): those tests
check, with a spy, that the fast path did not try.

The TCP conditions need a real TCP transport: L{TCPPair} is Twisted's TLS
wrapper on a C{tcp.Server} over a loopback connection, driven by hand (no
reactor runs, nothing sleeps).
"""

from __future__ import annotations

import datetime
import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from chatroom.core.events import Said
from chatroom.tls import create_local_ca, load_server_options
from chatroom.transports.line import writer as writer_module
from chatroom.transports.line.codec import encode
from chatroom.transports.line.writer import LineWriter, TLSLineWriter, TurnFlusher, fast_path_problem
from tests.helpers import make_server
from tests.test_writer import EarlyWriter, Receiver, protocols, tls_pair


class LibSpy:
    """
    Stands in for pyOpenSSL's C{_lib} in the writer: records what the fast
    path hands to C{SSL_write}.
    """

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.written: list[bytes] = []
        self.recording = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)

    def SSL_write(self, ssl: Any, data: bytes, size: int) -> int:
        if self.recording:
            self.written.append(bytes(data[:size]))
        result: int = self._lib.SSL_write(ssl, data, size)
        return result


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> LibSpy:
    """
    A L{LibSpy} in the writer; it records once the test sets C{recording}
    (after making its flusher, whose start-up check writes too).
    """
    lib_spy = LibSpy(writer_module._lib)
    monkeypatch.setattr(writer_module, "_lib", lib_spy)
    return lib_spy


def certificates(tmp_path: Path) -> tuple[Any, Any]:
    certs = tmp_path / "certs"
    ca = create_local_ca(certs, datetime.datetime.now(datetime.UTC))
    server = load_server_options(certs / "server.pem", certs / "server-key.pem")
    client = optionsForClientTLS("localhost", Certificate.loadPEM(ca.read_bytes()))
    return server, client


# The start-up check


def test_the_fast_path_can_run_here() -> None:
    assert fast_path_problem() is None
    with capturedLogs() as events:
        flusher = TurnFlusher(Clock())
    assert flusher.fast_path
    assert [e["log_format"] for e in events] == ["TLS writes: the fast path"]


def test_turned_off_it_is_not_used_and_the_log_says_so(tmp_path: Path) -> None:
    clock = Clock()
    with capturedLogs() as events:
        flusher = TurnFlusher(clock, fast_path=False)
    assert not flusher.fast_path
    assert ["public path" in e["log_format"] for e in events] == [True]
    _, received = chat_over_tls(tmp_path, clock, flusher, LineWriter)
    assert received.data.endswith(b"over the public path\r\n")


def chat_over_tls(tmp_path: Path, clock: Clock, flusher: TurnFlusher, kind: type) -> tuple[Any, Receiver]:
    """
    A room member over in-memory TLS, written to with C{flusher}: its
    writer is a C{kind}, and a broadcast reaches it.
    """
    server = make_server(clock=clock, flusher=flusher)
    pump, received = tls_pair(tmp_path, server.factory, clock)
    (protocol,) = protocols(server)
    assert type(protocol._writer) is kind
    server.room.broadcast(Said(clock.seconds(), "guest1", "over the public path"))
    pump.flush()
    assert received.data.endswith(encode(Said(clock.seconds(), "guest1", "over the public path")))
    return pump, received


class NoSSLWrite:
    """
    pyOpenSSL's C{_lib} as a future version might have it: without C{SSL_write}.
    """

    def __getattr__(self, name: str) -> Any:
        if name == "SSL_write":
            raise AttributeError(name)
        return getattr(writer_module.SSL._lib, name)  # type: ignore[attr-defined]


@pytest.mark.parametrize("missing", ["SSL_write", "getHandle"])
def test_a_missing_name_means_the_public_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    if missing == "SSL_write":
        monkeypatch.setattr(writer_module, "_lib", NoSSLWrite())
    else:
        monkeypatch.delattr(tcp.Connection, "getHandle")
    problem = fast_path_problem()
    assert problem is not None and missing in problem
    clock = Clock()
    with capturedLogs() as events:
        flusher = TurnFlusher(clock)
    assert not flusher.fast_path
    (warning,) = events
    assert warning["log_level"] == LogLevel.warn and missing in warning["problem"]
    chat_over_tls(tmp_path, clock, flusher, LineWriter)


@pytest.mark.parametrize(
    ("args", "fast", "logged"), [((), True, "the fast path"), (("--no-tls-fast-path",), False, "public path")]
)
def test_the_daemon_logs_its_path_and_the_option_turns_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], fast: bool, logged: str
) -> None:
    from chatroom.stores.files import run_inline
    from chatroom.tap import Options, build_service

    monkeypatch.chdir(tmp_path)
    config = Options()
    config.parseOptions(["--port", "7000", *args])
    reactor = MemoryReactorClock()
    with capturedLogs() as events:
        service = build_service(config, reactor, run_inline)
    assert [e for e in events if "TLS writes" in e["log_format"] and logged in e["log_format"]]
    service.startService()
    ((_, factory, _, _, _),) = reactor.sslServers
    assert factory.flusher.fast_path is fast
    service.stopService()


# TLS-level hand-backs, over in-memory TLS (iosim)


class Plain(Protocol):
    pass


def connected(tmp_path: Path, clock: Clock) -> tuple[Any, Receiver, TLSMemoryBIOProtocol, Any]:
    """
    A server-side TLS wrapper, handshake done, and its client.
    """
    made: list[Plain] = []

    class Server(ClientFactory):
        def buildProtocol(self, addr: Any) -> Plain:
            made.append(Plain())
            return made[-1]

    pump, received = tls_pair(tmp_path, Server(), clock)
    tls: Any = made[0].transport
    assert tls._handshakeDone
    return pump, received, tls, pump.client


def test_app_send_buffer_lines_wait_behind_the_wrappers(tmp_path: Path) -> None:
    # (The before-handshake test in test_writer covers this too.)
    clock = Clock()
    flusher = TurnFlusher(clock)
    pump, received, tls, _ = connected(tmp_path, clock)
    writer = flusher.writer(tls)
    tls._appSendBuffer.append(b"held by the wrapper\n")  # as while a renegotiation waits
    writer.write(b"after it\n")
    flusher.flush()
    assert tls._appSendBuffer == [b"held by the wrapper\n", b"after it\n"]
    tls._unbufferPendingWrites()
    pump.flush()
    assert received.data == b"held by the wrapper\nafter it\n"


def test_before_the_handshake_the_wrapper_writes(tmp_path: Path, spy: LibSpy) -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    spy.recording = True
    made: list[EarlyWriter] = []

    class Server(ClientFactory):
        def buildProtocol(self, addr: Any) -> EarlyWriter:
            made.append(EarlyWriter(flusher))
            return made[-1]

    pump, received = tls_pair(tmp_path, Server(), clock)
    # "early" was written before the handshake, "at handshake" with the
    # wrapper still holding "early": neither through the fast path.
    assert spy.written == []
    made[0].writer.write(b"late\r\n")
    pump.flush()
    assert spy.written == [b"late\r\n"]
    assert received.data == b"early\r\nat handshake\r\nlate\r\n"


def test_after_lose_connection_nothing_more_goes_out(tmp_path: Path, spy: LibSpy) -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    spy.recording = True
    pump, received, tls, _ = connected(tmp_path, clock)
    writer = flusher.writer(tls)
    writer.write(b"before\n")
    flusher.flush()
    tls.loseConnection()
    assert tls.disconnecting and not tls._lostTLSConnection
    writer.write(b"after\n")
    flusher.flush()
    pump.flush()
    assert spy.written == [b"before\n"]
    assert received.data == b"before\n"


def test_while_the_handshake_waits_after_lose_connection_a_write_is_dropped(tmp_path: Path) -> None:
    # The wrapper holds data for the handshake and was told to close: a
    # later write is dropped, as the wrapper's own write drops it.
    clock = Clock()
    flusher = TurnFlusher(clock)
    made: list[Any] = []

    class Closing(Protocol):
        def connectionMade(self) -> None:
            assert self.transport is not None
            self.writer = flusher.writer(self.transport)
            self.writer.write(b"early\n")
            flusher.flush()
            self.transport.loseConnection()
            self.writer.write(b"after close\n")
            flusher.flush()
            made.append(self)

    class Server(ClientFactory):
        def buildProtocol(self, addr: Any) -> Closing:
            return Closing()

    _, received = tls_pair(tmp_path, Server(), clock)
    assert made
    assert received.data == b"early\n"


def test_once_tls_is_lost_the_wrapper_decides(tmp_path: Path, spy: LibSpy) -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    spy.recording = True
    pump, received, tls, client = connected(tmp_path, clock)
    writer = flusher.writer(tls)
    client.loseConnection()  # the client's close_notify
    pump.flush()
    assert tls._lostTLSConnection and not tls.disconnecting
    writer.write(b"too late\n")
    flusher.flush()
    pump.flush()
    assert spy.written == []
    assert received.data == b""


# TCP-level hand-backs, over a real loopback TCP connection


class TCPPair:
    """
    Twisted's TLS wrapper (server side) on a real C{tcp.Server} over a
    loopback connection, and a TLS client on the other socket; moved by
    L{pump_until}, with a L{MemoryReactorClock} as the reactor.
    """

    def __init__(self, tmp_path: Path) -> None:
        server_options, client_options = certificates(tmp_path)
        self.reactor = MemoryReactorClock()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.peer = socket.create_connection(listener.getsockname())
            accepted, address = listener.accept()
        self.peer.setblocking(False)
        self.socket = accepted
        self.flusher = TurnFlusher(self.reactor)
        factory = TLSMemoryBIOFactory(server_options, False, Factory.forProtocol(Plain), self.reactor)
        self.tls: Any = factory.buildProtocol(None)
        self.tcp = tcp.Server(accepted, self.tls, address, None, 1, self.reactor)  # type: ignore[arg-type]
        self.tls.makeConnection(self.tcp)
        self.received = Receiver()
        client_factory = ClientFactory.forProtocol(lambda: self.received)
        self.client: Any = TLSMemoryBIOFactory(
            client_options, True, client_factory, self.reactor
        ).buildProtocol(None)
        self.client_out = StringTransport()
        self.client.makeConnection(self.client_out)
        # Until the session tickets after the handshake have left too.
        self.pump_until(self.quiet)
        assert self.tls._handshakeDone and self.client._handshakeDone
        writer = self.flusher.writer(self.tls)
        assert isinstance(writer, TLSLineWriter) and writer._socket_send is not None
        self.writer: Any = writer

    def pump_until(self, done: Callable[[], bool]) -> None:
        """
        Move bytes both ways until C{done()}, or until nothing has moved for
        a while (a lost byte: the caller's assertion then says what is missing).
        """
        idle = 0
        while not done() and idle < 20:
            moved = False
            if self.tcp in self.reactor.getWriters():
                self.tcp.doWrite()
            out = self.client_out.value()
            self.client_out.clear()
            if out:
                self.peer.sendall(out)
                moved = True
            while True:
                try:
                    data = self.peer.recv(2**20)
                except BlockingIOError:
                    break
                if not data:
                    break
                self.client.dataReceived(data)
                moved = True
            if select.select([self.socket], [], [], 0)[0]:
                self.tcp.doRead()
                moved = True
            if self.reactor.getDelayedCalls():
                self.reactor.advance(0)
                moved = True
            if not moved:
                idle += 1
                # Waits only for the loopback to carry what was just sent.
                select.select([self.socket, self.peer], [], [], 0.01)
            else:
                idle = 0

    def quiet(self) -> bool:
        return bool(
            self.tls._handshakeDone
            and self.client._handshakeDone
            and self.tcp not in self.reactor.getWriters()
            and not self.tcp.dataBuffer
            and not self.tcp._tempDataLen
        )

    def write(self, data: bytes) -> None:
        self.writer.write(data)
        self.flusher.flush()

    def arrives(self, data: bytes) -> None:
        self.pump_until(lambda: len(self.received.data) >= len(data) or self.client._lostTLSConnection)
        assert self.received.data == data
        assert not self.client._lostTLSConnection

    def close(self) -> None:
        self.peer.close()
        self.socket.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[TCPPair]:
    made = TCPPair(tmp_path)
    yield made
    made.close()


class SendSpy:
    """
    Stands in for the socket's C{send} in a writer: records each call.
    """

    def __init__(self, send: Callable[[Any], int], behaviour: str = "send") -> None:
        self.send = send
        self.behaviour = behaviour
        self.calls: list[bytes] = []

    def __call__(self, data: Any) -> int:
        self.calls.append(bytes(data))
        if self.behaviour == "full":
            raise BlockingIOError(11, "the socket is full")
        if self.behaviour == "partial":
            return self.send(bytes(data)[:10])
        return self.send(data)


def test_the_fast_path_sends_on_the_socket_itself(pair: TCPPair) -> None:
    send = pair.writer._socket_send = SendSpy(pair.socket.send)
    pair.write(b"straight out\n")
    assert len(send.calls) == 1 and pair.tcp.dataBuffer == b"" and not pair.tcp._tempDataLen
    pair.arrives(b"straight out\n")


def test_data_waiting_in_the_tcp_write_list_goes_first(pair: TCPPair) -> None:
    TLSMemoryBIOProtocol.write(pair.tls, b"first, through Twisted\n")
    assert pair.tcp._tempDataLen and not pair.tcp.dataBuffer
    pair.write(b"second\n")
    pair.arrives(b"first, through Twisted\nsecond\n")


def test_data_in_the_tcp_buffer_goes_first(pair: TCPPair, monkeypatch: pytest.MonkeyPatch) -> None:
    TLSMemoryBIOProtocol.write(pair.tls, b"first, through Twisted\n")
    # A write attempt while the socket was full: the data moves to dataBuffer.
    monkeypatch.setattr(pair.tcp, "writeSomeData", lambda data: 0)
    pair.tcp.doWrite()
    monkeypatch.undo()
    assert pair.tcp.dataBuffer and not pair.tcp._tempDataLen
    pair.write(b"second\n")
    pair.arrives(b"first, through Twisted\nsecond\n")


def test_not_on_the_socket_once_tcp_is_not_connected(pair: TCPPair) -> None:
    send = pair.writer._socket_send = SendSpy(pair.socket.send)
    pair.tcp.connected = 0  # as between the socket's loss and its connectionLost
    pair.write(b"lost anyway\n")
    assert send.calls == []


def test_not_on_the_socket_once_tcp_is_disconnecting(pair: TCPPair) -> None:
    send = pair.writer._socket_send = SendSpy(pair.socket.send)
    pair.tcp.loseConnection()
    pair.write(b"still written, by Twisted\n")
    assert send.calls == []
    assert pair.tcp._tempDataLen


def test_a_full_socket_leaves_the_data_to_the_tcp_transport(pair: TCPPair) -> None:
    send = pair.writer._socket_send = SendSpy(pair.socket.send, "full")
    pair.write(b"one\n")
    assert len(send.calls) == 1 and pair.tcp._tempDataLen
    pair.write(b"two\n")
    pair.arrives(b"one\ntwo\n")


def test_what_a_partial_send_leaves_goes_through_the_tcp_transport(pair: TCPPair) -> None:
    pair.writer._socket_send = SendSpy(pair.socket.send, "partial")
    pair.write(b"a line longer than ten bytes\n")
    pair.arrives(b"a line longer than ten bytes\n")


def test_a_write_larger_than_the_socket_takes_arrives_whole(pair: TCPPair) -> None:
    line = b"".join(b"%07d " % i + b"y" * 120 + b"\n" for i in range(40_000))  # about 5 MB
    pair.write(line)
    assert pair.tcp.dataBuffer or pair.tcp._tempDataLen  # the socket did not take it all
    pair.write(b"then this\n")
    pair.arrives(line + b"then this\n")


# A fast write that raises


class Exploding:
    """
    A private attribute whose meaning changed: reading it raises.
    """

    def __bool__(self) -> bool:
        raise RuntimeError("no longer what it was")


def test_a_check_that_raises_sends_the_data_through_twisted(tmp_path: Path) -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    pump, received, tls_wrapper, _ = connected(tmp_path, clock)
    tls: Any = tls_wrapper
    first, second = flusher.writer(tls), flusher.writer(tls)
    tls._appSendBuffer = Exploding()
    first.write(b"one\n")
    second.write(b"two\n")
    with capturedLogs() as events:
        flusher.flush()
    tls._appSendBuffer = []
    failures = [e for e in events if "log_failure" in e]
    assert [e["log_failure"].value.args for e in failures] == [("no longer what it was",)]
    assert not flusher.fast_path
    assert type(flusher.writer(tls)) is LineWriter
    first.write(b"three\n")
    flusher.flush()
    pump.flush()
    assert received.data == b"one\ntwo\nthree\n"


def test_a_writer_that_cannot_be_made_is_a_plain_one(tmp_path: Path) -> None:
    clock = Clock()
    flusher = TurnFlusher(clock)
    server_options, _ = certificates(tmp_path)
    factory = TLSMemoryBIOFactory(server_options, False, Factory.forProtocol(Plain), clock)
    unconnected = factory.buildProtocol(None)  # no _tlsConnection yet
    with capturedLogs() as events:
        writer = flusher.writer(unconnected)
    assert type(writer) is LineWriter and not flusher.fast_path
    assert [type(e["log_failure"].value) for e in events if "log_failure" in e] == [AttributeError]
