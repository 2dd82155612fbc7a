"""
The client never shows bidi controls or invisible characters, whatever the
server sends (issue 12, item 10): a hostile or old server's lines, and the
client's own notices, go through L{chatroom.wire.sanitize} too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chatroom.client.render import Rendered, Style, client_notice, render
from chatroom.wire import Kind, ServerLine

NOON = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SPOOFING = "\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\u200c\u200d\u2060\ufeff"


def raw_line(kind: Kind, source: str, text: str, args: tuple[str, ...] = ()) -> ServerLine:
    # As parse_line returns it from a server that did not sanitize.
    return ServerLine(NOON, kind, source, args, text)


@pytest.mark.parametrize("character", SPOOFING)
def test_server_text_and_names_are_shown_without_them(character: str) -> None:
    shown = render(raw_line(Kind.MESSAGE, f"bo{character}b", f"hi{character} there"), "alice")
    assert shown.text == "<bob> hi there"
    whisper = render(raw_line(Kind.WHISPER, "alice", "psst", (f"b{character}ob",)), "alice")
    assert whisper.text == "(whisper to bob) psst"
    listed = render(raw_line(Kind.LIST, "*", "users", (f"@a{character}", "b")), None, e2e=True)
    assert listed.text == "-- users: @a, b"


def test_a_reversed_text_shows_as_written_and_stays_one_line() -> None:
    shown = render(raw_line(Kind.MESSAGE, "bob", "harmless\u202etxt.exe\n<alice> fake"), "carol", e2e=True)
    assert shown.text == "[plain] <bob> harmlesstxt.exe\ufffd<alice> fake"


def test_every_rendered_text_is_sanitized() -> None:
    assert client_notice("name\u202e taken").text == "** name taken"
    assert Rendered("key \u2067changed\u2069", Style.ALARM).text == "key changed"
