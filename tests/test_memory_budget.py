"""
Issue 12, item 6, end to end: the real daemon's memory stays within its
budget while members stop reading, and comes back down once they are gone
(VmRSS of the daemon process, from /proc).
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from tests.daemon import Daemon, LineClient, kind_is, running_daemon

STALLED = 25
LINE = "z" * 4000
BUDGET = 12_000_000


def rss_kib(daemon: Daemon) -> int:
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stalled_client(daemon: Daemon) -> LineClient:
    raw = socket.socket()
    # A small receive window, so the stall shows on the server side soon.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", daemon.port))
    context = ssl.create_default_context(cafile=str(daemon.ca_path))
    client = LineClient(context.wrap_socket(raw, server_hostname="localhost"), 10)
    client.read_until(kind_is("list"))
    return client


def test_memory_stays_in_budget_and_comes_back(tmp_path: Path) -> None:
    limits = ["--flood-rate", "0", "--byte-rate", "0", "--answer-rate", "0", "--notice-rate", "0"]
    budget = ["--send-queue", "4000000", "--memory-budget", str(BUDGET)]
    with running_daemon(tmp_path, *limits, *budget) as daemon:
        sender = daemon.connect()
        sender.read_until(kind_is("list"))
        stalled = [stalled_client(daemon) for _ in range(STALLED)]
        sender.send("/list")
        sender.read_until(kind_is("list"))
        before = rss_kib(daemon)
        peak = before
        left = 0
        for sent in range(1, 1501):
            sender.send(LINE)
            lines = sender.read_until(lambda raw: b" message " in raw)
            left += sum(b" leave " in raw and b"memory budget exceeded" in raw for raw in lines)
            if sent % 25 == 0:
                peak = max(peak, rss_kib(daemon))
        for client in stalled:
            client.close()
        # Round trips until the daemon has let every stalled client go.
        for _ in range(200):
            sender.send("/list")
            listed = sender.read_kind("list")[-1]
            if listed.text.endswith(" of 1"):
                break
        # The daemon hands freed memory back within its trim interval (5 s):
        # round trips of chat, bounded, until it has.
        deadline = time.monotonic() + 30
        after = rss_kib(daemon)
        while after - before >= 16 * 1024 and time.monotonic() < deadline:
            sender.send("/list")
            sender.read_kind("list")
            after = rss_kib(daemon)
        print(f"VmRSS: {before} KiB before, {peak} KiB at the peak, {after} KiB after; {left} dropped")
        # Without the budget each would queue up to 4 MB (100 MB in all, and
        # more than twice that in memory, the TLS copies included).
        assert left > 0
        assert peak - before < 5 * BUDGET // 1024, (before, peak)
        assert after - before < 16 * 1024, (before, peak, after)
