"""
The room: members, names and the rules of every command, with no transport.

The room never touches a network connection. It talks to each member
through a L{Recipient} (the protocol, in the daemon; a list, in tests) and
reads the time from an injected clock. Member bookkeeping sits behind
L{MemberStore}, which a store shared between daemon processes can implement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from chatroom.commands import Command, help_lines
from chatroom.errors import ChatError as ChatError  # re-exported: the protocol catches it
from chatroom.moderation import Moderation, ModerationSettings
from chatroom.names import name_problem, skeleton
from chatroom.wire import SERVER_SOURCE, Kind, format_line, format_timestamp

LINE_END = b"\r\n"
MAX_FILTERS = 32
MAX_FILTER_LENGTH = 100
LIST_CHUNK = 100


class Recipient(Protocol):
    """
    Where the room sends one member's lines.
    """

    def deliver(self, line: bytes) -> None:
        """
        Queue one complete line (with its line ending) for the member.
        """

    def close(self) -> None:
        """
        End the member's connection after the lines already delivered.
        """


@dataclass(eq=False)
class Member:
    """
    One connected member of the room.
    """

    name: str
    host: str
    port: int
    connected_at: float
    recipient: Recipient
    last_active: float = 0.0
    is_admin: bool = False
    filters: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def hides(self, text: str) -> bool:
        """
        Whether one of this member's filters hides chat text C{text}.
        """
        folded = text.casefold()
        return any(word in folded for word in self.filters)


class MemberStore(Protocol):
    """
    The room's member directory, keyed by name without regard to case.
    """

    def add(self, member: Member) -> None: ...

    def remove(self, member: Member) -> None: ...

    def rename(self, member: Member, new_name: str) -> None: ...

    def find(self, name: str) -> Member | None: ...

    def clash(self, name: str, ignore: Member | None = None) -> Member | None: ...

    def __contains__(self, member: object) -> bool: ...

    def __iter__(self) -> Iterator[Member]: ...

    def __len__(self) -> int: ...


class InMemoryMembers:
    """
    A L{MemberStore} for one daemon process, in join order.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, Member] = {}
        self._by_skeleton: dict[str, Member] = {}

    def add(self, member: Member) -> None:
        self._by_key[member.name.casefold()] = member
        self._by_skeleton[skeleton(member.name)] = member

    def remove(self, member: Member) -> None:
        if self._by_key.get(member.name.casefold()) is member:
            del self._by_key[member.name.casefold()]
            del self._by_skeleton[skeleton(member.name)]

    def rename(self, member: Member, new_name: str) -> None:
        # Rebuild the key order so iteration stays in join order.
        members = list(self._by_key.values())
        self._by_skeleton.pop(skeleton(member.name))
        member.name = new_name
        self._by_skeleton[skeleton(new_name)] = member
        self._by_key = {m.name.casefold(): m for m in members}

    def find(self, name: str) -> Member | None:
        return self._by_key.get(name.casefold())

    def clash(self, name: str, ignore: Member | None = None) -> Member | None:
        found = self._by_skeleton.get(skeleton(name))
        return None if found is ignore else found

    def __contains__(self, member: object) -> bool:
        return isinstance(member, Member) and self.find(member.name) is member

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)


class Room:
    """
    One chat room: who is in it, and what every command does.

    @ivar members: The member directory.
    @ivar moderation: The admins and bans, and the admin commands.
    """

    def __init__(
        self,
        clock: IReactorTime,
        members: MemberStore | None = None,
        moderation: ModerationSettings | None = None,
    ) -> None:
        self.clock = clock
        self.members: MemberStore = members if members is not None else InMemoryMembers()
        self.moderation = Moderation(self, moderation if moderation is not None else ModerationSettings())
        self._guest_counter = 0
        self._handlers: dict[str, Callable[[Member, tuple[str, ...]], None]] = {
            "nick": self.nick,
            "say": self.say,
            "whisper": self.whisper,
            "me": self.me,
            "list": self.list,
            "whois": self.whois,
            "filter": self.filter,
            "unfilter": self.unfilter,
            "help": self.help,
            "quit": self.quit,
            **self.moderation.handlers(),
        }

    # Lines

    def line(self, kind: Kind, source: str, text: str = "", args: tuple[str, ...] = ()) -> bytes:
        """
        Format one line stamped with the room's clock, line ending included.
        """
        return format_line(self.clock.seconds(), kind, source, text, args) + LINE_END

    def tell(self, member: Member, kind: Kind, text: str, args: tuple[str, ...] = ()) -> None:
        """
        Send a server line to one member.
        """
        member.recipient.deliver(self.line(kind, SERVER_SOURCE, text, args))

    def broadcast(self, line: bytes) -> None:
        """
        Send the same bytes to every member.
        """
        for member in self.members:
            member.recipient.deliver(line)

    def _chat(self, sender: Member, line: bytes, text: str) -> None:
        # Chat goes to everyone whose filters let it through; the sender
        # always gets its own echo, which carries the server's timestamp.
        for member in self.members:
            if member is sender or not member.filters or not member.hides(text):
                member.recipient.deliver(line)

    # Arrivals and departures

    def join(self, recipient: Recipient, host: str, port: int) -> Member:
        """
        Add a new connection to the room under a fresh guest name.
        """
        now = self.clock.seconds()
        member = Member(self._guest_name(), host, port, now, recipient, last_active=now)
        self.members.add(member)
        self.tell(
            member,
            Kind.WELCOME,
            f"Welcome, you are {member.name}. Type /help for the commands.",
            (member.name,),
        )
        self.broadcast(self.line(Kind.JOIN, member.name, f"{member.name} joined from {member.address}"))
        self.moderation.joined(member)
        self.list(member, ())
        return member

    def _guest_name(self) -> str:
        while True:
            self._guest_counter += 1
            name = f"guest{self._guest_counter}"
            if self.members.clash(name) is None and self.moderation.name_allowed(name):
                return name

    def leave(self, member: Member, reason: str) -> None:
        """
        Remove C{member} and tell everyone why; a no-op if already gone.
        """
        if member not in self.members:
            return
        self.members.remove(member)
        self.broadcast(self.line(Kind.LEAVE, member.name, f"{member.name} left ({reason})"))
        self.moderation.left(member)

    def close(self, text: str) -> None:
        """
        Tell everyone C{text}, then close every member's connection without
        announcing each departure (nobody stays to hear it).
        """
        self.broadcast(self.line(Kind.INFO, SERVER_SOURCE, text))
        for member in self.members:
            self.members.remove(member)
            member.recipient.close()

    # Commands

    def execute(self, member: Member, command: Command) -> None:
        """
        Carry out one parsed command for C{member}.

        @raise ChatError: If the command breaks a rule.
        """
        member.last_active = self.clock.seconds()
        handler = self._handlers.get(command.name)
        if handler is None:
            # A command the parser knows but this room does not serve (/e2e
            # in a room without end-to-end support).
            raise ChatError(f"/{command.name} is not available on this server")
        handler(member, command.args)

    def find(self, name: str) -> Member:
        """
        The member called C{name}, any case.

        @raise ChatError: If there is none.
        """
        found = self.members.find(name)
        if found is None:
            raise ChatError(f"no such user {name}: type /list to see who is here")
        return found

    def nick(self, member: Member, args: tuple[str, ...]) -> None:
        (new_name,) = args
        problem = name_problem(new_name)
        if problem is not None:
            raise ChatError(f"invalid name {new_name!r}: {problem}")
        self.moderation.check_name(new_name)
        if new_name == member.name:
            raise ChatError(f"you are already called {new_name}")
        other = self.members.clash(new_name, ignore=member)
        if other is not None:
            same = other.name.casefold() == new_name.casefold()
            why = "is taken" if same else f"looks too much like {other.name}"
            raise ChatError(f"the name {new_name} {why}: choose another")
        old_name = member.name
        self.members.rename(member, new_name)
        self.broadcast(
            self.line(Kind.RENAME, old_name, f"{old_name} is now known as {new_name}", (new_name,))
        )

    def say(self, member: Member, args: tuple[str, ...]) -> None:
        (text,) = args
        self._chat(member, self.line(Kind.MESSAGE, member.name, text), text)

    def me(self, member: Member, args: tuple[str, ...]) -> None:
        (text,) = args
        action = f"{member.name} {text}"
        self._chat(member, self.line(Kind.ACTION, member.name, action), action)

    def whisper(self, member: Member, args: tuple[str, ...]) -> None:
        target_name, text = args
        target = self.find(target_name)
        line = self.line(Kind.WHISPER, member.name, text, (target.name,))
        if target is not member and not (target.filters and target.hides(text)):
            target.recipient.deliver(line)
        member.recipient.deliver(line)

    def list(self, member: Member, args: tuple[str, ...]) -> None:
        names = [("@" if m.is_admin else "") + m.name for m in self.members]
        for start in range(0, len(names), LIST_CHUNK):
            chunk = tuple(names[start : start + LIST_CHUNK])
            text = f"users {start + 1}-{start + len(chunk)} of {len(names)}"
            self.tell(member, Kind.LIST, text, chunk)

    def whois(self, member: Member, args: tuple[str, ...]) -> None:
        (name,) = args
        target = self.find(name)
        now = self.clock.seconds()
        connected = format_timestamp(target.connected_at)
        idle = int(now - target.last_active)
        admin = "yes" if target.is_admin else "no"
        fields = (
            f"name={target.name}",
            f"address={target.address}",
            f"connected={connected}",
            f"idle={idle}",
            f"admin={admin}",
        )
        text = (
            f"{target.name} is at {target.address}, connected since {connected}, idle {idle}s, admin: {admin}"
        )
        self.tell(member, Kind.WHOIS, text, fields)

    def filter(self, member: Member, args: tuple[str, ...]) -> None:
        if not args:
            listed = ", ".join(f'"{word}"' for word in member.filters) or "none"
            self.tell(member, Kind.FILTER, f"your filters: {listed}")
            return
        word = args[0].casefold()
        if len(word) > MAX_FILTER_LENGTH:
            raise ChatError(f"a filter word has at most {MAX_FILTER_LENGTH} characters")
        if word in member.filters:
            raise ChatError(f'you already filter "{word}"')
        if len(member.filters) >= MAX_FILTERS:
            raise ChatError(f"you have {MAX_FILTERS} filters already: /unfilter one first")
        member.filters.append(word)
        self.tell(member, Kind.FILTER, f'chat containing "{word}" is now hidden from you')

    def unfilter(self, member: Member, args: tuple[str, ...]) -> None:
        word = args[0].casefold()
        if word not in member.filters:
            raise ChatError(f'you have no filter "{word}": type /filter to list yours')
        member.filters.remove(word)
        self.tell(member, Kind.FILTER, f'chat containing "{word}" is shown again')

    def help(self, member: Member, args: tuple[str, ...]) -> None:
        try:
            lines = help_lines(args[0] if args else None)
        except ValueError as e:
            raise ChatError(str(e)) from e
        for text in lines:
            self.tell(member, Kind.HELP, text)

    def quit(self, member: Member, args: tuple[str, ...]) -> None:
        self.leave(member, f"quit: {args[0]}" if args else "quit")
        member.recipient.close()
