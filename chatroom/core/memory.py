"""
In-memory implementations of the core's ports, for one daemon process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from twisted.internet.defer import Deferred, succeed

from chatroom.bans import Ban, BanList
from chatroom.core.events import Admins, Audience, Event, Everyone, HistoryEntry, HistoryKind
from chatroom.core.ports import ALL_HISTORY, HistorySpan, MemberRecord, Recipient, Topic
from chatroom.names import skeleton


class InMemoryMembers:
    """
    A L{chatroom.core.ports.MemberDirectory} in this process, in join order.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, MemberRecord] = {}
        self._by_skeleton: dict[str, MemberRecord] = {}
        self._by_id: dict[str, MemberRecord] = {}
        self._ids = 0
        self._guests = 0

    def new_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    def next_guest_number(self) -> int:
        self._guests += 1
        return self._guests

    def claim(self, record: MemberRecord) -> Deferred[MemberRecord | None]:
        other = self._by_skeleton.get(skeleton(record.name))
        if other is None:
            self._by_key[record.name.casefold()] = record
            self._by_skeleton[skeleton(record.name)] = record
            self._by_id[record.id] = record
        return succeed(other)

    def rename(self, record: MemberRecord, new_name: str) -> Deferred[MemberRecord | None]:
        other = self._by_skeleton.get(skeleton(new_name))
        if other is not None and other is not record:
            return succeed(other)
        # Rebuild the key order so iteration stays in join order.
        records = list(self._by_key.values())
        self._by_skeleton.pop(skeleton(record.name))
        record.name = new_name
        self._by_skeleton[skeleton(new_name)] = record
        self._by_key = {r.name.casefold(): r for r in records}
        return succeed(None)

    def remove(self, record: MemberRecord) -> None:
        if self._by_key.get(record.name.casefold()) is record:
            del self._by_key[record.name.casefold()]
            del self._by_skeleton[skeleton(record.name)]
            del self._by_id[record.id]

    def set_admin(self, record: MemberRecord, admin: bool) -> None:
        record.is_admin = admin

    def touch(self, record: MemberRecord, now: float) -> None:
        record.last_active = now

    def find(self, name: str) -> MemberRecord | None:
        return self._by_key.get(name.casefold())

    def clash(self, name: str, ignore: MemberRecord | None = None) -> MemberRecord | None:
        found = self._by_skeleton.get(skeleton(name))
        return None if found is ignore else found

    def get(self, member_id: str) -> MemberRecord | None:
        return self._by_id.get(member_id)

    def __contains__(self, record: object) -> bool:
        return isinstance(record, MemberRecord) and self._by_id.get(record.id) is record

    def __iter__(self) -> Iterator[MemberRecord]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)


class LocalFanOut:
    """
    A L{chatroom.core.ports.FanOut} to the sessions of this process.

    It keeps each member's L{Recipient} (a listener, never a transport) and
    resolves an audience against the member directory.
    """

    def __init__(self, members: Iterable[MemberRecord]) -> None:
        self._members = members
        self._recipients: dict[str, Recipient] = {}

    def subscribe(self, member_id: str, recipient: Recipient) -> None:
        self._recipients[member_id] = recipient

    def unsubscribe(self, member_id: str) -> None:
        self._recipients.pop(member_id, None)

    def publish(self, event: Event, audience: Audience) -> None:
        recipients = self._recipients
        targets: Iterable[Recipient]
        if isinstance(audience, Everyone):
            # A copy: a delivery may drop a member (a full send queue).
            targets = list(recipients.values())
        elif isinstance(audience, Admins):
            targets = [recipients[r.id] for r in self._members if r.is_admin and r.id in recipients]
        else:
            targets = [recipients[i] for i in dict.fromkeys(audience.ids) if i in recipients]
        for recipient in targets:
            recipient.receive(event)

    def disconnect(self, member_id: str) -> None:
        recipient = self._recipients.pop(member_id, None)
        if recipient is not None:
            recipient.close()


class InMemoryBans:
    """
    A L{chatroom.core.ports.BanStore} that keeps nothing across restarts.
    """

    def __init__(self, bans: BanList | None = None) -> None:
        self.bans = bans if bans is not None else BanList()

    def active(self, now: float) -> list[Ban]:
        return self.bans.active(now)

    def for_name(self, name: str, now: float) -> Ban | None:
        return self.bans.for_name(name, now)

    def for_host(self, host: str, now: float) -> Ban | None:
        return self.bans.for_host(host, now)

    def add(self, ban: Ban, now: float) -> Deferred[None]:
        self.bans.add(ban, now)
        return self.save(now)

    def remove(self, target: str, now: float) -> tuple[list[Ban], Deferred[None]]:
        removed = self.bans.remove(target, now)
        return removed, self.save(now) if removed else succeed(None)

    def save(self, now: float) -> Deferred[None]:
        return succeed(None)


class InMemoryTopic:
    """
    A L{chatroom.core.ports.TopicStore} that keeps the topic in memory.
    """

    def __init__(self, topic: Topic | None = None) -> None:
        self._topic = topic

    def topic(self) -> Topic | None:
        return self._topic

    def set_topic(self, topic: Topic | None, now: float) -> Deferred[None]:
        self._topic = topic
        return succeed(None)


class InMemoryHistory:
    """
    A L{chatroom.core.ports.HistoryStore} that keeps nothing across
    restarts: the newest C{keep} entries, none older than C{max_age}
    seconds (L{None}: no age bound).

    The SQLite store keeps its newest entries in one of these too.
    """

    def __init__(self, keep: int, max_age: float | None = None, first_id: int = 1) -> None:
        self.keep = keep
        self.max_age = max_age
        self._entries: deque[HistoryEntry] = deque(maxlen=keep)
        self._next_id = first_id

    def __len__(self) -> int:
        return len(self._entries)

    def append(
        self, at: float, kind: HistoryKind, sender: str, text: str = "", target: str = ""
    ) -> HistoryEntry:
        entry = HistoryEntry(self._next_id, at, kind, sender, text, target)
        self._next_id += 1
        self.add(entry)
        return entry

    def add(self, entry: HistoryEntry) -> None:
        """
        Keep C{entry} as it is (its id already given), the newest.
        """
        self._entries.append(entry)
        self._next_id = max(self._next_id, entry.id + 1)

    def _fresh(self, entry: HistoryEntry, now: float) -> bool:
        return self.max_age is None or entry.at >= now - self.max_age

    def latest(self, count: int, now: float) -> list[HistoryEntry]:
        return self.select(count, now)

    def select(self, count: int, now: float, span: HistorySpan = ALL_HISTORY) -> list[HistoryEntry]:
        """
        What L{page} answers, at once.
        """
        found: list[HistoryEntry] = []
        if span.earliest:
            for entry in self._entries:
                if len(found) >= count or (span.before_id is not None and entry.id >= span.before_id):
                    break
                if self._fresh(entry, now) and span.holds(entry):
                    found.append(entry)
            return found
        for entry in reversed(self._entries):
            if len(found) >= count or not self._fresh(entry, now):
                break
            # Ids grow with the entries: every older one is at or below this id too.
            if span.after_id is not None and entry.id <= span.after_id:
                break
            if span.holds(entry):
                found.append(entry)
        found.reverse()
        return found

    def page(self, count: int, now: float, span: HistorySpan = ALL_HISTORY) -> Deferred[list[HistoryEntry]]:
        return succeed(self.select(count, now, span))

    def purge(self, sender: str) -> Deferred[int]:
        return succeed(self.remove_sender(sender))

    def remove_sender(self, sender: str) -> int:
        """
        Drop C{sender}'s entries (any case) at once; how many there were.
        """
        key = sender.casefold()
        kept = [e for e in self._entries if e.sender.casefold() != key]
        removed = len(self._entries) - len(kept)
        self._entries = deque(kept, maxlen=self.keep)
        return removed

    def prune(self, now: float) -> Deferred[int]:
        return succeed(self.remove_old(now))

    def remove_old(self, now: float) -> int:
        """
        Drop the entries past the age bound at C{now} at once; how many.
        """
        removed = 0
        while self._entries and not self._fresh(self._entries[0], now):
            self._entries.popleft()
            removed += 1
        return removed
