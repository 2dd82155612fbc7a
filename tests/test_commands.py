"""
The pure command parser and the help text.
"""

from __future__ import annotations

import pytest

from chatroom.core.commands import Command, CommandRegistry, CommandSpec, ParseError
from tests.helpers import make_server

COMMANDS = make_server().room.commands


def parse_command(line: str) -> Command:
    return COMMANDS.parse(line)


def help_lines(topic: str | None = None) -> list[str]:
    return COMMANDS.help_lines(topic)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello there", Command("say", ("hello there",))),
        ("/say hello  there ", Command("say", ("hello  there",))),
        ("//etc/passwd is a file", Command("say", ("/etc/passwd is a file",))),
        ("/NICK Alice", Command("nick", ("Alice",))),
        ("/whisper bob meet  me", Command("whisper", ("bob", "meet  me"))),
        ("/me waves", Command("me", ("waves",))),
        ("/list", Command("list")),
        ("/whois bob", Command("whois", ("bob",))),
        ("/filter", Command("filter")),
        ("/filter bad word", Command("filter", ("bad word",))),
        ("/unfilter bad", Command("unfilter", ("bad",))),
        ("/help", Command("help")),
        ("/?", Command("help")),
        ("/help whisper", Command("help", ("whisper",))),
        ("/quit", Command("quit")),
        ("/Quit gone fishing", Command("quit", ("gone fishing",))),
    ],
)
def test_parse(line: str, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "empty line"),
        ("   ", "empty line"),
        ("/frobnicate", "unknown command /frobnicate"),
        ("/", "unknown command /"),
        ("/nick", "missing argument: usage /nick <name>"),
        ("/whisper bob", "missing argument: usage /whisper <user> <text>"),
        ("/say   ", "missing argument: usage /say <text>"),
        ("/list everyone", "/list takes no arguments"),
        ("/whois", "missing argument"),
        ("/me", "missing argument"),
    ],
)
def test_errors_say_what_to_do(line: str, message: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse_command(line)
    assert message in str(raised.value)


def test_help_lists_every_command_with_its_syntax() -> None:
    text = "\n".join(help_lines())
    for spec in COMMANDS.specs:
        assert spec.usage in text
    # The full list names the aliases too.
    assert [line for line in help_lines() if line.startswith("/help")] == [
        "/help [command] - show this help, or help for one command (also /?)"
    ]


def test_help_for_one_command() -> None:
    assert help_lines("/whisper") == ["/whisper <user> <text> - send a private message to one user"]
    assert "also /?" in help_lines("help")[0]
    with pytest.raises(ParseError):
        help_lines("nonsense")


def test_a_command_is_registered_once_with_its_handler() -> None:
    registry = CommandRegistry()
    spec = CommandSpec("wave", "[who]", "wave at someone", 0, 1, ("hi",))
    registry.add(spec, lambda member, args: None)
    assert registry.parse("/HI you") == Command("wave", ("you",))
    assert registry.help_lines("hi") == ["/wave [who] - wave at someone (also /hi)"]
    with pytest.raises(ValueError, match="registered twice: hi"):
        registry.add(CommandSpec("hi", "", "again", 0, 0), lambda member, args: None)
    assert registry.specs == (spec,)
