"""
The core on its own: the room's rules and events, with no transport, no
protocol and no bytes at all.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from chatroom.core.chat import new_room
from chatroom.core.errors import ChatError
from chatroom.core.events import Event, Joined, Left, Listed, Renamed, Said, Welcome, Whispered
from chatroom.core.memory import InMemoryMembers
from chatroom.core.ports import MemberRecord
from chatroom.core.room import Room


class Inbox:
    """
    A L{chatroom.core.ports.Recipient} that keeps the events it is given.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def receive(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events


def join(room: Room, name: str) -> tuple[MemberRecord, Inbox]:
    inbox = Inbox()
    joined: list[MemberRecord] = []
    room.join(inbox, "10.0.0.1", 1000 + len(room.members)).addCallback(joined.append)
    (member,) = joined
    room.execute(member, room.commands.parse(f"/nick {name}"))
    return member, inbox


def test_joining_tells_the_newcomer_and_everyone() -> None:
    room = new_room(Clock())
    _, ann_inbox = join(room, "ann")
    ann_inbox.take()
    inbox = Inbox()
    room.join(inbox, "10.0.0.2", 7)
    assert [type(e) for e in inbox.take()] == [Welcome, Joined, Listed]
    (joined,) = ann_inbox.take()
    assert joined == Joined(0.0, "guest2", "10.0.0.2:7")


def test_a_broadcast_is_the_same_event_for_everyone() -> None:
    room = new_room(Clock())
    members = [join(room, name) for name in ("ann", "ben", "cat")]
    for _, inbox in members:
        inbox.take()
    room.execute(members[0][0], room.commands.parse("hello"))
    (first,) = members[0][1].events
    assert first == Said(0.0, "ann", "hello")
    assert all(inbox.events[0] is first for _, inbox in members)


def test_a_whisper_reaches_its_target_and_the_sender_only() -> None:
    room = new_room(Clock())
    (ann, ann_inbox), (_, ben_inbox), (_, cat_inbox) = (join(room, n) for n in ("ann", "ben", "cat"))
    for inbox in (ann_inbox, ben_inbox, cat_inbox):
        inbox.take()
    room.execute(ann, room.commands.parse("/whisper BEN psst"))
    expected = [Whispered(0.0, "ann", "psst", "ben")]
    assert ben_inbox.take() == ann_inbox.take() == expected
    assert cat_inbox.take() == []
    room.execute(ann, room.commands.parse("/whisper ann to me"))
    assert len(ann_inbox.take()) == 1


def test_rules_raise_chat_errors_and_change_nothing() -> None:
    room = new_room(Clock())
    ann, ann_inbox = join(room, "ann")
    join(room, "ben")
    ann_inbox.take()
    with pytest.raises(ChatError, match="is taken"):
        room.execute(ann, room.commands.parse("/nick BEN"))
    with pytest.raises(ChatError, match="no such user"):
        room.execute(ann, room.commands.parse("/whois nobody"))
    assert ann.name == "ann" and ann_inbox.take() == []


def test_a_rename_is_told_to_everyone() -> None:
    room = new_room(Clock())
    ann, ann_inbox = join(room, "ann")
    ann_inbox.take()
    room.execute(ann, room.commands.parse("/nick anne"))
    assert ann_inbox.take() == [Renamed(0.0, "ann", "anne")]


def test_quit_closes_and_leave_is_idempotent() -> None:
    room = new_room(Clock())
    ann, ann_inbox = join(room, "ann")
    ben, ben_inbox = join(room, "ben")
    ben_inbox.take()
    room.execute(ann, room.commands.parse("/quit"))
    assert ann_inbox.closed
    room.leave(ann, "connection lost")
    assert ben_inbox.take() == [Left(0.0, "ann", "quit")]
    assert list(room.members) == [ben]


def test_guest_names_skip_names_in_use() -> None:
    room = new_room(Clock())
    join(room, "guest2")
    joined: list[MemberRecord] = []
    room.join(Inbox(), "10.0.0.2", 1).addCallback(joined.append)
    assert joined[0].name == "guest3"


def test_member_directory_keeps_join_order_across_renames() -> None:
    store = InMemoryMembers()
    members = [MemberRecord(store.new_id(), name, "h", 1, 0.0) for name in ("a", "b", "c")]
    for member in members:
        store.claim(member)
    clashes: list[MemberRecord | None] = []
    store.claim(MemberRecord(store.new_id(), "A", "h", 2, 0.0)).addCallback(clashes.append)
    store.rename(members[0], "zed")
    store.rename(members[2], "B").addCallback(clashes.append)
    assert clashes == [members[0], members[1]]
    assert [m.name for m in store] == ["zed", "b", "c"]
    assert store.find("ZED") is members[0] and store.find("a") is None
    assert store.clash("2ed") is None and store.clash("B") is members[1]
    assert store.get(members[1].id) is members[1]
    store.remove(members[1])
    assert len(store) == 2 and members[1] not in store and store.get(members[1].id) is None


def test_a_room_without_a_feature_does_not_know_its_commands() -> None:
    room = new_room(Clock())
    with pytest.raises(ValueError, match="unknown command /e2e"):
        room.commands.parse("/e2e hello")
