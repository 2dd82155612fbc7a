"""
What --metrics costs on the fan-out: one member's message delivered to a
room of N members over in-memory line connections (StringTransports), with
metrics off (the core's no-op meter) and on (the daemon's ChatMetrics).

    .venv/bin/python bench/metrics_cost.py [--members N] [--messages M]

Figures only, never pass/fail: a shared machine is noisy, compare the two
lines of one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatroom.features.moderation import ModerationSettings
from chatroom.limits import ClientLimits, ConnectionLimits
from chatroom.metrics import ChatMetrics
from chatroom.tap import compose, line_factory


def run(members: int, messages: int, metered: bool) -> float:
    """
    Seconds per delivery for C{messages} messages to C{members} members.
    """
    clock = Clock()
    metrics = ChatMetrics(CollectorRegistry(), ("line",)) if metered else None
    sessions, _ = compose(
        clock,
        ModerationSettings(),
        ClientLimits(flood_rate=0, nick_rate=0, send_queue=0),
        ConnectionLimits(total=0, per_address=0, rate=0),
        metrics=metrics,
    )
    factory = line_factory(sessions)
    transports = []
    protocols = []
    for i in range(members):
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 10000 + i))
        protocol = factory.buildProtocol(transport.getPeer())
        protocol.makeConnection(transport)
        transports.append(transport)
        protocols.append(protocol)
    for transport in transports:
        transport.clear()
    sender = protocols[0]
    start = time.perf_counter()
    for n in range(messages):
        sender.dataReceived(b"message %d\r\n" % n)
        if n % 10 == 9:
            for transport in transports:
                transport.clear()
    elapsed = time.perf_counter() - start
    return elapsed / (members * messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    options = parser.parse_args()
    off = min(run(options.members, options.messages, False) for _ in range(3))
    on = min(run(options.members, options.messages, True) for _ in range(3))
    print(f"{options.members} members, {options.messages} messages, best of 3:")
    print(f"  metrics off: {off * 1e6:.2f} us per delivery")
    print(f"  metrics on:  {on * 1e6:.2f} us per delivery ({(on / off - 1) * 100:+.0f}%)")


if __name__ == "__main__":
    main()
