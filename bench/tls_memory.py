"""
Where an idle TLS connection's memory goes, measured in one process.

    .venv/bin/python bench/tls_memory.py [--connections N] [--only VARIANT,...]

Every variant runs in a fresh process. It builds the server side of N
connections at one layer of the daemon, each completing a real handshake
(over memory BIOs, no sockets) with a client of its own that is freed once
the handshake is done, and prints what each additional connection adds:

- RSS: resident memory, as the fan-out benchmark's "KB/conn";
- malloc: bytes in use in glibc's heap (mallinfo2): OpenSSL's structures,
  cffi's buffers and every Python object of more than 512 bytes;
- python: bytes traced by tracemalloc (a separate run of the same variant),
  Python's own share of the above plus its small objects.

The layers: C{ssl} is a bare pyOpenSSL Connection; C{twisted} wraps it in
Twisted's TLSMemoryBIOProtocol around an empty protocol; C{chat} is the
daemon's real protocol stack (E2EFactory, room member, line writer) on a
StringTransport. C{tcp} is the same on a real loopback TCP connection
and Twisted's TCP transport, accepted by a listening port driven by hand:
what the daemon holds per connection, short of the heap left fragmented by
many handshakes at once and the kernel's socket buffers, which RSS does not
count.

The client speaks like the benchmark's load generator (Debian's OpenSSL 3.0:
X25519 key share, TLS 1.3) unless a variant says otherwise. Nothing here
asserts a size: the figures are for people to read.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from OpenSSL import SSL  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.interfaces import IOpenSSLContextFactory  # noqa: E402
from twisted.internet.protocol import Factory, Protocol  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.protocols.tls import TLSMemoryBIOFactory  # noqa: E402
from zope.interface import implementer  # noqa: E402

from chatroom.tls import SERVER_CERT_NAME, SERVER_KEY_NAME, create_local_ca, load_server_options  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
WARM_UP = 200
_lib: Any = SSL._lib  # type: ignore[attr-defined]
_ffi: Any = SSL._ffi  # type: ignore[attr-defined]
_libc = ctypes.CDLL("libc.so.6")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc.mallinfo2.restype = _MallInfo2


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def malloc_in_use() -> int:
    info = _libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


# Each variant: (layer, what it changes, server-context tweak, client-context
# tweak, after-handshake tweak on the server's SSL*, environment).
Tweak = Callable[[SSL.Context], None]


def _nothing(_: Any) -> None:
    pass


def _client_groups(groups: bytes) -> Tweak:
    def tweak(context: SSL.Context) -> None:
        assert _lib.SSL_CTX_set1_curves_list(context._context, groups) == 1  # type: ignore[attr-defined]

    return tweak


def _client_tls12(context: SSL.Context) -> None:
    # In TLS 1.2 the groups also cover the curve of the server's ECDSA key.
    _client_groups(b"X25519:P-256")(context)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)


def _no_ticket(context: SSL.Context) -> None:
    context.set_options(SSL.OP_NO_TICKET)


def _no_cache(context: SSL.Context) -> None:
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_options(SSL.OP_NO_TICKET)


def _keep_buffers(context: SSL.Context) -> None:
    _lib.SSL_CTX_clear_mode(context._context, SSL.MODE_RELEASE_BUFFERS)  # type: ignore[attr-defined]


def _new_bios(connection: SSL.Connection) -> None:
    # Twisted's memory BIOs keep their largest buffer (the handshake flight).
    into, out = _lib.BIO_new(_lib.BIO_s_mem()), _lib.BIO_new(_lib.BIO_s_mem())
    _lib.SSL_set_bio(connection._ssl, into, out)  # type: ignore[attr-defined]
    connection._into_ssl, connection._from_ssl = into, out  # type: ignore[attr-defined]


X25519 = _client_groups(b"X25519")
VARIANTS: dict[str, tuple[str, str, Tweak, Tweak, Callable[[SSL.Connection], None], dict[str, str]]] = {
    "new": ("new", "a new connection, before any handshake", _nothing, X25519, _nothing, {}),
    "stdlib": (
        "stdlib",
        "CPython's ssl module (its own OpenSSL), for comparison",
        _nothing,
        X25519,
        _nothing,
        {},
    ),
    "ssl": ("ssl", "TLS 1.3, X25519 (as the load generator)", _nothing, X25519, _nothing, {}),
    "ssl-p256": ("ssl", "P-256 key share", _nothing, _client_groups(b"P-256"), _nothing, {}),
    "ssl-mlkem": (
        "ssl",
        "X25519MLKEM768 key share (OpenSSL 4 client default)",
        _nothing,
        _client_groups(b"X25519MLKEM768"),
        _nothing,
        {},
    ),
    "ssl-tls12": ("ssl", "TLS 1.2 (ECDHE X25519)", _nothing, _client_tls12, _nothing, {}),
    "ssl-noticket": ("ssl", "SSL_OP_NO_TICKET", _no_ticket, X25519, _nothing, {}),
    "ssl-nocache": ("ssl", "session cache off and no tickets", _no_cache, X25519, _nothing, {}),
    "ssl-keepbuf": ("ssl", "without SSL_MODE_RELEASE_BUFFERS", _keep_buffers, X25519, _nothing, {}),
    "ssl-newbio": ("ssl", "fresh memory BIOs after the handshake", _nothing, X25519, _new_bios, {}),
    "ssl-arena1": ("ssl", "MALLOC_ARENA_MAX=1", _nothing, X25519, _nothing, {"MALLOC_ARENA_MAX": "1"}),
    "twisted": ("twisted", "+ TLSMemoryBIOProtocol, empty protocol", _nothing, X25519, _nothing, {}),
    "twisted-newbio": ("twisted", "+ fresh BIOs after the handshake", _nothing, X25519, _new_bios, {}),
    "chat": ("chat", "+ ChatProtocol, room member, writer", _nothing, X25519, _nothing, {}),
    "tcp": ("tcp", "+ TCP transport and socket (loopback), as in the daemon", _nothing, X25519, _nothing, {}),
    "tcp-p256": (
        "tcp",
        "the daemon's stack, P-256 key share",
        _nothing,
        _client_groups(b"P-256"),
        _nothing,
        {},
    ),
    "tcp-mlkem": (
        "tcp",
        "the daemon's stack, X25519MLKEM768 key share",
        _nothing,
        _client_groups(b"X25519MLKEM768"),
        _nothing,
        {},
    ),
}


def handshake(
    client: SSL.Connection, server_feed: Callable[[bytes], None], server_out: Callable[[], bytes]
) -> None:
    """
    Drive C{client}'s handshake with a server reached through C{server_feed}
    (bytes in) and C{server_out} (bytes it sent since the last call).
    """
    for _ in range(10):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        out = b""
        while True:
            try:
                out += client.bio_read(65536)
            except SSL.WantReadError:
                break
        if out:
            server_feed(out)
        back = server_out()
        if back:
            client.bio_write(back)
        elif not out:
            return
    raise RuntimeError("the handshake did not finish")


class Layer:
    """
    Builds the server side of one connection at one layer of the daemon.
    """

    def __init__(self, layer: str, context: SSL.Context, after: Callable[[SSL.Connection], None]) -> None:
        self.layer = layer
        self.context = context
        self.after = after
        self.clock = Clock()
        self.kept: list[Any] = []
        if layer == "ssl":
            return

        @implementer(IOpenSSLContextFactory)
        class Options:
            def getContext(self) -> SSL.Context:
                return context

        if layer == "twisted":
            inner: Any = Factory.forProtocol(Protocol)
        else:
            from chatroom.e2e.server import E2EFactory, E2ERoom
            from chatroom.moderation import ModerationSettings
            from chatroom.writer import TurnFlusher

            room = E2ERoom(self.clock, moderation=ModerationSettings())
            inner = E2EFactory(room, flusher=TurnFlusher(self.clock))
        self.factory = TLSMemoryBIOFactory(Options(), False, inner)
        if layer == "tcp":
            # A real listening port, driven by hand: the reactor never runs.
            from twisted.internet import reactor

            self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]

    def connect(self, client: SSL.Connection) -> None:
        if self.layer == "ssl":
            server = SSL.Connection(self.context, None)
            server.set_accept_state()

            def feed(data: bytes) -> None:
                server.bio_write(data)
                with contextlib.suppress(SSL.WantReadError):
                    server.do_handshake()

            def out() -> bytes:
                try:
                    return server.bio_read(65536)
                except SSL.WantReadError:
                    return b""

            handshake(client, feed, out)
            self.after(server)
            self.kept.append(server)
            return
        if self.layer == "tcp":
            self.connect_tcp(client)
            return
        protocol = self.factory.buildProtocol(None)
        # From loopback, as the benchmark's clients: no per-address limit.
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.makeConnection(transport)

        def feed_tls(data: bytes) -> None:
            protocol.dataReceived(data)

        def out_tls() -> bytes:
            self.clock.advance(0)  # the turn's flush of queued lines
            value = transport.value()
            transport.clear()
            return value

        handshake(client, feed_tls, out_tls)
        self.after(protocol._tlsConnection)
        self.clock.advance(0)
        transport.clear()
        # What later joins announce to this client is not kept anywhere.
        transport.write = _nothing  # type: ignore[method-assign]
        self.kept.append(protocol)

    def connect_tcp(self, client: SSL.Connection) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port.getHost().port))
        self.port.doRead()  # accepts it: a tcp.Server around the TLS wrapper
        server = max(self.factory.protocols, key=lambda p: p.transport.sessionno).transport
        # Loopback delivers at once: what was sent can be read straight away.
        sock.setblocking(False)

        def feed(data: bytes) -> None:
            sock.sendall(data)
            server.doRead()

        def out() -> bytes:
            self.clock.advance(0)
            if server.dataBuffer or server._tempDataBuffer:
                server.doWrite()
            data = b""
            while True:
                try:
                    data += sock.recv(65536)
                except BlockingIOError:
                    return data

        handshake(client, feed, out)
        out()
        self.kept.append((server, sock))


class StdlibLayer:
    """
    The same handshake with CPython's C{ssl} module on both sides, which
    links the system's OpenSSL rather than the one in cryptography's wheel.
    """

    def __init__(self, directory: Path, ca: Path) -> None:
        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.load_cert_chain(directory / SERVER_CERT_NAME, directory / SERVER_KEY_NAME)
        self.client = ssl.create_default_context(cafile=ca)
        self.kept: list[Any] = []

    def connect(self) -> str:
        into, out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
        server = self.server.wrap_bio(into, out, server_side=True)
        client = self.client.wrap_bio(client_in, client_out, server_hostname="localhost")
        for _ in range(10):
            for side in (client, server):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
            into.write(client_out.read())
            client_in.write(out.read())
        assert client.getpeercert() and server.version() == client.version()
        self.kept.append(server)
        return f"{ssl.OPENSSL_VERSION.split()[1]}, {server.version()}"


def client_context(ca: Path, tweak: Tweak) -> SSL.Context:
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.load_verify_locations(str(ca))
    context.set_verify(SSL.VERIFY_PEER)
    tweak(context)
    return context


def run_variant(name: str, connections: int, trace: bool) -> dict[str, float]:
    layer, _, server_tweak, client_tweak, after, _ = VARIANTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca = create_local_ca(directory, datetime.datetime.now(datetime.UTC))
        context = load_server_options(directory / SERVER_CERT_NAME, directory / SERVER_KEY_NAME).getContext()
        server_tweak(context)
        clients = client_context(ca, client_tweak)
        builder = Layer(layer, context, after)
        stdlib = StdlibLayer(directory, ca)
        group = ""

        def one() -> None:
            nonlocal group
            if layer == "new":
                builder.kept.append(SSL.Connection(context, None))
                return
            if layer == "stdlib":
                group = stdlib.connect()
                return
            client = SSL.Connection(clients, None)
            client.set_connect_state()
            client.set_tlsext_host_name(b"localhost")
            builder.connect(client)
            group = client.get_group_name() or ""
            assert client.get_peer_certificate() is not None

        for _ in range(WARM_UP):
            one()
        gc.collect()
        if trace:
            tracemalloc.start()
        rss0, malloc0 = rss(), malloc_in_use()
        traced0 = tracemalloc.get_traced_memory()[0] if trace else 0
        for _ in range(connections):
            one()
        gc.collect()
        traced = (tracemalloc.get_traced_memory()[0] - traced0) if trace else 0
        figures = {
            "rss": (rss() - rss0) / connections,
            "malloc": (malloc_in_use() - malloc0) / connections,
            "python": traced / connections,
            "group": group,
        }
        _libc.malloc_trim(0)
        figures["rss_trimmed"] = (rss() - rss0) / connections
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument(
        "--only", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_variant(args.worker, args.connections, args.trace)))
        return
    header = f"{'variant':14} {'RSS':>6} {'trimmed':>7} {'malloc':>6} {'python':>6}  group, what"
    print(f"KB per additional connection, {args.connections} connections, each variant in a fresh process")
    print(header)
    for name in args.only.split(","):
        results = []
        for trace in (False, True):
            command = [sys.executable, __file__, "--worker", name, "--connections", str(args.connections)]
            command += ["--trace"] if trace else []
            env = {**os.environ, **VARIANTS[name][5]}
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            results.append(json.loads(output))
        plain, traced = results
        print(
            f"{name:14} {plain['rss'] / 1024:6.1f} {plain['rss_trimmed'] / 1024:7.1f}"
            f" {plain['malloc'] / 1024:6.1f} {traced['python'] / 1024:6.1f}"
            f"  {plain['group']}, {VARIANTS[name][1]}"
        )


if __name__ == "__main__":
    main()
