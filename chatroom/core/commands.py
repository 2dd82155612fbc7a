"""
The client command language and the registry of the room's commands.

A client line is either a command (``/name args``, the name
case-insensitive) or plain text, which is the same as ``/say``. A line that
starts with ``//`` is plain text that begins with ``/``.

Each command is declared once, where its handler is: its L{CommandSpec}
(syntax and help text) and the handler go into a L{CommandRegistry}
together, so adding a command touches one module. The parser is a pure
function of a line and the specs it knows (L{parse_command}); clients use it
with the specs they act on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from chatroom.core.ports import MemberRecord


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

    @property
    def help_line(self) -> str:
        return f"{self.usage} - {self.summary}"


@dataclass(frozen=True)
class Command:
    """
    One parsed client line.
    """

    name: str
    args: tuple[str, ...] = ()


# "/say" is what plain text means: every command language knows it.
SAY = CommandSpec("say", "<text>", "say something to everyone (plain text does the same)", 1, 1)

# A handler carries out one command for a member; it may return a Deferred
# (a shared store is asynchronous) whose failure with a ChatError is the
# reply, exactly like a ChatError raised at once.
Handler = Callable[["MemberRecord", tuple[str, ...]], "Deferred[Any] | None"]


def spec_table(specs: Iterable[CommandSpec]) -> dict[str, CommandSpec]:
    """
    C{specs} by every name and alias they answer to.
    """
    return {alias: spec for spec in specs for alias in (spec.name, *spec.aliases)}


def parse_command(line: str, table: dict[str, CommandSpec]) -> Command:
    """
    Parse one decoded client line against the commands in C{table}
    (from L{spec_table}).

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
    spec = table.get(word.lower())
    if spec is None:
        raise ParseError(f"unknown command /{word}: type /help for the list of commands")
    rest = rest.strip()
    args: list[str] = rest.split(None, spec.max_args - 1) if rest and spec.max_args else []
    if rest and not spec.max_args:
        raise ParseError(f"/{spec.name} takes no arguments: usage {spec.usage}")
    if len(args) < spec.min_args:
        raise ParseError(f"missing argument: usage {spec.usage}")
    return Command(spec.name, tuple(args))


class CommandRegistry:
    """
    Every command a room serves: spec, help text and handler, in the order
    they were added (the order of the help text).
    """

    def __init__(self) -> None:
        self._specs: list[CommandSpec] = []
        self._table: dict[str, CommandSpec] = {}
        self._handlers: dict[str, Handler] = {}

    def add(self, spec: CommandSpec, handler: Handler) -> None:
        """
        Serve C{spec} with C{handler}.

        @raise ValueError: If a name or alias of C{spec} is taken (a bug).
        """
        names = spec_table([spec])
        taken = sorted(set(names) & set(self._table))
        if taken:
            raise ValueError(f"command names registered twice: {', '.join(taken)}")
        self._specs.append(spec)
        self._table.update(names)
        self._handlers[spec.name] = handler

    @property
    def specs(self) -> tuple[CommandSpec, ...]:
        return tuple(self._specs)

    def parse(self, line: str) -> Command:
        """
        Parse one client line against the registered commands.

        @raise ParseError: As L{parse_command}.
        """
        return parse_command(line, self._table)

    def handler(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def help_lines(self, topic: str | None = None) -> list[str]:
        """
        The help text, one entry per line; for one command if C{topic} is given.

        @raise ParseError: If C{topic} is not a command.
        """
        if topic is not None:
            spec = self._table.get(topic.removeprefix("/").lower())
            if spec is None:
                raise ParseError(f"no such command {topic}: type /help for the list of commands")
            return [_with_aliases(spec)]
        lines = ["Commands (case-insensitive; start a message with // to send a leading /):"]
        lines.extend(_with_aliases(spec) for spec in self._specs)
        return lines


def _with_aliases(spec: CommandSpec) -> str:
    return spec.help_line + "".join(f" (also /{alias})" for alias in spec.aliases)
