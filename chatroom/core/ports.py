"""
The core's ports: what the room needs from stores and transports.

Each port is a L{typing.Protocol}; L{chatroom.core.memory} has the
in-memory implementations one daemon process uses. A store shared between
processes implements the same ports. Operations that a shared store could
only do with a round trip (claiming a name, saving a ban) return Deferreds;
reads come from what the store keeps locally.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.defer import Deferred

from chatroom.bans import Ban
from chatroom.core.events import Audience, Event, HistoryEntry, HistoryKind


@dataclass(eq=False)
class MemberRecord:
    """
    What the room knows of one member: all of it could live in a shared
    store. The live connection stays with the member's session.

    @ivar id: Unique among all members, present and past, of the room.
    @ivar name: The member's current name.
    @ivar host: The address it connected from.
    @ivar port: The port it connected from.
    @ivar connected_at: When it joined, POSIX seconds.
    @ivar last_active: When it last sent a command.
    @ivar is_admin: Whether it has admin rights.
    @ivar filters: The member's filter words, casefolded: chat holding one
        is not delivered to it.
    @ivar cloak: What other members see instead of its address; L{None}
        when addresses are public.
    """

    id: str
    name: str
    host: str
    port: int
    connected_at: float
    last_active: float = 0.0
    is_admin: bool = False
    filters: list[str] = field(default_factory=list)
    cloak: str | None = None
    # All filters in one pattern, made again when they change: one pass
    # over a message however many filters there are.
    _matcher: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def hides(self, text: str) -> bool:
        """
        Whether one of this member's filters hides chat text C{text}.
        """
        return self.hides_folded(text.casefold())

    def hides_folded(self, folded: str) -> bool:
        """
        Whether one of this member's filters hides chat text whose
        casefolded form is C{folded} (fold once per message, not per member).
        """
        if not self.filters:
            return False
        matcher = self._matcher
        if matcher is None:
            matcher = self._compile()
        return matcher.search(folded) is not None

    def _compile(self) -> re.Pattern[str]:
        # Longest first, so a word is never cut short by one it starts with.
        words = sorted(self.filters, key=len, reverse=True)
        self._matcher = matcher = re.compile("|".join(map(re.escape, words)))
        return matcher

    def add_filter(self, word: str) -> int:
        """
        Hide chat holding C{word} (casefolded) from now on.

        @return: The size of the new pattern, in characters: building it
            costs about as much as sending that many bytes several times.
        """
        self.filters.append(word)
        return len(self._compile().pattern)

    def remove_filter(self, word: str) -> int:
        """
        Show chat holding C{word} again.

        @return: As L{add_filter}.
        """
        self.filters.remove(word)
        self._matcher = None
        return len(self._compile().pattern) if self.filters else 0

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class MemberDirectory(Protocol):
    """
    The room's members, in join order, keyed by name without regard to case;
    names are unique on their look-alike skeleton.
    """

    def new_id(self) -> str:
        """
        An id no member has had.
        """

    def next_guest_number(self) -> int:
        """
        The next number for a C{guestN} name.
        """

    def claim(self, record: MemberRecord) -> Deferred[MemberRecord | None]:
        """
        Add C{record} under its name, atomically on the name's skeleton.

        @return: Fires with L{None} once added, or with the member whose
            name clashes (then nothing changed).
        """

    def rename(self, record: MemberRecord, new_name: str) -> Deferred[MemberRecord | None]:
        """
        Rename C{record}, atomically on the new name's skeleton.

        @return: Fires with L{None} once renamed, or with the member whose
            name clashes (then nothing changed).
        """

    def remove(self, record: MemberRecord) -> None:
        """
        Remove C{record}; a no-op if it is not there.
        """

    def set_admin(self, record: MemberRecord, admin: bool) -> None: ...

    def touch(self, record: MemberRecord, now: float) -> None:
        """
        Note that C{record} sent a command at C{now}.
        """

    def find(self, name: str) -> MemberRecord | None: ...

    def clash(self, name: str, ignore: MemberRecord | None = None) -> MemberRecord | None:
        """
        The member, other than C{ignore}, whose name looks like C{name}.
        """

    def get(self, member_id: str) -> MemberRecord | None: ...

    def __contains__(self, record: object) -> bool: ...

    def __iter__(self) -> Iterator[MemberRecord]: ...

    def __len__(self) -> int: ...


class Recipient(Protocol):
    """
    Where the fan-out hands a member's events: its session.
    """

    def receive(self, event: Event) -> None:
        """
        Take one event addressed to this member.
        """

    def close(self) -> None:
        """
        End the member's connection after the events already received.
        """


class FanOut(Protocol):
    """
    Delivers events to the members they are addressed to.
    """

    def subscribe(self, member_id: str, recipient: Recipient) -> None: ...

    def unsubscribe(self, member_id: str) -> None: ...

    def publish(self, event: Event, audience: Audience) -> None:
        """
        Hand C{event} to every member of C{audience}, each once.
        """

    def disconnect(self, member_id: str) -> None:
        """
        Close the member's connection after what it was already handed.
        """


class Connection(Protocol):
    """
    One client connection, as its transport offers it to a session.

    @ivar host: The peer's address.
    @ivar port: The peer's port.
    """

    host: str
    port: int

    def deliver(self, event: Event, cap: int) -> int:
        """
        Queue C{event}, in the transport's protocol, for the client (the
        same bytes for every connection of the transport that gets the same
        event), unless that takes the bytes the client has not taken past
        C{cap} (0: no cap); while the queue grows, tell the session
        (L{chatroom.core.session.Session.queue_grew}).

        @return: The bytes queued (0: the transport has nothing to say of
            C{event}), or -1 if past C{cap}: then nothing was queued.
        """

    def queued(self) -> int:
        """
        Bytes queued that the client has not yet taken (past what its
        socket holds).
        """

    def close(self) -> None:
        """
        Close after the queued output is written; later sends are dropped.
        """

    def abort(self) -> None:
        """
        Close at once, dropping unsent output.
        """


class BanStore(Protocol):
    """
    The bans in force; a store that keeps them across restarts owns its
    file (or database) format.
    """

    def active(self, now: float) -> list[Ban]: ...

    def for_name(self, name: str, now: float) -> Ban | None: ...

    def for_host(self, host: str, now: float) -> Ban | None: ...

    def add(self, ban: Ban, now: float) -> Deferred[None]:
        """
        Put C{ban} in force (replacing bans on the same name or network)
        and keep it.

        @raise ValueError: If the ban cannot be added (the list is full);
            then nothing changed.
        @return: Fires once the ban is kept; fails with L{OSError} if it is
            in force but could not be saved.
        """

    def remove(self, target: str, now: float) -> tuple[list[Ban], Deferred[None]]:
        """
        Lift the bans on name or network C{target}.

        @return: The lifted bans, and a Deferred as L{add}'s.
        """

    def save(self, now: float) -> Deferred[None]:
        """
        Keep the bans in force now (again).
        """


@dataclass(frozen=True)
class Topic:
    """
    The room's topic: C{text}, set by C{by} at C{at}.
    """

    text: str
    by: str
    at: float


class TopicStore(Protocol):
    """
    Where the room's topic is kept (with the bans, in the daemon).
    """

    def topic(self) -> Topic | None: ...

    def set_topic(self, topic: Topic | None, now: float) -> Deferred[None]:
        """
        Keep C{topic} (L{None}: no topic), as L{BanStore.add} keeps a ban.
        """


@dataclass(frozen=True, slots=True)
class HistorySpan:
    """
    Which stored entries a page is read from: those strictly between the
    bounds given, by server time and by message id.

    @ivar before: Only entries older than this time.
    @ivar before_id: Only entries with a lower id.
    @ivar after: Only entries newer than this time.
    @ivar after_id: Only entries with a higher id.
    @ivar earliest: Take the oldest entries of the span, not the newest
        (to page forward).
    """

    before: float | None = None
    before_id: int | None = None
    after: float | None = None
    after_id: int | None = None
    earliest: bool = False

    def holds(self, entry: HistoryEntry) -> bool:
        """
        Whether C{entry} is within the bounds.
        """
        return (
            (self.before is None or entry.at < self.before)
            and (self.before_id is None or entry.id < self.before_id)
            and (self.after is None or entry.at > self.after)
            and (self.after_id is None or entry.id > self.after_id)
        )


ALL_HISTORY = HistorySpan()


class HistoryStore(Protocol):
    """
    The room's stored messages and notices, oldest first, bounded by count
    and by age. Appends take effect at once for readers in this process
    and are kept (written) later; the latest entries are read from memory,
    older pages may need a round trip.
    """

    def append(
        self, at: float, kind: HistoryKind, sender: str, text: str = "", target: str = ""
    ) -> HistoryEntry:
        """
        Store one entry under a new message id.
        """

    def latest(self, count: int, now: float) -> list[HistoryEntry]:
        """
        The newest C{count} entries (at most those the store keeps in
        memory) not older than the age bound at C{now}, oldest first.
        """

    def page(self, count: int, now: float, span: HistorySpan = ALL_HISTORY) -> Deferred[list[HistoryEntry]]:
        """
        C{count} entries within C{span} (by default: all of them) and the
        age bound at C{now}, oldest first: the newest C{count} of them, or
        the oldest if C{span.earliest}.
        """

    def purge(self, sender: str) -> Deferred[int]:
        """
        Remove every entry whose sender is C{sender}, any case.

        @return: Fires with how many were removed.
        """

    def prune(self, now: float) -> Deferred[int]:
        """
        Remove what is past the bounds at C{now}.

        @return: Fires with how many were removed.
        """
