"""
What each cost the hostile tester found (issue 12, items 3 to 8) comes to,
measured in one process on the daemon's own room, sessions and line
transport with the default limits, over fake transports and a fake clock.

    .venv/bin/python bench/costs.py [--only NAME,...] [--quick]

It imports C{chatroom} from the first entry of C{sys.path}, so the same
script measures an older tree too (the figures before a change)::

    mkdir -p /tmp/before && git archive ccecac9 chatroom | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before .venv/bin/python bench/costs.py

Scenarios (each prints one or more ``name: figure`` lines):

- filters: 1000 members with 32 filters of 100 characters each, one 4 KB
  message: milliseconds of CPU to deliver it to all (item 3);
- answers: 50 members (admins) asking C{/e2e keys} (1000 members with
  keys), C{/list}, C{/help}, C{/bans} (1000 bans with 200-character
  reasons) or C{/whois} at the allowed line rate for 60 s: bytes per second
  the server sends them (item 4);
- bytes: ten connections from one address at the allowed line rate, lines
  of 4096 bytes of U+1D160 (12,288 once normalised): bytes per second each
  member receives; whether a member dropped for a full send queue is told
  why (item 5);
- memory: 200 members that stopped reading while one chats (4 KB lines),
  with an 8 MB memory budget where the tree has one: the most their send
  queues hold; 1000 connections each sending 60 KB without a line end: the
  bytes the server keeps (tracemalloc) (item 6);
- oper: 100 addresses guessing the admin password as fast as allowed for
  a minute: password checks run (item 7);
- joins: 4220 joins in 10 s: lines a bystander gets per second (item 8).

Nothing here asserts a figure; the numbers are for people to read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import chatroom
from chatroom.bans import Ban, BanList
from chatroom.core.chat import new_room
from chatroom.core.events import Said
from chatroom.core.memory import InMemoryBans
from chatroom.core.session import Sessions
from chatroom.e2e.keys import KeyBundle
from chatroom.features.e2e import E2EFeature, InMemoryKeyDirectory
from chatroom.features.moderation import Moderation, ModerationSettings
from chatroom.limits import ClientLimits, ConnectionLimits
from chatroom.passwd import hash_password
from chatroom.tap import line_factory
from chatroom.transports.line.protocol import LineFactory, LineProtocol
from chatroom.wire import parse_line

START = 1_795_000_000.0


class Sink(StringTransport):
    """
    A transport that counts what is written and keeps it only if asked.
    """

    def __init__(self, host: str, port: int, keep: bool = False) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", host, port))
        self.keep = keep
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.keep:
            super().write(data)


class Bench:
    """
    The daemon's room (chat, moderation, E2E) on a fake clock.
    """

    def __init__(self, password: bool = False, bans: int = 0, **limits: Any) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.room = new_room(self.clock)
        self.checks = 0

        def run_check(check: Callable[[], bool]) -> Deferred[bool]:
            self.checks += 1
            return succeed(False)

        ban_list = BanList()
        for n in range(bans):
            ban_list.add(Ban(f"troll{n}", None, "root", START, None, "r" * 200), START)
        settings = ModerationSettings(
            bans=InMemoryBans(ban_list),
            password=hash_password("a long enough password", n=2**4, r=1, p=1) if password else None,
            run_check=run_check,
        )
        self.room.add_feature(Moderation(self.room, settings))
        self.keys = InMemoryKeyDirectory()
        self.room.add_feature(E2EFeature(self.room, self.keys))
        # Limits an older tree does not have are left out.
        known = {name: value for name, value in limits.items() if name in ClientLimits.__dataclass_fields__}
        self.sessions = Sessions(self.room, self.clock, ClientLimits(**known), ConnectionLimits())
        self.factory: LineFactory = line_factory(self.sessions)
        self.ports = 1000

    def connect(self, host: str = "127.0.0.1", keep: bool = False) -> tuple[LineProtocol, Sink]:
        self.ports += 1
        transport = Sink(host, self.ports, keep)
        protocol = self.factory.buildProtocol(None)
        assert isinstance(protocol, LineProtocol)
        protocol.makeConnection(transport)
        return protocol, transport


def send(protocol: LineProtocol, line: str) -> None:
    protocol.dataReceived(line.encode("utf-8") + b"\r\n")


def report(name: str, value: str) -> None:
    print(f"{name}: {value}", flush=True)


def filters(quick: bool) -> None:
    bench = Bench()
    members = 200 if quick else 1000
    protocols = [bench.connect()[0] for _ in range(members)]
    for n, protocol in enumerate(protocols):
        for f in range(32):
            # Distinct words, in the alphabet of the text: the worst case.
            send(protocol, f"/filter {(f'w{n}-{f}-' * 20)[:100]}")
    text = ("Grüße aus Köln, straße ΣΊΣΥΦΟΣ " * 200)[:4000]
    # The first message after the filters changed also builds each member's
    # pattern (where the tree has them); then every message costs the same.
    started = time.process_time()
    bench.room.broadcast(Said(bench.clock.seconds(), "nobody", text))
    first = time.process_time() - started
    runs = 5
    started = time.process_time()
    for _ in range(runs):
        bench.room.broadcast(Said(bench.clock.seconds(), "nobody", text))
    elapsed = (time.process_time() - started) / runs
    report(
        f"filters: ms per 4 KB message to {members} members x 32 filters of 100: first, then each",
        f"{first * 1000:.1f}  {elapsed * 1000:.1f}",
    )


def answers(quick: bool) -> None:
    for command in ("/e2e keys", "/list", "/help", "/bans", "/whois guest1"):
        bench = Bench(bans=1000 if command == "/bans" else 0)
        members = 200 if quick else 1000
        for _ in range(members):
            protocol, _ = bench.connect()
            member = protocol.session.member
            assert member is not None
            bundle = KeyBundle(os.urandom(32), os.urandom(32), os.urandom(64))
            bench.keys.register(member.id, bundle)
        askers = [bench.connect() for _ in range(50)]
        for protocol, _ in askers:
            member = protocol.session.member
            assert member is not None
            bench.room.members.set_admin(member, True)
        for _, transport in askers:
            transport.written = 0
        seconds = 20 if quick else 60
        rate = 5  # the default --flood-rate
        for _ in range(seconds * rate):
            for protocol, _ in askers:
                send(protocol, command)
            bench.clock.advance(1 / rate)
        total = sum(transport.written for _, transport in askers)
        one = total / len(askers) / seconds
        report(
            f"answers: {command} by 50 clients at 5/s ({members} members): bytes/s sent, all, one",
            f"{total / seconds:,.0f}  {one:,.0f}",
        )


def bytes_in(quick: bool) -> None:
    bench = Bench()
    senders = [bench.connect("10.0.0.1")[0] for _ in range(10)]
    _, reader = bench.connect("10.0.0.2")
    reader.written = 0
    line = "\U0001d160" * 1024  # 4096 bytes; 12,288 once normalised
    seconds = 5 if quick else 20
    for _ in range(seconds * 5):
        for protocol in senders:
            send(protocol, line)
        bench.clock.advance(0.2)
    report(
        "bytes: 10 connections of one address at 5 lines/s: bytes/s into each member",
        f"{reader.written / seconds:,.0f}",
    )
    # A member that stops reading, dropped at the send-queue cap: told why?
    bench = Bench()
    talker = bench.connect("10.0.0.1")[0]
    _, stalled = bench.connect("10.0.0.3", keep=True)
    producer: Any = stalled.producer
    producer.pauseProducing()
    for _ in range(2000):
        if stalled.disconnecting:
            break
        send(talker, "x" * 1000)
        bench.clock.advance(0.2)
    last = parse_line(stalled.value().split(b"\r\n")[-2])
    told = last.kind == "error" and "send queue" in last.text
    report(
        "bytes: a member dropped for a full send queue is told why",
        f"{'yes' if told else 'no'} ({last.text[:60]})",
    )


def held(clients: list[tuple[LineProtocol, Sink]]) -> int:
    # What the send queues of connections still open hold past their sockets.
    return sum(protocol.queued() for protocol, transport in clients if not transport.disconnecting)


def memory(quick: bool) -> None:
    # A budget small enough to reach here (the default is 256 MiB).
    bench = Bench(memory_budget=8_000_000)
    talker = bench.connect()[0]
    stalled = [bench.connect() for _ in range(50 if quick else 200)]
    for _, transport in stalled:
        producer: Any = transport.producer
        producer.pauseProducing()
    peak = 0
    for n in range(1500 if quick else 3000):
        send(talker, f"{n} " + "m" * 4000)
        if n % 50 == 0:
            peak = max(peak, held(stalled))
    still = sum(not transport.disconnecting for _, transport in stalled)
    report(
        f"memory: {len(stalled)} members not reading, budget 8 MB: peak bytes in send queues, members left",
        f"{peak:,}  {still}",
    )
    bench = Bench()
    partial = [bench.connect()[0] for _ in range(200 if quick else 1000)]
    chunk = b"p" * 60_000
    tracemalloc.start()
    for protocol in partial:
        for start in range(0, len(chunk), 15_000):
            protocol.dataReceived(chunk[start : start + 15_000])
    kept, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report(f"memory: {len(partial)} connections sending 60 KB without a line end: bytes kept", f"{kept:,}")


def oper(quick: bool) -> None:
    bench = Bench(password=True)
    clients = [bench.connect(f"10.1.{n // 250}.{n % 250 + 1}")[0] for n in range(100)]
    for _ in range(60):
        for protocol in clients:
            send(protocol, "/oper guess")
        bench.clock.advance(1)
    report("oper: 100 addresses guessing for 60 s: password checks run", f"{bench.checks}")


def joins(quick: bool) -> None:
    bench = Bench()
    _, bystander = bench.connect(keep=True)
    bystander.clear()
    total = 422 if quick else 4220
    per_tick = total // 100
    for _ in range(100):
        for _ in range(per_tick):
            bench.connect()
        bench.clock.advance(0.1)
    bench.clock.advance(10)
    lines = bystander.value().count(b"\r\n")
    report(f"joins: {total} joins in 10 s: lines per second a bystander gets", f"{lines / 10:.0f}")


SCENARIOS: dict[str, Callable[[bool], None]] = {
    "filters": filters,
    "answers": answers,
    "bytes": bytes_in,
    "memory": memory,
    "oper": oper,
    "joins": joins,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="smaller loads (a smoke run)")
    args = parser.parse_args()
    print(f"# chatroom from {Path(chatroom.__file__).parent}")
    for name in args.only.split(",") if args.only else SCENARIOS:
        SCENARIOS[name](args.quick)


if __name__ == "__main__":
    main()
