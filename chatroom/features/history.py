"""
Message history, as a feature of the room: what was said before one joined.

The feature watches what the room tells everyone (L{Room.observe}) and
stores chat, actions and the room notices (joins, leaves, renames, kicks,
and so bans, which kick, and topic changes) in a
L{chatroom.core.ports.HistoryStore}, each
with its server time, sender and a message id. Whispers and end-to-end
envelopes never reach it: they are not told to everyone, and the server
cannot read an envelope (nor could a later session decrypt it).

A member gets the newest entries right after its welcome, before anything
live, as L{Replayed} events ended by a L{ReplayEnd}; C{/history} pages
further back. The member's filters apply to replayed chat as to live chat.
Admins can C{/purge} a name's entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.core.commands import CommandRegistry, CommandSpec
from chatroom.core.errors import ChatError
from chatroom.core.events import (
    CHAT_HISTORY,
    Acted,
    Event,
    HistoryEntry,
    HistoryKind,
    HistoryPurged,
    Joined,
    Kicked,
    Left,
    Notice,
    Renamed,
    Replayed,
    ReplayEnd,
    Said,
    TopicChanged,
)
from chatroom.core.ports import ALL_HISTORY, HistorySpan, HistoryStore, MemberRecord
from chatroom.core.room import Feature, Room
from chatroom.limits import AttemptLimiter
from chatroom.names import name_problem

# The most entries one /history answers with, and the default.
MAX_PAGE = 100
DEFAULT_PAGE = 50
# Characters of text one replay sends at most (the newest entries that fit):
# well under the send-queue cap however long the stored lines are.
REPLAY_BUDGET = 256 * 1024
# What one line costs besides its text and sender (time, kind, id, args).
LINE_OVERHEAD = 64
# /history calls per member in a window of seconds: each may send a
# hundred lines and read the disk.
HISTORY_LIMIT = (5, 10.0)

HISTORY = CommandSpec(
    "history",
    "[N] | before|after|since <timestamp|#id> [N]",
    f"show the last N stored messages (at most {MAX_PAGE}); before: those before a time or"
    " message id; after: the first N after it; since: the last N after it",
    0,
    3,
)
PURGE = CommandSpec("purge", "<user>", "remove every stored message of a name (admins only)", 1, 1)

# Each event the history keeps, as its entry's (kind, sender, text, target).
RECORDERS: dict[type[Event], Callable[[Any], tuple[HistoryKind, str, str, str]]] = {
    Said: lambda e: (HistoryKind.SAID, e.sender, e.text, ""),
    Acted: lambda e: (HistoryKind.ACTED, e.sender, e.text, ""),
    Joined: lambda e: (HistoryKind.JOINED, e.name, "", ""),
    Left: lambda e: (HistoryKind.LEFT, e.name, e.reason, ""),
    Renamed: lambda e: (HistoryKind.RENAMED, e.old, "", e.new),
    Kicked: lambda e: (HistoryKind.KICKED, e.by, e.reason, e.victim),
    TopicChanged: lambda e: (HistoryKind.TOPIC, e.by, e.text, ""),
}


@dataclass
class HistorySettings:
    """
    How a room keeps its history.

    @ivar store: Where the entries are kept.
    @ivar on_join: How many entries a member gets on joining (0: none).
    """

    store: HistoryStore
    on_join: int = 50


def parse_bound(text: str) -> tuple[float | None, int | None]:
    """
    A C{/history before}, C{after} or C{since} argument: an ISO 8601 time
    (as on server lines; UTC unless it says otherwise) or C{#id}.

    @return: The time, or the message id.
    @raise ChatError: If it is neither.
    """
    if text.startswith("#"):
        if not text[1:].isdigit() or len(text) > 19:
            raise ChatError(f"bad message id {text}: give #<number>, as in #1234")
        return None, int(text[1:])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ChatError(
            f"bad time {text}: give an ISO 8601 time such as 2026-11-22T10:15:03Z, or #<message id>"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp(), None


def parse_count(text: str) -> int:
    """
    A C{/history} count: 1 to L{MAX_PAGE}.

    @raise ChatError: If it is not.
    """
    if not text.isdigit() or len(text) > 4 or not 1 <= int(text) <= MAX_PAGE:
        raise ChatError(f"bad count {text}: give a number from 1 to {MAX_PAGE}")
    return int(text)


def parse_span(word: str, bound: str) -> HistorySpan:
    """
    The span a C{/history} page is read from: C{before}, C{after} or
    C{since} the time or message id C{bound}.

    @raise ChatError: If either is not one of those.
    """
    at, id_ = parse_bound(bound)
    if word == "before":
        return HistorySpan(before=at, before_id=id_)
    if word == "after":
        return HistorySpan(after=at, after_id=id_, earliest=True)
    return HistorySpan(after=at, after_id=id_)


# What comes before a bound in /history.
SPAN_WORDS = ("before", "after", "since")


class History(Feature):
    """
    The stored history of one room, and the commands that read and purge it.
    """

    log = Logger()

    def __init__(self, room: Room, settings: HistorySettings) -> None:
        self.room = room
        self.settings = settings
        self.store = settings.store
        self._limiter = AttemptLimiter(room.clock, *HISTORY_LIMIT)
        # The event last stored, and its message id.
        self._last_recorded: tuple[Event | None, int] = (None, 0)
        # The purge this process noted (for the others), last.
        self._purging: HistoryPurged | None = None
        room.observe(self.record)
        room.add_message_ids(self.message_id)

    def register(self, commands: CommandRegistry) -> None:
        commands.add(HISTORY, self.history)
        commands.add(PURGE, self.purge)

    # Recording

    def record(self, event: Event) -> None:
        """
        Store C{event} if it is one the history keeps.
        """
        recorder = RECORDERS.get(type(event))
        if recorder is not None:
            kind, sender, text, target = recorder(event)
            entry = self.store.append(event.at, kind, sender, text, target)
            self._last_recorded = (event, entry.id)
        elif isinstance(event, HistoryPurged) and event is not self._purging:
            # Purged on another process of the room: here too.
            self.store.purge(event.name).addErrback(self._purge_elsewhere_failed, event.name)

    def message_id(self, event: Event) -> int | None:
        """
        The message id C{event} is stored under, while it goes out: the
        room records an event before it tells anyone (IRC's C{msgid}).
        """
        recorded, id_ = self._last_recorded
        return id_ if recorded is event else None

    # Replaying

    def welcomed(self, member: MemberRecord) -> None:
        count = self.settings.on_join
        if count <= 0:
            return
        entries = self.store.latest(count, self.room.now())
        if entries:
            self._replay(entries, member, count)

    def _replay(
        self, entries: list[HistoryEntry], member: MemberRecord, asked: int, span: HistorySpan = ALL_HISTORY
    ) -> None:
        if member not in self.room.members:
            # It left while the page was read.
            return
        # The entries that fit the budget: the newest, or on a page forward the oldest.
        budget = REPLAY_BUDGET
        fitting = 0
        for entry in entries if span.earliest else reversed(entries):
            budget -= len(entry.text) + len(entry.sender) + len(entry.target) + LINE_OVERHEAD
            if budget < 0:
                break
            fitting += 1
        full = fitting < len(entries) or len(entries) >= asked
        entries = entries[:fitting] if span.earliest else entries[len(entries) - fitting :]
        sent = 0
        for entry in entries:
            if (
                member.filters
                and entry.kind in CHAT_HISTORY
                and entry.sender != member.name
                and member.hides(entry.filtered_text)
            ):
                continue
            self.room.tell(member, Replayed(entry.at, entry))
            sent += 1
        # A full page may have more entries behind it, older or newer.
        oldest = entries[0].id if entries and full and not span.earliest else None
        newest = entries[-1].id if entries and full and span.earliest else None
        self.room.tell(member, ReplayEnd(self.room.now(), sent, oldest, newest))

    def history(self, member: MemberRecord, args: tuple[str, ...]) -> Deferred[None]:
        span = ALL_HISTORY
        count = DEFAULT_PAGE
        if args and args[0].lower() in SPAN_WORDS:
            if len(args) < 2:
                raise ChatError(f"missing argument: usage {HISTORY.usage}")
            span = parse_span(args[0].lower(), args[1])
            if len(args) > 2:
                count = parse_count(args[2])
        elif len(args) > 1:
            raise ChatError(f"too many arguments: usage {HISTORY.usage}")
        elif args:
            count = parse_count(args[0])
        wait = self._limiter.wait(member.id)
        if wait > 0:
            raise ChatError(f"too many /history requests: try again in {wait:.0f}s")
        self._limiter.record(member.id)
        reading = self.store.page(count, self.room.now(), span)
        return reading.addCallbacks(
            self._replay, self._unreadable, callbackArgs=(member, count, span), errbackArgs=(member,)
        )

    def _unreadable(self, failure: Failure, member: MemberRecord) -> None:
        self.log.failure("reading the history for {name} failed", failure, name=member.name)
        raise ChatError("the history cannot be read right now")

    # Purging

    def purge(self, member: MemberRecord, args: tuple[str, ...]) -> Deferred[None]:
        if not member.is_admin:
            raise ChatError("permission denied: only an admin can purge the history")
        (name,) = args
        problem = name_problem(name)
        if problem is not None:
            raise ChatError(f"invalid name {name!r}: {problem}")
        purging = self.store.purge(name).addCallbacks(
            self._purged, self._purge_failed, callbackArgs=(member, name), errbackArgs=(member, name)
        )
        # For the history of every other process of the room (a shared
        # store passes what the observers hear on); not again here.
        self._purging = HistoryPurged(self.room.now(), name)
        self.room.note(self._purging)
        return purging

    def _purge_elsewhere_failed(self, failure: Failure, name: str) -> None:
        self.log.failure("purging the history of {name} as another node did failed", failure, name=name)

    def _purged(self, count: int, member: MemberRecord, name: str) -> None:
        self.log.info(
            "{admin} purged {count} stored messages of {name}", admin=member.name, count=count, name=name
        )
        self.room.tell(member, Notice(self.room.now(), f"removed {count} stored messages of {name}"))

    def _purge_failed(self, failure: Failure, member: MemberRecord, name: str) -> None:
        self.log.failure("purging the history of {name} failed", failure, name=name)
        raise ChatError(f"the messages of {name} could not be removed: see the server log")
