"""
The fan-out benchmark's smoke run: every server, tiny scenarios, a few
seconds. It checks that the benchmark runs and that no server lost,
reordered or duplicated a message; it asserts no speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run_of_the_benchmark() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fanout.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    tables = run.stdout.split("\n== ")[1:]
    assert [table.split(":")[0] for table in tables] == ["s1", "s2", "idle1000"]
    for table in tables:
        rows = {line.split()[0] for line in table.splitlines()[2:] if line and " / " not in line}
        assert rows == {"chatroom", "chatroom-irc", "ngircd", "words"}, table
    assert "chatroom / ngircd: deliveries_per_s x" in run.stdout
    assert "chatroom-irc / ngircd: deliveries_per_s x" in run.stdout


def test_smoke_run_of_the_cost_benchmark() -> None:
    # It runs and prints a figure per scenario; it asserts no figure.
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "costs.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    names = [line.split(":")[0] for line in run.stdout.splitlines()[1:]]
    assert sorted(set(names)) == ["answers", "bytes", "filters", "joins", "memory", "oper"]
