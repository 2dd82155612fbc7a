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

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatroom.core.commands import Command, CommandRegistry
from chatroom.core.errors import BAD_NAME, NAME_TAKEN, NO_SUCH_MEMBER, ChatError
from chatroom.core.events import EVERYONE, Arrivals, Event, Joined, Left, Listed, Members, Welcome, one
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

    def welcomed(self, member: MemberRecord) -> None:
        """
        C{member} has just been welcomed: nothing live has reached it yet.
        """

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
    @ivar cloak: Makes the cloak members see instead of an address (from
        the host); L{None}: every member sees every address.
    @ivar limits: The room's limits (the budget of join and leave lines).
    """

    def __init__(
        self,
        clock: IReactorTime,
        members: MemberDirectory | None = None,
        fanout: FanOut | None = None,
        cloak: Callable[[str], str] | None = None,
        limits: RoomLimits | None = None,
    ) -> None:
        self.clock = clock
        self.cloak = cloak
        self.members: MemberDirectory = members if members is not None else InMemoryMembers()
        self.fanout: FanOut = fanout if fanout is not None else LocalFanOut(self.members)
        self.commands = CommandRegistry()
        self.limits = limits = limits if limits is not None else RoomLimits()
        self._features: list[Feature] = []
        self._observers: list[Callable[[Event], None]] = []
        self._id_sources: list[Callable[[Event], int | None]] = []
        self._notices = TokenBucket(clock, limits.notice_rate, limits.notice_burst)
        # Arrivals and departures past the budget, until the next summary.
        self._arrived: dict[str, MemberRecord] = {}
        self._departed: list[str] = []
        self._summary: IDelayedCall | None = None

    def observe(self, observer: Callable[[Event], None]) -> None:
        """
        Call C{observer} with every event broadcast to everyone, just
        before it goes out (a feature that records the room, say: a
        transport may show the id it stored the event under).
        """
        self._observers.append(observer)

    def add_feature(self, feature: Feature) -> None:
        """
        Plug C{feature} in: its commands, then its hooks (after those
        already added).
        """
        feature.register(self.commands)
        self._features.append(feature)

    def now(self) -> float:
        return self.clock.seconds()

    def message_id(self, event: Event) -> int | None:
        """
        The message id C{event} was stored under, asked while it goes out
        (a transport that tags chat with it); L{None} if not stored.
        """
        for source in self._id_sources:
            id_ = source(event)
            if id_ is not None:
                return id_
        return None

    def add_message_ids(self, source: Callable[[Event], int | None]) -> None:
        """
        Ask C{source} for an event's message id: a feature that stores
        events (the history), or a fan-out that hands an event out later
        than it was stored and keeps its id meanwhile.
        """
        self._id_sources.append(source)

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
        self._observed(event)
        self.fanout.publish(event, EVERYONE)

    def note(self, event: Event) -> None:
        """
        Tell C{event} to the observers alone, no member: a feature's fact
        for the observers of every process of the room, or (from a shared
        store) what another process's observers heard.
        """
        self._observed(event)

    def _observed(self, event: Event) -> None:
        for observer in self._observers:
            observer(event)

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
            cloak = None if self.cloak is None else self.cloak(host)
            member = MemberRecord(self.members.new_id(), name, host, port, now, last_active=now, cloak=cloak)
            if await self.members.claim(member) is None:
                break
        self.fanout.subscribe(member.id, recipient)
        self.tell(member, Welcome(now, member.name))
        for feature in self._features:
            feature.welcomed(member)
        if not self._collapse(member, joined=True):
            self._announce(member, now)
        for feature in self._features:
            feature.joined(member)
        self.list_members(member)
        return member

    def may_see_address(self, viewer: MemberRecord, member: MemberRecord) -> bool:
        """
        Whether C{viewer} may see C{member}'s address: admins and the member
        itself may, others see its cloak (unless addresses are public).
        """
        return member.cloak is None or viewer is member or viewer.is_admin

    def _announce(self, member: MemberRecord, now: float) -> None:
        if member.cloak is None:
            self.broadcast(Joined(now, member.name, member.address))
            return
        # The address to those who may see it, the cloak alone to the rest.
        seeing = [m.id for m in self.members if self.may_see_address(m, member)]
        others = [m.id for m in self.members if not self.may_see_address(m, member)]
        cloaked = Joined(now, member.name, None, member.cloak)
        # What everyone may see of it, for the observers (the history).
        self._observed(cloaked)
        self.fanout.publish(Joined(now, member.name, member.address, member.cloak), Members(tuple(seeing)))
        if others:
            self.fanout.publish(cloaked, Members(tuple(others)))

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

    def rename_problem(self, member: MemberRecord, new_name: str) -> ChatError | None:
        """
        Why C{member} cannot be renamed C{new_name} now, if so (as the error
        to raise: its text is the reply).
        """
        problem = name_problem(new_name)
        if problem is not None:
            return ChatError(f"invalid name {new_name!r}: {problem}", BAD_NAME)
        refusal = self.name_refusal(new_name)
        if refusal is not None:
            return ChatError(refusal, BAD_NAME)
        if new_name == member.name:
            return ChatError(f"you are already called {new_name}")
        other = self.members.clash(new_name, ignore=member)
        if other is not None:
            same = other.name.casefold() == new_name.casefold()
            why = "is taken" if same else f"looks too much like {other.name}"
            return ChatError(f"the name {new_name} {why}: choose another", NAME_TAKEN)
        return None

    def find(self, name: str) -> MemberRecord:
        """
        The member called C{name}, any case.

        @raise ChatError: If there is none.
        """
        found = self.members.find(name)
        if found is None:
            raise ChatError(f"no such user {name}: type /list to see who is here", NO_SUCH_MEMBER)
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
