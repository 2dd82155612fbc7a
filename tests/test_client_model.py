"""
The client's member list, line rendering and input history, without Tk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from chatroom.client.history import History
from chatroom.client.render import Style, client_notice, local_time, render
from chatroom.roster import Roster
from chatroom.wire import Kind, ServerLine, parse_line
from tests.client_support import server_line


def line(kind: Kind, source: str = "*", text: str = "", args: tuple[str, ...] = ()) -> ServerLine:
    return parse_line(server_line(kind, source, text, args))


def test_roster_follows_joins_leaves_and_renames() -> None:
    roster = Roster()
    assert roster.apply(line(Kind.LIST, "*", "users 1-3 of 3", ("bob", "@Zed", "alice")))
    assert roster.entries() == ["@Zed", "alice", "bob"]
    assert roster.apply(line(Kind.JOIN, "carol", "carol joined"))
    assert roster.apply(line(Kind.RENAME, "Zed", "", ("Zoe",)))
    assert roster.apply(line(Kind.LEAVE, "bob", "bob left"))
    assert roster.entries() == ["@Zoe", "alice", "carol"]
    assert "ALICE" in roster and "bob" not in roster
    # Lines that are not about membership, and leaves of strangers, change nothing.
    assert not roster.apply(line(Kind.MESSAGE, "alice", "hi"))
    assert not roster.apply(line(Kind.LEAVE, "nobody", ""))
    assert len(roster) == 3


def test_roster_follows_admin_changes() -> None:
    roster = Roster()
    roster.apply(line(Kind.LIST, "*", "users 1-2 of 2", ("alice", "bob")))
    assert roster.apply(line(Kind.ADMIN, "*", "bob is now an admin", ("bob", "admin=yes")))
    assert roster.entries() == ["@bob", "alice"]
    assert roster.apply(line(Kind.ADMIN, "alice", "alice took admin rights from bob", ("bob", "admin=no")))
    assert roster.entries() == ["alice", "bob"]
    assert not roster.apply(line(Kind.ADMIN, "*", "", ("stranger", "admin=yes")))
    # An admin keeps the mark through a rename.
    roster.apply(line(Kind.ADMIN, "*", "", ("alice", "admin=yes")))
    roster.apply(line(Kind.RENAME, "alice", "", ("alicia",)))
    assert roster.entries() == ["@alicia", "bob"]


def test_roster_takes_a_chunked_list_when_complete() -> None:
    roster = Roster()
    roster.apply(line(Kind.JOIN, "old", ""))
    names = [f"user{i}" for i in range(250)]
    assert not roster.apply(line(Kind.LIST, "*", "users 1-100 of 250", tuple(names[:100])))
    assert roster.entries() == ["old"]
    assert not roster.apply(line(Kind.LIST, "*", "users 101-200 of 250", tuple(names[100:200])))
    assert roster.apply(line(Kind.LIST, "*", "users 201-250 of 250", tuple(names[200:])))
    assert len(roster) == 250 and "old" not in roster
    # A /list reply with the same members is no change; with others, it is.
    assert not roster.apply(line(Kind.LIST, "*", "users 1-250 of 250", tuple(names)))
    assert roster.apply(line(Kind.LIST, "*", "users 1-1 of 1", ("user0",)))
    assert roster.entries() == ["user0"]


def test_roster_drops_a_list_whose_chunks_do_not_add_up() -> None:
    roster = Roster()
    roster.apply(line(Kind.LIST, "*", "users 1-2 of 2", ("alice", "bob")))
    for chunks in (
        # A chunk that does not start at 1, with no list under way.
        [("users 2-2 of 3", ("ghost",))],
        # A skipped range, a changed total, more names than the range says.
        [("users 1-1 of 3", ("alice",)), ("users 3-3 of 3", ("ghost",))],
        [("users 1-1 of 2", ("alice",)), ("users 2-3 of 3", ("bob", "ghost"))],
        [("users 1-1 of 2", ("alice",)), ("users 2-2 of 2", ("bob", "ghost"))],
        # The same name twice, and a list line without its range.
        [("users 1-3 of 3", ("alice", "bob", "Bob"))],
        [("everyone", ("alice", "bob", "ghost"))],
    ):
        for text, names in chunks:
            assert not roster.apply(line(Kind.LIST, "*", text, names))
        assert sorted(roster.names()) == ["alice", "bob"], chunks
        assert roster.problem is not None and not roster.receiving
    assert roster.apply(line(Kind.LIST, "*", "users 1-3 of 3", ("alice", "bob", "carol")))
    assert "carol" in roster


def test_roster_is_emptied_by_a_welcome_and_by_clear() -> None:
    roster = Roster()
    roster.apply(line(Kind.JOIN, "bob", ""))
    assert roster.apply(line(Kind.WELCOME, "*", "Welcome", ("guest1",)))
    assert len(roster) == 0
    roster.apply(line(Kind.JOIN, "bob", ""))
    assert roster.clear() and not roster.clear()


def test_render_tells_kinds_apart() -> None:
    assert render(line(Kind.MESSAGE, "bob", "hi"), "alice").text == "<bob> hi"
    assert render(line(Kind.MESSAGE, "bob", "hi"), "alice").style is Style.MESSAGE
    assert render(line(Kind.MESSAGE, "alice", "hi"), "alice").style is Style.OWN
    to_me = render(line(Kind.WHISPER, "bob", "psst", ("alice",)), "alice")
    assert (to_me.text, to_me.style) == ("(whisper from bob) psst", Style.WHISPER)
    assert render(line(Kind.WHISPER, "alice", "psst", ("bob",)), "alice").text == "(whisper to bob) psst"
    action = render(line(Kind.ACTION, "bob", "bob waves"), "alice")
    assert (action.text, action.style) == ("* bob waves", Style.ACTION)
    failed = render(line(Kind.ERROR, "*", "no such user zed"), "alice")
    assert (failed.text, failed.style) == ("! no such user zed", Style.ERROR)
    listed = render(line(Kind.LIST, "*", "users 1-2 of 2", ("@a", "b")), None)
    assert (listed.text, listed.style) == ("-- users 1-2 of 2: @a, b", Style.SERVER)
    assert render(line(Kind.JOIN, "bob", "bob joined"), None).style is Style.SERVER
    assert client_notice("offline").style is Style.CLIENT
    sealed = render(line(Kind.E2E, "bob", "", ("AQEI",)), "alice")
    assert "bob sent an end-to-end encrypted message" in sealed.text


@pytest.fixture
def berlin_time() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_times_are_shown_in_local_time(berlin_time: None) -> None:
    # 2026-11-22 10:15:03 UTC is 11:15:03 in Berlin (CET, UTC+1).
    stamp = parse_line(b"2026-11-22T10:15:03.250Z message bob :hi").timestamp
    assert local_time(stamp) == "11:15:03"


def test_history_walks_back_and_forward_and_keeps_the_draft() -> None:
    history = History()
    history.add("one")
    history.add("two")
    history.add("two")
    assert history.back("draft") == "two"
    assert history.back("two") == "one"
    assert history.back("one") == "one"
    assert history.forward() == "two"
    assert history.forward() == "draft"
    assert history.forward() == "draft"
    history.add("three")
    assert history.back("") == "three"


def test_history_is_bounded() -> None:
    history = History(limit=3)
    for n in range(10):
        history.add(str(n))
    assert [history.back("") for _ in range(4)] == ["9", "8", "7", "7"]


def test_empty_history_gives_back_the_draft() -> None:
    history = History()
    assert history.back("typing") == "typing"
    assert history.forward() == "typing"
