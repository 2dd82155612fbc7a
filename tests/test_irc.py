"""
The IRC transport over StringTransport and a Clock: registration, the
channel, chat both ways with line members, moderation, numerics, limits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatroom.bans import BanList
from chatroom.core.events import EVERYONE, Said, Sealed
from chatroom.core.memory import InMemoryHistory
from chatroom.features.history import HistorySettings
from chatroom.features.moderation import ModerationSettings
from chatroom.limits import ClientLimits, ConnectionLimits
from chatroom.passwd import hash_password
from chatroom.stores.files import DocumentBanStore, load_topic
from chatroom.transports.irc.codec import mask_target, split_text
from chatroom.wire import format_timestamp
from tests.helpers import FakeClient, Server, connect_named, make_server
from tests.irc_helpers import IRCClient, Message, irc_factory

PASSWORD = hash_password("open sesame", n=2**4, r=1, p=1)


def admin_room() -> tuple[Server, FakeClient, IRCClient]:
    """
    A room whose first member, line client bob, is its admin, and IRC
    client alice in the channel.
    """
    server = make_server(moderation=ModerationSettings(first_admin=True))
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice")
    bob.lines()
    return server, bob, alice


def numerics(messages: list[Message]) -> list[str]:
    return [m.command for m in messages]


# Registration


def test_registration_with_capabilities_waits_for_cap_end() -> None:
    server = make_server()
    client = IRCClient(irc_factory(server))
    client.send("CAP LS 302")
    assert [m.raw for m in client.messages()] == [
        "CAP * LS :server-time message-tags echo-message multi-prefix"
    ]
    client.send("CAP REQ :server-time unknown-cap")
    assert [m.params for m in client.messages()] == [["*", "NAK", "server-time unknown-cap"]]
    client.send("CAP REQ :server-time message-tags echo-message multi-prefix")
    assert client.messages()[0].params[1] == "ACK"
    client.send("PASS whatever")
    client.send("NICK alice")
    client.send("USER alice 0 * :Alice")
    assert client.messages() == []
    assert client.member_name is None
    client.send("CAP LIST")
    assert client.messages()[0].text == "echo-message message-tags multi-prefix server-time"
    client.send("CAP END")
    replies = client.messages()
    assert numerics(replies) == ["001", "002", "003", "004", "005", "251", "252", "254", "255", "422"]
    assert replies[0].params[0] == "alice"
    isupport = replies[4].params[1:-1]
    for token in (
        "CHANTYPES=#",
        "PREFIX=(o)@",
        "CHANMODES=b,,,nt",
        "CASEMAPPING=ascii",
        "NICKLEN=20",
        "CHANNELLEN=50",
        "TOPICLEN=300",
        "LINELEN=512",
    ):
        assert token in isupport
    assert client.member_name == "alice"


def test_registration_without_cap() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    client = IRCClient(irc_factory(server))
    replies = client.register("alice")
    assert replies[0].command == "001"
    assert replies[5].text == "There are 2 users and 0 invisible on 1 servers"
    # The line member sees an arrival and a rename.
    assert [(line.kind, line.args) for line in bob.lines()] == [("join", ()), ("rename", ("alice",))]


def test_commands_before_registration_get_451_and_user_needs_parameters() -> None:
    server = make_server()
    client = IRCClient(irc_factory(server))
    client.send("JOIN #chatroom")
    client.send("USER alice")
    client.send("PING :abc")
    assert [(m.command, m.params) for m in client.messages()] == [
        ("451", ["*", "JOIN", "You have not registered"]),
        ("461", ["*", "USER", "Not enough parameters"]),
        ("PONG", ["chatroom.irc", "abc"]),
    ]


def test_bad_and_taken_nicks_at_registration_then_a_good_one() -> None:
    server = make_server()
    connect_named(server.factory, "bob")
    client = IRCClient(irc_factory(server))
    client.send("USER a 0 * :a")
    client.send("NICK b|ob")
    client.send("NICK BOB")
    assert [(m.command, m.params[1]) for m in client.messages()] == [("432", "b|ob"), ("433", "BOB")]
    assert client.member_name is None
    client.send("NICK robin")
    assert client.messages()[0].params[0] == "robin"


def test_too_many_lines_before_registration_close_the_connection() -> None:
    server = make_server()
    client = IRCClient(irc_factory(server))
    for _ in range(31):
        client.send("NICK 1bad")
    assert client.messages()[-1].raw == "ERROR :too many lines before registration"
    assert client.transport.disconnected or client.transport.disconnecting


def test_registration_is_bounded_by_the_handshake_timeout() -> None:
    server = make_server(ClientLimits(flood_rate=0, handshake_timeout=10))
    client = IRCClient(irc_factory(server))
    client.send("NICK alice")
    server.clock.advance(11)
    assert client.transport.disconnected or client.transport.disconnecting


# The channel


def test_join_names_topic_and_other_channels() -> None:
    server = make_server(moderation=ModerationSettings(first_admin=True))
    connect_named(server.factory, "bob")
    client = IRCClient(irc_factory(server))
    client.register("alice")
    client.send("JOIN #elsewhere")
    client.send("JOIN #ChatRoom")
    replies = client.messages()
    assert replies[0].command == "403"
    assert replies[1].raw == ":alice!alice@127.0.0.1 JOIN #chatroom"
    assert [(m.command, m.params) for m in replies[2:]] == [
        ("331", ["alice", "#chatroom", "No topic is set"]),
        ("353", ["alice", "=", "#chatroom", "@bob alice"]),
        ("366", ["alice", "#chatroom", "End of /NAMES list."]),
    ]
    client.send("NAMES #chatroom")
    assert numerics(client.messages()) == ["353", "366"]


def test_names_of_a_big_room_fit_in_irc_lines() -> None:
    server = make_server()
    connect_named(server.factory, *(f"member{i:03d}xxxxxxxxxxx" for i in range(150)))
    client = IRCClient(irc_factory(server)).join("alice")
    client.send("NAMES #chatroom")
    replies = client.messages()
    names = " ".join(m.text for m in replies if m.command == "353").split()
    assert len(names) == 151
    assert numerics(replies).count("366") == 1
    assert len([m for m in replies if m.command == "353"]) > 2


def test_part_stops_channel_traffic() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    client = IRCClient(irc_factory(server)).join("alice")
    client.send("PART #chatroom :later")
    assert client.messages()[0].raw == ":alice!alice@127.0.0.1 PART #chatroom :later"
    bob.send("hello")
    assert client.messages() == []
    client.send("PART #chatroom")
    client.send("PRIVMSG #chatroom :hi")
    assert numerics(client.messages()) == ["442", "404"]


def test_mode_of_the_channel_and_of_the_user() -> None:
    server = make_server()
    client = IRCClient(irc_factory(server)).join("alice")
    client.send("MODE #chatroom")
    client.send("MODE alice")
    client.send("MODE alice +i")
    client.send("MODE #chatroom +x")
    replies = client.messages()
    assert [(m.command, m.params[1:]) for m in replies] == [
        ("324", ["#chatroom", "+nt"]),
        ("329", ["#chatroom", f"{server.clock.seconds():.0f}"]),
        ("221", ["+"]),
        ("472", ["x", "is unknown mode char to me"]),
    ]


def test_who_and_whois() -> None:
    _server, _bob, alice = admin_room()
    alice.send("WHO #chatroom")
    replies = alice.messages()
    assert [(m.command, m.params[2], m.params[6]) for m in replies[:2]] == [
        ("352", "bob", "H@"),
        ("352", "alice", "H"),
    ]
    assert replies[2].command == "315"
    alice.send("WHOIS bob")
    replies = alice.messages()
    assert numerics(replies) == ["311", "312", "313", "317", "319", "318"]
    assert replies[0].params[1:5] == ["bob", "bob", "127.0.0.1", "*"]
    alice.send("WHOIS nobody")
    assert [(m.command, m.params[1]) for m in alice.messages()] == [("401", "nobody"), ("318", "nobody")]


# Chat


def test_chat_both_ways_without_echo() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice")
    bob.lines()
    bob.send("hello alice")
    bob.lines()
    assert [m.raw for m in alice.messages()] == [":bob!bob@127.0.0.1 PRIVMSG #chatroom :hello alice"]
    alice.send("PRIVMSG #chatroom :\x02hi\x02 bob")
    alice.send("NOTICE #chatroom :notice too")
    assert [(line.kind, line.source, line.text) for line in bob.lines()] == [
        ("message", "alice", "hi bob"),
        ("message", "alice", "notice too"),
    ]
    # Without echo-message the sender does not get its own message back.
    assert alice.messages() == []


def test_echo_message_and_server_time() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server)).join("alice", caps="echo-message server-time")
    alice.send("PRIVMSG #chatroom :hi")
    (echo,) = alice.messages()
    assert echo.tags == "time=2026-11-18T11:06:40.000Z"
    assert echo.raw.endswith(":alice!alice@127.0.0.1 PRIVMSG #chatroom :hi")


def test_what_each_client_gets_of_chat_follows_its_state_when_others_share_its_bytes() -> None:
    # One variant, two clients: the second gets the bytes the codec made
    # for the first, so what it may get is read from its own state.
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    factory = irc_factory(server)
    alice = IRCClient(factory).join("alice")
    carol = IRCClient(factory, port=50002).join("carol")
    bob.send("one")
    assert [m.text for m in carol.messages()] == ["one"]
    # Its own chat, without echo-message: not back, under a new nick too.
    carol.send("NICK carla")
    carol.send("PRIVMSG #chatroom :mine")
    assert [m.command for m in carol.messages()] == ["NICK"]
    # With echo-message, asked for once registered: back.
    carol.send("CAP REQ :echo-message")
    carol.send("PRIVMSG #chatroom :echoed")
    assert [m.text for m in carol.messages()] == ["echo-message", "echoed"]
    # Not reading: held in its send queue, and counted there.
    carol.transport.producer.pauseProducing()
    bob.send("while carol does not read")
    assert carol.protocol.session.held > 0
    carol.transport.producer.resumeProducing()
    assert carol.protocol.session.held == 0
    # Out of the channel: no channel chat, while alice still gets it.
    carol.send("PART #chatroom")
    carol.messages()
    bob.send("two")
    assert carol.messages() == []
    assert [m.text for m in alice.messages()][-1] == "two"


def test_whispers_both_ways() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice")
    bob.lines()
    alice.send("PRIVMSG bob :psst")
    (line,) = bob.lines()
    assert (line.kind, line.source, line.args, line.text) == ("whisper", "alice", ("bob",), "psst")
    bob.send("/whisper alice back")
    assert [m.raw for m in alice.messages()] == [":bob!bob@127.0.0.1 PRIVMSG alice :back"]
    alice.send("PRIVMSG nobody :hello?")
    assert [(m.command, m.params[1]) for m in alice.messages()] == [("401", "nobody")]
    alice.send("PRIVMSG")
    alice.send("PRIVMSG bob")
    assert numerics(alice.messages()) == ["411", "412"]


def test_actions_and_ctcp() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice")
    bob.lines()
    alice.send("PRIVMSG #chatroom :\x01ACTION waves\x01")
    (line,) = bob.lines()
    assert (line.kind, line.text) == ("action", "alice waves")
    bob.send("/me bows")
    bob.lines()
    assert [m.raw for m in alice.messages()] == [":bob!bob@127.0.0.1 PRIVMSG #chatroom :\x01ACTION bows\x01"]
    alice.send("PRIVMSG bob :\x01VERSION\x01")
    alice.send("PRIVMSG bob :\x01PING 12345\x01")
    alice.send("PRIVMSG bob :\x01FINGER\x01")
    replies = alice.messages()
    assert [(m.command, m.nick, m.text) for m in replies[:2]] == [
        ("NOTICE", "bob", "\x01VERSION chatroom-0.1.0\x01"),
        ("NOTICE", "bob", "\x01PING 12345\x01"),
    ]
    assert "not supported" in replies[2].text
    # Nothing of it reached bob.
    assert bob.lines() == []


def test_long_messages_are_split_for_irc_never_cut() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice", caps="server-time")
    text = "é" * 800 + " " + "word " * 200 + "€" * 400
    bob.send(text.strip())
    replies = alice.messages()
    assert len(replies) > 4
    assert all(m.tags.startswith("time=") for m in replies)
    assert "".join(m.text for m in replies) == text.strip()


def test_split_text_keeps_characters_whole() -> None:
    pieces = split_text("a€" * 100, 10)
    assert "".join(pieces) == "a€" * 100
    assert all(len(p.encode()) <= 10 for p in pieces)


def test_a_broadcast_is_encoded_once_per_variant_and_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    server = make_server()
    factory = irc_factory(server)
    (bob,) = connect_named(server.factory, "bob")
    plain = [IRCClient(factory, 50001 + i).join(f"plain{i}") for i in range(3)]
    tagged = [IRCClient(factory, 50011 + i).join(f"tagged{i}", caps="server-time") for i in range(3)]
    for client in [*plain, *tagged]:
        client.raw()
    calls: list[object] = []
    said = factory.codec._shared[Said]

    def counted(event: Said) -> list[bytes]:
        calls.append(event)
        return said(event)

    monkeypatch.setitem(factory.codec._shared, Said, counted)
    bob.send("hello all")
    assert len(calls) == 2
    assert len({c.raw() for c in plain}) == 1
    assert len({c.raw() for c in tagged}) == 1


# Names


def test_renames_both_ways() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice")
    bob.lines()
    bob.send("/nick robert")
    bob.lines()
    assert [m.raw for m in alice.messages()] == [":bob!bob@127.0.0.1 NICK :robert"]
    alice.send("NICK alicia")
    assert [m.raw for m in alice.messages()] == [":alice!alice@127.0.0.1 NICK :alicia"]
    assert [(line.kind, line.source, line.args) for line in bob.lines()] == [("rename", "alice", ("alicia",))]
    alice.send("NICK robert")
    alice.send("NICK 9lives")
    alice.send("NICK")
    assert [(m.command, m.params[:2]) for m in alice.messages()] == [
        ("433", ["alicia", "robert"]),
        ("432", ["alicia", "9lives"]),
        ("431", ["alicia", "No nickname given"]),
    ]


def test_one_name_space_with_the_line_listener() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server)).join("alice")
    (bob,) = connect_named(server.factory, "bob")
    bob.send("/nick ALICE")
    assert "taken" in bob.lines()[0].text
    assert alice.protocol.nick == "alice"


# Moderation


def test_an_admin_kicks_an_irc_member() -> None:
    server, bob, alice = admin_room()
    bob.send("/kick alice enough")
    assert [m.raw for m in alice.messages()] == [":bob!bob@127.0.0.1 KICK #chatroom alice :enough"]
    assert alice.transport.disconnecting
    assert server.room.members.find("alice") is None


def test_kick_from_irc_and_482_for_non_admins() -> None:
    server, bob, alice = admin_room()
    carol = IRCClient(irc_factory(server), 50002).join("carol")
    alice.messages()
    carol.send("KICK #chatroom alice")
    assert [(m.command, m.params[1]) for m in carol.messages()] == [("482", "#chatroom")]
    bob.send("/op alice")
    alice.send("KICK #chatroom carol :bye")
    assert ":alice!alice@127.0.0.1 KICK #chatroom carol :bye" in [m.raw for m in alice.messages()]
    assert carol.transport.disconnecting
    alice.send("KICK #chatroom")
    assert [(m.command, m.params[1]) for m in alice.messages()] == [("461", "KICK")]


def test_op_and_deop_through_mode() -> None:
    _server, bob, alice = admin_room()
    bob.send("/op alice")
    assert [m.raw for m in alice.messages()] == [
        ":bob!bob@127.0.0.1 MODE #chatroom +o alice",
        ":chatroom.irc 381 alice :You are now an IRC operator (a room admin)",
    ]
    alice.send("MODE #chatroom -o bob")
    assert [m.raw for m in alice.messages()] == [":alice!alice@127.0.0.1 MODE #chatroom -o bob"]
    assert [(line.kind, line.args) for line in bob.lines()][-1] == ("admin", ("bob", "admin=no"))
    bob.send("/list")
    bob.lines()
    alice.send("MODE #chatroom +o")
    assert numerics(alice.messages()) == ["461"]


def test_bans_through_mode_b() -> None:
    server, bob, alice = admin_room()
    carol = FakeClient(server.factory, 40100, host="192.0.2.9")
    carol.send("/nick carol")
    bob.send("/op alice")
    alice.messages()
    alice.send("MODE #chatroom +b carol!*@*")
    replies = [m.raw for m in alice.messages()]
    assert ":alice!alice@127.0.0.1 MODE #chatroom +bb carol!*@* *!*@192.0.2.9/32" in replies
    assert ":alice!alice@127.0.0.1 KICK #chatroom carol :banned" in replies
    alice.send("MODE #chatroom +b *!*@198.51.100.*")
    alice.send("MODE #chatroom b")
    replies = alice.messages()
    listed = [(m.command, m.params[2:3]) for m in replies if m.command in ("367", "368")]
    assert listed == [
        ("367", ["carol!*@*"]),
        ("367", ["*!*@192.0.2.9/32"]),
        ("367", ["*!*@198.51.100.0/24"]),
        ("368", ["End of channel ban list"]),
    ]
    alice.send("MODE #chatroom -b carol!*@*")
    assert [m.raw for m in alice.messages()] == [":alice!alice@127.0.0.1 MODE #chatroom -b carol!*@*"]
    alice.send("MODE #chatroom +b ca*!*@*")
    alice.send("MODE #chatroom +b *!*@*.example.com")
    alice.send("MODE #chatroom +b carol!*@192.0.2.9")
    replies = alice.messages()
    assert [m.command for m in replies] == ["NOTICE"] * 3
    assert all("cannot ban" in m.text for m in replies)


def test_ban_list_for_non_admins_is_empty_with_the_reason() -> None:
    _server, _bob, alice = admin_room()
    alice.send("MODE #chatroom b")
    (reply,) = alice.messages()
    assert reply.command == "368"
    assert "only an admin" in reply.text
    alice.send("MODE #chatroom +b bob!*@*")
    assert numerics(alice.messages()) == ["482"]


def test_mask_target() -> None:
    assert mask_target("carol!*@*") == "carol"
    assert mask_target("carol") == "carol"
    assert mask_target("*!*@10.0.0.0/8") == "10.0.0.0/8"
    assert mask_target("*!ident@10.1.*") == "10.1.0.0/16"
    assert mask_target("*!*@0::1") == "::1"
    for bad in ("*!*@*", "c*!*@*", "*!*@host.example", "a!*@10.0.0.1", "*!*@10.*.1.*"):
        with pytest.raises(ValueError):
            mask_target(bad)


def test_oper() -> None:
    server = make_server(moderation=ModerationSettings(password=PASSWORD))
    alice = IRCClient(irc_factory(server)).join("alice")
    alice.send("OPER alice wrong")
    assert numerics(alice.messages()) == ["464"]
    server.clock.advance(10)
    alice.send("OPER alice :open sesame")
    assert numerics(alice.messages()) == ["MODE", "381"]
    alice.send("OPER alice")
    assert numerics(alice.messages()) == ["461"]


def test_topic_for_irc_and_line_members(tmp_path: Path) -> None:
    written: list[object] = []
    store = DocumentBanStore(BanList(), written.append)
    server = make_server(moderation=ModerationSettings(first_admin=True, bans=store, topics=store))
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice")
    bob.lines()
    alice.send("TOPIC #chatroom :nope")
    assert numerics(alice.messages()) == ["482"]
    bob.send("/topic Welcome all")
    assert [m.raw for m in alice.messages()] == [":bob!bob@127.0.0.1 TOPIC #chatroom :Welcome all"]
    (line,) = bob.lines()
    assert (line.kind, line.source, line.text) == ("topic", "bob", "bob set the topic: Welcome all")
    alice.send("TOPIC #chatroom")
    replies = alice.messages()
    assert [(m.command, m.params[1:]) for m in replies] == [
        ("332", ["#chatroom", "Welcome all"]),
        ("333", ["#chatroom", "bob", f"{server.clock.seconds():.0f}"]),
    ]
    # Kept beside the bans; a new line member is told it.
    path = tmp_path / "moderation.json"
    path.write_text(json.dumps(written[-1]))
    loaded = load_topic(path)
    assert loaded is not None and (loaded.text, loaded.by) == ("Welcome all", "bob")
    carol = FakeClient(server.factory, 40200)
    assert [line.text for line in carol.lines() if line.kind == "topic"] == [
        "the topic is: Welcome all (set by bob, 2026-11-18T11:06:40.000Z)"
    ]
    alice.messages()
    bob.send("/topic -")
    assert [m.raw for m in alice.messages()] == [":bob!bob@127.0.0.1 TOPIC #chatroom :"]
    bob.send("/topic " + "x" * 301)
    assert "at most 300" in bob.lines()[-1].text


# Keepalive, quitting, errors


def test_ping_pong_both_ways() -> None:
    server = make_server(ClientLimits(flood_rate=0, ping_interval=60, ping_timeout=30))
    alice = IRCClient(irc_factory(server)).join("alice")
    alice.send("PING :token1")
    assert [m.raw for m in alice.messages()] == [":chatroom.irc PONG chatroom.irc :token1"]
    server.clock.advance(61)
    (ping,) = alice.messages()
    assert ping.command == "PING"
    alice.send(f"PONG :{ping.text}")
    server.clock.advance(40)
    assert alice.member_name == "alice"
    server.clock.advance(60)
    alice.messages()
    server.clock.advance(31)
    assert alice.member_name is None


def test_quit() -> None:
    server = make_server()
    (bob,) = connect_named(server.factory, "bob")
    alice = IRCClient(irc_factory(server)).join("alice")
    bob.lines()
    alice.send("QUIT :bye now")
    assert [m.raw for m in alice.messages()] == ["ERROR :Closing link (quit)"]
    assert alice.transport.disconnecting
    (line,) = bob.lines()
    assert (line.kind, line.text) == ("leave", "alice left (quit: bye now)")


def test_unknown_commands_and_missing_parameters() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server)).join("alice")
    alice.send("FROB x")
    alice.send("JOIN")
    alice.send("WHOIS")
    alice.send("USER again 0 * :x")
    assert [(m.command, m.params[1]) for m in alice.messages()] == [
        ("421", "FROB"),
        ("461", "JOIN"),
        ("461", "WHOIS"),
        ("462", "You may not reregister"),
    ]


def test_e2e_envelopes_never_reach_irc_members() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server)).join("alice")
    server.room.fanout.publish(Sealed(server.clock.seconds(), "bob", "envelope"), EVERYONE)
    assert alice.raw() == b""


# Shared limits


def test_flood_control_is_the_sessions() -> None:
    server = make_server(ClientLimits(flood_rate=1, flood_burst=3))
    alice = IRCClient(irc_factory(server)).join("alice")
    for i in range(6):
        alice.send(f"PRIVMSG #chatroom :{i}")
    replies = alice.messages()
    assert [m.command for m in replies] == ["NOTICE"]
    assert replies[0].text.startswith("flood: slow down")


def test_banned_addresses_are_refused_at_connect() -> None:
    server, bob, _alice = admin_room()
    bob.send("/ban 192.0.2.7")
    client = IRCClient(irc_factory(server), host="192.0.2.7")
    replies = client.register("mallory")
    assert replies[0].raw.startswith(":chatroom.irc 465 * :You are banned")
    assert client.transport.disconnecting


def test_per_address_caps_are_the_sessions() -> None:
    server = make_server(connection_limits=ConnectionLimits(per_address=1, rate=0))
    factory = irc_factory(server)
    IRCClient(factory, 50001, host="192.0.2.8").join("one")
    second = IRCClient(factory, 50002, host="192.0.2.8")
    assert second.raw().startswith(b"ERROR :")
    assert second.transport.disconnecting


def test_over_long_lines_and_bad_input() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server)).join("alice")
    alice.send("PRIVMSG #chatroom :" + "x" * 600)
    alice.send(b"PRIVMSG #chatroom :\xff")
    alice.send("PRIVMSG #chatroom :bell\x07")
    replies = alice.messages()
    assert [m.command for m in replies] == ["NOTICE"] * 3
    assert "at most 512 bytes" in replies[0].text
    assert "UTF-8" in replies[1].text
    assert "control characters" in replies[2].text


# Wiring


def test_listen_irc_and_irc_channel_options() -> None:
    from twisted.python import usage

    from chatroom.tap import Options

    config = Options()
    config.parseOptions(["--listen", "irc:tcp:6667:interface=127.0.0.1", "--irc-channel", "#room"])
    assert config["listen"] == [("irc", "tcp:6667:interface=127.0.0.1")]
    assert config["irc-channel"] == "#room"
    assert Options().parseOptions([]) is None
    for bad in ("room", "#a b", "#a,b", "#" + "x" * 50):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(["--irc-channel", bad])


def test_another_channel_name() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server, "#lobby"))
    alice.register("alice")
    alice.send("JOIN #chatroom")
    alice.send("JOIN #lobby")
    replies = alice.messages()
    assert replies[0].command == "403"
    assert replies[1].raw == ":alice!alice@127.0.0.1 JOIN #lobby"


def test_the_send_queue_cap_covers_the_adapters_own_replies() -> None:
    server = make_server(ClientLimits(flood_rate=0, send_queue=2000))
    connect_named(server.factory, *(f"member{i}" for i in range(30)))
    alice = IRCClient(irc_factory(server)).join("alice")
    alice.protocol._watch.pauseProducing()
    alice.send("WHO #chatroom")
    assert alice.transport.disconnected or alice.protocol.session.member is None
    assert server.room.members.find("alice") is None


def test_oper_before_joining_the_channel_still_says_381() -> None:
    server = make_server(moderation=ModerationSettings(password=PASSWORD))
    alice = IRCClient(irc_factory(server))
    alice.register("alice")
    alice.send("OPER alice :open sesame")
    assert numerics(alice.messages()) == ["381"]


def test_the_first_member_on_irc_is_admin_and_registration_starts_with_001() -> None:
    server = make_server(moderation=ModerationSettings(first_admin=True))
    alice = IRCClient(irc_factory(server))
    replies = alice.register("alice")
    assert replies[0].command == "001"
    assert "381" not in numerics(replies)
    alice.send("JOIN #chatroom")
    assert [m.text for m in alice.messages() if m.command == "353"] == ["@alice"]


def test_long_quit_and_kick_reasons_fit_one_line_and_say_they_were_cut() -> None:
    server, bob, alice = admin_room()
    carol = FakeClient(server.factory, 40300)
    carol.send("/nick carol")
    dave = FakeClient(server.factory, 40301)
    dave.send("/nick dave")
    alice.messages()
    carol.send("/quit " + "bye " * 500)
    bob.send("/kick dave " + "out " * 500)
    quit, kick, *_ = alice.messages()
    assert quit.command == "QUIT" and quit.text.endswith("\u2026") and quit.text.startswith("quit: bye bye")
    assert kick.command == "KICK" and kick.text.endswith("\u2026") and kick.text.startswith("out out")


def test_replies_quoting_long_input_fit_one_line() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server)).join("alice")
    alice.send("NICK " + "a" * 400)
    alice.send("PRIVMSG " + "b" * 300 + " :hi")
    replies = alice.messages()
    assert [m.command for m in replies] == ["432", "401"]
    assert all(m.text.endswith("\u2026") for m in replies)


def test_a_client_with_server_time_gets_the_history_on_joining_with_its_times() -> None:
    server = make_server(history=HistorySettings(InMemoryHistory(100), 50))
    (bob,) = connect_named(server.factory, "bob")
    bob.send("earlier words")
    bob.send("/me waves")
    said_at = format_timestamp(server.clock.seconds())
    server.clock.advance(60)
    alice = IRCClient(irc_factory(server))
    alice.register("alice", caps="server-time")
    alice.send("JOIN #chatroom")
    replayed = [m for m in alice.messages() if m.command in ("PRIVMSG", "NOTICE") and "#chatroom" in m.raw]
    texts = [m.raw.partition(" ")[2] for m in replayed]
    assert texts[:4] == [
        ":chatroom.irc NOTICE #chatroom :[history] guest1 joined",
        ":chatroom.irc NOTICE #chatroom :[history] guest1 is now known as bob",
        ":bob!bob@127.0.0.1 PRIVMSG #chatroom :earlier words",
        ":bob!bob@127.0.0.1 PRIVMSG #chatroom :\x01ACTION waves\x01",
    ]
    assert replayed[2].tags == f"time={said_at}"
    # Without server-time a client would take the old lines for new ones: none.
    carol = IRCClient(irc_factory(server), port=50002)
    carol.register("carol")
    carol.send("JOIN #chatroom")
    assert not [m for m in carol.messages() if m.command == "PRIVMSG"]


def test_a_drained_send_queue_is_let_go_of_as_on_line_connections() -> None:
    server = make_server()
    alice = IRCClient(irc_factory(server)).join("alice")
    (bob,) = connect_named(server.factory, "bob")
    alice.transport.producer.pauseProducing()
    bob.send("while alice does not read")
    bob.send("and more")
    session = alice.protocol.session
    assert session.held > 0
    alice.transport.producer.resumeProducing()
    # The memory budget no longer counts what the socket took.
    assert session.held == 0
