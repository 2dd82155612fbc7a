"""
The server-to-client line format.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroom.wire import Kind, WireError, format_line, format_timestamp, parse_line

NOON = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC).timestamp()


def test_timestamp_is_utc_iso8601_with_milliseconds() -> None:
    assert format_timestamp(NOON + 0.25) == "2026-11-22T12:00:00.250Z"
    assert format_timestamp(NOON) == "2026-11-22T12:00:00.000Z"


def test_round_trip() -> None:
    raw = format_line(NOON + 1.5, Kind.RENAME, "alice", "alice is now known as bob", ("bob",))
    assert raw == b"2026-11-22T12:00:01.500Z rename alice bob :alice is now known as bob"
    line = parse_line(raw + b"\r\n")
    assert line.timestamp.timestamp() == NOON + 1.5
    assert (line.kind, line.source, line.args, line.text) == ("rename", "alice", ("bob",), line.text)
    assert line.text == "alice is now known as bob"


def test_key_value_fields() -> None:
    line = parse_line(format_line(NOON, Kind.WHOIS, "*", "x", ("name=bob", "address=[::1]:5")))
    assert line.fields == {"name": "bob", "address": "[::1]:5"}


@pytest.mark.parametrize(
    "text",
    [
        "hi\r\n2026-11-22T12:00:00.000Z message bob :forged",
        "hi\rforged",
        "hi\nforged",
        "line\u2028separator",
        "next\x85line",
        "bell\x07and\x1b[2Jescape",
    ],
)
def test_user_text_cannot_forge_a_line(text: str) -> None:
    raw = format_line(NOON, Kind.MESSAGE, "alice", text)
    assert b"\n" not in raw and b"\r" not in raw
    decoded = raw.decode("utf-8")
    assert "\u2028" not in decoded and "\x85" not in decoded and "\x1b" not in decoded
    line = parse_line(raw)
    assert line.source == "alice"
    assert line.kind == "message"


def test_fake_prefix_stays_in_the_text() -> None:
    text = "2026-11-22T12:00:00.000Z message bob :I am bob"
    line = parse_line(format_line(NOON, Kind.MESSAGE, "alice", text))
    assert (line.source, line.text) == ("alice", text)


@given(st.text())
def test_any_text_is_one_line_from_its_sender(text: str) -> None:
    raw = format_line(NOON, Kind.MESSAGE, "alice", text)
    assert raw.count(b"\n") == 0 and raw.count(b"\r") == 0
    line = parse_line(raw)
    assert (line.kind, line.source, line.args) == ("message", "alice", ())


@pytest.mark.parametrize("token", ["", "two words", ":colon", "new\nline"])
def test_bad_header_tokens_are_refused(token: str) -> None:
    with pytest.raises(WireError):
        format_line(NOON, Kind.INFO, "*", "text", (token,))


@pytest.mark.parametrize(
    "raw",
    [
        b"no text field",
        b"2026-11-22T12:00:00.000Z message :too few",
        b"yesterday message alice :bad time",
        b"\xff\xfe :not utf-8",
        b"2026-11-22T12:00:00.000Z  message alice :empty token",
    ],
)
def test_malformed_lines_are_refused(raw: bytes) -> None:
    with pytest.raises(WireError):
        parse_line(raw)
