"""
The SQLite history store on real files, with a synchronous runner and a
fake clock: restarts, batching per turn, retention, damaged and unusable
files, a full disk, purge.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.usage import UsageError

from chatroom.core.events import HistoryKind
from chatroom.core.memory import InMemoryHistory
from chatroom.core.ports import ALL_HISTORY, HistorySpan, HistoryStore
from chatroom.features.history import HistorySettings
from chatroom.features.moderation import ModerationSettings
from chatroom.limits import ClientLimits
from chatroom.stores.sqlite import (
    HISTORY_FILE,
    PRUNE_INTERVAL,
    WRITE_INTERVAL,
    HistoryFileError,
    SQLiteHistory,
    open_history,
)
from chatroom.tap import Options, StartupError, build_service
from tests.helpers import START, FakeClient, Server, connect_named, make_server

DAY = 86400.0


class CountingRunner:
    """
    Runs each call at once, counting them.
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, work: Callable[[], Any]) -> Deferred[Any]:
        self.calls += 1
        return maybeDeferred(work)


def new_clock(at: float = START) -> Clock:
    clock = Clock()
    clock.advance(at)
    return clock


def store_at(
    path: Path, clock: Clock, keep: int = 1000, max_age: float | None = None, cache: int = 50
) -> SQLiteHistory:
    return open_history(path, clock, CountingRunner(), keep, max_age, cache)


def server_on(store: SQLiteHistory, clock: Clock, on_join: int = 50) -> Server:
    return make_server(
        # No pings: the tests move the clock by days.
        ClientLimits(flood_rate=0, nick_rate=0, byte_rate=0, answer_rate=0, ping_interval=0),
        moderation=ModerationSettings(first_admin=True),
        history=HistorySettings(store, on_join),
        clock=clock,
    )


def rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT kind, text FROM history ORDER BY id").fetchall()


def said(path: Path) -> list[str]:
    return [text for kind, text in rows(path) if kind == HistoryKind.SAID]


def replayed_chat(client: FakeClient) -> list[str]:
    return [line.text for line in client.lines() if line.kind == "history" and line.args[0] == "message"]


def test_a_restart_serves_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock)
    server = server_on(store, clock)
    (alice,) = connect_named(server.factory, "alice")
    alice.send("before the restart")
    alice.send("/me waves")
    clock.advance(WRITE_INTERVAL)
    store.close()
    # A new process: a new clock, store and room on the same file.
    clock = new_clock(START + 100)
    server = server_on(store_at(path, clock), clock)
    lines = FakeClient(server.factory, 50000).lines()
    history = [(line.args[0], line.text) for line in lines if line.kind == "history"]
    assert ("message", "before the restart") in history
    assert ("action", "alice waves") in history
    assert lines[0].kind == "welcome"


def test_one_turn_is_one_transaction_written_at_the_end_of_the_turn(tmp_path: Path) -> None:
    # Under load, the turns of one WRITE_INTERVAL share it.
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    runner = CountingRunner()
    store = open_history(path, clock, runner, 1000, None, 50)
    server = server_on(store, clock)
    (alice,) = connect_named(server.factory, "alice")
    clock.advance(WRITE_INTERVAL)
    calls = runner.calls
    for n in range(20):
        alice.send(f"m{n}")
    assert said(path) == []
    clock.advance(WRITE_INTERVAL)
    assert said(path) == [f"m{n}" for n in range(20)]
    assert runner.calls == calls + 1
    # In a quiet room, a line is written at the end of its own turn.
    clock.advance(WRITE_INTERVAL)
    alice.send("alone")
    clock.advance(0)
    assert said(path)[-1] == "alone"
    assert runner.calls == calls + 2
    alice.send("soon after")
    clock.advance(0)
    assert said(path)[-1] == "alone"
    clock.advance(WRITE_INTERVAL)
    assert said(path)[-1] == "soon after"


def test_a_batch_larger_than_one_insert_is_written_whole_and_in_order(tmp_path: Path) -> None:
    # Many rows go in one statement; a batch larger than one is split.
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock, keep=5000)
    for n in range(1234):
        store.append(clock.seconds(), HistoryKind.SAID, f"Sender{n % 7}", f"m{n}", "")
    clock.advance(WRITE_INTERVAL)
    assert said(path) == [f"m{n}" for n in range(1234)]
    with sqlite3.connect(path) as connection:
        # Ids count from 1: the 1000th entry is m999.
        assert connection.execute(
            "SELECT sender, sender_key, text FROM history WHERE id = 1000"
        ).fetchone() == (
            "Sender5",
            "sender5",
            "m999",
        )
    store.close()


def test_retention_by_count_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock, keep=10)
    (alice,) = connect_named(server_on(store, clock).factory, "alice")
    for n in range(25):
        alice.send(f"m{n}")
        clock.advance(WRITE_INTERVAL)
    assert said(path) == [f"m{n}" for n in range(15, 25)]
    assert len(rows(path)) == 10
    store.close()
    again = store_at(path, clock, keep=10)
    assert [e.text for e in again.latest(100, clock.seconds())] == [f"m{n}" for n in range(15, 25)]


def test_retention_by_count_counts_rows_not_ids(tmp_path: Path) -> None:
    # A purge leaves gaps in the ids: the oldest rows go, as many as over the bound.
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock, keep=6)
    for n in range(6):
        store.append(clock.seconds(), HistoryKind.SAID, "spammer" if n % 2 else "alice", f"m{n}", "")
    clock.advance(WRITE_INTERVAL)
    store.purge("spammer")
    for n in range(6, 10):
        store.append(clock.seconds(), HistoryKind.SAID, "alice", f"m{n}", "")
    clock.advance(WRITE_INTERVAL)
    assert said(path) == ["m2", "m4", "m6", "m7", "m8", "m9"]
    store.close()


def test_retention_by_age_on_the_clock(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock, max_age=DAY)
    server = server_on(store, clock)
    (alice,) = connect_named(server.factory, "alice")
    alice.send("old")
    clock.advance(DAY - PRUNE_INTERVAL)
    alice.send("newer")
    clock.advance(WRITE_INTERVAL)
    assert said(path) == ["old", "newer"]
    # Reads skip what is past the bound even before it is removed.
    page = store.database.page(10, clock.seconds() + PRUNE_INTERVAL + 1, ALL_HISTORY)
    assert [e.text for e in page if e.kind is HistoryKind.SAID] == ["newer"]
    # The next removal comes within PRUNE_INTERVAL of the day being over.
    clock.pump([PRUNE_INTERVAL] * 2)
    assert said(path) == ["newer"]
    alice.lines()
    alice.send("/history")
    assert replayed_chat(alice) == ["newer"]
    clock.advance(DAY)
    alice.send("/history")
    assert replayed_chat(alice) == []


def test_pages_older_than_the_memory_come_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock, cache=5)
    server = server_on(store, clock, on_join=5)
    (alice,) = connect_named(server.factory, "alice")
    for n in range(30):
        alice.send(f"m{n}")
    alice.lines()
    newcomer = FakeClient(server.factory, 50000)
    lines = newcomer.lines()
    assert [line.text for line in lines if line.kind == "history"] == [f"m{n}" for n in range(25, 30)]
    more = next(line for line in lines if line.kind == "historyend").fields["more"]
    newcomer.send(f"/history before {more} 10")
    assert replayed_chat(newcomer) == [f"m{n}" for n in range(15, 25)]


def pages(store: HistoryStore, count: int, now: float, span: HistorySpan) -> list[int]:
    found: list[list[int]] = []
    store.page(count, now, span).addCallback(lambda entries: found.append([e.id for e in entries]))
    (ids,) = found
    return ids


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_both_stores_read_every_span_alike(tmp_path: Path, kind: str) -> None:
    clock = new_clock()
    store: HistoryStore
    if kind == "memory":
        store = InMemoryHistory(1000, DAY)
    else:
        # A cache of 5: every page beyond it comes from the file.
        store = store_at(tmp_path / HISTORY_FILE, clock, max_age=DAY, cache=5)
    # 40 entries a second apart, the first ten past the age bound by the end.
    entries = []
    for n in range(40):
        entries.append(store.append(clock.seconds(), HistoryKind.SAID, "alice", f"m{n}"))
        clock.advance(1 if n != 9 else DAY - 20)
    clock.advance(WRITE_INTERVAL)
    now = clock.seconds()
    fresh = entries[10:]
    ids = [e.id for e in entries]
    spans = [
        ALL_HISTORY,
        HistorySpan(before_id=ids[30]),
        HistorySpan(before=entries[30].at),
        HistorySpan(after_id=ids[20]),
        HistorySpan(after=entries[20].at),
        HistorySpan(after_id=ids[20], earliest=True),
        HistorySpan(after=entries[20].at, earliest=True),
        HistorySpan(after_id=ids[15], before_id=ids[25], earliest=True),
        HistorySpan(after_id=ids[15], before=entries[25].at),
        HistorySpan(after_id=ids[5], earliest=True),
        HistorySpan(after_id=ids[39]),
        HistorySpan(before_id=ids[10]),
    ]
    for span in spans:
        for count in (1, 4, 100):
            inside = [e.id for e in fresh if span.holds(e)]
            expected = inside[:count] if span.earliest else inside[-count:]
            assert pages(store, count, now, span) == expected, (span, count)


def test_purge_removes_a_name_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock)
    alice, spammer = connect_named(server_on(store, clock).factory, "alice", "spammer")
    spammer.send("buy now")
    spammer.send("/me sells")
    alice.send("no thanks")
    alice.send("/purge spammer")
    assert alice.lines()[-1].text == "removed 2 stored messages of spammer"
    assert said(path) == ["no thanks"]
    store.close()
    assert [e.text for e in store_at(path, clock).latest(100, clock.seconds()) if e.text] == ["no thanks"]


def test_a_file_that_is_not_a_database_stops_the_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    path.write_bytes(b"this is not a SQLite file, but it is long enough to look like one" * 100)
    with pytest.raises(HistoryFileError, match=f"history file {path}"):
        store_at(path, new_clock())
    # Nothing was reset.
    assert path.read_bytes().startswith(b"this is not a SQLite file")


def test_a_damaged_database_stops_the_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock)
    for n in range(2000):
        store.append(clock.seconds(), HistoryKind.SAID, "alice", f"message number {n} " * 5)
    store.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    # Scribble over pages past the header: the tables' b-trees.
    data[2 * 4096 : 6 * 4096] = b"\xa5" * (4 * 4096)
    path.write_bytes(bytes(data))
    with pytest.raises(HistoryFileError, match=f"history file {path}"):
        store_at(path, clock)


def test_an_unopenable_history_file_stops_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "state" / HISTORY_FILE).mkdir(parents=True)
    config = Options()
    config.parseOptions([])
    with pytest.raises(StartupError, match=f"history file state/{HISTORY_FILE}"):
        build_service(config, MemoryReactorClock(), CountingRunner())
    config = Options()
    config.parseOptions(["--history", "0"])
    build_service(config, MemoryReactorClock(), CountingRunner())


def test_a_full_disk_is_logged_once_and_chat_goes_on(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    clock = new_clock()
    store = store_at(path, clock)
    server = server_on(store, clock)
    alice, bob = connect_named(server.factory, "alice", "bob")
    clock.advance(WRITE_INTERVAL)
    # The file may not grow any more: SQLite says the disk is full.
    pages = store.database.connection.execute("PRAGMA page_count").fetchone()[0]
    store.database.connection.execute(f"PRAGMA max_page_count = {pages}")
    with capturedLogs() as logged:
        for n in range(3):
            alice.send("x" * 3000 + str(n))
            clock.advance(WRITE_INTERVAL)
    errors = [e for e in logged if "could not write" in e.get("log_format", "")]
    assert len(errors) == 1
    assert "full" in errors[0]["error"]
    assert [line.text[-1] for line in bob.lines() if line.kind == "message"] == ["0", "1", "2"]
    store.database.connection.execute("PRAGMA max_page_count = 1000000")
    with capturedLogs() as logged:
        alice.send("room again")
        clock.advance(WRITE_INTERVAL)
    assert any("works again" in e.get("log_format", "") for e in logged)
    assert said(path)[-1] == "room again"


def test_the_history_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = Options()
    config.parseOptions([])
    assert (config["history"], config["history-days"], config["history-on-join"]) == (10_000, 30.0, 50)
    build_service(config, MemoryReactorClock(), CountingRunner())
    # On by default, in --state.
    assert (tmp_path / "state" / HISTORY_FILE).is_file()
    for bad in (["--history", "-1"], ["--history-days", "-1"], ["--history-on-join", "1001"]):
        with pytest.raises(UsageError, match="--history"):
            Options().parseOptions(bad)
    config = Options()
    config.parseOptions(["--history", "0", "--state", "other"])
    build_service(config, MemoryReactorClock(), CountingRunner())
    assert not (tmp_path / "other" / HISTORY_FILE).exists()
