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

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Enough for any real room; a cap keeps an admin script from growing the
# list (and the connect-time check, which scans it) without bound.
MAX_BANS = 1000

_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def parse_duration(text: str) -> int | None:
    """
    The number of seconds in a duration such as C{30s}, C{10m}, C{2h},
    C{7d} or C{1w}, or L{None} if C{text} is not one.
    """
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


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
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


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

    @property
    def target(self) -> str:
        """
        How the ban is shown: the name if there is one, else the network.
        """
        return self.name if self.name is not None else str(self.network)

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
