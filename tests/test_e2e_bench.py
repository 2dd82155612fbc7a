"""
Smoke runs of the E2E benchmarks: tiny rooms, a few seconds. They check
that the benchmarks run and that every message was decrypted (the scripts
assert it); they assert no speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_smoke_run_of_the_cost_benchmark() -> None:
    out = run("e2e_cost.py", "--sizes", "10,500", "--messages", "10", "--seconds", "0.01")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:7].strip().isdigit()}
    assert set(rows) == {"10", "500"}, out
    # A rotation: one key share envelope per 64 members (at this size).
    assert rows["10"][-8] == "1" and rows["500"][-8] == "8", out
    assert "whisper" in out and "key bundle decode" in out


def test_smoke_run_of_the_daemon_benchmark() -> None:
    out = run("e2e_daemon.py", "--clients", "6", "--senders", "2", "--messages", "10", "--timeout", "120")
    assert "6 clients connected, registered and locked" in out, out
    assert "10 messages, each decrypted by all 6 clients (60 decryptions)" in out, out
    assert "daemon CPU per message" in out and "plain chat" in out
    assert "warnings or refusals" not in out, out
