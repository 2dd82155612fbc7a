"""
Admins, kicks and bans, through the protocol on StringTransports with a Clock.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from chatroom.bans import BanList
from chatroom.core.events import Notice
from chatroom.core.memory import InMemoryBans
from chatroom.features.moderation import ModerationSettings, PasswordCheck
from chatroom.limits import ClientLimits
from chatroom.passwd import hash_password
from chatroom.stores.files import DocumentBanStore
from chatroom.wire import ServerLine, format_timestamp
from tests.helpers import START, FakeClient, make_server

# Cheap scrypt parameters: these tests are about the rules, not the hash.
PASSWORD = hash_password("open sesame", n=2**4, r=1, p=1)


class Rooms:
    """
    One moderated room and its clients, each on its own address.
    """

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("first_admin", True)
        bans, save = settings.pop("bans", BanList()), settings.pop("save", None)
        settings["bans"] = InMemoryBans(bans) if save is None else DocumentBanStore(bans, save)
        self.clock = Clock()
        self.clock.advance(START)
        server = make_server(ClientLimits(), moderation=ModerationSettings(**settings), clock=self.clock)
        self.room, self.factory = server.room, server.factory
        self._port = 40000

    def connect(self, host: str) -> FakeClient:
        self._port += 1
        return FakeClient(self.factory, self._port, host)

    def join(self, name: str, host: str | None = None) -> FakeClient:
        """
        Connect from C{host} (by default an address of its own), take
        C{name}, let the clock tick, and clear what everyone got.
        """
        client = self.connect(host or f"10.0.0.{self._port - 40000 + 1}")
        client.send(f"/nick {name}")
        assert client.lines()[-1].kind == "rename"
        self.clock.advance(1)
        return client

    def admins(self) -> list[str]:
        return [m.name for m in self.room.members if m.is_admin]


def joined(rooms: Rooms, *names: str) -> list[FakeClient]:
    clients = [rooms.join(name) for name in names]
    for client in clients:
        client.lines()
    return clients


def one(client: FakeClient, kind: str) -> ServerLine:
    found = [line for line in client.lines() if line.kind == kind]
    assert len(found) == 1, found
    return found[0]


def error(client: FakeClient, command: str) -> str:
    """
    The one error line C{command} gets (what came before is dropped).
    """
    client.lines()
    client.send(command)
    (line,) = client.lines()
    assert line.kind == "error"
    return line.text


def gone(client: FakeClient) -> bool:
    return bool(client.transport.disconnecting)


# Who is admin: the first-member rule


def test_first_member_is_admin_and_everyone_can_see_it() -> None:
    rooms = Rooms()
    alice = rooms.connect("10.0.0.1")
    _welcome, _join, admin, listing = alice.lines()
    assert (admin.kind, admin.source, admin.args) == ("admin", "*", ("guest1", "admin=yes"))
    assert listing.args == ("@guest1",)
    bob = rooms.connect("10.0.0.2")
    assert [line.kind for line in bob.lines()] == ["welcome", "join", "list"]
    bob.send("/whois guest1")
    assert one(bob, "whois").fields["admin"] == "yes"
    bob.send("/whois guest2")
    assert one(bob, "whois").fields["admin"] == "no"


def test_no_automatic_admin_without_the_rule() -> None:
    rooms = Rooms(first_admin=False)
    alice = rooms.connect("10.0.0.1")
    assert "admin" not in [line.kind for line in alice.lines()]
    assert rooms.admins() == []


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_admin_passes_to_the_oldest_remaining_member(order: tuple[int, ...]) -> None:
    rooms = Rooms()
    names = ["anna", "ben", "cleo", "dan"]
    clients = dict(zip(names, joined(rooms, *names), strict=True))
    # A rename changes nothing about who has been here longest.
    clients["cleo"].send("/nick chloe")
    names[2] = "chloe"
    clients["chloe"] = clients.pop("cleo")
    for client in clients.values():
        client.lines()
    present = list(names)
    for step, index in enumerate(order):
        name = names[index]
        was_admin = rooms.admins() == [name]
        # Leave three different ways: quit, a dropped connection, a self-kick.
        if step % 3 == 0:
            clients[name].send("/quit")
        elif step % 3 == 1:
            clients[name].disconnect()
        else:
            clients[name].send(f"/kick {name} bye")
        present.remove(name)
        assert rooms.admins() == present[:1]
        for other in present:
            admin_lines = [line for line in clients[other].lines() if line.kind == "admin"]
            if was_admin:
                (line,) = admin_lines
                assert line.args == (present[0], "admin=yes")
                assert line.text == f"{present[0]} is now the admin ({name} left)"
            else:
                assert admin_lines == []


def test_members_that_joined_at_the_same_moment_succeed_in_join_order() -> None:
    rooms = Rooms()
    alice, bob, carol = (rooms.connect(f"10.0.0.{i}") for i in (1, 2, 3))
    alice.send("/quit")
    assert rooms.admins() == ["guest2"]
    carol.lines()
    bob.send("/quit")
    assert rooms.admins() == ["guest3"]
    assert one(carol, "admin").args == ("guest3", "admin=yes")


def test_an_opped_admin_keeps_the_room_when_the_first_leaves() -> None:
    rooms = Rooms()
    alice, bob, _carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/op carol")
    alice.send("/quit")
    assert rooms.admins() == ["carol"]
    assert "admin" not in [line.kind for line in bob.lines()[1:]]


def test_an_emptied_room_gives_the_next_member_admin() -> None:
    rooms = Rooms()
    (alice,) = joined(rooms, "alice")
    alice.send("/quit")
    assert rooms.admins() == []
    bob = rooms.connect("10.0.0.9")
    assert one(bob, "admin").args == ("guest2", "admin=yes")


# /oper


def test_oper_without_a_password_configured() -> None:
    rooms = Rooms()
    _alice, bob = joined(rooms, "alice", "bob")
    assert error(bob, "/oper secret") == "this server has no admin password: ask an admin to /op you"


def test_oper_with_the_password_makes_an_admin_and_tells_everyone() -> None:
    rooms = Rooms(first_admin=False, password=PASSWORD)
    alice, bob = joined(rooms, "alice", "bob")
    assert rooms.admins() == []
    with capturedLogs() as events:
        bob.send("/oper open sesame")
    for client in (alice, bob):
        line = one(client, "admin")
        assert (line.args, line.text) == (("bob", "admin=yes"), "bob is now an admin (password)")
    (event,) = events
    assert (event["target"], event["target_id"], event["reason"], event["admin"]) == (
        "bob",
        "2",
        "password",
        True,
    )
    assert "open sesame" not in repr(events)
    assert error(bob, "/oper open sesame") == "you are already an admin"


def test_first_admin_and_a_password_together() -> None:
    rooms = Rooms(first_admin=True, password=PASSWORD)
    _alice, bob = joined(rooms, "alice", "bob")
    bob.send("/oper open sesame")
    assert rooms.admins() == ["alice", "bob"]


def test_wrong_passwords_are_refused_logged_and_rate_limited() -> None:
    rooms = Rooms(first_admin=False, password=PASSWORD)
    _alice, bob = joined(rooms, "alice", "bob")
    with capturedLogs() as events:
        assert error(bob, "/oper guess1") == "wrong password"
    (event,) = events
    assert (event["log_level"].name, event["actor"], event["actor_address"]) == (
        "warn",
        "bob",
        "10.0.0.2:40002",
    )
    assert (event["command"], event["error"]) == ("oper", "wrong password")
    assert "guess1" not in repr(events)
    # Even the right password is not checked within 5 seconds of a try.
    assert error(bob, "/oper open sesame") == "too many /oper attempts: try again in 5s"
    rooms.clock.advance(4.5)
    assert error(bob, "/oper open sesame") == "too many /oper attempts: try again in 1s"
    rooms.clock.advance(0.5)
    bob.send("/oper open sesame")
    assert one(bob, "admin").args == ("bob", "admin=yes")


def test_oper_attempts_are_limited_per_address_across_connections() -> None:
    # Counted per IPv6 /64, as connections are: one host usually owns a /64.
    rooms = Rooms(first_admin=False, password=PASSWORD)
    for attempt in range(5):
        client = rooms.join(f"guesser{attempt}", f"2001:db8::{attempt + 1}")
        assert error(client, "/oper wrong") == "wrong password"
    late = rooms.join("guesser5", "2001:db8::99")
    assert error(late, "/oper open sesame").startswith("too many /oper attempts: try again in ")
    elsewhere = rooms.join("honest", "2001:db8:0:1::1")
    elsewhere.lines()
    elsewhere.send("/oper open sesame")
    assert rooms.admins() == ["honest"]
    rooms.clock.advance(60)
    late.send("/oper open sesame")
    assert sorted(rooms.admins()) == ["guesser5", "honest"]


def test_a_member_who_leaves_during_the_check_gets_nothing() -> None:
    pending: list[tuple[Deferred[bool], PasswordCheck]] = []

    def later(check: PasswordCheck) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        pending.append((d, check))
        return d

    rooms = Rooms(first_admin=False, password=PASSWORD, run_check=later)
    alice, bob = joined(rooms, "alice", "bob")
    bob.send("/oper open sesame")
    alice.send("/oper wrong")
    assert bob.lines() == alice.lines() == []
    bob.disconnect()
    alice.lines()
    for d, check in pending:
        d.callback(check())
    assert rooms.admins() == []
    assert [line.text for line in alice.lines()] == ["wrong password"]
    assert bob.lines() == []


# /op and /deop


def test_op_and_deop() -> None:
    rooms = Rooms()
    alice, bob, carol = joined(rooms, "alice", "bob", "carol")
    assert error(bob, "/op carol") == "permission denied: only an admin can make others admin"
    assert error(alice, "/op nobody") == "no such user nobody: type /list to see who is here"
    alice.send("/op bob")
    for client in (alice, bob, carol):
        line = one(client, "admin")
        assert (line.source, line.args, line.text) == (
            "alice",
            ("bob", "admin=yes"),
            "alice made bob an admin",
        )
    assert error(alice, "/op bob") == "bob is already an admin"
    carol.send("/list")
    assert one(carol, "list").args == ("@alice", "@bob", "carol")
    assert error(alice, "/deop carol") == "carol is not an admin"
    bob.send("/deop alice")
    line = one(carol, "admin")
    assert (line.source, line.args) == ("bob", ("alice", "admin=no"))
    assert error(alice, "/deop bob") == "permission denied: only an admin can take admin rights away"
    assert error(bob, "/deop bob") == "bob is the last admin: /op someone else first"
    assert rooms.admins() == ["bob"]


def test_deop_of_oneself_is_giving_up_admin_rights() -> None:
    rooms = Rooms()
    alice, bob = joined(rooms, "alice", "bob")
    alice.send("/op bob")
    bob.lines()
    alice.send("/deop alice")
    line = one(bob, "admin")
    assert (line.source, line.args) == ("alice", ("alice", "admin=no"))
    assert line.text == "alice gave up admin rights"
    assert rooms.admins() == ["bob"]


# /kick


def test_admin_kicks_with_a_reason() -> None:
    rooms = Rooms()
    alice, bob, carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/kick Bob flooding")
    for client in (alice, bob, carol):
        line = one(client, "kick")
        assert (line.source, line.args, line.text) == ("alice", ("bob",), "alice kicked bob: flooding")
    assert gone(bob)
    carol.send("/list")
    assert one(carol, "list").args == ("@alice", "carol")


def test_the_room_gets_a_leave_line_after_a_kick() -> None:
    rooms = Rooms()
    alice, bob, carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/kick bob")
    kinds = [(line.kind, line.text) for line in carol.lines()]
    assert kinds == [("kick", "alice kicked bob"), ("leave", "bob left (kicked by alice)")]
    assert [line.kind for line in bob.lines()] == ["kick"]


def test_kick_permissions_and_unknown_users() -> None:
    rooms = Rooms()
    alice, bob, carol = joined(rooms, "alice", "bob", "carol")
    assert error(bob, "/kick carol") == "permission denied: only an admin can kick others"
    assert error(bob, "/kick alice") == "permission denied: only an admin can kick others"
    assert error(alice, "/kick nobody") == "no such user nobody: type /list to see who is here"
    assert error(bob, "/kick") == "missing argument: usage /kick <user> [reason]"
    assert not gone(carol)
    assert carol.lines() == []


def test_anyone_may_kick_themselves() -> None:
    rooms = Rooms()
    alice, bob = joined(rooms, "alice", "bob")
    bob.send("/kick bob enough for today")
    assert gone(bob)
    (line,) = alice.lines()
    assert (line.kind, line.text) == ("leave", "bob left (quit: enough for today)")


def test_admin_kicking_another_admin() -> None:
    rooms = Rooms()
    alice, bob, _carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/op bob")
    bob.send("/kick alice")
    assert gone(alice)
    assert rooms.admins() == ["bob"]


# /ban


def test_banning_a_member_bans_name_and_address_and_kicks() -> None:
    rooms = Rooms()
    alice, bob, carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/ban bob 2h flooding the room")
    banned = rooms.clock.seconds()
    expires = format_timestamp(banned + 7200)
    confirmation = one(alice, "ban")
    assert confirmation.args[0] == "bob"
    assert confirmation.fields == {
        "address": "10.0.0.2/32",
        "by": "alice",
        "at": format_timestamp(banned),
        "expires": expires,
    }
    assert confirmation.text == f"alice banned bob (10.0.0.2/32) until {expires}: flooding the room"
    kick, farewell = bob.lines()
    assert (kick.kind, kick.text) == ("kick", "alice kicked bob: banned: flooding the room")
    assert (farewell.kind, farewell.args[0], farewell.fields) == ("banned", "bob", {"expires": expires})
    assert farewell.text == f"you are banned from this room until {expires}: flooding the room"
    assert gone(bob)
    # carol sees the kick, not the ban line with bob's address.
    assert [line.kind for line in carol.lines()] == ["kick", "leave"]

    again = rooms.connect("10.0.0.2")
    (line,) = again.lines()
    assert (line.kind, line.fields["expires"]) == ("banned", expires)
    assert "flooding the room" in line.text
    assert gone(again)
    assert [m.name for m in rooms.room.members] == ["alice", "carol"]
    assert carol.lines() == []

    assert error(carol, "/nick bob") == f"the name bob is banned until {expires}: choose another"
    assert error(carol, "/nick B0b") == f"the name B0b is banned until {expires}: choose another"


def test_bans_expire_on_time() -> None:
    rooms = Rooms()
    alice, _bob, carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/ban bob 10m")
    rooms.clock.advance(599)
    assert gone(rooms.connect("10.0.0.2"))
    assert error(carol, "/nick bob").startswith("the name bob is banned")
    rooms.clock.advance(1)
    back = rooms.connect("10.0.0.2")
    assert not gone(back)
    carol.send("/nick bob")
    assert one(carol, "rename").args == ("bob",)
    alice.lines()
    alice.send("/bans")
    (summary,) = alice.lines()
    assert summary.args == ("count=0",)


def test_reason_without_a_duration_is_a_permanent_ban() -> None:
    rooms = Rooms()
    alice, _bob = joined(rooms, "alice", "bob")
    alice.send("/ban bob 10 times too many")
    line = one(alice, "ban")
    assert line.fields["expires"] == "never"
    assert line.text.endswith("permanently: 10 times too many")
    rooms.clock.advance(10 * 365 * 86400)
    assert gone(rooms.connect("10.0.0.2"))


def test_banning_an_address_or_network() -> None:
    rooms = Rooms()
    alice = rooms.join("alice", "192.0.2.1")
    inside = rooms.join("inside", "10.1.2.3")
    outside = rooms.join("outside", "10.2.0.1")
    for client in (alice, inside, outside):
        client.lines()
    alice.send("/ban 10.1.7.7/16 a noisy network")
    line = one(alice, "ban")
    assert (line.args[0], line.fields["address"]) == ("10.1.0.0/16", "10.1.0.0/16")
    assert gone(inside)
    assert not gone(outside)
    assert gone(rooms.connect("10.1.200.1"))
    assert gone(rooms.connect("::ffff:10.1.0.9"))
    assert not gone(rooms.connect("10.2.0.2"))
    # An address ban leaves names alone.
    outside.lines()
    outside.send("/nick inside")
    assert one(outside, "rename").args == ("inside",)


def test_banning_ipv6() -> None:
    rooms = Rooms()
    alice = rooms.join("alice", "2001:db8::1")
    alice.lines()
    alice.send("/ban 2001:db8:1::/48")
    assert gone(rooms.connect("2001:db8:1::77"))
    assert not gone(rooms.connect("2001:db8:2::77"))


def test_ban_permissions_and_bad_targets() -> None:
    rooms = Rooms()
    alice, bob = joined(rooms, "alice", "bob")
    for command in ("/ban alice", "/ban 10.0.0.1", "/unban x", "/bans"):
        assert error(bob, command).startswith("permission denied: only an admin can ")
    assert (
        error(alice, "/ban no!name") == "cannot ban no!name: give a user name, an address or a CIDR network"
    )
    assert error(alice, "/ban") == "missing argument: usage /ban <user|address|CIDR> [duration] [reason]"
    assert not gone(bob)
    assert bob.lines() == []


def test_an_admin_cannot_ban_themselves() -> None:
    rooms = Rooms()
    alice, _bob = joined(rooms, "alice", "bob")
    assert error(alice, "/ban alice") == "you cannot ban yourself"
    assert error(alice, "/ban Al1ce") == "you cannot ban yourself"
    assert error(alice, "/ban 10.0.0.1") == (
        "you cannot ban 10.0.0.1/32: you are connected from 10.0.0.1 yourself"
    )
    assert error(alice, "/ban 10.0.0.0/8").startswith("you cannot ban 10.0.0.0/8")
    assert error(alice, "/ban 0.0.0.0/0").startswith("you cannot ban 0.0.0.0/0")
    assert rooms.admins() == ["alice"]
    alice.send("/bans")
    assert alice.lines()[0].args == ("count=0",)


def test_banning_someone_on_the_admins_own_address_bans_only_the_name() -> None:
    rooms = Rooms()
    alice = rooms.join("alice", "10.5.5.5")
    bob = rooms.join("bob", "10.5.5.5")
    alice.lines()
    alice.send("/ban bob")
    lines = alice.lines()
    ban = next(line for line in lines if line.kind == "ban")
    assert "address" not in ban.fields
    notes = [line.text for line in lines if line.kind == "info"]
    assert notes == ["note: the address 10.5.5.5 is not banned: you are connected from it too"]
    assert gone(bob)
    assert not gone(rooms.connect("10.5.5.5"))


def test_loopback_bans_are_allowed_with_a_warning() -> None:
    rooms = Rooms()
    alice = rooms.join("alice", "192.0.2.1")
    local = rooms.join("local", "127.0.0.1")
    alice.lines()
    alice.send("/ban 127.0.0.1")
    notes = [line.text for line in alice.lines() if line.kind == "info"]
    assert notes == [
        "note: 127.0.0.1/32 is loopback: every client on this machine (and local proxy) is banned"
    ]
    assert gone(local)
    assert gone(rooms.connect("127.0.0.1"))


def test_banning_an_absent_name() -> None:
    rooms = Rooms()
    alice, bob = joined(rooms, "alice", "bob")
    alice.send("/ban mallory")
    notes = [line.text for line in alice.lines() if line.kind == "info"]
    assert notes == ["note: nobody called mallory is here: only the name is banned"]
    assert error(bob, "/nick Ma11ory").startswith("the name Ma11ory is banned permanently")


def test_a_banned_name_is_never_given_to_a_guest() -> None:
    rooms = Rooms()
    alice, _ = joined(rooms, "alice", "bob")
    alice.send("/ban guest3")
    newcomer = rooms.connect("10.0.0.7")
    assert newcomer.lines()[0].args == ("guest4",)


def test_unban_lifts_name_and_address_together() -> None:
    rooms = Rooms()
    alice, _bob, carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/ban bob")
    alice.send("/ban 192.0.2.0/24 spam")
    alice.lines()
    assert error(alice, "/unban 10.0.0.2/8") == "there is no ban on 10.0.0.2/8: type /bans to list them"
    alice.send("/unban 10.0.0.2")
    line = one(alice, "unban")
    assert (line.source, line.args, line.text) == ("alice", ("bob",), "alice lifted the ban on bob")
    carol.send("/nick bob")
    assert one(carol, "rename").args == ("bob",)
    assert not gone(rooms.connect("10.0.0.2"))
    alice.send("/unban 192.0.2.77/24")
    assert one(alice, "unban").args == ("192.0.2.0/24",)
    assert error(alice, "/unban 192.0.2.0/24") == "there is no ban on 192.0.2.0/24: type /bans to list them"
    assert error(carol, "/unban bob").startswith("permission denied")


def test_bans_lists_who_when_why_and_until_when() -> None:
    rooms = Rooms()
    alice, _bob, carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/op carol")
    set_at = rooms.clock.seconds()
    alice.send("/ban bob 7d rude")
    rooms.clock.advance(60)
    carol.send("/ban 198.51.100.0/24")
    for client in (alice, carol):
        assert [line.kind for line in client.lines()].count("ban") == 2
    alice.send("/bans")
    summary, first, second = alice.lines()
    assert (summary.kind, summary.args, summary.text) == ("banlist", ("count=2",), "2 bans in force")
    assert first.args[0] == "bob"
    assert first.fields == {
        "address": "10.0.0.2/32",
        "by": "alice",
        "at": format_timestamp(set_at),
        "expires": format_timestamp(set_at + 7 * 86400),
    }
    assert first.text == "rude"
    assert (second.args[0], second.fields["by"], second.fields["expires"]) == (
        "198.51.100.0/24",
        "carol",
        "never",
    )


def test_banning_again_replaces_the_ban() -> None:
    rooms = Rooms()
    alice, _ = joined(rooms, "alice", "bob")
    alice.send("/ban bob 1h")
    alice.send("/ban bob 2h")
    alice.lines()
    alice.send("/bans")
    summary, ban = alice.lines()
    assert summary.args == ("count=1",)
    assert ban.fields["expires"] == format_timestamp(rooms.clock.seconds() + 7200)


def test_every_ban_change_is_saved() -> None:
    saved: list[Any] = []
    rooms = Rooms(save=saved.append)
    alice, _ = joined(rooms, "alice", "bob")
    alice.send("/ban bob spam")
    assert saved[-1]["version"] == 1
    assert [(ban["name"], ban["network"], ban["reason"]) for ban in saved[-1]["bans"]] == [
        ("bob", "10.0.0.2/32", "spam")
    ]
    assert BanList.from_json(saved[-1]["bans"]).for_host("10.0.0.2", rooms.clock.seconds()) is not None
    alice.send("/unban bob")
    assert saved[-1]["bans"] == []
    assert len(saved) == 2


def test_a_failed_save_is_reported_and_the_ban_still_holds() -> None:
    def broken(document: Any) -> None:
        raise OSError(28, "No space left on device")

    rooms = Rooms(save=broken)
    alice, _bob = joined(rooms, "alice", "bob")
    with capturedLogs() as events:
        alice.send("/ban bob")
    errors = [line.text for line in alice.lines() if line.kind == "error"]
    assert errors == [
        "the change is in force but not saved ([Errno 28] No space left on device): a restart loses it"
    ]
    assert [event["log_format"] for event in events if event["log_level"].name == "error"] == [
        "could not save the bans: {error}"
    ]
    assert gone(rooms.connect("10.0.0.2"))


def test_bans_given_at_start_apply() -> None:
    saved: list[Any] = []
    first = Rooms(save=saved.append)
    alice, _ = joined(first, "alice", "bob")
    alice.send("/ban bob")
    second = Rooms(bans=BanList.from_json(saved[-1]["bans"]))
    assert gone(second.connect("10.0.0.2"))


def test_help_documents_the_admin_commands() -> None:
    rooms = Rooms()
    (alice,) = joined(rooms, "alice")
    alice.send("/help")
    text = "\n".join(line.text for line in alice.lines())
    for command in ("oper", "op", "deop", "kick", "ban", "unban", "bans"):
        spec = next(s for s in rooms.room.commands.specs if s.name == command)
        assert f"{spec.usage} - " in text
    alice.send("/help ban")
    (line,) = alice.lines()
    assert line.text.startswith("/ban <user|address|CIDR> [duration] [reason] - ")


def test_a_room_closed_at_shutdown_starts_again_with_a_first_admin() -> None:
    rooms = Rooms()
    joined(rooms, "alice", "bob")
    rooms.room.close(Notice(rooms.clock.seconds(), "shutting down"))
    newcomer = rooms.connect("10.0.0.9")
    assert one(newcomer, "admin").args == ("guest3", "admin=yes")


def test_a_kicked_client_is_not_heard_any_more() -> None:
    rooms = Rooms()
    alice, bob, carol = joined(rooms, "alice", "bob", "carol")
    alice.send("/kick bob")
    carol.lines()
    # Lines still in flight from bob after the kick are ignored.
    bob.send("still here")
    bob.send("/nick alicia")
    assert carol.lines() == []
    assert [m.name for m in rooms.room.members] == ["alice", "carol"]


# Bans the server could not format, and bans on (almost) everyone


def test_a_ban_past_the_longest_duration_changes_nothing() -> None:
    rooms = Rooms()
    alice, mallory = joined(rooms, "alice", "mallory")
    assert "at most" in error(alice, "/ban mallory 420000w")
    assert not gone(mallory)
    alice.send("/bans")
    assert [line.text for line in alice.lines()] == ["0 bans in force"]


def test_an_ipv6_ban_starting_with_colons_is_set_listed_and_enforced() -> None:
    rooms = Rooms()
    alice, _ = joined(rooms, "alice", "bob")
    alice.send("/ban ::1 spam")
    # The note: ::1 is loopback.
    assert [line.kind for line in alice.lines()] == ["ban", "info"]
    alice.send("/bans")
    entries = alice.lines()
    assert entries[0].text == "1 ban in force" and entries[1].args[0] == "0::1/128"
    refused = rooms.connect("::1")
    assert one(refused, "banned").args[0] == "0::1/128" and gone(refused)
    alice.send("/unban 0::1/128")
    assert one(alice, "unban").args == ("0::1/128",)


def test_a_ban_on_a_whole_address_family_must_be_forced() -> None:
    rooms = Rooms()
    admin = rooms.join("alice", "2001:db8::1")
    joined(rooms, "bob")
    admin.lines()
    text = error(admin, "/ban 0.0.0.0/0")
    assert text == "0.0.0.0/0 covers every IPv4 address: to ban it all the same, /ban !0.0.0.0/0"
    admin.send("/ban !0.0.0.0/0 closed")
    assert [line.kind for line in admin.lines()][:1] == ["ban"]
    assert gone(rooms.connect("10.0.0.77"))


# The log of moderation


def logged(events: list[dict[str, Any]]) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(event) for event in events]


def test_moderation_and_renames_are_logged_with_member_ids_and_addresses() -> None:
    rooms = Rooms()
    alice, bob = joined(rooms, "alice", "bob")
    with capturedLogs() as events:
        guest = rooms.connect("10.0.0.9")
        guest.send("/nick mallory")
        alice.send("/op bob")
        bob.send("/deop alice")
        alice.send("/kick bob")
        bob.send("/kick mallory spam")
        bob.send("/ban 10.0.0.99 later")
        bob.send("/unban 10.0.0.99")
        bob.send("/oper guess")
    texts = logged(events)
    assert texts == [
        "guest3 (#3) joined from 10.0.0.9:40003",
        "guest3 (#3 at 10.0.0.9:40003) is now mallory",
        "alice (#1 at 10.0.0.1:40001) set bob (#2 at 10.0.0.2:40002) admin=True (granted)",
        "bob (#2 at 10.0.0.2:40002) set alice (#1 at 10.0.0.1:40001) admin=False (revoked)",
        "refused /kick bob (#2 at 10.0.0.2:40002) by alice (#1 at 10.0.0.1:40001):"
        " permission denied: only an admin can kick others",
        "bob (#2 at 10.0.0.2:40002) kicked mallory (#3 at 10.0.0.9:40003): spam",
        "bob (#2 at 10.0.0.2:40002) banned 10.0.0.99/32 permanently: later",
        "bob (#2 at 10.0.0.2:40002) lifted the ban on 10.0.0.99/32",
        "refused /oper by bob (#2 at 10.0.0.2:40002): this server has no admin password:"
        " ask an admin to /op you",
    ]
    # The fields, for a log that keeps them (JSON): the acting and the affected.
    kick = events[5]
    assert (kick["actor_id"], kick["target_id"], kick["target_address"]) == ("2", "3", "10.0.0.9:40003")


def test_a_ban_logs_who_it_ejects_and_a_refused_ban_is_logged() -> None:
    rooms = Rooms()
    alice, bob = joined(rooms, "alice", "bob")
    with capturedLogs() as events:
        bob.send("/ban alice")
        alice.send("/ban bob 1h spam")
    assert (
        logged(events)[0] == "refused /ban alice (#1 at 10.0.0.1:40001) by bob (#2 at 10.0.0.2:40002):"
        " permission denied: only an admin can ban"
    )
    assert logged(events)[1].startswith("alice (#1 at 10.0.0.1:40001) banned bob (10.0.0.2/32) until ")
    assert "alice (#1 at 10.0.0.1:40001) kicked bob (#2 at 10.0.0.2:40002): banned: spam" in logged(events)
