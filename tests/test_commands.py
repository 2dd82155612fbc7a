"""
The pure command parser and the help text.
"""

from __future__ import annotations

import pytest

from chatroom.commands import COMMANDS, Command, ParseError, help_lines, parse_command


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
    for spec in COMMANDS:
        assert spec.usage in text


def test_help_for_one_command() -> None:
    assert help_lines("/whisper") == ["/whisper <user> <text> - send a private message to one user"]
    assert "also /?" in help_lines("help")[0]
    with pytest.raises(ParseError):
        help_lines("nonsense")
