"""
The fan-out benchmark's smoke run: every server, tiny scenarios, a few
seconds. It checks that the benchmark runs and that no server lost,
reordered or duplicated a message; it asserts no speed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str) -> str:
    """
    Run C{bench/<script>} with C{args}; what it printed, once it succeeded.
    """
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_smoke_run_of_the_benchmark() -> None:
    stdout = run_bench("fanout.py", "--smoke")
    tables = stdout.split("\n== ")[1:]
    assert [table.split(":")[0] for table in tables] == ["s1", "s2", "idle1000"]
    for table in tables:
        rows = {line.split()[0] for line in table.splitlines()[2:] if line and " / " not in line}
        assert rows == {"chatroom", "chatroom-irc", "ngircd", "words"}, table
    assert "chatroom / ngircd: deliveries_per_s x" in stdout
    assert "chatroom-irc / ngircd: deliveries_per_s x" in stdout


def test_smoke_run_of_the_cost_benchmark() -> None:
    # It runs and prints a figure per scenario; it asserts no figure.
    stdout = run_bench("costs.py", "--quick")
    names = [line.split(":")[0] for line in stdout.splitlines()[1:]]
    assert sorted(set(names)) == ["answers", "bytes", "filters", "joins", "memory", "oper"]


def test_smoke_run_of_the_multi_process_mode() -> None:
    stdout = run_bench(
        "fanout.py", "--smoke", "--scenarios", "s1", "--servers", "redis1,redis2", "--rounds", "2"
    )
    *tables, medians = stdout.split("\n== ")[1:]
    assert len(tables) == 2, stdout
    for table in tables:
        rows = [line.split() for line in table.splitlines()[2:4]]
        assert [row[0] for row in rows] == ["redis1", "redis2"], table
        # Nothing lost, reordered or duplicated across the nodes (columns 5-7).
        assert all(row[5:8] == ["0", "0", "0"] for row in rows), table
        assert "two nodes / one node: deliveries per server CPU-second x" in table
    # The medians of the two rounds, each round's figure after.
    runs = re.findall(r"CPU-second x([\d.]+) \(([\d.]+) ([\d.]+)\)", medians)
    assert medians.startswith("s1: medians of 2 rounds") and len(runs) == 1, medians
    median, first, second = map(float, runs[0])
    assert median == pytest.approx((first + second) / 2, abs=0.01)


def test_smoke_run_of_the_delivery_benchmark() -> None:
    # Every setup runs and delivers (the script checks the bytes went out); no figure is asserted.
    stdout = run_bench("delivery.py", "--members", "5", "--messages", "50", "--rounds", "1")
    names = [line.split(":")[0] for line in stdout.splitlines()]
    assert names == ["line", "line+history", "irc", "irc+history", "plain"]
    # Two rooms sharing one through the in-process Redis: every member still gets every message.
    stdout = run_bench("delivery.py", "--members", "6", "--messages", "50", "--rounds", "1", "--nodes", "2")
    assert [line.split(":")[0] for line in stdout.splitlines()] == names


def test_smoke_run_of_the_instruction_count_benchmark() -> None:
    # Counted under valgrind, one small room (IRC with the history: the most
    # code on the path); it prints a positive count, no figure is asserted.
    stdout = run_bench("instructions.py", "--members", "3", "--only", "irc+history")
    (line,) = stdout.splitlines()
    name, count = line.split()[:2]
    assert name == "irc+history:" and int(count) > 0
