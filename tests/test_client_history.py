"""
History lines in the client: how they read (the window showing them is
tested in C{tests/test_gui.py}).
"""

from __future__ import annotations

from datetime import UTC, datetime

from chatroom.client.render import PLAIN_MARK, Style, render, replayed_line
from chatroom.wire import ServerLine, format_line, parse_line


def line(moment: datetime, kind: str, source: str, text: str, *args: str) -> ServerLine:
    return parse_line(format_line(moment.timestamp(), kind, source, text, args))


def test_a_history_line_reads_as_the_line_it_replays_in_grey() -> None:
    then = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    said = line(then, "history", "alice", "hello", "message", "id=7")
    original = replayed_line(said)
    assert original is not None
    assert (original.kind, original.source, original.text, original.timestamp) == (
        "message",
        "alice",
        "hello",
        then,
    )
    rendered = render(said, "bob")
    assert (rendered.text, rendered.style) == ("<alice> hello", Style.HISTORY)
    rename = line(then, "history", "guest1", "guest1 is now known as carol", "rename", "id=8", "carol")
    assert replayed_line(rename) is not None and replayed_line(rename).args == ("carol",)  # type: ignore[union-attr]
    # Stored chat went in the clear: with E2E on, it says so.
    assert render(said, "bob", e2e=True).text == PLAIN_MARK + "<alice> hello"
    end = line(then, "historyend", "*", "2 earlier messages", "count=2")
    assert render(end, "bob").style == Style.HISTORY
    assert replayed_line(line(then, "history", "alice", "x", "message")) is None
