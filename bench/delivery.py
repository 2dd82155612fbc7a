"""
What one delivery costs the daemon: the CPU from a sender's TLS records
arriving to every member's ciphertext handed to its TCP transport, in one
process, with the room as the daemon composes it (moderation, E2E, and with
C{+history} the history kept in memory, with C{+sqlite} in a SQLite file as
the daemon keeps it, its writes inline) over Twisted's TLS and the daemon's
per-turn writer, on a fake clock and fake TCP transports.

    .venv/bin/python bench/delivery.py [--members 100] [--messages 3000]
                                       [--only line,line+history,line+sqlite,irc,irc+history,plain]
                                       [--nodes 2] [--shared]

The senders' records are encrypted before the clock starts and the members'
ciphertext is only counted, so the figure is the server's work alone: no
client, no kernel, no load generator, none of C{bench/fanout.py}'s noise
from a shared machine. C{plain} is the line transport without TLS. Each
line of output is microseconds of CPU per delivery (one message to one
member), the best of C{--rounds}, and per message (the parse, the
commands, the history) measured with two members. With C{--nodes 2} the
members are spread over two rooms that share one through the in-process
Redis of the tests (C{--redis} as two processes, in one): each turn ends
once the other room has read the stream and written in its own turn. With
C{--shared} one room goes through that Redis too (C{--redis}, one process:
bench/fanout.py's redis1, against which its redis2 is measured).

It imports C{chatroom} from the first entry of C{sys.path}; the figures of
another tree come from running it with C{PYTHONPATH} set to that tree.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import ssl
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory

from chatroom.core.memory import InMemoryBans, InMemoryHistory
from chatroom.core.ports import HistoryStore
from chatroom.features.history import HistorySettings
from chatroom.features.moderation import ModerationSettings
from chatroom.limits import ClientLimits
from chatroom.stores.sqlite import HISTORY_FILE, open_history
from chatroom.tap import compose, line_factory
from chatroom.tls import SERVER_CERT_NAME, SERVER_KEY_NAME, create_local_ca
from chatroom.transports.irc.protocol import IRCFactory
from chatroom.transports.line.writer import TurnFlusher

START = 1_795_000_000.0
# What the benchmark daemon runs with (bench/fanout.py): no rate limits.
LIMITS = ClientLimits(flood_rate=0, nick_rate=0, byte_rate=0, address_byte_rate=0, answer_rate=0)
SENDERS = 10
# Lines each sender sends in one reactor turn (bench/fanout.py's window is 32).
PER_TURN = 4
# Seconds one reactor turn takes, on the fake clock.
TURN = 0.005


class Sink(StringTransport):
    """
    A TCP transport that keeps what is written until L{counting}, then only
    counts it.
    """

    def __init__(self, port: int) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.counting = False
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if not self.counting:
            super().write(data)

    def take(self) -> bytes:
        data = self.value()
        self.clear()
        return data


class Pair:
    """
    One member's connection: the server's protocol (under TLS unless
    plain) and, for TLS, the client's end that made the handshake.
    """

    def __init__(self, server: Protocol, client: Protocol | None, port: int, client_clock: Clock) -> None:
        self.server = server
        self.client = client
        # The client's TLS gathers small writes until its reactor turn ends.
        self.client_clock = client_clock
        self.server_side = Sink(port)
        self.client_side = Sink(port)
        server.makeConnection(self.server_side)
        if client is not None:
            client.makeConnection(self.client_side)

    def pump(self) -> None:
        """
        Carry bytes both ways until neither side has more.
        """
        while True:
            to_client, to_server = self.server_side.take(), self.client_side.take()
            if not to_client and not to_server:
                return
            if to_client and self.client is not None:
                self.client.dataReceived(to_client)
            if to_server:
                self.server.dataReceived(to_server)

    def say(self, line: bytes) -> None:
        """
        Send C{line} from the client (plaintext before TLS).
        """
        if self.client is None:
            self.server.dataReceived(line)
        else:
            self.client.write(line)  # type: ignore[attr-defined]
            self.client_clock.advance(0)
            self.pump()

    def record(self, line: bytes) -> bytes:
        """
        C{line} as the bytes the client puts on the wire.
        """
        if self.client is None:
            return line
        self.client.write(line)  # type: ignore[attr-defined]
        self.client_clock.advance(0)
        return self.client_side.take()


def tls_factories(server: Factory, clock: Clock, client_clock: Clock) -> tuple[Factory, Factory]:
    """
    C{server} under TLS with a fresh local CA's certificate, and a client
    factory that accepts it, each on its clock.
    """
    with tempfile.TemporaryDirectory() as directory:
        create_local_ca(Path(directory), datetime.datetime.now(datetime.UTC))
        pem = (Path(directory) / SERVER_CERT_NAME).read_bytes() + (
            Path(directory) / SERVER_KEY_NAME
        ).read_bytes()
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    client = TLSMemoryBIOFactory(ssl.CertificateOptions(), True, Factory.forProtocol(Protocol), client_clock)
    return TLSMemoryBIOFactory(options, False, server, clock), client


def history_store(history: str, clock: Clock) -> HistoryStore:
    """
    The store of C{history} (C{history}: in memory; C{sqlite}: in a
    temporary file, written inline so that its CPU is in the figure).
    """
    if history == "history":
        return InMemoryHistory(10_000)
    directory = Path(tempfile.mkdtemp(prefix="chatroom-delivery-"))
    store = open_history(directory / HISTORY_FILE, clock, maybeDeferred, 10_000, None, 50)
    # The file goes with the process; the store writes until then.
    atexit.register(shutil.rmtree, directory, True)
    return store


def setup(
    kind: str, members: int, history: str, tls: bool, nodes: int = 1, shared: bool = False
) -> tuple[Clock, list[Pair], Callable[[], None]]:
    """
    A room of C{members} connections of C{kind}, all joined; with C{nodes}
    above one (or C{shared}), that many processes' rooms sharing one through an
    in-process Redis (tests/fake_redis.py), the members spread over them.

    @return: The clock, the members' connections, and the end of a
        reactor turn (with nodes: until the stream is read everywhere).
    """
    clock = Clock()
    clock.advance(START)
    factories: list[Any] = []
    redis: Any = None
    if nodes > 1 or shared:
        from chatroom.stores.redis.room import SharedRoom
        from tests.fake_redis import FakeLink, FakeRedis

        redis = FakeRedis()
        redis.clock = clock
    for index in range(nodes):
        settings = HistorySettings(history_store(history, clock), on_join=0) if history else None
        if redis is None:
            sessions, _ = compose(clock, ModerationSettings(bans=InMemoryBans()), LIMITS, history=settings)
        else:
            shared = SharedRoom(clock, FakeLink(redis), FakeLink(redis), f"n{index}", boot="bench")
            sessions, _ = compose(
                clock,
                ModerationSettings(bans=shared.bans),
                LIMITS,
                members=shared.members,
                fanout=shared.fanout,
                keys=shared.keys,
                history=settings,
            )
            shared.attach(sessions.room)
            shared.start()
        flusher = TurnFlusher(clock)
        factories.append(
            line_factory(sessions, flusher) if kind == "line" else IRCFactory(sessions, flusher=flusher)
        )

    def end_of_turn() -> None:
        # A busy room's turn takes a few milliseconds (the history file is
        # written at most every WRITE_INTERVAL).
        clock.advance(TURN)
        if redis is not None:
            # The other nodes read this turn's entry, then write in theirs.
            redis.pump()
            clock.advance(0)

    client_factory = None
    client_clock = Clock()
    if tls:
        for index, factory in enumerate(factories):
            factories[index], client_factory = tls_factories(factory, clock, client_clock)
    pairs = []
    for n in range(members):
        client = client_factory.buildProtocol(None) if client_factory is not None else None
        pair = Pair(factories[n % nodes].buildProtocol(None), client, 2000 + n, client_clock)
        client_clock.advance(0)
        pair.pump()
        if kind == "irc":
            pair.say(f"NICK n{n}\r\nUSER n{n} 0 * :n{n}\r\nJOIN #chatroom\r\n".encode())
        end_of_turn()
        client_clock.advance(0)
        pair.pump()
        pair.server_side.counting = True
        pair.server_side.clear()
        pairs.append(pair)
    end_of_turn()
    return clock, pairs, end_of_turn


def measure(
    kind: str, members: int, messages: int, history: str, tls: bool, nodes: int = 1, shared: bool = False
) -> float:
    """
    Microseconds of CPU per delivery, for C{messages} from (up to) ten members.
    """
    _clock, pairs, end_of_turn = setup(kind, members, history, tls, nodes, shared)
    senders = pairs[:SENDERS]
    prefix = b"" if kind == "line" else b"PRIVMSG #chatroom :"
    # Each sender's share of the messages, as it puts them on the wire.
    records = [
        [
            sender.record(prefix + f"message {n} with some text in it".encode() + b"\r\n")
            for n in range(messages // len(senders) + 1)
        ]
        for sender in senders
    ]
    before = sum(pair.server_side.written for pair in pairs)
    # What the setup (and earlier rounds) left is collected before, not during.
    gc.collect()
    start = time.process_time()
    for turn in range(0, messages, PER_TURN * len(senders)):
        for n in range(turn, min(messages, turn + PER_TURN * len(senders))):
            sender = n % len(senders)
            senders[sender].server.dataReceived(records[sender][n // len(senders)])
        # The end of a reactor turn: every writer flushes once.
        end_of_turn()
    spent = time.process_time() - start
    written = sum(pair.server_side.written for pair in pairs) - before
    # Each line is some 70 bytes: half the deliveries missing would fall short.
    assert written > messages * (members - 1) * 50, "the messages did not go out"
    return spent / (messages * members) * 1e6


def best(
    rounds: int,
    kind: str,
    members: int,
    messages: int,
    history: str,
    tls: bool,
    nodes: int = 1,
    shared: bool = False,
) -> float:
    """
    The least of C{rounds} L{measure}s: the figure least disturbed by the rest of the machine.
    """
    return min(measure(kind, members, messages, history, tls, nodes, shared) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="line,line+history,irc,irc+history,plain")
    parser.add_argument(
        "--once", action="store_true", help="run each setup once and print nothing (bench/instructions.py)"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="that many processes' rooms sharing one through an in-process Redis (--redis), in one process",
    )
    parser.add_argument(
        "--shared", action="store_true", help="with one node, its room through the in-process Redis too"
    )
    args = parser.parse_args()
    for name in args.only.split(","):
        kind, _, extra = name.partition("+")
        tls = kind != "plain"
        kind = "line" if kind == "plain" else kind
        history = extra if extra in ("history", "sqlite") else ""
        shared = args.shared
        if args.once:
            measure(kind, args.members, args.messages, history, tls, args.nodes, shared)
            continue
        delivery = best(args.rounds, kind, args.members, args.messages, history, tls, args.nodes, shared)
        message = 2 * best(args.rounds, kind, 2, args.messages, history, tls, args.nodes, shared)
        print(
            f"{name}: {delivery:.3f} us per delivery ({args.members} members), {message:.1f} us per message",
            flush=True,
        )


if __name__ == "__main__":
    main()
