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


def test_smoke_run_of_the_multi_process_mode() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "fanout.py"),
            "--smoke",
            "--scenarios",
            "s1",
            "--servers",
            "redis1,redis2",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (table,) = run.stdout.split("\n== ")[1:]
    rows = [line.split() for line in table.splitlines()[2:4]]
    assert [row[0] for row in rows] == ["redis1", "redis2"], table
    # Nothing lost, reordered or duplicated across the nodes (columns 5-7).
    assert all(row[5:8] == ["0", "0", "0"] for row in rows), table
    assert "two nodes / one node: deliveries per server CPU-second " in run.stdout


def test_smoke_run_of_the_delivery_benchmark() -> None:
    # Every setup runs and delivers (the script checks the bytes went out); no figure is asserted.
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "delivery.py"),
            "--members",
            "5",
            "--messages",
            "50",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    names = [line.split(":")[0] for line in run.stdout.splitlines()]
    assert names == ["line", "line+history", "irc", "irc+history", "plain"]
