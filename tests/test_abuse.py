"""
Abuse against the real daemon over TLS on 127.0.0.1: after each attack a
well-behaved pair of clients still chats, and the daemon's memory stays
within a bound.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatroom.wire import parse_line
from tests.daemon import Daemon, LineClient, kind_is, running_daemon

# Loopback is limited like any address here, so the attacks from 127.0.0.1 count.
DAEMON_ARGS = (
    "--limit-loopback",
    "--max-per-address",
    "12",
    "--connect-rate",
    "200",
    "--send-queue",
    "65536",
    "--flood-kick",
    "30",
    "--handshake-timeout",
    "2",
)
# What the daemon may grow by over the whole module, attacks included.
RSS_GROWTH_BOUND_KIB = 40 * 1024


def rss_kib(daemon: Daemon) -> int:
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Pair:
    def __init__(self, daemon: Daemon) -> None:
        self.alice = daemon.connect()
        self.bob = daemon.connect()
        for client, name in ((self.alice, "alice"), (self.bob, "bob")):
            client.read_until(kind_is("list"))
            client.send(f"/nick {name}")
        self.serial = 0

    def still_chat(self) -> None:
        self.serial += 1
        text = f"still fine {self.serial}"
        self.alice.send(text)
        for client in (self.alice, self.bob):
            lines = client.read_until(lambda raw: parse_line(raw).text == text)
            assert parse_line(lines[-1]).source == "alice"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("abuse"), *DAEMON_ARGS) as d:
        yield d


@pytest.fixture(scope="module")
def pair(daemon: Daemon) -> Pair:
    pair = Pair(daemon)
    pair.still_chat()
    pair.rss_start = rss_kib(daemon)  # type: ignore[attr-defined]
    return pair


def test_oversized_lines_and_invalid_utf8(daemon: Daemon, pair: Pair) -> None:
    mallory = daemon.connect()
    mallory.read_until(kind_is("list"))
    mallory.sock.sendall(b"A" * 100_000 + b"\n")
    assert "line too long" in parse_line(mallory.read_until(kind_is("error"))[-1]).text
    mallory.send(b"\xc3\x28 broken")
    assert "invalid UTF-8" in parse_line(mallory.read_until(kind_is("error"))[-1]).text
    # Keeps at it: dropped.
    for _ in range(12):
        mallory.send(b"\xff")
    with pytest.raises(ConnectionError):
        mallory.read_until(lambda raw: False)
    mallory.close()
    pair.still_chat()


def test_garbage_instead_of_a_handshake_and_half_open_connections(daemon: Daemon, pair: Pair) -> None:
    garbage = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    garbage.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 100)
    # Silent sockets that never start TLS: the handshake deadline (2 s here) closes them.
    silent = [socket.create_connection(("127.0.0.1", daemon.port), timeout=10) for _ in range(5)]
    pair.still_chat()
    for sock in [garbage, *silent]:
        # The server closes each (after a TLS alert, for the garbage); recv
        # times out after 10 s if it does not.
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        sock.close()
    pair.still_chat()


def test_connection_flood_from_one_address(daemon: Daemon, pair: Pair) -> None:
    admitted: list[LineClient] = []
    refused = 0
    for _ in range(20):
        client = daemon.connect()
        first = parse_line(client.read_line())
        if first.kind == "welcome":
            admitted.append(client)
        else:
            assert first.kind == "error" and "too many connections" in first.text
            refused += 1
    # alice and bob hold two of the twelve places.
    assert (len(admitted), refused) == (10, 10)
    pair.still_chat()
    for client in admitted:
        client.close()
    pair.still_chat()


def test_message_flood_is_cut_off(daemon: Daemon, pair: Pair) -> None:
    flooder = daemon.connect()
    flooder.read_until(kind_is("list"))
    flooder.sock.sendall(b"spam\n" * 500)
    errors = [parse_line(raw).text for raw in flooder.read_until(kind_is("error"))]
    errors += [parse_line(raw).text for raw in flooder.read_until(kind_is("error"))]
    assert errors[-2:] == [
        "flood: slow down, at most 5 lines per second",
        "disconnected: kicked for flooding",
    ]
    with pytest.raises(ConnectionError):
        flooder.read_line()
    flooder.close()
    pair.still_chat()


def test_memory_stayed_within_bounds(daemon: Daemon, pair: Pair) -> None:
    pair.still_chat()
    growth = rss_kib(daemon) - pair.rss_start  # type: ignore[attr-defined]
    assert growth < RSS_GROWTH_BOUND_KIB, f"daemon grew by {growth} KiB"


def test_stalled_reader_is_dropped_and_memory_stays_flat(tmp_path: Path) -> None:
    # Flood control off, so one sender can push megabytes quickly.
    with running_daemon(tmp_path, "--flood-rate", "0", "--byte-rate", "0", "--send-queue", "65536") as daemon:
        pair = Pair(daemon)
        pair.still_chat()
        raw = socket.socket()
        # A small receive window, so the stall shows on the server side sooner.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(10)
        raw.connect(("127.0.0.1", daemon.port))
        context = ssl.create_default_context(cafile=str(daemon.ca_path))
        stalled = LineClient(context.wrap_socket(raw, server_hostname="localhost"), 10)
        stalled.read_until(kind_is("list"))
        stalled.send("/nick stalled")
        stalled.read_until(kind_is("rename"))
        rss_before = rss_kib(daemon)
        payload = "z" * 4000
        rss_peak = rss_before
        for sent in range(1, 10_001):
            pair.alice.send(payload)
            pair.alice.read_until(kind_is("message"))
            lines = [parse_line(raw) for raw in pair.bob.read_until(kind_is("message"))]
            leaves = [line for line in lines if line.kind == "leave"]
            if sent % 100 == 0:
                rss_peak = max(rss_peak, rss_kib(daemon))
            if leaves:
                break
        (leave,) = leaves
        assert (leave.source, leave.text) == (
            "stalled",
            "stalled left (send queue over 65536 bytes: not reading)",
        )
        stalled.close()
        pair.still_chat()
        # Megabytes went to a client that read none of them; the daemon kept
        # at most its cap plus what the sockets hold, not all of it.
        assert sent * len(payload) > 1_000_000
        assert rss_peak - rss_before < 16 * 1024, f"grew by {rss_peak - rss_before} KiB"
