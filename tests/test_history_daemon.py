"""
The history in the real daemon: a restart serves what was said, and a
kill -9 while it writes loses at most what was not yet committed.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

from chatroom.stores.sqlite import HISTORY_FILE
from chatroom.wire import ServerLine
from tests.daemon import LineClient, daemon_command, daemon_env, running_daemon

ARGS = ("--flood-rate", "0", "--history-on-join", "1000")


def replayed(client: LineClient) -> list[str]:
    """
    The chat a newly connected client gets as history.
    """
    lines: list[ServerLine] = client.read_kind("welcome")
    lines = client.read_kind("historyend")
    return [line.text for line in lines if line.kind == "history" and line.args[0] == "message"]


def test_a_restart_serves_the_history(tmp_path: Path) -> None:
    with running_daemon(tmp_path, *ARGS) as daemon:
        alice = daemon.connect().join_as("alice")
        alice.send("said before the restart")
        alice.read_kind("message")
    # An orderly stop (SIGTERM) wrote everything.
    with running_daemon(tmp_path, *ARGS) as daemon:
        assert replayed(daemon.connect()) == ["said before the restart"]


def test_kill_9_while_writing_keeps_what_was_committed(tmp_path: Path) -> None:
    with running_daemon(tmp_path, *ARGS) as daemon:
        alice = daemon.connect().join_as("alice")
        for n in range(50):
            alice.send(f"m{n}")
        # The page is read after the writes before it: once it is here,
        # m0 to m49 are committed.
        alice.send("/history 1")
        assert [line.text for line in alice.read_kind("history")][-1] == "m49"
        alice.read_kind("historyend")
        for n in range(50, 600):
            alice.send(f"m{n}")
        # Killed in the middle of the stream, writes under way.
        alice.read_kind("message")
        alice.read_until(lambda raw: raw.endswith(b" :m300"))
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=15)
    path = tmp_path / "state" / HISTORY_FILE
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with running_daemon(tmp_path, *ARGS) as daemon:
        kept = replayed(daemon.connect())
    # A prefix of what was said, in order, with at least what was committed.
    assert len(kept) >= 50
    assert kept == [f"m{n}" for n in range(len(kept))]


def test_a_corrupt_history_file_stops_the_daemon_naming_it(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / HISTORY_FILE).write_bytes(b"not a database at all, " * 200)
    run = subprocess.run(daemon_command(), cwd=tmp_path, env=daemon_env(), capture_output=True, timeout=60)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert f"the history file state/{HISTORY_FILE}".encode() in output, output
    assert b"file is not a database" in output
