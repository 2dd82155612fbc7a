"""
The history feature on the in-memory store, on a fake clock: what is
stored, what a member gets on joining, paging, filters, purge.
"""

from __future__ import annotations

import pytest
from twisted.logger import capturedLogs

from chatroom.core.events import HistoryKind
from chatroom.core.memory import InMemoryHistory
from chatroom.features.history import MAX_PAGE, REPLAY_BUDGET, HistorySettings
from chatroom.features.moderation import ModerationSettings
from chatroom.limits import ClientLimits
from chatroom.wire import ServerLine, format_timestamp
from tests.helpers import FakeClient, Server, connect_named, make_server

DAY = 86400.0


def history_server(
    keep: int = 1000, on_join: int = 50, max_age: float | None = None
) -> tuple[Server, InMemoryHistory]:
    store = InMemoryHistory(keep, max_age)
    server = make_server(
        # No pings: the tests move the clock by days.
        ClientLimits(flood_rate=0, nick_rate=0, byte_rate=0, answer_rate=0, ping_interval=0),
        moderation=ModerationSettings(first_admin=True),
        history=HistorySettings(store, on_join),
    )
    return server, store


def replayed(lines: list[ServerLine]) -> list[tuple[str, str, str]]:
    """
    The history lines among C{lines} as (kind, source, text).
    """
    return [(line.args[0], line.source, line.text) for line in lines if line.kind == "history"]


def test_chat_and_notices_are_stored_but_not_whispers_nor_envelopes() -> None:
    server, store = history_server()
    alice, _bob = connect_named(server.factory, "alice", "bob")
    alice.send("hello")
    alice.send("/me waves")
    alice.send("/whisper bob secret")
    alice.send("/e2e send AAAA")
    alice.send("/kick bob spam")
    alice.send("/nick alicia")
    kinds = [(e.kind, e.sender, e.text, e.target) for e in store.select(100, server.clock.seconds())]
    assert (HistoryKind.SAID, "alice", "hello", "") in kinds
    assert (HistoryKind.ACTED, "alice", "waves", "") in kinds
    assert (HistoryKind.KICKED, "alice", "spam", "bob") in kinds
    assert (HistoryKind.LEFT, "bob", "kicked by alice: spam", "") in kinds
    assert (HistoryKind.RENAMED, "alice", "", "alicia") in kinds
    assert (HistoryKind.JOINED, "guest1", "", "") in kinds
    assert not [k for k in kinds if "secret" in k[2] or "AAAA" in k[2]]


def test_a_newcomer_gets_the_last_messages_right_after_the_welcome() -> None:
    server, _ = history_server(on_join=3)
    (alice,) = connect_named(server.factory, "alice")
    for n in range(5):
        alice.send(f"message {n}")
    server.clock.advance(60)
    newcomer = FakeClient(server.factory, 50000)
    lines = newcomer.lines()
    kinds = [line.kind for line in lines]
    assert kinds[:5] == ["welcome", "history", "history", "history", "historyend"]
    assert kinds[5] == "join"
    assert replayed(lines) == [("message", "alice", f"message {n}") for n in (2, 3, 4)]
    # The original time, and the message ids in order.
    first = lines[1]
    assert first.timestamp.timestamp() == pytest.approx(server.clock.seconds() - 60, abs=0.001)
    ids = [int(line.fields["id"]) for line in lines if line.kind == "history"]
    assert ids == sorted(ids)
    end = lines[4]
    assert end.fields == {"count": "3", "more": f"#{ids[0]}"}


def test_an_empty_history_sends_nothing_on_joining() -> None:
    server, store = history_server()
    lines = FakeClient(server.factory, 50000).lines()
    assert [line.kind for line in lines] == ["welcome", "join", "admin", "list"]
    assert len(store) == 1


def test_replayed_lines_read_like_the_live_ones() -> None:
    server, _ = history_server()
    alice, _bob = connect_named(server.factory, "alice", "bob")
    alice.send("/me waves")
    alice.send("/topic release on Friday")
    alice.send("/topic -")
    alice.send("/kick bob spam")
    alice.send("/nick carol")
    lines = FakeClient(server.factory, 50000).lines()
    history = [line for line in lines if line.kind == "history"]
    texts = {(line.args[0], line.text) for line in history}
    assert ("action", "alice waves") in texts
    assert ("topic", "alice set the topic: release on Friday") in texts
    assert ("topic", "alice cleared the topic") in texts
    assert ("kick", "alice kicked bob: spam") in texts
    assert ("rename", "alice is now known as carol") in texts
    assert ("join", "guest1 joined") in texts
    rename = [line for line in history if line.args[0] == "rename"][-1]
    assert rename.args[2] == "carol"


def test_filters_apply_to_the_history() -> None:
    server, _ = history_server()
    (alice,) = connect_named(server.factory, "alice")
    alice.send("spoiler: the butler")
    alice.send("nothing to see")
    alice.send("/filter spoiler")
    alice.send("/history")
    shown = [text for kind, _, text in replayed(alice.lines()) if kind == "message"]
    # Her own chat is never filtered from her.
    assert shown == ["spoiler: the butler", "nothing to see"]
    bob = FakeClient(server.factory, 50000)
    bob.send("/filter SPOILER")
    bob.lines()
    bob.send("/history")
    lines = bob.lines()
    assert [text for kind, _, text in replayed(lines) if kind == "message"] == ["nothing to see"]
    assert lines[-1].kind == "historyend"


def alice_said(count: int) -> tuple[Server, InMemoryHistory, FakeClient]:
    """
    A room where alice said m0, m1... a second apart, C{count} times.
    """
    server, store = history_server()
    (alice,) = connect_named(server.factory, "alice")
    for n in range(count):
        alice.send(f"m{n}")
        server.clock.advance(1)
    alice.lines()
    return server, store, alice


def test_history_pages_back_by_count_id_and_time() -> None:
    server, store, alice = alice_said(150)
    alice.send("/history 5")
    assert [t for _, _, t in replayed(alice.lines())] == [f"m{n}" for n in range(145, 150)]
    alice.send(f"/history {MAX_PAGE + 1}")
    assert alice.lines()[-1].text == f"bad count {MAX_PAGE + 1}: give a number from 1 to {MAX_PAGE}"
    alice.send("/history")
    lines = alice.lines()
    assert len(replayed(lines)) == 50
    more = lines[-1].fields["more"]
    alice.send(f"/history before {more} 3")
    assert [t for _, _, t in replayed(alice.lines())] == ["m97", "m98", "m99"]
    m10 = next(e for e in store.select(200, server.clock.seconds()) if e.text == "m10")
    alice.send(f"/history before {format_timestamp(m10.at)} 2")
    assert [t for _, _, t in replayed(alice.lines())] == ["m8", "m9"]
    alice.send("/history before #" + "9" * 19)
    assert "bad message id" in alice.lines()[-1].text
    alice.send("/history before #" + "9" * 18)
    assert alice.lines()[-1].kind == "historyend"
    server.clock.advance(10)
    alice.send("/history before yesterday")
    assert "bad time yesterday" in alice.lines()[-1].text
    alice.send("/history before")
    assert alice.lines()[-1].text.startswith("missing argument")


def test_history_pages_forward_after_and_since_an_id_or_a_time() -> None:
    server, store, alice = alice_said(120)
    m10 = next(e for e in store.select(200, server.clock.seconds()) if e.text == "m10")
    # after: the first N after the bound, then where to page on from.
    alice.send(f"/history after #{m10.id} 3")
    lines = alice.lines()
    assert [t for _, _, t in replayed(lines)] == ["m11", "m12", "m13"]
    assert lines[-1].fields["next"] == f"#{m10.id + 3}"
    assert "more" not in lines[-1].fields
    alice.send(f"/history after {lines[-1].fields['next']} 2")
    assert [t for _, _, t in replayed(alice.lines())] == ["m14", "m15"]
    alice.send(f"/history after {format_timestamp(m10.at)} 1")
    assert [t for _, _, t in replayed(alice.lines())] == ["m11"]
    # since: the last N after the bound, then where to page back from.
    alice.send(f"/history since #{m10.id} 2")
    lines = alice.lines()
    assert [t for _, _, t in replayed(lines)] == ["m118", "m119"]
    assert lines[-1].fields["more"] == f"#{m10.id + 108}"
    # Everything after the bound fits: nothing more either way.
    alice.send(f"/history since #{m10.id + 106} 50")
    lines = alice.lines()
    assert [t for _, _, t in replayed(lines)] == ["m117", "m118", "m119"]
    assert "more" not in lines[-1].fields and "next" not in lines[-1].fields
    alice.send("/history after")
    assert alice.lines()[-1].text.startswith("missing argument")
    alice.send("/history after soon")
    assert "bad time soon" in alice.lines()[-1].text


def test_history_is_rate_limited() -> None:
    server, _ = history_server()
    (alice,) = connect_named(server.factory, "alice")
    alice.send("hi")
    alice.lines()
    for _ in range(5):
        alice.send("/history 1")
    assert alice.lines()[-1].kind == "historyend"
    alice.send("/history 1")
    assert alice.lines()[-1].text.startswith("too many /history requests")
    server.clock.advance(10)
    alice.send("/history 1")
    assert alice.lines()[-1].kind == "historyend"


def test_retention_by_count_and_by_age_on_the_clock() -> None:
    server, store = history_server(keep=10, max_age=DAY)
    (alice,) = connect_named(server.factory, "alice")
    for n in range(20):
        alice.send(f"m{n}")
    assert [e.text for e in store.select(100, server.clock.seconds())] == [f"m{n}" for n in range(10, 20)]
    server.clock.advance(DAY - 1)
    alice.send("late")
    server.clock.advance(2)
    alice.lines()
    alice.send("/history")
    assert [t for k, _, t in replayed(alice.lines()) if k == "message"] == ["late"]


def test_purge_is_for_admins_removes_a_name_and_is_logged() -> None:
    server, store = history_server()
    alice, spammer = connect_named(server.factory, "alice", "spammer")
    spammer.send("buy now")
    alice.send("no thanks")
    spammer.send("/purge alice")
    assert spammer.lines()[-1].text == "permission denied: only an admin can purge the history"
    with capturedLogs() as logged:
        alice.send("/purge SPAMMER")
    assert alice.lines()[-1].text == "removed 1 stored messages of SPAMMER"
    senders = [e.sender for e in store.select(100, server.clock.seconds())]
    assert senders == ["guest1", "guest1", "guest2", "guest2", "alice"]
    assert any("purged" in e.get("log_format", "") and e["count"] == 1 for e in logged)
    alice.send("/purge bad name")
    assert alice.lines()[-1].text.startswith("invalid name")


def test_a_replay_of_long_lines_stays_within_its_budget() -> None:
    server, _ = history_server(on_join=100)
    (alice,) = connect_named(server.factory, "alice")
    for n in range(100):
        alice.send(f"{n:03d}" + "x" * 3900)
    newcomer = FakeClient(server.factory, 50000)
    lines = newcomer.lines()
    texts = [line.text[:3] for line in lines if line.kind == "history" and line.args[0] == "message"]
    size = sum(len(line.text) for line in lines if line.kind == "history")
    assert REPLAY_BUDGET // 2 < size <= REPLAY_BUDGET
    # The newest that fit, in order, and the way further back.
    assert texts == [f"{n:03d}" for n in range(100 - len(texts), 100)]
    end = next(line for line in lines if line.kind == "historyend")
    assert end.fields["more"].startswith("#")


def test_joins_are_stored_when_members_see_cloaks() -> None:
    store = InMemoryHistory(100)
    server = make_server(history=HistorySettings(store, 50), cloak=lambda host: "cloak-x.chatroom")
    connect_named(server.factory, "alice")
    kinds = [(e.kind, e.sender) for e in store.select(100, server.clock.seconds())]
    assert kinds.count((HistoryKind.JOINED, "guest1")) == 1
