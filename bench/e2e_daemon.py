"""
The real daemon with N end-to-end encrypted clients in one room, on
loopback: every client registers keys and locks, a few senders share their
group sessions (a rotation each), then room messages go out and every
client must decrypt every one. Prints the daemon's CPU per message (from
/proc), the bench clients' CPU per decryption, and the bytes the daemon
sent per message.

    .venv/bin/python bench/e2e_daemon.py [--clients 200] [--senders 10] [--messages 200]

The clients are real L{E2EClient}s, each on its own TLS connection, all
in this one process (Twisted): their own CPU is this process's, not the
daemon's. Bounded by --timeout seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, endpoints, protocol, ssl
from twisted.internet.interfaces import IReactorCore
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chatroom.client.protocol import MAX_SERVER_LINE_BYTES
from chatroom.e2e.client import Alert, E2EClient, Rejected, Secure, Send, Unauthenticated
from chatroom.e2e.keys import Identity
from chatroom.e2e.pins import PinStore
from tests.daemon import running_daemon

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


class Room:
    """
    What the bench waits for: every client locked, every message decrypted.
    """

    def __init__(self, clients: int) -> None:
        self.clients: list[BenchClient] = []
        self.expected = clients
        self.waiting: tuple[defer.Deferred[None], object] | None = None
        self.problems: list[str] = []

    def wait(self, check: object) -> defer.Deferred[None]:
        assert callable(check)
        done: defer.Deferred[None] = defer.Deferred()
        self.waiting = (done, check)
        self.poke()
        return done

    def describe(self) -> str:
        """
        How far the clients got (printed when the bench gives up).
        """
        locked = sum(1 for c in self.clients if c.e2e.secure)
        sizes = sorted({len(c.e2e.roster) for c in self.clients})
        missing = sorted({len(c.e2e.missing()) for c in self.clients})
        decrypted = sorted({c.decrypted for c in self.clients})
        return (
            f"{len(self.clients)} connected, {locked} locked, member counts {sizes[:5]}, missing keys"
            f" {missing[:5]}, decrypted {decrypted[:5]}; problems: {self.problems[:5]}"
        )

    def poke(self) -> None:
        if self.waiting is not None and self.waiting[1]():  # type: ignore[operator]
            done, self.waiting = self.waiting[0], None
            done.callback(None)


class BenchClient(LineReceiver):
    """
    One E2E client over TLS; it joins as C{name} and counts what it decrypts.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_SERVER_LINE_BYTES

    def __init__(self, room: Room, name: str) -> None:
        self.room = room
        self.name = name
        self.e2e = E2EClient(Identity.generate(), PinStore())
        self.decrypted = 0
        self.plain = 0
        self.started = False

    def lineReceived(self, line: bytes) -> None:
        events = self.e2e.receive(line)
        if not self.started and self.e2e.name:
            self.started = True
            self.sendLine(f"/nick {self.name}".encode())
            events += self.e2e.start()
        self.act(events)
        self.room.poke()

    def act(self, events: list[object]) -> None:
        for event in events:
            if isinstance(event, Send):
                self.sendLine(event.line.encode())
            elif isinstance(event, Secure):
                self.decrypted += 1
            elif isinstance(event, Unauthenticated):
                self.plain += 1
            elif isinstance(event, Alert | Rejected) and len(self.room.problems) < 20:
                self.room.problems.append(f"{self.name}: {event}")

    def say(self, text: str) -> None:
        self.act(self.e2e.command(text))  # type: ignore[arg-type]


class Factory(protocol.Factory):
    def __init__(self, room: Room, name: str) -> None:
        self.room, self.name = room, name

    def buildProtocol(self, addr: object) -> BenchClient:
        client = BenchClient(self.room, self.name)
        self.room.clients.append(client)
        return client


async def run(
    reactor: IReactorCore, options: argparse.Namespace, port: int, ca: Path, pid: int, room: Room
) -> None:
    trust = ssl.Certificate.loadPEM(ca.read_bytes())
    tls = ssl.optionsForClientTLS("localhost", trustRoot=trust)
    start = time.monotonic()
    for n in range(options.clients):
        endpoint = endpoints.wrapClientTLS(tls, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        await endpoint.connect(Factory(room, f"c{n}"))

    def locked() -> bool:
        return len(room.clients) == options.clients and all(
            c.e2e.secure and len(c.e2e.roster) == options.clients for c in room.clients
        )

    await room.wait(locked)
    print(f"{options.clients} clients connected, registered and locked in {time.monotonic() - start:.1f} s")

    senders = room.clients[: options.senders]
    before = cpu_seconds(pid), time.process_time()
    for n, sender in enumerate(senders):
        sender.say(f"hello from {sender.name} ({n})")
    await room.wait(lambda: all(c.decrypted == len(senders) for c in room.clients))
    daemon_cpu = cpu_seconds(pid) - before[0]
    print(
        f"{len(senders)} senders shared a group session with {options.clients - 1} members each and sent one"
        f" message: daemon CPU {daemon_cpu * 1e3 / len(senders):.1f} ms per sender"
    )

    before = cpu_seconds(pid), time.process_time()
    wall = time.monotonic()
    for n in range(options.messages):
        senders[n % len(senders)].say(f"message {n} " + "x" * max(0, options.text_bytes - 12))
    total = len(senders) + options.messages
    await room.wait(lambda: all(c.decrypted == total for c in room.clients))
    daemon_cpu = cpu_seconds(pid) - before[0]
    clients_cpu = time.process_time() - before[1]
    wall = time.monotonic() - wall
    decryptions = options.messages * options.clients
    print(
        f"{options.messages} messages, each decrypted by all {options.clients} clients"
        f" ({decryptions} decryptions) in {wall:.1f} s"
    )
    print(
        f"daemon CPU per message (fan-out to {options.clients}): {daemon_cpu * 1e3 / options.messages:.2f} ms"
        f" ({daemon_cpu * 1e6 / decryptions:.1f} us per delivery)"
    )
    print(
        f"bench clients' CPU per decryption (all {options.clients} clients in one process):"
        f" {clients_cpu * 1e6 / decryptions:.0f} us"
    )
    # The same through the same daemon as plain chat (what E2E adds to the
    # daemon's work): the senders' clients send the lines as typed.
    before = cpu_seconds(pid), time.process_time()
    for n in range(options.messages):
        senders[n % len(senders)].sendLine(f"plain {n} ".encode() + b"x" * max(0, options.text_bytes - 10))
    own = {
        id(c): sum(1 for n in range(options.messages) if senders[n % len(senders)] is c) for c in room.clients
    }
    await room.wait(lambda: all(c.plain == options.messages - own[id(c)] for c in room.clients))
    daemon_cpu = cpu_seconds(pid) - before[0]
    print(f"for comparison, plain chat: daemon CPU per message {daemon_cpu * 1e3 / options.messages:.2f} ms")
    if room.problems:
        print("warnings or refusals seen (there should be none):", *room.problems, sep="\n  ")
    for client in room.clients:
        client.transport.loseConnection()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--text-bytes", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this long (seconds)")
    options = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from twisted.internet import reactor

    status = [1]
    with (
        tempfile.TemporaryDirectory() as directory,
        running_daemon(Path(directory), "--flood-rate", "0") as daemon,
    ):

        def finished(result: object) -> None:
            if isinstance(result, Failure):
                print(f"failed: {result}")
            else:
                status[0] = 0
            reactor.stop()  # type: ignore[attr-defined]

        def give_up() -> None:
            print(f"gave up after {options.timeout:g} s")
            for line in progress:
                print(line())
            reactor.stop()  # type: ignore[attr-defined]

        room = Room(options.clients)
        progress = [lambda: room.describe()]
        work = defer.ensureDeferred(
            run(reactor, options, daemon.port, daemon.ca_path, daemon.process.pid, room)
        )  # type: ignore[arg-type]
        work.addBoth(finished)
        timer = reactor.callLater(options.timeout, give_up)  # type: ignore[attr-defined]
        reactor.run()  # type: ignore[attr-defined]
        if timer.active():
            timer.cancel()
    return status[0]


if __name__ == "__main__":
    sys.exit(main())
