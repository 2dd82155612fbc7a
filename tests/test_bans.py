"""
The ban list on its own: targets, durations, expiry, limits and the JSON form.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from chatroom.bans import MAX_BANS, Ban, BanList, is_loopback, parse_duration, parse_network


def test_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("10m") == 600
    assert parse_duration("2h") == 7200
    assert parse_duration("7D") == 7 * 86400
    assert parse_duration("1w") == 7 * 86400
    for text in ("", "0m", "10", "m", "1.5h", "-1h", "10y", "1234567d", "10m5s"):
        assert parse_duration(text) is None, text


def test_networks() -> None:
    assert parse_network("192.0.2.7") == ipaddress.ip_network("192.0.2.7/32")
    assert parse_network("192.0.2.7/24") == ipaddress.ip_network("192.0.2.0/24")
    assert parse_network("2001:db8::1/64") == ipaddress.ip_network("2001:db8::/64")
    assert parse_network("::ffff:192.0.2.7") == ipaddress.ip_network("192.0.2.7/32")
    assert parse_network("::ffff:192.0.2.7/120") == ipaddress.ip_network("192.0.2.0/24")
    for text in ("alice", "192.0.2.300", "192.0.2.0/33", "", "fe80::1/129"):
        assert parse_network(text) is None, text


def test_loopback() -> None:
    assert is_loopback(ipaddress.ip_network("127.0.0.1/32"))
    assert is_loopback(ipaddress.ip_network("0.0.0.0/0"))
    assert is_loopback(ipaddress.ip_network("::1/128"))
    assert not is_loopback(ipaddress.ip_network("10.0.0.0/8"))
    assert not is_loopback(ipaddress.ip_network("2001:db8::/32"))


def ban(
    name: str | None = None, network: str | None = None, expires: float | None = None, reason: str = ""
) -> Ban:
    return Ban(name, None if network is None else parse_network(network), "admin", 100.0, expires, reason)


def test_name_bans_cover_look_alikes_and_expire() -> None:
    bans = BanList([ban("mallory", expires=200.0)])
    assert bans.for_name("MALLORY", 150.0) is not None
    assert bans.for_name("ma11ory", 150.0) is not None
    assert bans.for_name("mallo", 150.0) is None
    assert bans.for_host("10.0.0.1", 150.0) is None
    assert bans.for_name("mallory", 200.0) is None
    assert bans.active(200.0) == []


def test_address_bans_cover_their_network_only() -> None:
    bans = BanList([ban(network="10.1.0.0/16"), ban(network="2001:db8::/32")])
    assert bans.for_host("10.1.255.255", 0.0) is not None
    assert bans.for_host("::ffff:10.1.0.1", 0.0) is not None
    assert bans.for_host("2001:db8:ffff::1", 0.0) is not None
    assert bans.for_host("10.2.0.1", 0.0) is None
    assert bans.for_host("2001:db9::1", 0.0) is None
    assert bans.for_host("not-an-address", 0.0) is None
    assert bans.for_name("10.1.0.1", 0.0) is None


def test_remove_by_name_or_by_exact_network() -> None:
    both = ban("bob", "10.0.0.2")
    bans = BanList([both, ban(network="10.0.0.0/8")])
    assert bans.remove("10.0.0.3", 0.0) == []
    assert bans.remove("BOB", 0.0) == [both]
    assert bans.for_host("10.0.0.2", 0.0) is not None  # still in 10.0.0.0/8
    assert [b.target for b in bans.remove("10.9.9.9/8", 0.0)] == ["10.0.0.0/8"]
    assert bans.active(0.0) == []


def test_adding_replaces_a_ban_on_the_same_target() -> None:
    bans = BanList()
    bans.add(ban("bob", expires=10.0), 0.0)
    bans.add(ban("Bob", expires=20.0), 0.0)
    bans.add(ban(network="10.0.0.0/8"), 0.0)
    bans.add(ban(network="10.0.0.0/8", reason="again"), 0.0)
    assert [(b.target, b.expires, b.reason) for b in bans.active(0.0)] == [
        ("Bob", 20.0, ""),
        ("10.0.0.0/8", None, "again"),
    ]


def test_the_list_is_bounded() -> None:
    bans = BanList()
    for i in range(MAX_BANS):
        bans.add(ban(f"user{i}"), 0.0)
    with pytest.raises(ValueError, match="/unban some first"):
        bans.add(ban("onemore"), 0.0)
    # Expired bans make room.
    short = BanList([ban(f"user{i}", expires=5.0) for i in range(MAX_BANS)])
    short.add(ban("onemore"), 5.0)
    assert [b.target for b in short.active(5.0)] == ["onemore"]


def test_json_round_trip_drops_expired_bans() -> None:
    bans = BanList(
        [ban("bob", "10.0.0.2", 500.0, "spam"), ban(network="2001:db8::/32"), ban("old", expires=1.0)]
    )
    document = bans.to_json(100.0)
    assert document[0] == {
        "name": "bob",
        "network": "10.0.0.2/32",
        "by": "admin",
        "at": 100.0,
        "expires": 500.0,
        "reason": "spam",
    }
    assert len(document) == 2
    again = BanList.from_json(document)
    assert again.active(100.0) == bans.active(100.0)


@pytest.mark.parametrize(
    "data",
    [
        {"bans": []},
        [{"name": None, "network": None, "by": "a", "at": 1, "expires": None, "reason": ""}],
        [{"name": "bob", "network": "10.0.0.300", "by": "a", "at": 1, "expires": None, "reason": ""}],
        [{"name": 5, "network": None, "by": "a", "at": 1, "expires": None, "reason": ""}],
        [{"name": "bob", "network": None, "by": None, "at": 1, "expires": None, "reason": ""}],
        [{"name": "bad name", "network": None, "by": "a", "at": 1, "expires": None, "reason": ""}],
        [{"name": "bob", "network": None, "by": "a b", "at": 1, "expires": None, "reason": ""}],
        [{"name": "bob", "network": None, "by": "a", "at": 1, "expires": None, "reason": 5}],
        [{"name": "bob", "network": None, "by": "a", "at": "yesterday", "expires": None, "reason": ""}],
        [{"name": "bob", "network": None, "by": "a", "at": 1, "expires": "never", "reason": ""}],
        ["bob"],
    ],
)
def test_from_json_refuses_what_it_did_not_write(data: Any) -> None:
    with pytest.raises(ValueError):
        BanList.from_json(data)
