"""
Run inside a network namespace of its own (``unshare -rn``): start the real
daemon with a short TCP keepalive, let a client join from 127.0.0.2, then
make that address vanish (every packet to or from it dropped by blackhole
routing rules: no FIN, no reset) and time how long until the room is told
the client is gone.

Prints ``detected <name> after <seconds> s`` and exits 0, or exits 1.
Used by tests/test_keepalive.py.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import LineClient, running_daemon

IDLE, INTERVAL, COUNT = 1, 1, 2
# The documented time (idle + interval * count), with room for a slow machine.
DEADLINE = IDLE + INTERVAL * COUNT + 10


def vanish(address: str) -> None:
    for rule in (
        ["pref", "10", "to", address, "blackhole"],
        ["pref", "11", "from", address, "blackhole"],
        # The local table normally comes first; put it after the blackholes.
        ["pref", "100", "lookup", "local"],
    ):
        subprocess.run(["ip", "rule", "add", *rule], check=True)
    subprocess.run(["ip", "rule", "del", "pref", "0"], check=True)


def main(directory: Path, idle: int) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    options = ["--keepalive-idle", str(idle), "--keepalive-interval", str(INTERVAL)]
    with running_daemon(directory, *options, "--keepalive-count", str(COUNT)) as daemon:
        observer = daemon.connect()
        observer.read_kind("list")
        raw = socket.socket()
        raw.bind(("127.0.0.2", 0))
        raw.settimeout(10)
        raw.connect(("127.0.0.1", daemon.port))
        context = ssl.create_default_context(cafile=str(daemon.ca_path))
        victim = LineClient(context.wrap_socket(raw, server_hostname="localhost"), 10)
        name = victim.read_kind("welcome")[-1].args[0]
        observer.read_kind("join")
        vanish("127.0.0.2")
        started = time.monotonic()
        observer.timeout = DEADLINE
        try:
            left = observer.read_kind("leave")[-1]
        except TimeoutError:
            print(f"not detected within {DEADLINE} s")
            return 1
        elapsed = time.monotonic() - started
        print(f"detected {left.source} after {elapsed:.1f} s: {left.text}")
        return 0 if left.source == name else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else IDLE))
