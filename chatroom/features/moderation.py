"""
Moderation: who is admin, and the admin commands, as a feature of the room.

Like the room, it has no transport and reads the time from the room's
clock. Admin rights belong to a connection, not to a name: names are not
authenticated, so a right kept by name would pass to whoever takes the name
next. What outlives the process is the ban list, kept by the
L{chatroom.core.ports.BanStore} the feature is given.

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
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.bans import Ban, BanError, breadth_problem, covers, is_loopback, parse_duration, parse_network
from chatroom.core.commands import CommandRegistry, CommandSpec, Handler
from chatroom.core.errors import NOT_ADMIN, ChatError
from chatroom.core.events import (
    ADMINS,
    AdminChanged,
    AdminReason,
    BanCount,
    BanEntry,
    BanLifted,
    BannedNotice,
    BanSet,
    Event,
    Kicked,
    Notice,
    TopicChanged,
    TopicReply,
    one,
)
from chatroom.core.memory import InMemoryBans, InMemoryTopic
from chatroom.core.ports import BanStore, MemberRecord, Topic, TopicStore
from chatroom.core.room import Feature, Room
from chatroom.limits import AttemptLimiter, address_key
from chatroom.names import name_problem, skeleton
from chatroom.passwd import PasswordHash
from chatroom.wire import format_timestamp

# One /oper try per connection every few seconds, and a handful a minute per
# address, whatever the outcome: a guesser gets nowhere, a typo costs seconds.
OPER_CONNECTION_LIMIT = (1, 5.0)
OPER_ADDRESS_LIMIT = (5, 60.0)

# The one key of the server-wide budget of password checks.
GLOBAL_KEY = "*"

OPER = CommandSpec("oper", "<password>", "become an admin with the admin password", 1, 1)
OP = CommandSpec("op", "<user>", "make a user an admin (admins only)", 1, 1)
DEOP = CommandSpec("deop", "<user>", "take a user's admin rights away (admins only)", 1, 1)
KICK = CommandSpec(
    "kick", "<user> [reason]", "disconnect a user (admins only; anyone may kick themself)", 1, 2
)
BAN = CommandSpec(
    "ban",
    "<user|address|CIDR> [duration] [reason]",
    "ban a name and address, or an address or network, for e.g. 10m, 2h, 7d or for ever (admins only)",
    1,
    2,
)
UNBAN = CommandSpec("unban", "<name|address|CIDR>", "lift a ban (admins only)", 1, 1)
BANS = CommandSpec("bans", "[page]", "list the bans: who set each, when, why, until when (admins only)", 0, 1)
TOPIC = CommandSpec(
    "topic", "[text|-]", "show the room's topic; set it, or clear it with - (admins only)", 0, 1
)

# Bytes of UTF-8 in a topic (IRC's TOPICLEN says the same).
MAX_TOPIC_BYTES = 300

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

    @ivar bans: Where the bans are kept.
    @ivar password: The admin password hash, if C{/oper} is enabled.
    @ivar first_admin: Whether the first-member rule is on; off by default
        here (a bare room has no automatic admin), the daemon turns it on
        unless an admin password is configured.
    @ivar run_check: Runs a (slow) password check, off the reactor thread
        in the daemon.
    @ivar topics: Where the room's topic is kept (the ban store's file in
        the daemon).
    """

    bans: BanStore = field(default_factory=InMemoryBans)
    password: PasswordHash | None = None
    first_admin: bool = False
    run_check: Callable[[PasswordCheck], Deferred[bool]] = check_inline
    topics: TopicStore = field(default_factory=InMemoryTopic)


def _because(reason: str) -> str:
    return f": {reason}" if reason else ""


def party(role: str, member: MemberRecord) -> dict[str, Any]:
    """
    Log fields for C{member} as C{role} (C{actor} or C{target}): its name,
    its member id (stable for the connection, whatever its name) and
    address, so the log ties one connection's names together.
    """
    return {role: member.name, f"{role}_id": member.id, f"{role}_address": member.address}


# How a log line names a member: "bob (#7 at 203.0.113.9:50312)".
ACTOR = "{actor} (#{actor_id} at {actor_address})"
TARGET = "{target} (#{target_id} at {target_address})"


def until(ban: Ban) -> str:
    """
    How long C{ban} lasts, for people.
    """
    return "permanently" if ban.expires is None else f"until {format_timestamp(ban.expires)}"


class Moderation(Feature):
    """
    The admins and bans of one room, and the commands that change them.
    """

    log = Logger()

    def __init__(self, room: Room, settings: ModerationSettings) -> None:
        self.room = room
        self.settings = settings
        self.bans = settings.bans
        self._oper_by_connection = AttemptLimiter(room.clock, *OPER_CONNECTION_LIMIT)
        self._oper_by_address = AttemptLimiter(room.clock, *OPER_ADDRESS_LIMIT)
        # One budget for the whole server: neither guessing nor hashing load
        # grows with the number of addresses.
        limits = room.limits
        self._oper_checks = AttemptLimiter(room.clock, limits.oper_checks, limits.oper_window)

    def register(self, commands: CommandRegistry) -> None:
        for spec, handler in (
            (OPER, self.oper),
            (OP, self.op),
            (DEOP, self.deop),
            (KICK, self.kick),
            (BAN, self.ban),
            (UNBAN, self.unban),
            (BANS, self.list_bans),
            (TOPIC, self.topic),
        ):
            commands.add(spec, self._logged(spec.name, handler))

    def _logged(self, command: str, handler: Handler) -> Handler:
        """
        C{handler}, logging each refusal with the member that tried (what
        succeeds is logged where it happens, with whom it affected).
        """

        def refused(error: object, member: MemberRecord, args: tuple[str, ...]) -> None:
            # /oper's argument is the password: never logged.
            what = "" if command == "oper" or not args else f" {args[0]}"
            # The member it was aimed at, if one is called so.
            target = None if not what else self.room.members.find(args[0].removeprefix("!"))
            fields = {} if target is None else party("target", target)
            aimed = "" if target is None else " (#{target_id} at {target_address})"
            self.log.warn(
                "refused /{command}{what}" + aimed + " by " + ACTOR + ": {error}",
                command=command,
                what=what,
                error=str(error),
                **party("actor", member),
                **fields,
            )

        def run(member: MemberRecord, args: tuple[str, ...]) -> Deferred[Any] | None:
            try:
                result = handler(member, args)
            except ChatError as e:
                refused(e, member, args)
                raise
            if result is None:
                return None

            def failed(failure: Failure) -> Failure:
                if failure.check(ChatError):
                    refused(failure.value, member, args)
                return failure

            return result.addErrback(failed)

        return run

    # Hooks

    def refusal(self, host: str) -> Event | None:
        ban = self.bans.for_host(host, self.room.now())
        return None if ban is None else BannedNotice(self.room.now(), ban)

    def name_refusal(self, name: str) -> str | None:
        ban = self.bans.for_name(name, self.room.now())
        return None if ban is None else f"the name {name} is banned {until(ban)}: choose another"

    def _admins(self) -> list[MemberRecord]:
        return [m for m in self.room.members if m.is_admin]

    def joined(self, member: MemberRecord) -> None:
        if self.settings.topics.topic() is not None:
            self._tell_topic(member)
        if self.settings.first_admin and not any(m.is_admin for m in self.room.members if m is not member):
            self._set_admin(member, True, AdminReason.FIRST)

    def left(self, member: MemberRecord) -> None:
        if not member.is_admin or not self.settings.first_admin or self._admins():
            return
        remaining = list(self.room.members)
        if not remaining:
            return
        successor = min(remaining, key=lambda m: m.connected_at)
        self._set_admin(successor, True, AdminReason.SUCCESSION, previous=member.name)

    # Admins

    def _require_admin(self, member: MemberRecord, action: str) -> None:
        if not member.is_admin:
            raise ChatError(f"permission denied: only an admin can {action}", NOT_ADMIN)

    def _set_admin(
        self,
        member: MemberRecord,
        admin: bool,
        reason: AdminReason,
        by: MemberRecord | None = None,
        previous: str | None = None,
    ) -> None:
        self.room.members.set_admin(member, admin)
        if by is None:
            self.log.info(
                TARGET + " admin={admin} ({reason})",
                admin=admin,
                reason=reason.value,
                **party("target", member),
            )
        else:
            self.log.info(
                ACTOR + " set " + TARGET + " admin={admin} ({reason})",
                admin=admin,
                reason=reason.value,
                **party("actor", by),
                **party("target", member),
            )
        by_name = None if by is None else by.name
        self.room.broadcast(AdminChanged(self.room.now(), member.name, admin, reason, by_name, previous))

    def oper(self, member: MemberRecord, args: tuple[str, ...]) -> Deferred[None]:
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
        checking_all = bool(self.room.limits.oper_checks)
        wait = self._oper_checks.wait(GLOBAL_KEY) if checking_all else 0.0
        if wait > 0:
            raise ChatError(f"too many /oper attempts on this server: try again in {math.ceil(wait)}s")
        # Every try counts, not only failures: a guesser cannot get several
        # checks going before the first one fails.
        self._oper_by_connection.record(member.address)
        self._oper_by_address.record(address)
        if checking_all:
            self._oper_checks.record(GLOBAL_KEY)
        (guess,) = args
        checking = self.settings.run_check(lambda: password.matches(guess))
        return checking.addCallbacks(
            self._oper_checked, self._oper_failed, callbackArgs=(member,), errbackArgs=(member,)
        )

    def _oper_checked(self, correct: bool, member: MemberRecord) -> None:
        if member not in self.room.members or member.is_admin:
            return
        if correct:
            self._set_admin(member, True, AdminReason.PASSWORD)
        else:
            raise ChatError("wrong password")

    def _oper_failed(self, failure: Failure, member: MemberRecord) -> None:
        self.log.failure("checking the /oper password of {name} failed", failure, name=member.name)
        raise ChatError("internal error: the password could not be checked")

    def op(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        self._require_admin(member, "make others admin")
        target = self.room.find(args[0])
        if target.is_admin:
            raise ChatError(f"{target.name} is already an admin")
        self._set_admin(target, True, AdminReason.GRANTED, by=member)

    def deop(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        self._require_admin(member, "take admin rights away")
        target = self.room.find(args[0])
        if not target.is_admin:
            raise ChatError(f"{target.name} is not an admin")
        if self._admins() == [target]:
            raise ChatError(f"{target.name} is the last admin: /op someone else first")
        self._set_admin(target, False, AdminReason.REVOKED, by=member)

    # Kicks and bans

    def kick(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        target = self.room.find(args[0])
        if target is member:
            self.log.info(ACTOR + " kicked themself", **party("actor", member))
            self.room.leave(member, f"quit: {args[1]}" if len(args) > 1 else "quit", disconnect=True)
            return
        self._require_admin(member, "kick others")
        self._eject(target, member, args[1] if len(args) > 1 else "")

    def _eject(
        self, victim: MemberRecord, by: MemberRecord, reason: str, farewell: Event | None = None
    ) -> None:
        self.log.info(
            ACTOR + " kicked " + TARGET + "{because}",
            because=_because(reason),
            **party("actor", by),
            **party("target", victim),
        )
        # The kick line reaches the victim too; the usual leave line follows,
        # so a client that tracks members needs only join, leave and rename.
        self.room.broadcast(Kicked(self.room.now(), by.name, victim.name, reason))
        if farewell is not None:
            self.room.tell(victim, farewell)
        self.room.leave(victim, f"kicked by {by.name}{_because(reason)}", disconnect=True)

    def ban(self, member: MemberRecord, args: tuple[str, ...]) -> Deferred[None]:
        self._require_admin(member, "ban")
        # "!" forces a ban that covers most of the room or a whole address family.
        forced = args[0].startswith("!")
        target = args[0].removeprefix("!")
        try:
            seconds, reason = self._duration_and_reason(args[1] if len(args) > 1 else "")
        except BanError as e:
            raise ChatError(str(e)) from e
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
        if network is not None and not forced:
            problem = breadth_problem(network, [m.host for m in self.room.members])
            if problem is not None:
                raise ChatError(f"{problem}: to ban it all the same, /ban !{target}")
        if network is not None and is_loopback(network):
            notes.append(f"{network} is loopback: every client on this machine (and local proxy) is banned")
        now = self.room.now()
        try:
            ban = Ban(name, network, member.name, now, None if seconds is None else now + seconds, reason)
            saved = self.bans.add(ban, now)
        except ValueError as e:
            # A bound of the ban itself (BanError), or a full list: nothing changed.
            raise ChatError(str(e)) from e
        self.log.info(
            ACTOR + " banned {ban_target}{network} {until}{because}",
            ban_target=ban.target,
            network="" if ban.name is None or ban.network is None else f" ({ban.network})",
            until=until(ban),
            because=_because(reason),
            **party("actor", member),
        )
        self.room.fanout.publish(BanSet(now, ban), ADMINS)
        for note in notes:
            self.room.tell(member, Notice(now, f"note: {note}"))
        farewell = BannedNotice(now, ban)
        for other in self.room.members:
            if other is not member and (ban.covers_name(other.name) or ban.covers_host(other.host)):
                self._eject(other, member, f"banned{_because(reason)}", farewell)
        return saved.addErrback(self._not_saved)

    @staticmethod
    def _duration_and_reason(rest: str) -> tuple[int | None, str]:
        word, _, remainder = rest.partition(" ")
        seconds = parse_duration(word)
        return (None, rest) if seconds is None else (seconds, remainder.strip())

    def unban(self, member: MemberRecord, args: tuple[str, ...]) -> Deferred[None]:
        self._require_admin(member, "unban")
        (target,) = args
        removed, saved = self.bans.remove(target, self.room.now())
        if not removed:
            raise ChatError(f"there is no ban on {target}: type /bans to list them")
        for ban in removed:
            self.log.info(
                ACTOR + " lifted the ban on {ban_target}", ban_target=ban.target, **party("actor", member)
            )
            self.room.fanout.publish(BanLifted(self.room.now(), member.name, ban.target), ADMINS)
        return saved.addErrback(self._not_saved)

    def _not_saved(self, failure: Failure) -> None:
        failure.trap(OSError)
        error = failure.value
        self.log.error("could not save the bans: {error}", error=error)
        raise ChatError(f"the change is in force but not saved ({error}): a restart loses it")

    def list_bans(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        self._require_admin(member, "list the bans")
        size = self.room.limits.bans_page or None
        try:
            page = int(args[0]) if args else 1
        except ValueError:
            page = 0
        now = self.room.now()
        bans = self.bans.active(now)
        pages = max(1, math.ceil(len(bans) / size)) if size else 1
        if not 1 <= page <= pages:
            raise ChatError(f"no page {args[0]} of the bans: give a page from 1 to {pages}")
        audience = one(member.id)
        shown = bans[(page - 1) * size : page * size] if size else bans
        self.room.fanout.publish(BanCount(now, len(bans), page, pages), audience)
        for ban in shown:
            self.room.fanout.publish(BanEntry(now, ban), audience)

    # The topic

    def _tell_topic(self, member: MemberRecord) -> None:
        topic = self.settings.topics.topic()
        now = self.room.now()
        reply = (
            TopicReply(now, "", "", now) if topic is None else TopicReply(now, topic.text, topic.by, topic.at)
        )
        self.room.tell(member, reply)

    def topic(self, member: MemberRecord, args: tuple[str, ...]) -> Deferred[None] | None:
        if not args:
            self._tell_topic(member)
            return None
        self._require_admin(member, "set the topic")
        text = "" if args[0] == "-" else args[0]
        size = len(text.encode("utf-8"))
        if size > MAX_TOPIC_BYTES:
            raise ChatError(f"the topic has {size} bytes of UTF-8: at most {MAX_TOPIC_BYTES}")
        now = self.room.now()
        saved = self.settings.topics.set_topic(Topic(text, member.name, now) if text else None, now)
        self.room.broadcast(TopicChanged(now, member.name, text))
        return saved.addErrback(self._not_saved)

    def save(self) -> Deferred[None]:
        """
        Keep the bans in force (again, at shutdown).
        """
        return self.bans.save(self.room.now())
