"""
End to end: bursts of chat through the real daemon's write path (lines
batched per turn, TLS straight to the socket) arrive whole and in order.
"""

from __future__ import annotations

from pathlib import Path

from chatroom.wire import parse_line
from tests.daemon import LineClient, running_daemon

BURST = 300


def read_messages(client: LineClient, count: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    while len(got) < count:
        line = parse_line(client.read_line())
        if line.kind == "message":
            got.append((line.source, line.text))
    return got


def test_bursts_from_two_senders_reach_everyone_in_order(tmp_path: Path) -> None:
    # Flood control would (rightly) kick these senders.
    with running_daemon(tmp_path, "--flood-rate", "0") as daemon:
        clients = [daemon.connect() for _ in range(3)]
        names = []
        for client in clients:
            welcome = parse_line(client.read_until(lambda raw: b" welcome " in raw)[-1])
            names.append(welcome.args[0])
        first, second = clients[0], clients[1]
        # Each burst in one TLS write, so the server reads many lines per turn.
        first.sock.sendall(b"".join(b"a %d\n" % i for i in range(BURST)))
        second.sock.sendall(b"".join(b"b %d\n" % i for i in range(BURST)))
        for client in clients:
            got = read_messages(client, 2 * BURST)
            assert [text for source, text in got if source == names[0]] == [f"a {i}" for i in range(BURST)]
            assert [text for source, text in got if source == names[1]] == [f"b {i}" for i in range(BURST)]
        for client in clients:
            client.close()
