"""
The client-to-server command language, parsed by a pure function.

A client line is either a command (``/name args``, the name
case-insensitive) or plain text, which is the same as ``/say``. A line that
starts with ``//`` is plain text that begins with ``/``.
"""

from __future__ import annotations

from dataclasses import dataclass


class ParseError(ValueError):
    """
    A client line is not a valid command; the message says what to do.
    """


@dataclass(frozen=True)
class CommandSpec:
    """
    The syntax of one command.

    @ivar name: The canonical command name, lower case, without the slash.
    @ivar params: Parameter names for the usage line; C{[x]} is optional.
    @ivar summary: One line for the help text.
    @ivar min_args: How many arguments must be given.
    @ivar max_args: How many arguments there are at most; the last one
        takes the rest of the line, spaces included.
    @ivar aliases: Other names for the same command.
    """

    name: str
    params: str
    summary: str
    min_args: int
    max_args: int
    aliases: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.params}".rstrip()


@dataclass(frozen=True)
class Command:
    """
    One parsed client line.
    """

    name: str
    args: tuple[str, ...] = ()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("nick", "<name>", "change your name", 1, 1),
    CommandSpec("say", "<text>", "say something to everyone (plain text does the same)", 1, 1),
    CommandSpec("whisper", "<user> <text>", "send a private message to one user", 2, 2),
    CommandSpec("me", "<text>", "act: '/me waves' shows as '<you> waves'", 1, 1),
    CommandSpec("list", "", "list the users in the room", 0, 0),
    CommandSpec("whois", "<user>", "show a user's address, connect time and idle time", 1, 1),
    CommandSpec("filter", "[word]", "hide chat containing <word>; alone, list filters", 0, 1),
    CommandSpec("unfilter", "<word>", "stop hiding chat containing <word>", 1, 1),
    CommandSpec("help", "[command]", "show this help, or help for one command", 0, 1, ("?",)),
    CommandSpec("quit", "[message]", "leave the room", 0, 1),
    CommandSpec("pong", "[token]", "answer a server ping (clients do it for you)", 0, 1),
    CommandSpec("oper", "<password>", "become an admin with the admin password", 1, 1),
    CommandSpec("op", "<user>", "make a user an admin (admins only)", 1, 1),
    CommandSpec("deop", "<user>", "take a user's admin rights away (admins only)", 1, 1),
    CommandSpec("kick", "<user> [reason]", "disconnect a user (admins only; anyone may kick themself)", 1, 2),
    CommandSpec(
        "ban",
        "<user|address|CIDR> [duration] [reason]",
        "ban a name and address, or an address or network, for e.g. 10m, 2h, 7d or for ever (admins only)",
        1,
        2,
    ),
    CommandSpec("unban", "<name|address|CIDR>", "lift a ban (admins only)", 1, 1),
    CommandSpec("bans", "", "list the bans: who set each, when, why, until when (admins only)", 0, 0),
    CommandSpec("e2e", "<hello|register|keys|send> [args]", "end-to-end encryption (used by clients)", 1, 2),
)

_BY_NAME: dict[str, CommandSpec] = {alias: spec for spec in COMMANDS for alias in (spec.name, *spec.aliases)}


def find_spec(name: str) -> CommandSpec | None:
    """
    The spec of command C{name} (with or without its slash, any case).
    """
    return _BY_NAME.get(name.removeprefix("/").lower())


def parse_command(line: str) -> Command:
    """
    Parse one decoded client line.

    @raise ParseError: For an empty line, an unknown command or a wrong
        number of arguments.
    """
    if not line.strip():
        raise ParseError("empty line: type a message, or /help for the commands")
    if not line.startswith("/"):
        return Command("say", (line,))
    if line.startswith("//"):
        return Command("say", (line[1:],))
    word, _, rest = line[1:].partition(" ")
    spec = find_spec(word)
    if spec is None:
        raise ParseError(f"unknown command /{word}: type /help for the list of commands")
    rest = rest.strip()
    args: list[str] = rest.split(None, spec.max_args - 1) if rest and spec.max_args else []
    if rest and not spec.max_args:
        raise ParseError(f"/{spec.name} takes no arguments: usage {spec.usage}")
    if len(args) < spec.min_args:
        raise ParseError(f"missing argument: usage {spec.usage}")
    return Command(spec.name, tuple(args))


def help_lines(topic: str | None = None) -> list[str]:
    """
    The help text, one entry per line; for one command if C{topic} is given.

    @raise ParseError: If C{topic} is not a command.
    """
    if topic is not None:
        spec = find_spec(topic)
        if spec is None:
            raise ParseError(f"no such command {topic}: type /help for the list of commands")
        aliases = "".join(f" (also /{alias})" for alias in spec.aliases)
        return [f"{spec.usage} - {spec.summary}{aliases}"]
    lines = ["Commands (case-insensitive; start a message with // to send a leading /):"]
    lines.extend(f"{spec.usage} - {spec.summary}" for spec in COMMANDS)
    return lines
