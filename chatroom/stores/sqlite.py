"""
The message history in a SQLite file (Python's sqlite3, in WAL mode).

L{open_history} opens (or makes) the file and checks it, blocking: the
daemon calls it at start-up, before the reactor runs, so a damaged file
stops the daemon with an error naming it. After that every statement runs
through the runner it is given, which must run one callable at a time, in
order, off the reactor thread (one dedicated thread: one writer, one
connection). L{SQLiteHistory} is the L{chatroom.core.ports.HistoryStore}:
it keeps the newest entries in memory (what a joining member gets comes
from there, at once) and writes the entries of one reactor turn in one
transaction at the end of the turn (under load, the turns of the last
L{WRITE_INTERVAL} seconds together), so a C{kill -9} loses at most the
turns not yet committed.
A failed write (a full disk) is logged and chat goes on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.core.events import HistoryEntry, HistoryKind
from chatroom.core.memory import InMemoryHistory
from chatroom.core.ports import ALL_HISTORY, HistorySpan

HISTORY_FILE = "history.sqlite3"
SCHEMA_VERSION = 1
# Entries handed to the writer and not yet written, at most: past that
# (a disk far slower than the room), new entries are not stored.
MAX_UNWRITTEN = 100_000
# Seconds from one write to the next, at least: a quiet room's line is
# written at the end of its turn, a busy room's turns share a transaction.
WRITE_INTERVAL = 0.05
# Seconds between removals of entries past the age bound.
PRUNE_INTERVAL = 600.0

_KINDS = tuple(kind.value for kind in HistoryKind)
_COLUMNS = "id, at, kind, sender, text, target"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    text TEXT NOT NULL,
    target TEXT NOT NULL
);
"""
# No index but the id: every insert stays one b-tree update; a purge or a
# removal by age scans a table that --history bounds (10,000 rows by default).

T = TypeVar("T")
Runner = Callable[[Callable[[], Any]], Deferred[Any]]


class HistoryFileError(Exception):
    """
    The history file cannot be used; the message names it and says why.
    """


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    id_, at, kind, sender, text, target = row
    return HistoryEntry(id_, at, HistoryKind(kind), sender, text, target)


class HistoryDatabase:
    """
    The history file's connection and statements; every method blocks,
    and all but L{open} run on the writer thread.

    @ivar count: How many entries the file holds.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, keep: int, max_age: float | None) -> None:
        self.path = path
        self.connection = connection
        self.keep = keep
        self.max_age = max_age
        # As many rows as one statement may carry values for (7 a row), at most 500.
        variables = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = max(1, min(500, variables // 7))
        row = connection.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM history").fetchone()
        self.count: int = row[0]
        self.last_id: int = row[1]

    @classmethod
    def open(cls, path: Path, keep: int, max_age: float | None) -> HistoryDatabase:
        """
        Open or make the history file at C{path} and check it.

        @raise HistoryFileError: If it cannot be opened, is not a history
            file, or is damaged.
        """
        fix = "move it away to start with an empty history, or give another --state"
        try:
            # The connection moves to the writer thread once open.
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise HistoryFileError(f"cannot open the history file {path}: {e}") from e
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise HistoryFileError(f"the history file {path} cannot use WAL mode ({mode})")
            # WAL with synchronous=NORMAL: a commit survives the process
            # being killed (not a power cut), at a fraction of the cost.
            connection.execute("PRAGMA synchronous=NORMAL")
            check = [row[0] for row in connection.execute("PRAGMA quick_check")]
            if check != ["ok"]:
                raise HistoryFileError(f"the history file {path} is damaged ({'; '.join(check[:3])}): {fix}")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise HistoryFileError(
                    f"the history file {path} has format {version}, not {SCHEMA_VERSION}: {fix}"
                )
            connection.executescript(_SCHEMA)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute(f"SELECT {_COLUMNS}, sender_key FROM history LIMIT 0").fetchall()
            return cls(path, connection, keep, max_age)
        except sqlite3.Error as e:
            connection.close()
            raise HistoryFileError(f"cannot use the history file {path}: {e}: {fix}") from e
        except HistoryFileError:
            connection.close()
            raise

    def _select(
        self, where: str, parameters: tuple[Any, ...], count: int, earliest: bool = False
    ) -> list[HistoryEntry]:
        kinds = ", ".join("?" * len(_KINDS))
        order = "ASC" if earliest else "DESC"
        rows = self.connection.execute(
            f"SELECT {_COLUMNS} FROM history WHERE kind IN ({kinds}){where} ORDER BY id {order} LIMIT ?",
            (*_KINDS, *parameters, count),
        ).fetchall()
        if not earliest:
            rows.reverse()
        return [_entry(row) for row in rows]

    def latest(self, count: int) -> list[HistoryEntry]:
        """
        The newest C{count} entries, oldest first.
        """
        return self._select("", (), count)

    def page(self, count: int, now: float, span: HistorySpan) -> list[HistoryEntry]:
        where = ""
        parameters: list[Any] = []
        bounds = (
            (self.max_age is not None, "at >= ?", now - (self.max_age or 0)),
            (span.before is not None, "at < ?", span.before),
            (span.before_id is not None, "id < ?", span.before_id),
            (span.after is not None, "at > ?", span.after),
            (span.after_id is not None, "id > ?", span.after_id),
        )
        for given, condition, value in bounds:
            if given:
                where += f" AND {condition}"
                parameters.append(value)
        return self._select(where, tuple(parameters), count, span.earliest)

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            with suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    def write(self, entries: list[HistoryEntry]) -> None:
        """
        Add C{entries} and drop the oldest past the count bound, in one
        transaction.
        """

        def work(connection: sqlite3.Connection) -> int:
            rows = [
                (e.id, e.at, e.kind.value, e.sender, e.sender.casefold(), e.text, e.target) for e in entries
            ]
            # Many rows a statement: the module lets go of the GIL for each
            # statement it steps, so row by row the reactor thread would be
            # made to hand it back once per row.
            for start in range(0, len(rows), self._rows_per_insert):
                chunk = rows[start : start + self._rows_per_insert]
                connection.execute(
                    "INSERT INTO history (id, at, kind, sender, sender_key, text, target) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                    [value for row in chunk for value in row],
                )
            count = self.count + len(entries)
            excess = count - self.keep
            if excess > 0:
                # The oldest as one range of the id's b-tree: cheaper than
                # "id IN (the first N)", which gathers them in a table first.
                (last,) = connection.execute(
                    "SELECT id FROM history ORDER BY id LIMIT 1 OFFSET ?", (excess - 1,)
                ).fetchone()
                connection.execute("DELETE FROM history WHERE id <= ?", (last,))
                count -= excess
            return count

        self.count = self._transaction(work)

    def purge(self, sender: str) -> int:
        """
        Remove C{sender}'s entries, any case; how many there were.
        """
        removed = self._transaction(
            lambda c: c.execute("DELETE FROM history WHERE sender_key = ?", (sender.casefold(),)).rowcount
        )
        self.count -= removed
        return removed

    def prune(self, now: float) -> int:
        """
        Remove the entries past the age bound at C{now}; how many.
        """
        if self.max_age is None:
            return 0
        cutoff = now - self.max_age
        removed = self._transaction(
            lambda c: c.execute("DELETE FROM history WHERE at < ?", (cutoff,)).rowcount
        )
        self.count -= removed
        return removed

    def close(self) -> None:
        self.connection.close()


class SQLiteHistory:
    """
    A L{chatroom.core.ports.HistoryStore} over a L{HistoryDatabase}.

    @param clock: Schedules the write at the end of the turn, and the
        removals of old entries.
    @param run: Runs each blocking call, one at a time, in order.
    @param cache: How many of the newest entries to keep in memory (what
        L{latest} can give).
    """

    log = Logger()

    def __init__(
        self,
        database: HistoryDatabase,
        clock: IReactorTime,
        run: Runner,
        cache: int,
        written: Callable[[int], object] | None = None,
    ) -> None:
        """
        @param written: Told how many entries each write stored (the metrics).
        """
        self.database = database
        self._on_written = written
        self.clock = clock
        self.run = run
        self.memory = InMemoryHistory(
            max(1, min(cache, database.keep)), database.max_age, first_id=database.last_id + 1
        )
        for entry in database.latest(self.memory.keep):
            self.memory.add(entry)
        self._pending: list[HistoryEntry] = []
        self._flush_call: IDelayedCall | None = None
        self._unwritten = 0
        # Writes handed to the writer and not yet done.
        self._writing = 0
        self._last_write = -WRITE_INTERVAL
        self._failing = False
        self._dropping = False
        self._prune_call: IDelayedCall | None = clock.callLater(PRUNE_INTERVAL, self._prune_later)
        self._closed = False

    # The port

    def append(
        self, at: float, kind: HistoryKind, sender: str, text: str = "", target: str = ""
    ) -> HistoryEntry:
        entry = self.memory.append(at, kind, sender, text, target)
        if self._closed:
            return entry
        if self._unwritten + len(self._pending) >= MAX_UNWRITTEN:
            if not self._dropping:
                self._dropping = True
                self.log.error(
                    "the history file {path} is too slow: {count} entries wait to be written;"
                    " new ones are not stored until they are",
                    path=str(self.database.path),
                    count=self._unwritten,
                )
            return entry
        self._dropping = False
        self._pending.append(entry)
        self._schedule()
        return entry

    def latest(self, count: int, now: float) -> list[HistoryEntry]:
        return self.memory.latest(count, now)

    def page(self, count: int, now: float, span: HistorySpan = ALL_HISTORY) -> Deferred[list[HistoryEntry]]:
        # Written first: the writer runs calls in order, so the page sees them.
        self.flush(now=True)
        return self.run(lambda: self.database.page(count, now, span))

    def purge(self, sender: str) -> Deferred[int]:
        self.flush(now=True)
        self.memory.remove_sender(sender)
        return self.run(lambda: self.database.purge(sender))

    def prune(self, now: float) -> Deferred[int]:
        self.memory.remove_old(now)
        return self.run(lambda: self.database.prune(now))

    # Writing

    def flush(self, now: bool = False) -> None:
        """
        Hand the entries not yet handed to the writer, in one transaction;
        while a write is under way they wait for it (unless C{now}), so a
        busy room writes fewer, larger transactions.
        """
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if not self._pending or (self._writing and not now):
            return
        batch, self._pending = self._pending, []
        self._unwritten += len(batch)
        self._writing += 1
        self._last_write = self.clock.seconds()
        written = self.run(lambda: self.database.write(batch))
        written.addCallbacks(
            self._written, self._not_written, callbackArgs=(len(batch),), errbackArgs=(len(batch),)
        )
        written.addBoth(self._done, len(batch))

    def _written(self, result: None, count: int) -> None:
        if self._on_written is not None:
            self._on_written(count)
        if self._failing:
            self._failing = False
            self.log.info("writing the history file {path} works again", path=str(self.database.path))

    def _not_written(self, failure: Failure, count: int) -> None:
        # A full disk, say: the room goes on; logged once until a write works.
        if not self._failing:
            self._failing = True
            self.log.error(
                "could not write {count} history entries to {path}: {error}; chat goes on",
                count=count,
                path=str(self.database.path),
                error=str(failure.value),
            )

    def _done(self, result: object, count: int) -> None:
        self._unwritten -= count
        self._writing -= 1
        # What was said while it wrote.
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_call is not None or self._writing or not self._pending:
            return
        # At the end of this turn, so everything said in it goes in one
        # transaction; under load at most one every WRITE_INTERVAL, so the
        # writer thread's wake-ups do not split the room's turns.
        delay = max(0.0, self._last_write + WRITE_INTERVAL - self.clock.seconds())
        self._flush_call = self.clock.callLater(delay, self.flush)

    def _prune_later(self) -> None:
        self._prune_call = self.clock.callLater(PRUNE_INTERVAL, self._prune_later)
        self.prune(self.clock.seconds()).addErrback(self._prune_failed)

    def _prune_failed(self, failure: Failure) -> None:
        self.log.error(
            "could not remove old entries from {path}: {error}",
            path=str(self.database.path),
            error=str(failure.value),
        )

    def close(self) -> Deferred[None]:
        """
        Write what is pending and close the file.

        @return: Fires once closed.
        """
        if self._prune_call is not None and self._prune_call.active():
            self._prune_call.cancel()
        self.flush(now=True)
        self._closed = True
        return self.run(self.database.close)


def open_history(
    path: Path,
    clock: IReactorTime,
    run: Runner,
    keep: int,
    max_age: float | None,
    cache: int,
    written: Callable[[int], object] | None = None,
) -> SQLiteHistory:
    """
    Open the history file at C{path} (blocking: at start-up) as a store.

    @raise HistoryFileError: As L{HistoryDatabase.open}.
    """
    database = HistoryDatabase.open(path, keep, max_age)
    try:
        return SQLiteHistory(database, clock, run, cache, written)
    except sqlite3.Error as e:
        database.close()
        raise HistoryFileError(f"cannot read the history file {path}: {e}") from e
