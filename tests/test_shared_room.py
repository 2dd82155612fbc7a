"""
The Redis store's logic without a reactor or a Redis: the JSON codec of
events and audiences, and two nodes sharing a room through a L{FakeRedis}.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from chatroom.bans import Ban
from chatroom.core import events as ev
from chatroom.core.errors import ChatError
from chatroom.core.memory import InMemoryHistory, InMemoryMembers
from chatroom.core.ports import MemberRecord
from chatroom.core.room import Room
from chatroom.features.history import HistorySettings
from chatroom.features.moderation import ModerationSettings
from chatroom.stores.redis import room as store
from chatroom.stores.redis.codec import (
    EVENT_NAMES,
    CodecError,
    decode_audience,
    decode_event,
    decode_record,
    dumps,
    encode_audience,
    encode_event,
    encode_record,
    loads,
)
from chatroom.stores.redis.room import SharedRoom
from chatroom.tap import compose, line_factory
from tests.fake_redis import FakeLink, FakeRedis
from tests.helpers import START, UNLIMITED, FakeClient

BAN = Ban("bob", ipaddress.ip_network("10.0.0.1/32"), "alice", 5.0, None, "spam")
SAMPLES: list[ev.Event] = [
    ev.Said(1.5, "alice", "hi"),
    ev.Acted(1.0, "alice", "waves"),
    ev.Whispered(1.0, "alice", "psst", "bob"),
    ev.Welcome(1.0, "guest1"),
    ev.Joined(1.0, "guest1", "127.0.0.1:5"),
    ev.Left(1.0, "bob", "quit"),
    ev.Renamed(1.0, "a", "b"),
    ev.Listed(1.0, (("alice", True), ("bob", False)), 1, 2),
    ev.WhoisReply(1.0, "bob", "[::1]:5", 0.5, 3, False),
    ev.TextReply(1.0, "t"),
    ev.FilterReply(1.0, "f"),
    ev.HelpReply(1.0, "h"),
    ev.Notice(1.0, "n"),
    ev.ErrorReply(1.0, "e"),
    ev.Ping(1.0, "123"),
    ev.AdminChanged(1.0, "bob", True, ev.AdminReason.SUCCESSION, None, "alice"),
    ev.Kicked(1.0, "alice", "bob", ""),
    ev.BanSet(1.0, BAN),
    ev.BanLifted(1.0, "alice", "bob"),
    ev.BanCount(1.0, 3),
    ev.BanEntry(1.0, BAN),
    ev.BannedNotice(1.0, BAN),
    ev.Challenge(1.0, "chatroom", "bm9uY2U="),
    ev.KeyAnnounced(1.0, "alice", "bundle", "fp"),
    ev.KeyCount(1.0, 2),
    ev.KeyDropped(1.0, "alice"),
    ev.Sealed(1.0, "alice", "envelope"),
    ev.GroupSealed(1.0, "alice", "message"),
    ev.Arrivals(1.0, (("carol", False), ("dave", True)), ("bob",)),
    ev.TopicChanged(1.0, "alice", "news"),
    ev.TopicReply(1.0, "news", "alice", 0.5),
    ev.Replayed(0.5, ev.HistoryEntry(7, 0.5, ev.HistoryKind.KICKED, "alice", "spam", "bob")),
    ev.ReplayEnd(1.0, 3, 7, 9),
    ev.HistoryPurged(1.0, "mallory"),
    ev.Joined(1.0, "guest1", None, "cloak-1.chatroom"),
]


def test_every_event_type_has_a_name_and_a_sample() -> None:
    every = {
        kind
        for kind in vars(ev).values()
        if isinstance(kind, type) and issubclass(kind, ev.Event) and kind not in (ev.Event, ev.ChatEvent)
    }
    assert every == set(EVENT_NAMES)
    assert {type(e) for e in SAMPLES} == set(EVENT_NAMES)
    assert len(set(EVENT_NAMES.values())) == len(EVENT_NAMES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_events_come_back_equal_and_of_their_type(event: ev.Event) -> None:
    back = decode_event(loads(dumps(encode_event(event))))
    assert back == event and type(back) is type(event)


@pytest.mark.parametrize(
    "data",
    [
        {"t": "nope", "at": 1.0},
        {"t": "said", "at": 1.0, "sender": "a"},
        {"t": "said", "at": "x", "sender": "a", "text": "b"},
        {"t": "listed", "at": 1.0, "names": "alice", "first": 1, "total": 1},
        {
            "t": "admin",
            "at": 1.0,
            "name": "a",
            "admin": True,
            "reason": "bribe",
            "by": None,
            "previous": None,
        },
        {"t": "ban_set", "at": 1.0, "ban": {"name": None, "network": None}},
        [],
    ],
)
def test_what_the_codec_does_not_write_is_refused(data: object) -> None:
    with pytest.raises(CodecError):
        decode_event(data)


def test_audiences_and_records_round_trip() -> None:
    for audience in (ev.EVERYONE, ev.ADMINS, ev.Members(("a.1", "b.2"))):
        assert decode_audience(loads(dumps(encode_audience(audience)))) == audience
    with pytest.raises(CodecError):
        decode_audience({"ids": 1})
    record = MemberRecord("a.1", "alice", "::1", 5, 10.0, 12.0, True, ["x"], "cloak-1.chatroom")
    back = decode_record(loads(dumps(encode_record(record))))
    shared = ("id", "name", "host", "port", "connected_at", "last_active", "is_admin", "cloak")
    assert [getattr(back, f) for f in shared] == [getattr(record, f) for f in shared]
    # Filters act only on the member's own node.
    assert back.filters == []


class Inbox:
    """
    A recipient that keeps what it is handed.
    """

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.closed = False

    def receive(self, event: ev.Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def texts(self, kind: type[ev.Event]) -> list[ev.Event]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclasses.dataclass
class Node:
    shared: SharedRoom
    room: Room
    writer: FakeLink
    reader: FakeLink

    def join(self, name: str | None) -> tuple[MemberRecord, Inbox]:
        inbox = Inbox()
        joining = self.room.join(inbox, "10.0.0.1", 5000)
        member = self.room.members.get(joining.result.id) if joining.called else None
        assert member is not None
        if name is None:
            return member, inbox
        result = self.room.execute(member, self.room.commands.parse(f"/nick {name}"))
        assert result is None or result.called
        return member, inbox

    def say(self, member: MemberRecord, line: str) -> None:
        result = self.room.execute(member, self.room.commands.parse(line))
        if result is not None:
            assert result.called
            result.addErrback(lambda f: inbox_error(f))

    def down(self) -> None:
        self.writer.down()
        self.reader.down()
        self.shared.writer_down()

    def up(self) -> None:
        self.writer.connected = self.reader.connected = True
        self.shared.writer_up()
        self.shared.reader_up()


def inbox_error(failure: object) -> None:
    raise AssertionError(f"command failed: {failure}")


def make_node(
    redis: FakeRedis, clock: Clock, name: str, history: HistorySettings | None = None, cloak: bool = False
) -> Node:
    writer, reader = FakeLink(redis), FakeLink(redis)
    shared = SharedRoom(clock, writer, reader, name, node_timeout=3.0, boot="x")
    sessions, _ = compose(
        clock,
        ModerationSettings(bans=shared.bans, first_admin=True),
        members=shared.members,
        fanout=shared.fanout,
        keys=shared.keys,
        history=history,
        cloak=(lambda host: "cloak.chatroom") if cloak else None,
    )
    shared.attach(sessions.room)
    started = shared.start()
    assert started.called
    return Node(shared, sessions.room, writer, reader)


@pytest.fixture
def cluster() -> tuple[FakeRedis, Clock, Node, Node]:
    redis, clock = FakeRedis(), Clock()
    redis.clock = clock
    clock.advance(1000)
    return redis, clock, make_node(redis, clock, "a"), make_node(redis, clock, "b")


def alice_on_a_and_bob_on_b(
    redis: FakeRedis, a: Node, b: Node
) -> tuple[MemberRecord, Inbox, MemberRecord, Inbox]:
    """
    alice joins node C{a} and bob node C{b}, each seen by the other node.
    """
    alice, alice_box = a.join("alice")
    redis.pump()
    bob, bob_box = b.join("bob")
    redis.pump()
    return alice, alice_box, bob, bob_box


def test_chat_and_the_member_list_across_nodes(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    redis, _clock, a, b = cluster
    alice, alice_box, _bob, bob_box = alice_on_a_and_bob_on_b(redis, a, b)
    assert [m.name for m in a.room.members] == ["alice", "bob"]
    assert [m.name for m in b.room.members] == ["alice", "bob"]
    a.say(alice, "hello")
    redis.pump()
    assert [e.text for e in bob_box.texts(ev.Said)] == ["hello"]
    # Once: a node ignores its own entries.
    assert [e.text for e in alice_box.texts(ev.Said)] == ["hello"]
    # A reply to one local member never goes to Redis.
    before = len(redis.stream)
    a.say(alice, "/list")
    assert len(redis.stream) == before
    # The first member is admin room-wide.
    assert b.room.members.get(alice.id) is not None and b.room.members.get(alice.id).is_admin  # type: ignore[union-attr]


def test_a_name_is_claimed_once(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    _redis, _clock, a, b = cluster
    a.join("alice")
    # b has not read the stream yet: Redis refuses the name all the same.
    other, _box = b.join("guest")
    errors: list[str] = []
    result = b.room.execute(other, b.room.commands.parse("/nick Alice"))
    assert result is not None
    result.addErrback(lambda f: errors.append(str(f.value)))
    assert errors == ["the name Alice is taken: choose another"]
    assert other.name != "Alice"


def test_a_kick_on_one_node_closes_the_connection_on_the_other(
    cluster: tuple[FakeRedis, Clock, Node, Node],
) -> None:
    redis, _clock, a, b = cluster
    alice, _, bob, bob_box = alice_on_a_and_bob_on_b(redis, a, b)
    a.say(alice, "/kick bob bye")
    redis.pump()
    assert bob_box.closed
    assert bob not in b.room.members and b.room.members.find("bob") is None
    assert [e.victim for e in bob_box.texts(ev.Kicked)] == ["bob"]
    assert a.shared.name_key("bob") not in redis.strings
    assert bob.id not in redis.hashes["chatroom:members"]


def test_a_dead_node_is_reaped_once(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    redis, clock, a, b = cluster
    _alice, alice_box, _, _ = alice_on_a_and_bob_on_b(redis, a, b)
    # b stops beating (killed): its heartbeat key expires.
    b.shared._running = False
    clock.advance(3.0)
    del redis.strings["chatroom:node:b"]
    clock.advance(0.6)
    redis.pump()
    assert [e.name for e in alice_box.texts(ev.Left)] == ["bob"]
    assert a.shared.name_key("bob") not in redis.strings
    assert [m.name for m in a.room.members] == ["alice"]


def test_while_redis_is_away_events_wait_and_the_excess_is_reported(
    cluster: tuple[FakeRedis, Clock, Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis, _clock, a, b = cluster
    monkeypatch.setattr(store, "OUTBOX_LIMIT", 3)
    alice, alice_box, _bob, bob_box = alice_on_a_and_bob_on_b(redis, a, b)
    a.down()
    b.down()
    for n in range(5):
        a.say(alice, f"m{n}")
    # alice's own node still serves her.
    assert [e.text for e in alice_box.texts(ev.Said)] == ["m0", "m1", "m2", "m3", "m4"]
    a.up()
    b.up()
    redis.pump()
    assert [e.text for e in bob_box.texts(ev.Said)] == ["m2", "m3", "m4"]
    notes = [e.text for e in alice_box.texts(ev.Notice)]
    assert notes == ["note: 2 events from this server could not reach the other servers"]


def test_redis_restarted_empty_gets_each_node_s_members_again(
    cluster: tuple[FakeRedis, Clock, Node, Node],
) -> None:
    redis, _clock, a, b = cluster
    alice, _, bob, bob_box = alice_on_a_and_bob_on_b(redis, a, b)
    a.down()
    b.down()
    redis.flush()
    a.up()
    b.up()
    redis.pump()
    assert redis.strings[a.shared.name_key("alice")] == alice.id
    assert redis.strings[a.shared.name_key("bob")] == bob.id
    assert "the shared store restarted" in bob_box.texts(ev.Notice)[-1].text  # type: ignore[attr-defined]
    a.say(alice, "back")
    redis.pump()
    assert [e.text for e in bob_box.texts(ev.Said)] == ["back"]


def test_a_late_node_loads_members_and_bans(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    redis, clock, a, _b = cluster
    alice, _ = a.join("alice")
    a.say(alice, "/ban 198.51.100.7")
    c = make_node(redis, clock, "c")
    assert [m.name for m in c.room.members] == ["alice"]
    assert c.shared.bans.for_host("198.51.100.7", clock.seconds()) is not None
    assert c.room.refusal("198.51.100.7") is not None


class SlowMembers(InMemoryMembers):
    """
    A directory whose claims wait for the test, as a shared one's do.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[tuple[MemberRecord, Deferred[MemberRecord | None]]] = []

    def claim(self, record: MemberRecord) -> Deferred[MemberRecord | None]:
        d: Deferred[MemberRecord | None] = Deferred()
        self.waiting.append((record, d))
        return d

    def finish(self) -> None:
        for record, d in self.waiting:
            super().claim(record).chainDeferred(d)
        self.waiting = []


def joining_alice() -> tuple[SlowMembers, FakeClient]:
    """
    A client that has asked to be alice in a room whose member store has
    not answered its join yet.
    """
    clock = Clock()
    clock.advance(START)
    members = SlowMembers()
    sessions, _ = compose(clock, ModerationSettings(), UNLIMITED, members=members)
    client = FakeClient(line_factory(sessions), 5000)
    client.send("/nick alice")
    return members, client


def test_lines_sent_while_joining_wait_for_the_join() -> None:
    members, client = joining_alice()
    client.send("first words")
    assert client.lines() == []
    members.finish()
    lines = client.lines()
    assert [line.kind for line in lines if line.kind in ("rename", "message")] == ["rename", "message"]
    assert client.member_name == "alice"


def test_a_join_the_store_refuses_is_one_error_line() -> None:
    members, client = joining_alice()
    (_, d) = members.waiting.pop()
    d.errback(ChatError("the room's shared store is unreachable: try again in a moment"))
    assert [(line.kind, line.text) for line in client.lines()] == [
        ("error", "the room's shared store is unreachable: try again in a moment")
    ]
    assert client.transport.disconnecting


def test_an_old_join_entry_does_not_take_a_name_back(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    redis, _clock, a, b = cluster
    old = a.room.members.next_guest_number()
    a.room.members._guests -= 1  # the number alice joins under, seen ahead
    alice, _ = a.join("alice")  # as that guest, then renamed: the name is free again
    assert alice.name == "alice"
    guest, box = b.join(None)
    # b's guest takes alice's old name (guests of two nodes have lanes of
    # their own, so only a rename brings two nodes onto one name).
    b.say(guest, f"/nick guest{old}")
    assert guest.name == f"guest{old}" and a.shared.name_key(guest.name) in redis.strings
    redis.pump()
    # b read "guest... joined" (alice's, older than its own claim), then her rename.
    assert not box.closed
    assert sorted(m.name for m in b.room.members) == ["alice", guest.name]
    assert sorted(m.name for m in a.room.members) == ["alice", guest.name]


def test_two_nodes_hand_out_different_guest_names(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    redis, _clock, a, b = cluster
    alice, _ = a.join(None)
    old = alice.name
    a.say(alice, "/nick alice")  # her guest name is free again
    redis.pump()
    guest, _ = b.join(None)
    # Not the name an event about alice's guest may still be on its way for.
    assert guest.name.startswith("guest") and guest.name != old


@pytest.mark.parametrize("kind", ["disc", "left"])
def test_a_disconnect_or_a_departure_from_another_node_closes_ours(
    cluster: tuple[FakeRedis, Clock, Node, Node], kind: str
) -> None:
    _redis, _clock, a, _b = cluster
    alice, box = a.join("alice")
    a.shared.receive(dumps({"n": "b", "k": kind, "id": alice.id}))
    assert box.closed


def test_a_bad_entry_is_skipped_and_logged(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    _redis, _clock, a, _b = cluster
    _, box = a.join("alice")
    for text in (
        "{",
        dumps({"n": "b", "k": "what"}),
        dumps({"n": "b", "k": "ev", "e": {"t": "said"}, "a": "*"}),
    ):
        a.shared.receive(text)
    assert box.texts(ev.Said) == [] and not box.closed


def test_the_events_of_one_turn_are_one_stream_entry(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    redis, _clock, a, b = cluster
    alice, _, _, bob_box = alice_on_a_and_bob_on_b(redis, a, b)
    before = len(redis.stream)
    for n in range(5):
        a.say(alice, f"m{n}")
    redis.pump()
    assert len(redis.stream) == before + 1
    assert [e.text for e in bob_box.texts(ev.Said)] == ["m0", "m1", "m2", "m3", "m4"]
    # A name change in the same turn goes after the chat before it.
    a.say(alice, "before")
    a.say(alice, "/nick alicia")
    redis.pump()
    assert [e.text for e in bob_box.texts(ev.Said)][-1] == "before"
    assert bob_box.texts(ev.Renamed)[-1] == ev.Renamed(bob_box.events[-1].at, "alice", "alicia")


def stored(store: InMemoryHistory, clock: Clock) -> list[tuple[ev.HistoryKind, str, str]]:
    return [(e.kind, e.sender, e.text) for e in store.select(100, clock.seconds())]


@pytest.mark.parametrize("cloak", [False, True], ids=["addresses", "cloaks"])
def test_every_node_keeps_the_whole_room_s_history(cloak: bool) -> None:
    redis, clock = FakeRedis(), Clock()
    redis.clock = clock
    clock.advance(1000)
    store_a, store_b = InMemoryHistory(100), InMemoryHistory(100)
    a = make_node(redis, clock, "a", HistorySettings(store_a, 50), cloak)
    b = make_node(redis, clock, "b", HistorySettings(store_b, 50), cloak)
    alice, _, bob, bob_box = alice_on_a_and_bob_on_b(redis, a, b)
    a.say(alice, "from a")
    redis.pump()
    # Stored on b before b's members got it: b's IRC members see b's id.
    (said,) = bob_box.texts(ev.Said)
    assert b.room.message_id(said) == store_b.latest(1, clock.seconds())[0].id
    a.say(alice, "/topic news")
    redis.pump()
    b.say(bob, "/me from b")
    redis.pump()
    # The same entries on both nodes, in the same order, each stored once.
    entries = stored(store_a, clock)
    assert stored(store_b, clock) == entries
    assert [kind for kind, _, _ in entries[:4]] == [ev.HistoryKind.JOINED, ev.HistoryKind.RENAMED] * 2
    assert entries[4:] == [
        (ev.HistoryKind.SAID, "alice", "from a"),
        (ev.HistoryKind.TOPIC, "alice", "news"),
        (ev.HistoryKind.ACTED, "bob", "from b"),
    ]
    # A newcomer on either node gets it all.
    _, carol_box = b.join(None)
    assert [e.entry.text for e in carol_box.texts(ev.Replayed)][-3:] == ["from a", "news", "from b"]
    # A purge on one node empties the name's entries on every node.
    a.say(alice, "/purge alice")
    redis.pump()
    assert [s for _, s, _ in stored(store_b, clock)].count("alice") == 0
    assert [s for _, s, _ in stored(store_a, clock)].count("alice") == 0
    assert ("bob", "from b") in [(s, t) for _, s, t in stored(store_b, clock)]


def test_a_join_only_this_node_s_members_see_is_in_every_node_s_history() -> None:
    # With cloaks, the cloaked join goes to those who may not see the
    # address; when they are all on this node, no event entry carries it.
    redis, clock = FakeRedis(), Clock()
    redis.clock = clock
    clock.advance(1000)
    store_a, store_b = InMemoryHistory(100), InMemoryHistory(100)
    a = make_node(redis, clock, "a", HistorySettings(store_a, 50), cloak=True)
    make_node(redis, clock, "b", HistorySettings(store_b, 50), cloak=True)
    for _ in range(3):
        a.join(None)
        redis.pump()
    joins = [e for e in stored(store_a, clock) if e[0] is ev.HistoryKind.JOINED]
    assert len(joins) == 3
    assert stored(store_b, clock) == stored(store_a, clock)


def said(inbox: Inbox) -> list[str]:
    return [e.text for e in inbox.texts(ev.Said)]


def and_carol_on_a(
    redis: FakeRedis, a: Node, b: Node
) -> tuple[MemberRecord, Inbox, MemberRecord, Inbox, Inbox]:
    """
    alice and carol on node C{a}, bob on C{b}: alice's node has members of its own.
    """
    alice, alice_box, bob, bob_box = alice_on_a_and_bob_on_b(redis, a, b)
    _carol, carol_box = a.join("carol")
    redis.pump()
    return alice, alice_box, bob, bob_box, carol_box


def test_every_node_hands_out_the_room_s_chat_in_the_stream_s_order(
    cluster: tuple[FakeRedis, Clock, Node, Node],
) -> None:
    redis, _clock, a, b = cluster
    alice, alice_box, bob, bob_box, carol_box = and_carol_on_a(redis, a, b)
    a.say(alice, "from a")
    b.say(bob, "from b")
    # Held for the stream: not even the members of its own node have it yet.
    assert said(alice_box) == said(carol_box) == said(bob_box) == []
    redis.pump()
    assert sorted(said(bob_box)) == ["from a", "from b"]
    assert said(alice_box) == said(carol_box) == said(bob_box)


def test_chat_is_not_held_while_no_other_node_has_a_member(
    cluster: tuple[FakeRedis, Clock, Node, Node],
) -> None:
    _redis, _clock, a, _b = cluster
    alice, _ = a.join("alice")
    _carol, carol_box = a.join("carol")
    a.say(alice, "hi")
    assert said(carol_box) == ["hi"]


def test_held_chat_goes_out_before_what_its_node_does_next(
    cluster: tuple[FakeRedis, Clock, Node, Node],
) -> None:
    redis, _clock, a, b = cluster
    alice, _, _bob, _, carol_box = and_carol_on_a(redis, a, b)
    a.say(alice, "last words")
    a.say(alice, "/kick carol enough")
    assert carol_box.closed
    kinds = [type(e) for e in carol_box.events]
    assert kinds.index(ev.Said) < kinds.index(ev.Kicked)
    assert said(carol_box) == ["last words"]


def test_held_chat_goes_out_when_redis_is_lost(cluster: tuple[FakeRedis, Clock, Node, Node]) -> None:
    redis, _clock, a, b = cluster
    alice, _, _bob, _, carol_box = and_carol_on_a(redis, a, b)
    a.say(alice, "hi")
    a.down()
    assert said(carol_box) == ["hi"]
    a.up()
    redis.pump()
    assert said(carol_box) == ["hi"]


def test_held_chat_goes_out_if_the_stream_does_not_bring_it_back(
    cluster: tuple[FakeRedis, Clock, Node, Node],
) -> None:
    redis, clock, a, b = cluster
    alice, _, _bob, bob_box, carol_box = and_carol_on_a(redis, a, b)
    a.say(alice, "hi")
    # Sent, and no read answered (a slow Redis).
    clock.advance(0)
    clock.advance(store.HOLD_LIMIT - 0.01)
    assert said(carol_box) == []
    clock.advance(0.01)
    assert said(carol_box) == ["hi"]
    # Read back late: nobody gets it twice.
    redis.pump()
    assert said(carol_box) == said(bob_box) == ["hi"]


def test_a_member_who_joins_while_chat_is_held_gets_it_once() -> None:
    redis, clock = FakeRedis(), Clock()
    redis.clock = clock
    clock.advance(1000)
    a = make_node(redis, clock, "a", HistorySettings(InMemoryHistory(100), 50))
    b = make_node(redis, clock, "b", HistorySettings(InMemoryHistory(100), 50))
    alice, _, _bob, _ = alice_on_a_and_bob_on_b(redis, a, b)
    a.say(alice, "hi")
    _dave, dave_box = a.join(None)
    redis.pump()
    replayed = [e.entry.text for e in dave_box.texts(ev.Replayed)]
    assert replayed.count("hi") + said(dave_box).count("hi") == 1


class IdInbox(Inbox):
    """
    An inbox that asks, as IRC's msgid tag does, each event's stored id
    while it goes out.
    """

    def __init__(self, room: Room) -> None:
        super().__init__()
        self.room = room
        self.ids: list[int | None] = []

    def receive(self, event: ev.Event) -> None:
        super().receive(event)
        if isinstance(event, ev.Said):
            self.ids.append(self.room.message_id(event))


def test_held_chat_goes_out_with_the_ids_it_was_stored_under() -> None:
    redis, clock = FakeRedis(), Clock()
    redis.clock = clock
    clock.advance(1000)
    store_a = InMemoryHistory(100)
    a = make_node(redis, clock, "a", HistorySettings(store_a, 0))
    b = make_node(redis, clock, "b", HistorySettings(InMemoryHistory(100), 0))
    alice, _, _bob, _ = alice_on_a_and_bob_on_b(redis, a, b)
    inbox = IdInbox(a.room)
    a.room.join(inbox, "10.0.0.1", 5001)
    redis.pump()
    # Several lines in one turn: each is held while the next is stored.
    for n in range(3):
        a.say(alice, f"line {n}")
    redis.pump()
    stored_ids = [e.id for e in store_a.latest(3, clock.seconds())]
    assert [e.text for e in inbox.texts(ev.Said)] == ["line 0", "line 1", "line 2"]
    assert inbox.ids == stored_ids
