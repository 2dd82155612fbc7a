"""
Bans kept in a JSON document under C{--state}, written off the reactor thread.

L{DocumentBanStore} is the L{chatroom.core.ports.BanStore} of one daemon
process. It owns the file format (L{STATE_FILE}, version L{STATE_VERSION})
and saves after every change through an injected runner (a thread pool in
the daemon), one write at a time and in order; changes made while a write
is under way are saved together by the next one, so the last state always
wins and a slow disk never holds up the room.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from chatroom.bans import BanList
from chatroom.core.memory import InMemoryBans, InMemoryTopic
from chatroom.core.ports import Topic
from chatroom.state import StateError, read_json

STATE_FILE = "moderation.json"
STATE_VERSION = 1

Runner = Callable[[Callable[[], None]], Deferred[None]]


def run_inline(work: Callable[[], None]) -> Deferred[None]:
    """
    Run C{work} at once (tests); the daemon runs it in a thread pool.
    """
    return maybeDeferred(work)


def load_bans(path: Path) -> BanList:
    """
    The bans saved in state file C{path}; none if there is no file.

    @raise StateError: If the file is unreadable or corrupt.
    """
    document = read_json(path)
    if document is None:
        return BanList()
    try:
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} moderation state")
        return BanList.from_json(document.get("bans"))
    except ValueError as e:
        raise StateError.corrupt(path, e) from e


def load_topic(path: Path) -> Topic | None:
    """
    The room topic saved in state file C{path} (beside the bans), if any.

    @raise StateError: If the file is unreadable or corrupt.
    """
    document = read_json(path)
    if not isinstance(document, dict) or document.get("topic") is None:
        return None
    saved = document["topic"]
    try:
        if not isinstance(saved, dict):
            raise ValueError("the topic is not an object")
        text, by, at = saved.get("text"), saved.get("by"), saved.get("at")
        if not isinstance(text, str) or not isinstance(by, str) or not isinstance(at, int | float):
            raise ValueError("the topic needs text, by and at")
        return Topic(text, by, float(at))
    except ValueError as e:
        raise StateError.corrupt(path, e) from e


class DocumentBanStore(InMemoryBans, InMemoryTopic):
    """
    A ban list (and the room topic: a L{chatroom.core.ports.TopicStore}
    too), kept in memory as the in-memory stores keep them, and saved as one
    document through C{write} after every change.

    @param write: Writes the state document (C{write_json} bound to the
        state file, in the daemon); it may block, and runs through C{run}.
    @param run: Runs C{write} off the reactor thread.
    """

    def __init__(
        self,
        bans: BanList,
        write: Callable[[Any], None],
        run: Runner = run_inline,
        topic: Topic | None = None,
    ) -> None:
        InMemoryBans.__init__(self, bans)
        InMemoryTopic.__init__(self, topic)
        self._write = write
        self._run = run
        self._writing = False
        # The document to write next, and who waits for it.
        self._next: Any = None
        self._waiting: list[Deferred[None]] = []

    def set_topic(self, topic: Topic | None, now: float) -> Deferred[None]:
        InMemoryTopic.set_topic(self, topic, now)
        return self.save(now)

    def save(self, now: float) -> Deferred[None]:
        # The document is made now, on the reactor thread, so it is the
        # state as of this change; only the (slow) writing goes to the runner.
        topic = self.topic()
        saved = None if topic is None else {"text": topic.text, "by": topic.by, "at": topic.at}
        self._next = {"version": STATE_VERSION, "bans": self.bans.to_json(now), "topic": saved}
        done: Deferred[None] = Deferred()
        self._waiting.append(done)
        if not self._writing:
            self._write_next()
        return done

    def _write_next(self) -> None:
        document, self._next = self._next, None
        waiting, self._waiting = self._waiting, []
        self._writing = True

        def written(result: Failure | None) -> None:
            self._writing = False
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)
            if self._waiting:
                self._write_next()

        self._run(lambda: self._write(document)).addBoth(written)
