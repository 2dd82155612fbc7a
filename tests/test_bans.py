"""
The ban list on its own: targets, durations, expiry, limits and the JSON form.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from chatroom.bans import (
    MAX_BAN_SHARE,
    MAX_BANS,
    MAX_DURATION,
    MAX_REASON_LENGTH,
    Ban,
    BanError,
    BanList,
    breadth_problem,
    check_reason,
    is_loopback,
    network_text,
    parse_duration,
    parse_network,
)
from chatroom.wire import Kind, format_line, format_timestamp, parse_line


def test_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("10m") == 600
    assert parse_duration("2h") == 7200
    assert parse_duration("7D") == 7 * 86400
    assert parse_duration("1w") == 7 * 86400
    assert parse_duration("010m") == 600
    for text in ("", "10", "m", "1.5h", "-1h", "10y", "10m5s", "spam"):
        assert parse_duration(text) is None, text


def test_durations_are_bounded_to_ten_years() -> None:
    assert MAX_DURATION == 3650 * 86400
    assert parse_duration("3650d") == MAX_DURATION
    assert parse_duration("521w") == 521 * 7 * 86400
    assert parse_duration(f"{MAX_DURATION}s") == MAX_DURATION
    # 420000w is past year 9999: it once raised inside /ban after the ban was added.
    for text in ("3651d", "522w", f"{MAX_DURATION + 1}s", "420000w", "1234567d", "9" * 4000 + "w"):
        with pytest.raises(BanError, match=r"too long: at most 3650d \(ten years\)"):
            parse_duration(text)
    with pytest.raises(BanError, match="is zero"):
        parse_duration("0m")
    # A ValueError, which the moderation feature turns into an error line.
    assert issubclass(BanError, ValueError)


def test_the_longest_ban_from_now_is_formattable() -> None:
    now = 1795860905.25
    longest = Ban("mallory", None, "admin", now, now + MAX_DURATION, "")
    assert format_timestamp(longest.expires or 0).startswith("2036-")


@pytest.mark.parametrize("expires", [1e300, 253402300800.0, float("nan"), float("-inf")])
def test_a_ban_cannot_expire_when_no_line_can_say(expires: float) -> None:
    with pytest.raises(BanError, match="from year 1 to 9999"):
        Ban("mallory", None, "admin", 100.0, expires, "")


def test_networks() -> None:
    assert parse_network("192.0.2.7") == ipaddress.ip_network("192.0.2.7/32")
    assert parse_network("192.0.2.7/24") == ipaddress.ip_network("192.0.2.0/24")
    assert parse_network("2001:db8::1/64") == ipaddress.ip_network("2001:db8::/64")
    assert parse_network("::ffff:192.0.2.7") == ipaddress.ip_network("192.0.2.7/32")
    assert parse_network("::ffff:192.0.2.7/120") == ipaddress.ip_network("192.0.2.0/24")
    for text in ("alice", "192.0.2.300", "192.0.2.0/33", "", "fe80::1/129"):
        assert parse_network(text) is None, text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("::/0", "0::/0"),
        ("::1", "0::1/128"),
        ("::", "0::/128"),
        ("::2/127", "0::2/127"),
        ("::ffff:0:0/95", "0::fffe:0:0/95"),
        ("2001:db8::1/64", "2001:db8::/64"),
        ("10.0.0.1/8", "10.0.0.0/8"),
    ],
)
def test_every_address_ban_is_a_header_token_and_reads_back(text: str, shown: str) -> None:
    network = parse_network(text)
    assert network is not None
    ban = Ban(None, network, "admin", 100.0, None, "")
    assert ban.target == network_text(network) == shown
    # As the ban, unban and banned lines carry it (it once raised WireError for ::/0).
    raw = format_line(100.0, Kind.BANNED, "*", "you are banned", (ban.target, "expires=never"))
    assert parse_line(raw).args[0] == shown
    assert parse_network(shown) == network
    assert parse_network(f"[{network.network_address}]/{network.prefixlen}") == network


@pytest.mark.parametrize("shown", ["0::1/128", "::1/128", "::1", "[::1]", "[::1]/128", "0:0:0:0:0:0:0:1"])
def test_unban_takes_the_shown_and_the_plain_form(shown: str) -> None:
    bans = BanList([ban(network="::1"), ban(network="::/0")])
    assert bans.for_host("::1", 0.0) is not None
    assert [b.target for b in bans.remove(shown, 0.0)] == ["0::1/128"]
    assert [b.target for b in bans.active(0.0)] == ["0::/0"]
    assert [b.target for b in bans.remove("0::/0", 0.0)] == ["0::/0"]


def test_brackets_hold_only_an_address() -> None:
    for text in ("[alice]", "[::1", "[10.0.0.1/8]", "[::1]/129", "[]"):
        assert parse_network(text) is None, text


def test_a_ban_on_a_whole_address_family_is_too_broad() -> None:
    for text in ("0.0.0.0/0", "::/0", "192.0.2.1/0", "::ffff:0:0/96"):
        network = parse_network(text)
        assert network is not None
        problem = breadth_problem(network, [])
        assert problem is not None and "covers every IPv" in problem, text
    problem = breadth_problem(ipaddress.ip_network("::/0"), ["::1"])
    assert problem == "0::/0 covers every IPv6 address"


def test_a_ban_on_more_than_half_the_room_is_too_broad() -> None:
    assert MAX_BAN_SHARE == 0.5
    net = ipaddress.ip_network("10.0.0.0/8")
    room = ["192.0.2.1", "10.0.0.1", "10.0.0.2", "10.0.0.2", "::ffff:10.0.0.3", "2001:db8::1"]
    # 3 of the 5 distinct addresses (10.0.0.2 twice counts once; mapped IPv4 is IPv4).
    assert breadth_problem(net, room) == "10.0.0.0/8 covers 3 of the 5 addresses in the room (more than 50%)"
    assert breadth_problem(net, room, share=0.6) is None
    assert (
        breadth_problem(net, room[:3]) == "10.0.0.0/8 covers 2 of the 3 addresses in the room (more than 50%)"
    )
    # Half is not more than half.
    assert breadth_problem(net, ["192.0.2.1", "192.0.2.2", "10.0.0.1", "10.0.0.2"]) is None
    # One address is never too broad by share, however many connections it has.
    one = ipaddress.ip_network("10.0.0.2/32")
    assert breadth_problem(one, ["192.0.2.1", "10.0.0.2", "10.0.0.2", "10.0.0.2"]) is None
    assert breadth_problem(net, ["not-an-address", "10.0.0.1"]) is None
    assert breadth_problem(net, []) is None


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


def test_reasons_are_bounded() -> None:
    assert MAX_REASON_LENGTH == 200
    longest = "x" * MAX_REASON_LENGTH
    assert check_reason(longest) == longest
    assert ban("bob", reason=longest).reason == longest
    with pytest.raises(BanError, match="has 201 characters: a ban reason has at most 200"):
        check_reason(longest + "y")
    with pytest.raises(BanError, match="at most 200"):
        ban("bob", reason="x" * 4096)


def test_json_round_trip_keeps_the_longest_reason_and_address_family_bans() -> None:
    bans = BanList(
        [ban("bob", reason="é" * MAX_REASON_LENGTH), ban(network="::/0", expires=100.0 + MAX_DURATION)]
    )
    again = BanList.from_json(bans.to_json(100.0))
    assert again.active(100.0) == bans.active(100.0)
    assert [b.target for b in again.active(100.0)] == ["bob", "0::/0"]


def test_state_written_before_the_bounds_still_loads() -> None:
    old = [
        {"name": "bob", "network": None, "by": "a", "at": 1.0, "expires": 1e12, "reason": "r" * 4096},
        {"name": None, "network": "::1/128", "by": "a", "at": 1.0, "expires": None, "reason": ""},
    ]
    bans = BanList.from_json(old).active(2.0)
    # An expiry past year 9999 never comes: the ban is permanent; the reason keeps its start.
    assert [(b.target, b.expires, b.reason) for b in bans] == [
        ("bob", None, "r" * MAX_REASON_LENGTH),
        ("0::1/128", None, ""),
    ]


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
        [{"name": "bob", "network": None, "by": "a", "at": 1e300, "expires": None, "reason": ""}],
        [{"name": "bob", "network": None, "by": "a", "at": 1, "expires": float("nan"), "reason": ""}],
        ["bob"],
    ],
)
def test_from_json_refuses_what_it_did_not_write(data: Any) -> None:
    with pytest.raises(ValueError):
        BanList.from_json(data)
