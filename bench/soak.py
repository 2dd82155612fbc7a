"""
Soak test: hundreds of TLS clients doing random commands against the real
daemon on 127.0.0.1 for a set time; reports errors, the daemon's memory at
start and end, and chat messages lost (must be 0).

    .venv/bin/python bench/soak.py --clients 300 --seconds 60

Every client reads everything. "Steady" clients stay connected the whole
run and must each receive every chat message every steady client sent;
"churn" clients connect, act and disconnect again and again, so their
joins and leaves stress the room while the steady clients' accounting
stays exact. With no --port the script starts its own daemon in a
temporary directory and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import ssl
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatroom.wire import parse_line
from tests.daemon import running_daemon

ACTIONS = ("say", "say", "say", "me", "whisper", "list", "whois", "nick", "help", "filter")


class Client:
    def __init__(self, index: int, steady: bool) -> None:
        self.index = index
        self.steady = steady
        self.name = f"soak{index}"
        self.received: set[str] = set()
        self.sent: list[str] = []
        self.errors: Counter[str] = Counter()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.markers: set[str] = set()

    async def connect(self, port: int, context: ssl.SSLContext) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost", limit=1 << 20
        )
        self.send(f"/nick {self.name}")

    def send(self, line: str) -> None:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\n")

    async def read_loop(self) -> None:
        assert self.reader is not None
        while True:
            try:
                raw = await self.reader.readline()
            except (ssl.SSLError, ConnectionError):
                return
            if not raw:
                return
            line = parse_line(raw)
            if line.kind == "message" and line.text.startswith("soak-id "):
                self.received.add(line.text)
            elif line.kind == "message" and line.text.startswith("soak-done "):
                self.markers.add(line.text)
            elif line.kind == "error":
                # Random nick changes and whispers to churned names may fail;
                # anything else is counted as unexpected.
                expected = ("is taken", "looks too much like", "no such user", "already")
                kind = "expected" if any(e in line.text for e in expected) else line.text[:60]
                self.errors[kind] += 1

    async def act(self, rng: random.Random, others: list[Client], deadline: float, rate: float) -> None:
        serial = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.expovariate(rate))
            action = rng.choice(ACTIONS)
            other = rng.choice(others).name
            if action == "say":
                serial += 1
                text = f"soak-id {self.name} {serial}"
                if self.steady:
                    self.sent.append(text)
                self.send(text)
            elif action == "me":
                self.send("/me stretches")
            elif action == "whisper":
                self.send(f"/whisper {other} psst")
            elif action == "nick" and not self.steady:
                self.send(f"/nick churn{rng.randrange(10**6)}")
            elif action == "filter":
                # Filters never match the accounted messages.
                self.send("/filter zzz-never-said")
                self.send("/unfilter zzz-never-said")
            elif action in ("list", "help"):
                self.send(f"/{action}")
            elif action == "whois":
                self.send(f"/whois {other}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def soak(port: int, ca: Path, pid: int | None, args: argparse.Namespace) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    rng = random.Random(args.seed)
    n_churn = int(args.clients * args.churn)
    steady = [Client(i, True) for i in range(args.clients - n_churn)]
    for client in steady:
        await client.connect(port, context)
    readers = [asyncio.create_task(c.read_loop()) for c in steady]
    rss_start = rss_kib(pid) if pid else 0
    deadline = time.monotonic() + args.seconds
    actors = [
        asyncio.create_task(c.act(random.Random(rng.random()), steady, deadline, args.rate)) for c in steady
    ]

    churned = 0
    churn_errors: Counter[str] = Counter()

    async def churner(index: int) -> None:
        nonlocal churned
        while time.monotonic() < deadline:
            client = Client(10_000 + index * 1000 + churned % 1000, False)
            await client.connect(port, context)
            reader = asyncio.create_task(client.read_loop())
            await client.act(
                random.Random(rng.random()), steady, min(deadline, time.monotonic() + 2), args.rate
            )
            assert client.writer is not None
            client.send("/quit churning")
            await reader
            client.writer.close()
            churn_errors.update(client.errors)
            churned += 1

    churners = [asyncio.create_task(churner(i)) for i in range(n_churn)]
    await asyncio.gather(*actors, *churners)

    # Drain: every steady client says it is done; once a client has seen
    # every marker, per-sender order means it has seen everything before.
    for client in steady:
        client.send(f"soak-done {client.name}")
    expected_markers = {f"soak-done {c.name}" for c in steady}
    drain_deadline = time.monotonic() + 60
    while time.monotonic() < drain_deadline and any(c.markers != expected_markers for c in steady):
        await asyncio.sleep(0.1)
    rss_end = rss_kib(pid) if pid else 0

    all_sent = {text for c in steady for text in c.sent}
    lost = sum(len(all_sent - c.received) for c in steady)
    errors: Counter[str] = Counter()
    for client in steady:
        errors.update(client.errors)
    errors.update(churn_errors)
    for client in steady:
        assert client.writer is not None
        client.writer.close()
    for task in readers:
        task.cancel()

    unexpected = {k: v for k, v in errors.items() if k != "expected"}
    print(f"clients: {len(steady)} steady + {n_churn} churning ({churned} churn sessions), {args.seconds}s")
    print(
        f"chat messages sent by steady clients: {len(all_sent)};"
        f" deliveries expected: {len(all_sent) * len(steady)}"
    )
    print(f"messages lost: {lost}")
    print(f"drained: {all(c.markers == expected_markers for c in steady)}")
    print(
        f"error lines: {errors.get('expected', 0)} expected (taken names, gone users),"
        f" unexpected: {unexpected}"
    )
    if pid:
        print(f"daemon RSS: start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB")
    return 1 if lost or unexpected else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=0.5, help="commands per second per client")
    parser.add_argument("--churn", type=float, default=0.1, help="fraction of clients that churn")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, help="soak a running daemon instead of starting one")
    parser.add_argument("--ca", type=Path, default=Path("certs/ca.pem"))
    args = parser.parse_args()
    if args.port:
        return asyncio.run(soak(args.port, args.ca, None, args))
    with tempfile.TemporaryDirectory() as directory, running_daemon(Path(directory)) as daemon:
        return asyncio.run(soak(daemon.port, daemon.ca_path, daemon.process.pid, args))


if __name__ == "__main__":
    sys.exit(main())
