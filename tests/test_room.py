"""
The room's rules, with no protocol and no transport at all.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from chatroom.commands import parse_command
from chatroom.room import ChatError, InMemoryMembers, Member, Room
from chatroom.wire import ServerLine, parse_line


class Inbox:
    """
    A L{chatroom.room.Recipient} that keeps what it is given.
    """

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.closed = False

    def deliver(self, line: bytes) -> None:
        self.raw.append(line)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[ServerLine]:
        lines, self.raw = [parse_line(raw) for raw in self.raw], []
        return lines


def join(room: Room, name: str) -> tuple[Member, Inbox]:
    inbox = Inbox()
    member = room.join(inbox, "10.0.0.1", 1000 + len(room.members))
    room.execute(member, parse_command(f"/nick {name}"))
    return member, inbox


def test_a_broadcast_is_the_same_bytes_for_everyone() -> None:
    room = Room(Clock())
    members = [join(room, name) for name in ("ann", "ben", "cat")]
    for _, inbox in members:
        inbox.raw.clear()
    room.execute(members[0][0], parse_command("hello"))
    (first,) = members[0][1].raw
    assert all(inbox.raw[0] is first for _, inbox in members)


def test_rules_raise_chat_errors() -> None:
    room = Room(Clock())
    ann, _ = join(room, "ann")
    join(room, "ben")
    with pytest.raises(ChatError, match="is taken"):
        room.execute(ann, parse_command("/nick BEN"))
    with pytest.raises(ChatError, match="no such user"):
        room.execute(ann, parse_command("/whois nobody"))


def test_quit_closes_and_leave_is_idempotent() -> None:
    room = Room(Clock())
    ann, ann_inbox = join(room, "ann")
    ben, ben_inbox = join(room, "ben")
    ben_inbox.take()
    room.execute(ann, parse_command("/quit"))
    assert ann_inbox.closed
    room.leave(ann, "connection lost")
    assert [line.kind for line in ben_inbox.take()] == ["leave"]
    assert list(room.members) == [ben]


def test_guest_names_skip_names_in_use() -> None:
    room = Room(Clock())
    join(room, "guest2")
    inbox = Inbox()
    member = room.join(inbox, "10.0.0.2", 1)
    assert member.name == "guest3"


def test_member_store_keeps_join_order_across_renames() -> None:
    store = InMemoryMembers()
    members = [Member(name, "h", 1, 0.0, Inbox()) for name in ("a", "b", "c")]
    for member in members:
        store.add(member)
    store.rename(members[0], "zed")
    assert [m.name for m in store] == ["zed", "b", "c"]
    assert store.find("ZED") is members[0] and store.find("a") is None
    assert store.clash("2ed") is None and store.clash("B") is members[1]
    store.remove(members[1])
    assert len(store) == 2 and members[1] not in store


def test_a_command_this_room_does_not_serve_is_a_clear_error() -> None:
    room = Room(Clock())
    ann, _ = join(room, "ann")
    with pytest.raises(ChatError, match="/e2e is not available on this server"):
        room.execute(ann, parse_command("/e2e hello"))
