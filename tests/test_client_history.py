"""
History lines in the client: how they read, and the window showing them
greyed under an "earlier messages" rule and paging back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatroom.client.gui import ChatWindow
from chatroom.client.render import HISTORY_RULE, PLAIN_MARK, Style, local_time, render, replayed_line
from chatroom.wire import ServerLine, format_line, parse_line
from tests.test_gui import RecordingController, display, window

__all__ = ["display", "window"]


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


def test_the_window_shows_history_under_a_rule_and_pages_back(window: ChatWindow) -> None:
    now = datetime.now(UTC)
    before = now - timedelta(minutes=5)
    window.line_received(line(now, "welcome", "*", "Welcome, you are bob.", "bob"))
    window.line_received(line(before, "history", "alice", "hello", "message", "id=41"))
    window.line_received(line(before, "history", "alice", "alice waves", "action", "id=42"))
    window.line_received(
        line(
            now, "historyend", "*", "2 earlier messages; /history before #41 for more", "count=2", "more=#41"
        )
    )
    window.line_received(line(now, "join", "bob", "bob joined from 127.0.0.1:5000"))
    shown = window.message_lines()
    assert shown[1] == f"{local_time(before)} {HISTORY_RULE}"
    assert shown[2] == f"{local_time(before)} <alice> hello"
    assert shown[3] == f"{local_time(before)} * alice waves"
    assert "history" in window.messages.tag_names("3.12") and "history" not in window.messages.tag_names(
        "6.12"
    )
    # The roster is not fooled by replayed joins and leaves.
    assert window.roster.names() == ["bob"]
    window.page_back()
    controller = window.controller
    assert isinstance(controller, RecordingController)
    assert controller.sent == ["/history before #41"]
    # The next run of history lines gets its own rule.
    window.line_received(line(before, "history", "carol", "older", "message", "id=3"))
    assert window.message_lines()[-2:] == [
        f"{local_time(before)} {HISTORY_RULE}",
        f"{local_time(before)} <carol> older",
    ]
