"""
Bans: by name, by address and by CIDR network, each with an optional expiry.

A L{BanList} is plain data with no clock of its own: every question takes
the current time, so expiry follows whatever clock the room was given. A
name ban also covers the name's look-alikes (see L{chatroom.names.skeleton}).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chatroom.names import name_problem, skeleton
from chatroom.wire import format_timestamp

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Enough for any real room; a cap keeps an admin script from growing the
# list (and the connect-time check, which scans it) without bound.
MAX_BANS = 1000

# The longest ban short of a permanent one: ten years of 365 days. Every
# expiry is then a date the line format can write (up to year 9999).
MAX_DURATION = 3650 * 86400

# Reasons go into every ban line and into the state file: a bound keeps
# 1000 bans (and /bans) small.
MAX_REASON_LENGTH = 200

# A ban that covers more than this share of the room's distinct addresses
# needs to be forced (see L{breadth_problem}).
MAX_BAN_SHARE = 0.5

# Any run of digits, so that a number too large is refused, not taken
# for the first word of the reason.
_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\](/[0-9]+)?")


class BanError(ValueError):
    """
    A ban cannot be set as given; the message is the reply for the admin.

    A L{ValueError}, so L{Ban.from_json} callers that catch C{ValueError}
    see a bad state file; the moderation feature turns it into a reply.
    """


def parse_duration(text: str) -> int | None:
    """
    The number of seconds in a duration such as C{30s}, C{10m}, C{2h},
    C{7d} or C{1w}, or L{None} if C{text} is not shaped like one.

    @raise BanError: If C{text} is shaped like a duration but is zero or
        longer than L{MAX_DURATION} (ten years).
    """
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        return None
    digits, unit = match.groups()
    # Longer than any allowed duration in seconds, whatever the unit (and
    # never a huge int() conversion).
    seconds = MAX_DURATION + 1 if len(digits) > 10 else int(digits) * _UNIT_SECONDS[unit]
    if seconds == 0:
        raise BanError(f"the duration {text} is zero: give at least 1s, or none for a permanent ban")
    if seconds > MAX_DURATION:
        raise BanError(
            f"the duration {text} is too long: at most {MAX_DURATION // 86400}d (ten years), "
            "or none for a permanent ban"
        )
    return seconds


def check_reason(reason: str) -> str:
    """
    Return C{reason} if it is short enough to be a ban reason.

    @raise BanError: If it has more than L{MAX_REASON_LENGTH} characters.
    """
    if len(reason) > MAX_REASON_LENGTH:
        raise BanError(
            f"the reason has {len(reason)} characters: a ban reason has at most {MAX_REASON_LENGTH}"
        )
    return reason


def _formattable(seconds: float) -> bool:
    try:
        format_timestamp(seconds)
    except (ValueError, OverflowError, OSError):
        return False
    return True


def parse_address(host: str) -> Address | None:
    """
    The IP address in C{host}, an IPv4-mapped IPv6 address as IPv4, or
    L{None} if C{host} is not an IP address.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str) -> Network | None:
    """
    The network in C{text} (an address, or CIDR with host bits allowed and
    cleared; IPv4-mapped IPv6 as IPv4), or L{None} if C{text} is neither.
    """
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed is not None:
        # As L{network_text} never writes it, but as people copy an IPv6
        # address from a URL or from a C{whois} line's C{address=[::1]:5}.
        text = bracketed.group(1) + (bracketed.group(2) or "")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def network_text(network: Network) -> str:
    """
    C{network} in CIDR form, safe as a line's header token and read back by
    L{parse_network} (and any IP address parser) as the same network.

    A header token may not start with C{:}, so the compressed IPv6 forms
    that do (C{::/0}, C{::1/128}, C{::2/127}) are written with their
    first group of zeros spelled out: C{0::/0}, C{0::1/128}. That is still
    standard IPv6 text (RFC 4291), unlike brackets around an address with
    a prefix length; every other network reads as C{str(network)}.
    """
    text = str(network)
    return "0" + text if text.startswith(":") else text


def is_loopback(network: Network) -> bool:
    """
    Whether C{network} reaches into the loopback range.
    """
    return any(network.overlaps(loopback) for loopback in _LOOPBACK if loopback.version == network.version)


def covers(network: Network, host: str) -> bool:
    """
    Whether C{host} (an address string) lies in C{network}.
    """
    address = parse_address(host)
    return address is not None and address in network


def breadth_problem(network: Network, hosts: Iterable[str], share: float = MAX_BAN_SHARE) -> str | None:
    """
    Why a ban on C{network} is too broad to set without being forced, or
    L{None} if it is not.

    A ban is too broad if it covers a whole address family (a C{/0}), or
    if it covers more than C{share} of the distinct addresses in C{hosts}
    (the room's members' addresses) and more than one of them: a ban on a
    single address, however many connections come from it, is never too
    broad by share.

    @param hosts: Address strings, such as C{Member.host}; whatever is not
        an address is left out of the count.
    """
    if network.prefixlen == 0:
        family = "IPv4" if network.version == 4 else "IPv6"
        return f"{network_text(network)} covers every {family} address"
    addresses = {address for address in map(parse_address, hosts) if address is not None}
    covered = sum(1 for address in addresses if address in network)
    if covered > 1 and covered > share * len(addresses):
        return (
            f"{network_text(network)} covers {covered} of the {len(addresses)} addresses in the room "
            f"(more than {share:.0%})"
        )
    return None


# The last moment L{format_timestamp} can write (9999-12-31T23:59:59.999Z).
_LATEST = 253402300799.999


@dataclass(frozen=True)
class Ban:
    """
    One ban.

    @ivar name: The banned name, or L{None} for an address-only ban.
    @ivar network: The banned addresses, or L{None} for a name-only ban.
    @ivar by: The name of the admin who set it.
    @ivar at: When it was set, POSIX seconds.
    @ivar expires: When it ends, POSIX seconds; L{None} for never.
    @ivar reason: Why, as the admin put it (may be empty).
    """

    name: str | None
    network: Network | None
    by: str
    at: float
    expires: float | None
    reason: str

    def __post_init__(self) -> None:
        """
        @raise BanError: If the reason is too long, or C{at} or C{expires}
            is not a time a line can show (see L{format_timestamp}).
        """
        check_reason(self.reason)
        for what, seconds in (("start", self.at), ("expiry", self.expires)):
            if seconds is not None and not _formattable(seconds):
                raise BanError(f"a ban's {what} must be a date from year 1 to 9999, not {seconds!r}")

    @property
    def target(self) -> str:
        """
        How the ban is shown: the name if there is one, else the network
        (as L{network_text} writes it, so it is a valid header token).
        L{BanList.remove} takes it back.
        """
        if self.name is not None:
            return self.name
        assert self.network is not None
        return network_text(self.network)

    def active(self, now: float) -> bool:
        return self.expires is None or now < self.expires

    @cached_property
    def name_skeleton(self) -> str | None:
        """
        The L{skeleton} of the banned name: look-alikes share it.
        """
        return None if self.name is None else skeleton(self.name)

    def covers_name(self, name: str) -> bool:
        return self.name_skeleton is not None and self.name_skeleton == skeleton(name)

    def covers_host(self, host: str) -> bool:
        return self.network is not None and covers(self.network, host)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "network": None if self.network is None else str(self.network),
            "by": self.by,
            "at": self.at,
            "expires": self.expires,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Any) -> Ban:
        """
        @raise ValueError: If C{data} is not a ban as L{to_json} writes it.
        """
        if not isinstance(data, dict):
            raise ValueError("a ban must be an object")
        name, network, by, at, expires, reason = (
            data.get(key) for key in ("name", "network", "by", "at", "expires", "reason")
        )
        # Names go into line headers: they must be names the room accepts.
        for who in (name, by):
            if who is not None and (not isinstance(who, str) or name_problem(who) is not None):
                raise ValueError(f"bad name {who!r}")
        parsed = None
        if network is not None:
            parsed = parse_network(network) if isinstance(network, str) else None
            if parsed is None:
                raise ValueError(f"bad network {network!r}")
        if name is None and parsed is None:
            raise ValueError("a ban needs a name or a network")
        if by is None or not isinstance(reason, str):
            raise ValueError("a ban needs 'by' and 'reason' strings")
        if not isinstance(at, int | float) or not isinstance(expires, int | float | None):
            raise ValueError("a ban needs numbers 'at' and 'expires' (or null)")
        if expires is not None and expires > _LATEST:
            # Written before durations were bounded: it never ends anyway.
            expires = None
        # Reasons were not bounded before either: the start of one is kept.
        reason = reason[:MAX_REASON_LENGTH]
        return cls(name, parsed, by, float(at), None if expires is None else float(expires), reason)


class BanList:
    """
    The bans in force, oldest first; expired bans drop out as time passes.
    """

    def __init__(self, bans: Iterable[Ban] = ()) -> None:
        self._bans = list(bans)

    def active(self, now: float) -> list[Ban]:
        """
        The bans in force at C{now}; forgets the expired ones.
        """
        self._bans = [ban for ban in self._bans if ban.active(now)]
        return list(self._bans)

    def for_name(self, name: str, now: float) -> Ban | None:
        """
        The ban in force on C{name} or a look-alike, if any.
        """
        key = skeleton(name)
        return next((ban for ban in self._in_force(now) if ban.name_skeleton == key), None)

    def for_host(self, host: str, now: float) -> Ban | None:
        """
        The ban in force on address C{host}, if any.
        """
        address = parse_address(host)
        if address is None:
            return None
        return next(
            (ban for ban in self._in_force(now) if ban.network is not None and address in ban.network), None
        )

    def _in_force(self, now: float) -> Iterator[Ban]:
        return (ban for ban in self._bans if ban.active(now))

    def add(self, ban: Ban, now: float) -> None:
        """
        Add C{ban}, replacing any ban on the same name or network.

        @raise ValueError: If the list is full.
        """
        for target in (ban.name, ban.network):
            if target is not None:
                self.remove(str(target), now)
        if len(self.active(now)) >= MAX_BANS:
            raise ValueError(f"there are {MAX_BANS} bans already: /unban some first")
        self._bans.append(ban)

    def remove(self, target: str, now: float) -> list[Ban]:
        """
        Lift the bans on name C{target} (any case) or on exactly the
        network C{target}, and return them.
        """
        network = parse_network(target)
        key = target.casefold()

        def hit(ban: Ban) -> bool:
            if network is not None:
                return ban.network == network
            return ban.name is not None and ban.name.casefold() == key

        removed = [ban for ban in self.active(now) if hit(ban)]
        self._bans = [ban for ban in self._bans if not hit(ban)]
        return removed

    def to_json(self, now: float) -> list[dict[str, Any]]:
        return [ban.to_json() for ban in self.active(now)]

    @classmethod
    def from_json(cls, data: Any) -> BanList:
        """
        @raise ValueError: If C{data} is not a list of bans.
        """
        if not isinstance(data, list):
            raise ValueError("'bans' must be a list")
        return cls(Ban.from_json(item) for item in data)
