"""
The chat commands every room serves: names, chat, the member list, filters,
help and quitting. Each command's spec and handler stand together here.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatroom.core.commands import SAY, CommandRegistry, CommandSpec, ParseError, spec_table
from chatroom.core.errors import NAME_TAKEN, ChatError
from chatroom.core.events import (
    Acted,
    FilterReply,
    HelpReply,
    Members,
    Renamed,
    Said,
    Whispered,
    WhoisReply,
)
from chatroom.core.memory import InMemoryMembers
from chatroom.core.ports import FanOut, MemberDirectory, MemberRecord
from chatroom.core.room import Feature, Room
from chatroom.limits import RoomLimits

MAX_FILTERS = 32
MAX_FILTER_LENGTH = 100

NICK = CommandSpec("nick", "<name>", "change your name", 1, 1)
WHISPER = CommandSpec("whisper", "<user> <text>", "send a private message to one user", 2, 2)
ME = CommandSpec("me", "<text>", "act: '/me waves' shows as '<you> waves'", 1, 1)
LIST = CommandSpec("list", "", "list the users in the room", 0, 0)
WHOIS = CommandSpec("whois", "<user>", "show a user's address (or cloak), connect time and idle time", 1, 1)
FILTER = CommandSpec("filter", "[word]", "hide chat containing <word>; alone, list filters", 0, 1)
UNFILTER = CommandSpec("unfilter", "<word>", "stop hiding chat containing <word>", 1, 1)
HELP = CommandSpec("help", "[command]", "show this help, or help for one command", 0, 1, ("?",))
QUIT = CommandSpec("quit", "[message]", "leave the room", 0, 1)
PONG = CommandSpec("pong", "[token]", "answer a server ping (clients do it for you)", 0, 1)

# The commands a client acts on itself (end-to-end encryption, filters,
# quitting), for parse_command in clients.
CLIENT_COMMANDS = spec_table((SAY, WHISPER, ME, FILTER, UNFILTER, QUIT))


class ChatCommands(Feature):
    """
    The chat commands of C{room}.
    """

    log = Logger()

    def __init__(self, room: Room) -> None:
        self.room = room

    def register(self, commands: CommandRegistry) -> None:
        for spec, handler in (
            (NICK, self.nick),
            (SAY, self.say),
            (WHISPER, self.whisper),
            (ME, self.me),
            (LIST, self.list),
            (WHOIS, self.whois),
            (FILTER, self.filter),
            (UNFILTER, self.unfilter),
            (HELP, self.help),
            (QUIT, self.quit),
            # The session answers pings itself; the spec is for parsing and help.
            (PONG, self.pong),
        ):
            commands.add(spec, handler)

    def nick(self, member: MemberRecord, args: tuple[str, ...]) -> Deferred[None] | None:
        (new_name,) = args
        problem = self.room.rename_problem(member, new_name)
        if problem is not None:
            raise problem
        old_name = member.name

        def renamed(other: MemberRecord | None) -> None:
            if other is not None:
                same = other.name.casefold() == new_name.casefold()
                why = "is taken" if same else f"looks too much like {other.name}"
                raise ChatError(f"the name {new_name} {why}: choose another", NAME_TAKEN)
            # The member id ties the connection's names together in the log.
            self.log.info(
                "{old} (#{member_id} at {address}) is now {new}",
                old=old_name,
                new=new_name,
                member_id=member.id,
                address=member.address,
            )
            self.room.broadcast(Renamed(self.room.now(), old_name, new_name))

        return self.room.members.rename(member, new_name).addCallback(renamed)

    def say(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        self.room.broadcast(Said(self.room.now(), member.name, args[0]))

    def me(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        self.room.broadcast(Acted(self.room.now(), member.name, args[0]))

    def whisper(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        target_name, text = args
        target = self.room.find(target_name)
        event = Whispered(self.room.now(), member.name, text, target.name)
        # The target first, then the sender's echo (once, for a whisper to oneself).
        self.room.fanout.publish(event, Members((target.id, member.id)))

    def list(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        self.room.list_members(member)

    def whois(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        target = self.room.find(args[0])
        now = self.room.now()
        idle = int(now - target.last_active)
        address = target.address if self.room.may_see_address(member, target) else None
        reply = WhoisReply(
            now, target.name, address, target.connected_at, idle, target.is_admin, target.cloak
        )
        self.room.tell(member, reply)

    def filter(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        if not args:
            listed = ", ".join(f'"{word}"' for word in member.filters) or "none"
            self._reply(member, f"your filters: {listed}")
            return
        word = args[0].casefold()
        if len(word) > MAX_FILTER_LENGTH:
            raise ChatError(f"a filter word has at most {MAX_FILTER_LENGTH} characters")
        if word in member.filters:
            raise ChatError(f'you already filter "{word}"')
        if len(member.filters) >= MAX_FILTERS:
            raise ChatError(f"you have {MAX_FILTERS} filters already: /unfilter one first")
        member.add_filter(word)
        self._reply(member, f'chat containing "{word}" is now hidden from you')

    def unfilter(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        word = args[0].casefold()
        if word not in member.filters:
            raise ChatError(f'you have no filter "{word}": type /filter to list yours')
        member.remove_filter(word)
        self._reply(member, f'chat containing "{word}" is shown again')

    def _reply(self, member: MemberRecord, text: str) -> None:
        self.room.tell(member, FilterReply(self.room.now(), text))

    def help(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        try:
            lines = self.room.commands.help_lines(args[0] if args else None)
        except ParseError as e:
            raise ChatError(str(e)) from e
        now = self.room.now()
        for text in lines:
            self.room.tell(member, HelpReply(now, text))

    def quit(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        self.room.leave(member, f"quit: {args[0]}" if args else "quit", disconnect=True)

    def pong(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        pass


def new_room(
    clock: IReactorTime,
    members: MemberDirectory | None = None,
    fanout: FanOut | None = None,
    cloak: Callable[[str], str] | None = None,
    limits: RoomLimits | None = None,
) -> Room:
    """
    A room with the chat commands, on C{clock}; in-memory stores by default;
    C{cloak} as in L{Room}.
    """
    room = Room(
        clock, members if members is not None else InMemoryMembers(), fanout, cloak=cloak, limits=limits
    )
    room.add_feature(ChatCommands(room))
    return room
