"""
The room's history on the IRC listener, over StringTransport and a Clock:
IRCv3 draft/chathistory (LATEST, BEFORE, AFTER) in batches, and msgid tags
on live chat that name the stored entries.
"""

from __future__ import annotations

from chatroom.core.memory import InMemoryHistory
from chatroom.features.history import HistorySettings
from chatroom.features.moderation import ModerationSettings
from chatroom.transports.irc.protocol import CHATHISTORY_LIMIT
from chatroom.wire import format_timestamp
from tests.helpers import FakeClient, Server, connect_named, make_server
from tests.irc_helpers import IRCClient, Message, irc_factory

HISTORY_CAPS = "server-time message-tags batch draft/chathistory"


def history_room(
    said: int = 0, caps: str = HISTORY_CAPS, alice_admin: bool = False
) -> tuple[Server, InMemoryHistory, FakeClient, IRCClient]:
    """
    A room with a history, where IRC client alice (with C{caps}; its admin
    if C{alice_admin}) joined, then line member bob, who said m0, m1... a
    second apart, C{said} times.
    """
    store = InMemoryHistory(1000)
    moderation = ModerationSettings(first_admin=alice_admin)
    server = make_server(history=HistorySettings(store, 50), moderation=moderation)
    alice = IRCClient(irc_factory(server)).join("alice", caps=caps)
    (bob,) = connect_named(server.factory, "bob")
    for n in range(said):
        bob.send(f"m{n}")
        server.clock.advance(1)
    bob.lines()
    alice.messages()
    return server, store, bob, alice


def tags(message: Message) -> dict[str, str]:
    return dict(tag.partition("=")[::2] for tag in message.tags.split(";")) if message.tags else {}


def batch(messages: list[Message]) -> tuple[str, list[Message]]:
    """
    The target of the one chathistory batch C{messages} are, and what is in it.
    """
    first, *inside, last = messages
    assert first.command == "BATCH" and first.params[0].startswith("+"), first
    reference = first.params[0][1:]
    assert first.params[1] == "chathistory"
    assert last.command == "BATCH" and last.params == [f"-{reference}"], last
    assert all(tags(m)["batch"] == reference for m in inside)
    return first.params[2], inside


def texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


def ids(store: InMemoryHistory, server: Server) -> dict[str, int]:
    return {e.text: e.id for e in store.select(1000, server.clock.seconds())}


def test_the_history_capabilities_and_tokens_are_offered_where_the_room_keeps_one() -> None:
    server, _, _, _ = history_room()
    client = IRCClient(irc_factory(server), port=50002)
    client.send("CAP LS 302")
    (ls,) = client.messages()
    assert ls.text.split() == [
        "server-time",
        "message-tags",
        "echo-message",
        "multi-prefix",
        "batch",
        "draft/chathistory",
    ]
    replies = client.register("carol", caps=HISTORY_CAPS)
    isupport = [m for m in replies if m.command == "005"]
    tokens = [token for m in isupport for token in m.params[1:-1]]
    assert f"CHATHISTORY={CHATHISTORY_LIMIT}" in tokens
    assert "MSGREFTYPES=msgid,timestamp" in tokens
    # IRC's 15 parameters a line: the nick, 13 tokens and the text.
    assert len(isupport) == 2 and all(len(m.params) <= 15 for m in isupport)
    # Without a history: neither, and no such command.
    plain = IRCClient(irc_factory(make_server()))
    plain.send("CAP LS 302")
    assert "chathistory" not in plain.messages()[0].text
    plain.send("CAP REQ :draft/chathistory")
    assert plain.messages()[0].params[1] == "NAK"
    plain.send("CAP END")
    plain.register("dave")
    plain.send("JOIN #chatroom")
    plain.messages()
    plain.send("CHATHISTORY LATEST #chatroom * 10")
    assert [m.command for m in plain.messages()] == ["421"]


def test_live_chat_carries_the_id_it_is_stored_under() -> None:
    server, store, bob, alice = history_room(caps="server-time message-tags")
    carol = IRCClient(irc_factory(server), port=50002).join("carol", caps="message-tags")
    dave = IRCClient(irc_factory(server), port=50003).join("dave", caps="server-time")
    bob.send("hello")
    bob.send("x" * 600)
    stored = ids(store, server)
    (hello, long1, long2) = [m for m in alice.messages() if m.command == "PRIVMSG"]
    assert tags(hello) == {"time": format_timestamp(server.clock.seconds()), "msgid": str(stored["hello"])}
    # One message split over two IRC lines has one id, on its first line.
    assert tags(long1)["msgid"] == str(stored["x" * 600]) and "msgid" not in tags(long2)
    assert next(tags(m) for m in carol.messages() if m.command == "PRIVMSG") == {
        "msgid": str(stored["hello"])
    }
    assert all("msgid" not in tags(m) for m in dave.messages())


def test_latest_before_and_after_answer_in_one_batch_each() -> None:
    server, store, _, alice = history_room(said=30)
    stored = ids(store, server)
    alice.send("CHATHISTORY LATEST #chatroom * 3")
    target, inside = batch(alice.messages())
    assert target == "#chatroom"
    assert texts(inside) == ["m27", "m28", "m29"]
    assert [m.command for m in inside] == ["PRIVMSG"] * 3
    assert [tags(m)["msgid"] for m in inside] == [str(stored[f"m{n}"]) for n in (27, 28, 29)]
    entry = next(e for e in store.select(100, server.clock.seconds()) if e.text == "m27")
    assert tags(inside[0])["time"] == format_timestamp(entry.at)
    # Paging back from the oldest one seen, by its msgid: that one excluded.
    alice.send(f"CHATHISTORY BEFORE #chatroom msgid={stored['m27']} 2")
    assert texts(batch(alice.messages())[1]) == ["m25", "m26"]
    alice.send(f"CHATHISTORY BEFORE #chatroom timestamp={format_timestamp(entry.at)} 1")
    assert texts(batch(alice.messages())[1]) == ["m26"]
    alice.send(f"CHATHISTORY AFTER #CHATROOM msgid={stored['m5']} 3")
    assert texts(batch(alice.messages())[1]) == ["m6", "m7", "m8"]
    # LATEST since a reference: the newest after it, not the first.
    alice.send(f"CHATHISTORY LATEST #chatroom msgid={stored['m20']} 2")
    assert texts(batch(alice.messages())[1]) == ["m28", "m29"]
    # Past the room's /history rate (5 in 10 s), then nothing newer: an
    # empty batch, which the client waits for.
    server.clock.advance(10)
    alice.send(f"CHATHISTORY AFTER #chatroom msgid={stored['m29']} 10")
    assert batch(alice.messages())[1] == []
    # Each batch has its own reference.
    alice.send("CHATHISTORY LATEST #chatroom * 1")
    alice.send("CHATHISTORY LATEST #chatroom * 1")
    messages = alice.messages()
    assert messages[0].params[0] != messages[3].params[0]


def test_a_limit_past_the_token_gets_the_most_one_answer_holds() -> None:
    _server, _, _, alice = history_room(said=CHATHISTORY_LIMIT + 20)
    alice.send("CHATHISTORY LATEST #chatroom * 5000")
    inside = batch(alice.messages())[1]
    assert len(inside) == CHATHISTORY_LIMIT and inside[-1].text == f"m{CHATHISTORY_LIMIT + 19}"


def test_stored_notices_are_notices_in_the_batch() -> None:
    _server, _, bob, alice = history_room(said=1, alice_admin=True)
    bob.send("/nick robert")
    alice.send("TOPIC #chatroom :release on Friday")
    alice.messages()
    alice.send("CHATHISTORY LATEST #chatroom * 5")
    inside = batch(alice.messages())[1]
    # No JOIN, NICK or TOPIC lines without event-playback: those would read as now.
    assert [m.command for m in inside] == ["NOTICE", "NOTICE", "PRIVMSG", "NOTICE", "NOTICE"]
    assert texts(inside) == [
        "[history] guest2 joined",
        "[history] guest2 is now known as bob",
        "m0",
        "[history] bob is now known as robert",
        "[history] alice set the topic: release on Friday",
    ]
    assert all("msgid" in tags(m) for m in inside)


def test_a_client_that_asks_for_history_gets_none_on_joining() -> None:
    server, _, _, _ = history_room(said=3)
    alice = IRCClient(irc_factory(server), port=50003)
    alice.register("alice2", caps=HISTORY_CAPS)
    alice.send("JOIN #chatroom")
    assert not [m for m in alice.messages() if m.command == "PRIVMSG"]
    # One that shows times but does not ask: the last ones, with their ids.
    carol = IRCClient(irc_factory(server), port=50002)
    carol.register("carol", caps="server-time message-tags")
    carol.send("JOIN #chatroom")
    chat = [m for m in carol.messages() if m.command == "PRIVMSG"]
    assert texts(chat) == ["m0", "m1", "m2"] and all("msgid" in tags(m) for m in chat)
    assert "BATCH" not in [m.command for m in carol.messages()]


def test_without_batches_the_lines_come_alone() -> None:
    _server, _, _, alice = history_room(said=3, caps="server-time draft/chathistory")
    alice.send("CHATHISTORY LATEST #chatroom * 2")
    messages = alice.messages()
    assert [m.command for m in messages] == ["PRIVMSG", "PRIVMSG"]
    assert all("batch" not in tags(m) for m in messages)


def test_bad_requests_get_standard_replies_and_change_nothing() -> None:
    _server, _, _, alice = history_room(said=3)
    cases = {
        "CHATHISTORY": "FAIL CHATHISTORY UNKNOWN_COMMAND *",
        "CHATHISTORY AROUND #chatroom msgid=1 10": "FAIL CHATHISTORY UNKNOWN_COMMAND AROUND",
        "CHATHISTORY LATEST #chatroom *": "FAIL CHATHISTORY NEED_MORE_PARAMS LATEST",
        "CHATHISTORY BEFORE #chatroom * 10": "FAIL CHATHISTORY INVALID_PARAMS BEFORE *",
        "CHATHISTORY AFTER #chatroom msgid=abc 10": "FAIL CHATHISTORY INVALID_PARAMS AFTER msgid=abc",
        "CHATHISTORY AFTER #chatroom timestamp=yesterday 10": "FAIL CHATHISTORY INVALID_PARAMS AFTER",
        "CHATHISTORY LATEST #chatroom * 0": "FAIL CHATHISTORY INVALID_PARAMS LATEST 0",
        "CHATHISTORY LATEST #chatroom * ten": "FAIL CHATHISTORY INVALID_PARAMS LATEST ten",
        "CHATHISTORY LATEST #elsewhere * 10": "FAIL CHATHISTORY INVALID_TARGET LATEST #elsewhere",
    }
    for line, reply in cases.items():
        alice.send(line)
        (message,) = alice.messages()
        assert message.raw.startswith(f":chatroom.irc {reply}"), (line, message.raw)
    # A time the room cannot read is its error, in the same words.
    alice.send("CHATHISTORY AFTER #chatroom timestamp=2026-13-45T99:00:00Z 10")
    (message,) = alice.messages()
    assert message.raw.startswith(":chatroom.irc FAIL CHATHISTORY MESSAGE_ERROR AFTER #chatroom :")
    assert "bad time" in message.text
    # After all that the next request is answered as usual.
    alice.send("CHATHISTORY LATEST #chatroom * 1")
    assert texts(batch(alice.messages())[1]) == ["m2"]


def test_a_conversation_with_a_nick_has_no_stored_history() -> None:
    _server, _, bob, alice = history_room(said=3)
    bob.send("/whisper alice secret")
    alice.messages()
    alice.send("CHATHISTORY LATEST bob * 50")
    target, inside = batch(alice.messages())
    assert (target, inside) == ("bob", [])


def test_a_refused_request_ends_as_a_failure_and_the_next_one_is_answered() -> None:
    server, _, _, alice = history_room(said=3)
    for _ in range(5):
        alice.send("CHATHISTORY LATEST #chatroom * 1")
    assert [m.command for m in alice.messages()] == ["BATCH", "PRIVMSG", "BATCH"] * 5
    # The room's rate limit on /history applies: a standard reply says so.
    alice.send("CHATHISTORY LATEST #chatroom * 1")
    (failure,) = alice.messages()
    assert failure.raw.startswith(":chatroom.irc FAIL CHATHISTORY MESSAGE_ERROR LATEST #chatroom :")
    assert "too many /history requests" in failure.text
    server.clock.advance(10)
    alice.send("CHATHISTORY LATEST #chatroom * 1")
    assert texts(batch(alice.messages())[1]) == ["m2"]
