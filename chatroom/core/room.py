"""
The room: who is in it, and the rules every command follows.

The room never touches a connection and never formats bytes. It keeps its
members in a L{MemberDirectory}, tells them things by publishing events on
a L{FanOut}, reads the time from an injected clock, and finds each command's
handler in its L{CommandRegistry}. Features (moderation, end-to-end
encryption) add their commands to the registry and their hooks with
L{Room.add_feature}; the chat commands themselves are such a feature
(L{chatroom.core.chat.new_room} makes a room with them).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatroom.core.commands import Command, CommandRegistry
from chatroom.core.errors import ChatError
from chatroom.core.events import EVERYONE, Arrivals, Event, Joined, Left, Listed, Welcome, one
from chatroom.core.memory import InMemoryMembers, LocalFanOut
from chatroom.core.ports import FanOut, MemberDirectory, MemberRecord, Recipient
from chatroom.limits import RoomLimits, TokenBucket
from chatroom.names import name_problem

# How many names one list event (or one side of an arrivals summary) carries.
LIST_CHUNK = 100


class Feature:
    """
    Something that plugs into a room: it registers its commands and hears
    about arrivals and departures. Every hook does nothing by default.
    """

    def register(self, commands: CommandRegistry) -> None:
        """
        Add this feature's commands to C{commands}.
        """

    def refusal(self, host: str) -> Event | None:
        """
        Why a connection from C{host} may not join, as the event it gets.
        """
        return None

    def name_refusal(self, name: str) -> str | None:
        """
        Why no member may take C{name} (the error text), if so.
        """
        return None

    def joined(self, member: MemberRecord) -> None:
        """
        C{member} has joined (and been told so).
        """

    def left(self, member: MemberRecord) -> None:
        """
        C{member} has left (and everyone was told so).
        """


class Room:
    """
    One chat room.

    @ivar members: The member directory.
    @ivar fanout: Where the room's events go.
    @ivar commands: Every command the room serves.
    @ivar limits: The room's limits (the budget of join and leave lines).
    """

    def __init__(
        self,
        clock: IReactorTime,
        members: MemberDirectory | None = None,
        fanout: FanOut | None = None,
        limits: RoomLimits | None = None,
    ) -> None:
        self.clock = clock
        self.members: MemberDirectory = members if members is not None else InMemoryMembers()
        self.fanout: FanOut = fanout if fanout is not None else LocalFanOut(self.members)
        self.commands = CommandRegistry()
        self.limits = limits = limits if limits is not None else RoomLimits()
        self._features: list[Feature] = []
        self._notices = TokenBucket(clock, limits.notice_rate, limits.notice_burst)
        # Arrivals and departures past the budget, until the next summary.
        self._arrived: dict[str, MemberRecord] = {}
        self._departed: list[str] = []
        self._summary: IDelayedCall | None = None

    def add_feature(self, feature: Feature) -> None:
        """
        Plug C{feature} in: its commands, then its hooks (after those
        already added).
        """
        feature.register(self.commands)
        self._features.append(feature)

    def now(self) -> float:
        return self.clock.seconds()

    # Telling

    def tell(self, member: MemberRecord, event: Event) -> None:
        """
        Send C{event} to C{member} alone.
        """
        self.fanout.publish(event, one(member.id))

    def broadcast(self, event: Event) -> None:
        """
        Send C{event} to every member.
        """
        self.fanout.publish(event, EVERYONE)

    # Arrivals and departures

    def refusal(self, host: str) -> Event | None:
        """
        Why a connection from C{host} may not join, as the event it gets.
        """
        return next((why for f in self._features if (why := f.refusal(host)) is not None), None)

    def name_refusal(self, name: str) -> str | None:
        """
        Why no member may be called C{name}, if so.
        """
        return next((why for f in self._features if (why := f.name_refusal(name)) is not None), None)

    def join(self, recipient: Recipient, host: str, port: int) -> Deferred[MemberRecord]:
        """
        Add a new connection to the room under a fresh guest name.

        @return: Fires with the new member once it has joined.
        """
        return Deferred.fromCoroutine(self._join(recipient, host, port))

    async def _join(self, recipient: Recipient, host: str, port: int) -> MemberRecord:
        now = self.now()
        while True:
            name = f"guest{self.members.next_guest_number()}"
            if self.members.clash(name) is not None or self.name_refusal(name) is not None:
                continue
            member = MemberRecord(self.members.new_id(), name, host, port, now, last_active=now)
            if await self.members.claim(member) is None:
                break
        self.fanout.subscribe(member.id, recipient)
        self.tell(member, Welcome(now, member.name))
        if not self._collapse(member, joined=True):
            self.broadcast(Joined(now, member.name, member.address))
        for feature in self._features:
            feature.joined(member)
        self.list_members(member)
        return member

    def leave(self, member: MemberRecord, reason: str, disconnect: bool = False) -> None:
        """
        Remove C{member} and tell everyone why; a no-op if already gone.

        @param disconnect: Also close its connection, after what it was
            already told (otherwise the connection is gone already, or its
            session closes it).
        """
        if member not in self.members:
            return
        self.members.remove(member)
        if disconnect:
            self.fanout.disconnect(member.id)
        else:
            self.fanout.unsubscribe(member.id)
        if not self._collapse(member, joined=False):
            self.broadcast(Left(self.now(), member.name, reason))
        for feature in self._features:
            feature.left(member)

    def _collapse(self, member: MemberRecord, joined: bool) -> bool:
        """
        Whether to leave C{member}'s join (or leave) line out, past the
        budget of notices, for the next L{Arrivals} summary.
        """
        if self._summary is None and self._notices.take():
            return False
        if joined:
            self._arrived[member.id] = member
        else:
            # Named as departed even if its arrival was never announced: a
            # client may have learnt the name from a rename line since.
            self._arrived.pop(member.id, None)
            self._departed.append(member.name)
        if self._summary is None:
            self._summary = self.clock.callLater(self.limits.notice_interval, self._summarise)
        return True

    def _summarise(self) -> None:
        self._summary = None
        arrived, self._arrived = self._arrived, {}
        departed, self._departed = self._departed, []
        joined = [(m.name, m.is_admin) for m in arrived.values() if m in self.members]
        # A departed name someone present has taken since (and was
        # announced under) is not gone; departures come first, so a name
        # that left and was taken by a newcomer ends up present.
        left = [
            name
            for name in dict.fromkeys(departed)
            if (present := self.members.find(name)) is None or present.id in arrived
        ]
        now = self.now()
        for start in range(0, len(left), LIST_CHUNK):
            self.broadcast(Arrivals(now, (), tuple(left[start : start + LIST_CHUNK])))
        for start in range(0, len(joined), LIST_CHUNK):
            self.broadcast(Arrivals(now, tuple(joined[start : start + LIST_CHUNK]), ()))

    def close(self, event: Event) -> None:
        """
        Tell everyone C{event}, then close every member's connection without
        announcing each departure (nobody stays to hear it).
        """
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._summary = None
        self.broadcast(event)
        for member in self.members:
            self.members.remove(member)
            self.fanout.disconnect(member.id)

    # Commands

    def execute(self, member: MemberRecord, command: Command) -> Deferred[object] | None:
        """
        Carry out one parsed command for C{member}.

        @raise ChatError: If the command breaks a rule.
        @return: L{None}, or a Deferred that fails with L{ChatError} if the
            command breaks a rule it could only check later.
        """
        self.members.touch(member, self.now())
        handler = self.commands.handler(command.name)
        if handler is None:
            # A command the parser knows but this room does not serve.
            raise ChatError(f"/{command.name} is not available on this server")
        return handler(member, command.args)

    def rename_problem(self, member: MemberRecord, new_name: str) -> str | None:
        """
        Why C{member} cannot be renamed C{new_name} now (the error text), if so.
        """
        problem = name_problem(new_name)
        if problem is not None:
            return f"invalid name {new_name!r}: {problem}"
        refusal = self.name_refusal(new_name)
        if refusal is not None:
            return refusal
        if new_name == member.name:
            return f"you are already called {new_name}"
        other = self.members.clash(new_name, ignore=member)
        if other is not None:
            same = other.name.casefold() == new_name.casefold()
            why = "is taken" if same else f"looks too much like {other.name}"
            return f"the name {new_name} {why}: choose another"
        return None

    def find(self, name: str) -> MemberRecord:
        """
        The member called C{name}, any case.

        @raise ChatError: If there is none.
        """
        found = self.members.find(name)
        if found is None:
            raise ChatError(f"no such user {name}: type /list to see who is here")
        return found

    def list_members(self, member: MemberRecord) -> None:
        """
        Send C{member} the member list, in chunks.
        """
        names = [(m.name, m.is_admin) for m in self.members]
        now = self.now()
        for start in range(0, len(names), LIST_CHUNK):
            chunk = tuple(names[start : start + LIST_CHUNK])
            self.tell(member, Listed(now, chunk, start + 1, len(names)))
