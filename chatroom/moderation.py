"""
Moderation: who is admin, and the admin commands of the room.

Like the room, this layer has no transport and reads the time from the
room's clock. Admin rights belong to a connection, not to a name: names are
not authenticated, so a right kept by name would pass to whoever takes the
name next. What outlives the process is the ban list, saved through the
C{save} callable of L{ModerationSettings} after every change.

Who is admin:
  - with the first-member rule (the default, and with C{--first-admin}),
    the first member of an empty room is admin, and when the last admin
    leaves the longest-connected member becomes admin;
  - with a password (C{--admin-password-file}), C{/oper <password>} makes
    its sender admin;
  - an admin can C{/op} and C{/deop} others, but never removes the last admin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.bans import Ban, BanList, covers, is_loopback, parse_duration, parse_network
from chatroom.errors import ChatError
from chatroom.limits import AttemptLimiter, address_key
from chatroom.names import name_problem, skeleton
from chatroom.passwd import PasswordHash
from chatroom.state import StateError, read_json
from chatroom.wire import SERVER_SOURCE, Kind, format_timestamp

if TYPE_CHECKING:
    from chatroom.room import Member, Room

STATE_FILE = "moderation.json"
STATE_VERSION = 1
# One /oper try per connection every few seconds, and a handful a minute per
# address, whatever the outcome: a guesser gets nowhere, a typo costs seconds.
OPER_CONNECTION_LIMIT = (1, 5.0)
OPER_ADDRESS_LIMIT = (5, 60.0)

Handler = Callable[["Member", tuple[str, ...]], None]
PasswordCheck = Callable[[], bool]


def check_inline(check: PasswordCheck) -> Deferred[bool]:
    """
    Run a password check at once (tests); the daemon uses a thread pool.
    """
    return maybeDeferred(check)


@dataclass
class ModerationSettings:
    """
    How a room is moderated.

    @ivar bans: The bans in force at start.
    @ivar password: The admin password hash, if C{/oper} is enabled.
    @ivar first_admin: Whether the first-member rule is on; off by default
        here (a bare room has no automatic admin), the daemon turns it on
        unless an admin password is configured.
    @ivar save: Called with the state document after every ban change.
    @ivar run_check: Runs a (slow) password check, off the reactor thread
        in the daemon.
    """

    bans: BanList = field(default_factory=BanList)
    password: PasswordHash | None = None
    first_admin: bool = False
    save: Callable[[Any], None] | None = None
    run_check: Callable[[PasswordCheck], Deferred[bool]] = check_inline


def load_bans(path: Path) -> BanList:
    """
    The bans saved in state file C{path}; none if there is no file.

    @raise StateError: If the file is unreadable or corrupt.
    """
    document = read_json(path)
    if document is None:
        return BanList()
    try:
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} moderation state")
        return BanList.from_json(document.get("bans"))
    except ValueError as e:
        raise StateError.corrupt(path, e) from e


def _expires(ban: Ban) -> str:
    return f"expires={'never' if ban.expires is None else format_timestamp(ban.expires)}"


def _until(ban: Ban) -> str:
    return "permanently" if ban.expires is None else f"until {format_timestamp(ban.expires)}"


def _because(reason: str) -> str:
    return f": {reason}" if reason else ""


class Moderation:
    """
    The admins and bans of one room, and the commands that change them.
    """

    log = Logger()

    def __init__(self, room: Room, settings: ModerationSettings) -> None:
        self.room = room
        self.settings = settings
        self.bans = settings.bans
        self._admins: set[Member] = set()
        self._oper_by_connection = AttemptLimiter(room.clock, *OPER_CONNECTION_LIMIT)
        self._oper_by_address = AttemptLimiter(room.clock, *OPER_ADDRESS_LIMIT)

    def handlers(self) -> dict[str, Handler]:
        """
        The admin commands, by name, for the room's command table.
        """
        return {
            "oper": self.oper,
            "op": self.op,
            "deop": self.deop,
            "kick": self.kick,
            "ban": self.ban,
            "unban": self.unban,
            "bans": self.list_bans,
        }

    # Hooks for the room

    def refusal(self, host: str) -> bytes | None:
        """
        The line that turns away a connection from C{host}, if it is banned.
        """
        ban = self.bans.for_host(host, self.room.clock.seconds())
        return None if ban is None else self._banned_line(ban)

    def name_allowed(self, name: str) -> bool:
        return self.bans.for_name(name, self.room.clock.seconds()) is None

    def check_name(self, name: str) -> None:
        """
        @raise ChatError: If C{name} is banned.
        """
        ban = self.bans.for_name(name, self.room.clock.seconds())
        if ban is not None:
            raise ChatError(f"the name {name} is banned {_until(ban)}: choose another")

    def joined(self, member: Member) -> None:
        # Room.close drops members without a leave: forget those admins.
        self._admins = {admin for admin in self._admins if admin in self.room.members}
        if self.settings.first_admin and not self._admins:
            self._set_admin(member, True, SERVER_SOURCE, f"{member.name} is the admin (first to join)")

    def left(self, member: Member) -> None:
        if member not in self._admins:
            return
        self._admins.discard(member)
        if not self.settings.first_admin or self._admins or not len(self.room.members):
            return
        successor = min(self.room.members, key=lambda m: m.connected_at)
        self._set_admin(
            successor, True, SERVER_SOURCE, f"{successor.name} is now the admin ({member.name} left)"
        )

    # Admins

    def _require_admin(self, member: Member, action: str) -> None:
        if not member.is_admin:
            raise ChatError(f"permission denied: only an admin can {action}")

    def _set_admin(self, member: Member, admin: bool, source: str, text: str) -> None:
        member.is_admin = admin
        if admin:
            self._admins.add(member)
        else:
            self._admins.discard(member)
        flag = f"admin={'yes' if admin else 'no'}"
        self.room.broadcast(self.room.line(Kind.ADMIN, source, text, (member.name, flag)))

    def _tell_admins(self, line: bytes) -> None:
        for admin in self._admins:
            admin.recipient.deliver(line)

    def oper(self, member: Member, args: tuple[str, ...]) -> None:
        password = self.settings.password
        if password is None:
            raise ChatError("this server has no admin password: ask an admin to /op you")
        if member.is_admin:
            raise ChatError("you are already an admin")
        # Counted by address as connections are (an IPv6 /64 is one address).
        address = address_key(member.host)
        wait = max(self._oper_by_connection.wait(member.address), self._oper_by_address.wait(address))
        if wait > 0:
            raise ChatError(f"too many /oper attempts: try again in {math.ceil(wait)}s")
        # Every try counts, not only failures: a guesser cannot get several
        # checks going before the first one fails.
        self._oper_by_connection.record(member.address)
        self._oper_by_address.record(address)
        (guess,) = args
        checking = self.settings.run_check(lambda: password.matches(guess))
        checking.addCallback(self._oper_checked, member)
        checking.addErrback(self._oper_failed, member)

    def _oper_checked(self, correct: bool, member: Member) -> None:
        if member not in self.room.members or member.is_admin:
            return
        if correct:
            self.log.info("{name} at {address} is now an admin", name=member.name, address=member.address)
            self._set_admin(member, True, SERVER_SOURCE, f"{member.name} is now an admin (password)")
        else:
            self.log.warn("failed /oper by {name} at {address}", name=member.name, address=member.address)
            # The check ran outside the command, so reply here rather than raise.
            self.room.tell(member, Kind.ERROR, "wrong password")

    def _oper_failed(self, failure: Failure, member: Member) -> None:
        self.log.failure("checking the /oper password of {name} failed", failure, name=member.name)
        if member in self.room.members:
            self.room.tell(member, Kind.ERROR, "internal error: the password could not be checked")

    def op(self, member: Member, args: tuple[str, ...]) -> None:
        self._require_admin(member, "make others admin")
        target = self.room.find(args[0])
        if target.is_admin:
            raise ChatError(f"{target.name} is already an admin")
        self._set_admin(target, True, member.name, f"{member.name} made {target.name} an admin")

    def deop(self, member: Member, args: tuple[str, ...]) -> None:
        self._require_admin(member, "take admin rights away")
        target = self.room.find(args[0])
        if not target.is_admin:
            raise ChatError(f"{target.name} is not an admin")
        if self._admins == {target}:
            raise ChatError(f"{target.name} is the last admin: /op someone else first")
        self._set_admin(target, False, member.name, f"{member.name} took admin rights from {target.name}")

    # Kicks and bans

    def kick(self, member: Member, args: tuple[str, ...]) -> None:
        target = self.room.find(args[0])
        if target is member:
            self.room.quit(member, args[1:])
            return
        self._require_admin(member, "kick others")
        self._eject(target, member, args[1] if len(args) > 1 else "")

    def _eject(self, victim: Member, by: Member, reason: str, farewell: bytes | None = None) -> None:
        # The kick line reaches the victim too; the usual leave line follows,
        # so a client that tracks members needs only join, leave and rename.
        text = f"{by.name} kicked {victim.name}{_because(reason)}"
        self.room.broadcast(self.room.line(Kind.KICK, by.name, text, (victim.name,)))
        if farewell is not None:
            victim.recipient.deliver(farewell)
        self.room.leave(victim, f"kicked by {by.name}{_because(reason)}")
        victim.recipient.close()

    def ban(self, member: Member, args: tuple[str, ...]) -> None:
        self._require_admin(member, "ban")
        target = args[0]
        seconds, reason = self._duration_and_reason(args[1] if len(args) > 1 else "")
        notes: list[str] = []
        # A ban never covers the admin who sets it, so it can never take
        # away the room's last admin either.
        network = parse_network(target)
        name: str | None = None
        if network is not None:
            if covers(network, member.host):
                raise ChatError(f"you cannot ban {network}: you are connected from {member.host} yourself")
        elif name_problem(target) is not None:
            raise ChatError(f"cannot ban {target}: give a user name, an address or a CIDR network")
        elif skeleton(target) == skeleton(member.name):
            raise ChatError("you cannot ban yourself")
        else:
            present = self.room.members.clash(target)
            name = target if present is None else present.name
            if present is None:
                notes.append(f"nobody called {target} is here: only the name is banned")
            else:
                network = parse_network(present.host)
                if network is not None and covers(network, member.host):
                    notes.append(f"the address {present.host} is not banned: you are connected from it too")
                    network = None
        if network is not None and is_loopback(network):
            notes.append(f"{network} is loopback: every client on this machine (and local proxy) is banned")
        now = self.room.clock.seconds()
        ban = Ban(name, network, member.name, now, None if seconds is None else now + seconds, reason)
        try:
            self.bans.add(ban, now)
        except ValueError as e:
            raise ChatError(str(e)) from e
        address = "" if ban.name is None or ban.network is None else f" ({ban.network})"
        text = f"{member.name} banned {ban.target}{address} {_until(ban)}{_because(reason)}"
        self._tell_admins(self.room.line(Kind.BAN, member.name, text, self._ban_fields(ban)))
        for note in notes:
            self.room.tell(member, Kind.INFO, f"note: {note}")
        farewell = self._banned_line(ban)
        for other in self.room.members:
            if other is not member and (ban.covers_name(other.name) or ban.covers_host(other.host)):
                self._eject(other, member, f"banned{_because(reason)}", farewell)
        self._save(member)

    @staticmethod
    def _duration_and_reason(rest: str) -> tuple[int | None, str]:
        word, _, remainder = rest.partition(" ")
        seconds = parse_duration(word)
        return (None, rest) if seconds is None else (seconds, remainder.strip())

    @staticmethod
    def _ban_fields(ban: Ban) -> tuple[str, ...]:
        address = () if ban.network is None else (f"address={ban.network}",)
        return (ban.target, *address, f"by={ban.by}", f"at={format_timestamp(ban.at)}", _expires(ban))

    def _banned_line(self, ban: Ban) -> bytes:
        # Who set the ban and when is for admins; the banned get what and why.
        text = f"you are banned from this room {_until(ban)}{_because(ban.reason)}"
        return self.room.line(Kind.BANNED, SERVER_SOURCE, text, (ban.target, _expires(ban)))

    def unban(self, member: Member, args: tuple[str, ...]) -> None:
        self._require_admin(member, "unban")
        (target,) = args
        removed = self.bans.remove(target, self.room.clock.seconds())
        if not removed:
            raise ChatError(f"there is no ban on {target}: type /bans to list them")
        for ban in removed:
            text = f"{member.name} lifted the ban on {ban.target}"
            self._tell_admins(self.room.line(Kind.UNBAN, member.name, text, (ban.target,)))
        self._save(member)

    def list_bans(self, member: Member, args: tuple[str, ...]) -> None:
        self._require_admin(member, "list the bans")
        bans = self.bans.active(self.room.clock.seconds())
        self.room.tell(member, Kind.BANLIST, f"{len(bans)} bans in force", (f"count={len(bans)}",))
        for ban in bans:
            self.room.tell(member, Kind.BANLIST, ban.reason, self._ban_fields(ban))

    def save(self) -> None:
        """
        Write the bans in force to the state file, if there is one.

        @raise OSError: If writing fails; the old file is left intact.
        """
        if self.settings.save is None:
            return
        document = {"version": STATE_VERSION, "bans": self.bans.to_json(self.room.clock.seconds())}
        self.settings.save(document)

    def _save(self, member: Member) -> None:
        try:
            self.save()
        except OSError as e:
            self.log.error("could not save the bans: {error}", error=e)
            self.room.tell(
                member, Kind.ERROR, f"the change is in force but not saved ({e}): a restart loses it"
            )
