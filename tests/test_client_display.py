"""
What the window shows, without Tk: name completion and the time of a line.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from chatroom.client.complete import Completed, NameCompleter
from chatroom.client.render import display_time

MEMBERS = ["alice", "Alfred", "bob", "albert"]


def test_tab_completes_a_name_that_starts_the_line_as_an_address() -> None:
    completer = NameCompleter()
    assert completer.complete("bo", 2, MEMBERS) == Completed("bob: ", 5)


def test_tab_completes_inside_a_line_and_keeps_what_follows() -> None:
    completer = NameCompleter()
    assert completer.complete("/whisper B", 10, MEMBERS) == Completed("/whisper bob ", 13)
    # The cursor in the middle of the line: the rest stays, without a doubled space.
    assert completer.complete("hi b and you", 4, MEMBERS) == Completed("hi bob and you", 7)


def test_tab_again_cycles_through_the_names_that_fit_then_back_to_what_was_typed() -> None:
    completer = NameCompleter()
    first = completer.complete("say hi to al", 12, MEMBERS)
    assert first == Completed("say hi to albert ", 17)
    second = completer.complete(first.text, first.cursor, MEMBERS)
    assert second == Completed("say hi to Alfred ", 17)
    third = completer.complete(second.text, second.cursor, MEMBERS)
    assert third == Completed("say hi to alice ", 16)
    back = completer.complete(third.text, third.cursor, MEMBERS)
    assert back == Completed("say hi to al", 12)
    assert completer.complete(back.text, back.cursor, MEMBERS) == first


def test_tab_again_keeps_the_only_name_that_fits() -> None:
    completer = NameCompleter()
    first = completer.complete("hi bo", 5, MEMBERS)
    assert first == Completed("hi bob ", 7)
    assert completer.complete(first.text, first.cursor, MEMBERS) == first


def test_typing_between_tabs_starts_a_new_completion() -> None:
    completer = NameCompleter()
    first = completer.complete("al", 2, MEMBERS)
    assert first == Completed("albert: ", 8)
    # The user typed on: a new word, not the next candidate.
    assert completer.complete("albert: b", 9, MEMBERS) == Completed("albert: bob ", 12)


@pytest.mark.parametrize(
    ("text", "cursor"),
    [("", 0), ("hello ", 6), ("zed", 3), ("/wh", 3), ("/nick", 5)],
)
def test_nothing_to_complete(text: str, cursor: int) -> None:
    assert NameCompleter().complete(text, cursor, MEMBERS) is None


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_line_from_today_shows_the_time_only(berlin: None) -> None:
    now = datetime(2026, 11, 22, 22, 30, tzinfo=UTC)
    assert display_time(datetime(2026, 11, 22, 10, 15, 3, 250000, tzinfo=UTC), now) == "11:15:03"


def test_a_line_from_another_day_shows_the_date(berlin: None) -> None:
    now = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)  # already the 23rd in Berlin
    assert display_time(datetime(2026, 11, 22, 22, 59, 59, tzinfo=UTC), now) == "2026-11-22 23:59:59"
    assert display_time(datetime(2026, 11, 22, 23, 0, 1, tzinfo=UTC), now) == "00:00:01"
    assert display_time(datetime(2025, 11, 23, 12, 0, tzinfo=UTC), now) == "2025-11-23 13:00:00"
