"""
Every command and error path, with several clients on StringTransports.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.logger import capturedLogs

from chatroom.core.commands import CommandSpec
from chatroom.core.errors import ChatError
from chatroom.transports.line.protocol import MAX_LINE_BYTES
from chatroom.wire import format_timestamp
from tests.helpers import START, FakeClient, connect_named, make_room


def kinds(lines: list) -> list[str]:  # type: ignore[type-arg]
    return [line.kind for line in lines]


def test_connect_gives_a_guest_name_and_tells_everyone() -> None:
    _, _, factory = make_room()
    first = FakeClient(factory, 40001)
    welcome, join, listing = first.lines()
    assert (welcome.kind, welcome.args) == ("welcome", ("guest1",))
    assert (join.kind, join.source, join.text) == ("join", "guest1", "guest1 joined from 127.0.0.1:40001")
    assert (listing.kind, listing.args) == ("list", ("guest1",))
    second = FakeClient(factory, 40002)
    assert second.lines()[0].args == ("guest2",)
    (seen,) = first.lines()
    assert (seen.kind, seen.source) == ("join", "guest2")


def test_every_line_carries_the_clock_time() -> None:
    _, clock, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    clock.advance(2.5)
    alice.send("hi")
    (line,) = bob.lines()
    assert line.timestamp.timestamp() == START + 2.5


def test_say_reaches_everyone_including_the_sender() -> None:
    _, _, factory = make_room()
    clients = connect_named(factory, "alice", "bob", "carol")
    clients[0].send("/say hello  world")
    clients[1].send("plain text")
    for client in clients:
        got = [(line.kind, line.source, line.text) for line in client.lines()]
        assert got == [("message", "alice", "hello  world"), ("message", "bob", "plain text")]


def test_double_slash_sends_a_leading_slash() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice.send("//shrug")
    assert [line.text for line in bob.lines()] == ["/shrug"]


def test_nick_is_announced_and_checked() -> None:
    _, _, factory = make_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    alice.send("/NICK Alicia")
    for client in (alice, bob, carol):
        (line,) = client.lines()
        assert (line.kind, line.source, line.args) == ("rename", "alice", ("Alicia",))
    for taken in ("BOB", "b0b", "c_arol"):
        alice.send(f"/nick {taken}")
        (error,) = alice.lines()
        assert error.kind == "error"
        assert taken in error.text and "choose another" in error.text
    alice.send("/nick 9lives")
    assert "starts with a letter" in alice.lines()[0].text
    alice.send("/nick Alicia")
    assert alice.lines()[0].text == "you are already called Alicia"
    alice.send("/nick alicia")
    assert alice.lines()[0].args == ("alicia",)
    assert bob.lines()[-1].args == ("alicia",)
    assert carol.lines()[-1].args == ("alicia",)


def test_whisper_reaches_only_its_target_and_the_sender() -> None:
    _, _, factory = make_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    alice.send("/whisper BOB the cake is a lie")
    for client in (alice, bob):
        (line,) = client.lines()
        assert (line.kind, line.source, line.args, line.text) == (
            "whisper",
            "alice",
            ("bob",),
            "the cake is a lie",
        )
    assert carol.lines() == []
    alice.send("/whisper nobody hi")
    (error,) = alice.lines()
    assert (error.kind, error.text) == ("error", "no such user nobody: type /list to see who is here")
    assert bob.lines() == [] and carol.lines() == []


def test_whisper_to_yourself_arrives_once() -> None:
    _, _, factory = make_room()
    (alice,) = connect_named(factory, "alice")
    alice.send("/whisper alice note to self")
    assert kinds(alice.lines()) == ["whisper"]


def test_me_is_an_action() -> None:
    _, _, factory = make_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    bob.send("/me goes to the store")
    for client in (alice, bob, carol):
        (line,) = client.lines()
        assert (line.kind, line.source, line.text) == ("action", "bob", "bob goes to the store")


def test_list_marks_admins_and_chunks_long_lists() -> None:
    room, _, factory = make_room()
    alice, *_ = connect_named(factory, "alice", "bob", "carol")
    room.find("bob").is_admin = True
    alice.send("/list")
    (line,) = alice.lines()
    assert (line.kind, line.args, line.text) == ("list", ("alice", "@bob", "carol"), "users 1-3 of 3")
    for port in range(50000, 50200):
        FakeClient(factory, port)
    alice.lines()
    alice.send("/list")
    chunks = alice.lines()
    assert [chunk.text for chunk in chunks] == [
        "users 1-100 of 203",
        "users 101-200 of 203",
        "users 201-203 of 203",
    ]
    assert sum(len(chunk.args) for chunk in chunks) == 203


def test_whois_shows_address_connect_time_idle_and_admin() -> None:
    _, clock, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    clock.advance(30)
    bob.send("/whois Alice")
    (line,) = bob.lines()
    assert line.kind == "whois"
    assert line.fields == {
        "name": "alice",
        "address": "127.0.0.1:40001",
        "connected": format_timestamp(START),
        "idle": "30",
        "admin": "no",
    }
    assert "127.0.0.1:40001" in line.text
    clock.advance(5)
    alice.send("/whois bob")
    # Bob was active when he asked, 5 seconds ago.
    assert alice.lines()[0].fields["idle"] == "5"
    bob.send("/whois ghost")
    assert bob.lines()[0].kind == "error"


def test_filter_hides_chat_but_never_server_lines() -> None:
    _, _, factory = make_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    alice.send("/filter Spoiler")
    assert alice.lines()[0].kind == "filter"
    bob.send("big SPOILER ahead")
    bob.send("/me spoilers everything")
    bob.send("/whisper alice a spoiler for you")
    bob.send("harmless")
    assert [line.text for line in alice.lines()] == ["harmless"]
    assert len(carol.lines()) == 3
    alice.send("my own spoiler")
    assert [line.text for line in alice.lines()] == ["my own spoiler"]
    bob.send("/nick spoilerbob")
    assert kinds(alice.lines()) == ["rename"]
    alice.send("/filter")
    assert alice.lines()[0].text == 'your filters: "spoiler"'
    alice.send("/filter spoiler")
    assert alice.lines()[0].text == 'you already filter "spoiler"'
    alice.send("/unfilter spoiler")
    assert alice.lines()[0].kind == "filter"
    alice.send("/unfilter spoiler")
    assert alice.lines()[0].kind == "error"
    carol.send("spoiler again")
    assert [line.text for line in alice.lines()] == ["spoiler again"]


def test_filters_are_bounded() -> None:
    _, _, factory = make_room()
    (alice,) = connect_named(factory, "alice")
    for i in range(32):
        alice.send(f"/filter word{i}")
    alice.send("/filter one-too-many")
    assert alice.lines()[-1].text.startswith("you have 32 filters already")
    alice.send("/filter " + "x" * 101)
    assert alice.lines()[-1].kind == "error"


def test_help_lists_commands_and_one_command() -> None:
    _, _, factory = make_room()
    (alice,) = connect_named(factory, "alice")
    alice.send("/help")
    text = "\n".join(line.text for line in alice.lines())
    for usage in ("/nick <name>", "/whisper <user> <text>", "/filter [word]", "/quit [message]"):
        assert usage in text
    alice.send("/? me")
    (line,) = alice.lines()
    assert line.kind == "help" and line.text.startswith("/me <text>")
    alice.send("/help nope")
    assert alice.lines()[0].kind == "error"


def test_quit_tells_everyone_and_closes() -> None:
    _, _, factory = make_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    bob.send("/quit off to bed")
    assert bob.transport.disconnecting
    bob.disconnect()
    for client in (alice, carol):
        (line,) = client.lines()
        assert (line.kind, line.source, line.text) == ("leave", "bob", "bob left (quit: off to bed)")
    alice.send("/whois bob")
    assert alice.lines()[0].kind == "error"


def test_lines_after_quit_are_ignored() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    bob.protocol.dataReceived(b"/quit\nlate message\n")
    assert [line.kind for line in alice.lines()] == ["leave"]


def test_disconnect_is_announced_once() -> None:
    room, _, factory = make_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    carol.disconnect()
    carol.disconnect()
    for client in (alice, bob):
        (line,) = client.lines()
        assert (line.kind, line.text) == ("leave", "carol left (connection lost)")
    assert [m.name for m in room.members] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"/bogus", "unknown command /bogus"),
        (b"", "empty line"),
        (b"/nick", "missing argument"),
        (b"caf\xc3", "invalid UTF-8"),
        (b"\xff\xfe", "invalid UTF-8"),
        (b"bell\x07", "control characters"),
        (b"a\rb", "control characters"),
        (b"esc\x1b[2J", "control characters"),
        ("sneaky\u2028line".encode(), "control characters"),
    ],
)
def test_bad_input_gets_one_error_and_nothing_is_broadcast(data: bytes, message: str) -> None:
    _, _, factory = make_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    alice.send(data)
    (error,) = alice.lines()
    assert error.kind == "error" and message in error.text
    assert bob.lines() == [] and carol.lines() == []
    alice.send("still here")
    assert bob.lines()[0].text == "still here"


def test_lf_and_crlf_both_end_lines() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice.protocol.dataReceived(b"one\ntwo\r\nthr")
    alice.protocol.dataReceived(b"ee\n")
    assert [line.text for line in bob.lines()] == ["one", "two", "three"]


def test_over_long_line_is_refused_and_the_next_line_is_read() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice.protocol.dataReceived(b"x" * (MAX_LINE_BYTES + 1) + b"\nafter\n")
    (error, echo) = alice.lines()
    assert error.kind == "error" and "at most 4096 bytes" in error.text
    assert echo.text == "after"
    assert [line.text for line in bob.lines()] == ["after"]


def test_over_long_line_without_an_end_is_discarded_in_pieces() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    for _ in range(10):
        alice.protocol.dataReceived(b"y" * 1000)
    alice.protocol.dataReceived(b"yyy\nnext\n")
    # The protocol never buffered more than one line's worth of the junk.
    assert len(alice.protocol._buffer) <= MAX_LINE_BYTES
    (error, echo) = alice.lines()
    assert error.kind == "error" and echo.text == "next"
    assert [line.text for line in bob.lines()] == ["next"]


def test_a_line_of_exactly_the_maximum_is_accepted() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    text = "z" * (MAX_LINE_BYTES - 1)
    alice.send(text, end=b"\r\n")
    assert [line.text for line in bob.lines()] == [text]


def test_disconnect_mid_line_loses_nothing_else() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice.protocol.dataReceived(b"complete\nhalf a li")
    alice.disconnect()
    assert [(line.kind, line.text) for line in bob.lines()] == [
        ("message", "complete"),
        ("leave", "alice left (connection lost)"),
    ]


@pytest.mark.parametrize("later", [False, True])
def test_a_bug_in_a_handler_is_answered_and_the_room_goes_on(later: bool) -> None:
    room, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")

    def broken(member: object, args: object) -> Deferred[None]:
        if not later:
            raise RuntimeError("boom")
        return fail(RuntimeError("boom"))

    room.commands.add(CommandSpec("break", "<what>", "a command with a bug", 1, 1), broken)
    with capturedLogs() as events:
        alice.send("/break things")
    (error,) = alice.lines()
    assert (error.kind, error.text) == ("error", "internal error: the command failed")
    assert [e["log_format"] for e in events if "log_failure" in e] == [
        "command {command!r} from {name} failed"
    ]
    alice.send("still alive")
    assert bob.lines()[0].text == "still alive"


def test_commands_wait_for_an_earlier_one_that_takes_a_round_trip() -> None:
    room, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    pending: Deferred[None] = Deferred()

    def refused(result: None) -> None:
        raise ChatError("refused, later")

    def slow(member: object, args: object) -> Deferred[None]:
        return pending.addCallback(refused)

    room.commands.add(CommandSpec("slow", "", "a command that waits for a store", 0, 0), slow)
    alice.send("/slow")
    alice.send("after the slow one")
    assert alice.lines() == bob.lines() == []
    pending.callback(None)
    assert [(line.kind, line.text) for line in alice.lines()] == [
        ("error", "refused, later"),
        ("message", "after the slow one"),
    ]
