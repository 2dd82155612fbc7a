"""
Address cloaks: the keyed hash members see instead of each other's address.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from chatroom.cloak import KEY_FILE, Cloaker, load_or_create_key
from chatroom.features.moderation import ModerationSettings
from chatroom.tap import compose, line_factory
from tests.helpers import START, UNLIMITED, FakeClient

KEY = bytes(range(32))
CLOAK = re.compile(r"cloak-[0-9a-f]{8}\.chatroom")


def test_a_cloak_is_stable_per_address_and_depends_on_the_key() -> None:
    cloak = Cloaker(KEY)
    assert CLOAK.fullmatch(cloak("203.0.113.9"))
    assert cloak("203.0.113.9") == Cloaker(bytes(KEY))("203.0.113.9")
    assert cloak("203.0.113.9") != cloak("203.0.113.10")
    assert cloak("203.0.113.9") != Cloaker(b"another key, 32 bytes long......")("203.0.113.9")
    # An IPv4-mapped IPv6 address is the IPv4 address.
    assert cloak("::ffff:203.0.113.9") == cloak("203.0.113.9")
    # IPv6: one cloak per /64 (privacy addresses change inside it).
    assert cloak("2001:db8:1:2::1") == cloak("2001:db8:1:2:aaaa:bbbb:cccc:dddd")
    assert cloak("2001:db8:1:2::1") != cloak("2001:db8:1:3::1")
    with pytest.raises(ValueError):
        Cloaker(b"short")


def test_the_key_is_made_once_with_mode_0600_and_kept(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    path = tmp_path / KEY_FILE
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key
    path.write_bytes(b"cut")
    with pytest.raises(ValueError, match="too short"):
        load_or_create_key(tmp_path)


class CloakedRoom:
    def __init__(self) -> None:
        clock = Clock()
        clock.advance(START)
        sessions, _ = compose(clock, ModerationSettings(first_admin=True), UNLIMITED, cloak=Cloaker(KEY))
        self.factory = line_factory(sessions)
        self.room = sessions.room

    def join(self, name: str, host: str, port: int) -> FakeClient:
        client = FakeClient(self.factory, port, host)
        client.send(f"/nick {name}")
        return client


def test_members_see_cloaks_admins_and_the_member_itself_see_the_address() -> None:
    room = CloakedRoom()
    alice = room.join("alice", "10.0.0.1", 4001)  # the first member: admin
    bob = room.join("bob", "10.0.0.2", 4002)
    for client in (alice, bob):
        client.lines()
    carol = room.join("carol", "10.0.0.3", 4003)
    cloak = Cloaker(KEY)("10.0.0.3")

    def join_text(client: FakeClient) -> str:
        (line,) = [line for line in client.lines() if line.kind == "join"]
        return line.text

    assert join_text(alice) == f"guest3 joined from 10.0.0.3:4003 ({cloak})"
    assert join_text(bob) == f"guest3 joined from {cloak}"
    assert join_text(carol) == f"guest3 joined from 10.0.0.3:4003 ({cloak})"

    def whois(client: FakeClient) -> dict[str, str]:
        client.send("/whois carol")
        (line,) = client.lines()
        # The text says what the fields say: no address for those who see the cloak.
        assert ("10.0.0.3" in line.text) == line.fields["address"].startswith("10.0.0.3")
        return line.fields

    assert whois(bob)["address"] == cloak and "cloak" not in whois(bob)
    assert (whois(alice)["address"], whois(alice)["cloak"]) == ("10.0.0.3:4003", cloak)
    assert whois(carol)["address"] == "10.0.0.3:4003"
    # Once bob is an admin, he sees it.
    alice.send("/op bob")
    bob.lines()
    assert whois(bob)["address"] == "10.0.0.3:4003"


def test_without_a_cloak_everyone_sees_the_address() -> None:
    clock = Clock()
    sessions, _ = compose(clock, ModerationSettings(), UNLIMITED)
    factory = line_factory(sessions)
    alice = FakeClient(factory, 4001, "10.0.0.1")
    alice.lines()
    FakeClient(factory, 4002, "10.0.0.2")
    (line,) = [line for line in alice.lines() if line.kind == "join"]
    assert line.text == "guest2 joined from 10.0.0.2:4002"
