"""
The server-to-client line format.
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroom.wire import (
    Kind,
    Timestamps,
    WireError,
    format_line,
    format_timestamp,
    has_control_characters,
    parse_line,
    sanitize,
)

NOON = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC).timestamp()


def test_timestamp_is_utc_iso8601_with_milliseconds() -> None:
    assert format_timestamp(NOON + 0.25) == "2026-11-22T12:00:00.250Z"
    assert format_timestamp(NOON) == "2026-11-22T12:00:00.000Z"


@given(st.lists(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False), min_size=1, max_size=20))
def test_timestamps_format_exactly_as_format_timestamp(times: list[float]) -> None:
    # In order, out of order, within one second and across seconds.
    stamps = Timestamps()
    for seconds in sorted(times) + times + [NOON + 0.9999996, NOON + 1.0004999, NOON + 1.0005]:
        assert stamps.format(seconds) == format_timestamp(seconds)


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


def test_every_kind_is_its_value_on_the_wire_and_a_kind_string_is_checked() -> None:
    # format_line writes a Kind as it is, unchecked: each must be a good token.
    for kind in Kind:
        assert parse_line(format_line(NOON, kind, "alice", "x")).kind == kind.value
    with pytest.raises(WireError):
        format_line(NOON, "two words", "*", "text")


@given(st.text(st.characters(max_codepoint=127)))
def test_ascii_text_is_sanitized_as_any_other(text: str) -> None:
    # The printable-ASCII shortcut gives what the full replacement gives.
    expected = "".join("\ufffd" if ord(c) < 32 or c == "\x7f" else c for c in text)
    assert sanitize(text) == expected
    assert has_control_characters(text) == (expected != text)


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


# Issue 12: what could show text in another order than it is written, or hide
# part of it: bidi embeddings, overrides, isolates and marks, zero-width
# characters, the word joiner, the BOM.
SPOOFING = (
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\u200c\u200d\u2060\ufeff"
)


@pytest.mark.parametrize("character", SPOOFING)
def test_bidi_controls_and_invisible_characters_are_dropped(character: str) -> None:
    raw = format_line(NOON, Kind.MESSAGE, "alice", f"see {character}file{character}.txt")
    assert parse_line(raw).text == "see file.txt"
    assert sanitize(f"a{character}b") == "ab"


def test_a_reversed_file_name_shows_in_the_order_it_was_written() -> None:
    # U+202E shows "harmless\u202etxt.exe" as "harmlessexe.txt".
    line = parse_line(format_line(NOON, Kind.MESSAGE, "alice", "open harmless\u202etxt.exe"))
    assert line.text == "open harmlesstxt.exe"


def test_every_format_character_is_dropped() -> None:
    kept = []
    for code in range(sys.maxunicode + 1):
        character = chr(code)
        if unicodedata.category(character) == "Cf" and sanitize(f"a{character}b") != "ab":
            kept.append(f"U+{code:04X}")
    assert kept == []


@pytest.mark.parametrize(
    "emoji",
    [
        "\U0001f469\u200d\U0001f4bb",  # woman technologist
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
        "\U0001f469\U0001f3fd\u200d\U0001f4bb",  # with a skin tone
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family
    ],
)
def test_a_joiner_inside_an_emoji_sequence_is_kept(emoji: str) -> None:
    assert sanitize(f"hi {emoji}!") == f"hi {emoji}!"


@pytest.mark.parametrize(
    "text",
    [
        "a\u200d\U0001f4bb",
        "\U0001f469\u200db",
        "\u200d\U0001f4bb",
        "\U0001f469\u200d",
        "\U0001f469\u200d\x07",
    ],
)
def test_a_joiner_elsewhere_is_dropped(text: str) -> None:
    assert "\u200d" not in sanitize(text)


@given(st.text())
def test_sanitized_text_shows_nothing_invisible_and_stays_sanitized(text: str) -> None:
    clean = sanitize(text)
    assert sanitize(clean) == clean
    assert not has_control_characters(clean)
    for at, character in enumerate(clean):
        if unicodedata.category(character) == "Cf":
            # Only a joiner between two symbols (an emoji sequence) is left.
            assert character == "\u200d", f"U+{ord(character):04X}"
            assert unicodedata.category(clean[at + 1]) == "So"


@given(st.text(alphabet=st.sampled_from(SPOOFING + "ab\U0001f469\U0001f4bb\r\n\x85")))
def test_spoofing_text_is_one_line_from_its_sender(text: str) -> None:
    raw = format_line(NOON, Kind.MESSAGE, "alice", text)
    assert raw.count(b"\n") == 0 and raw.count(b"\r") == 0
    line = parse_line(raw)
    assert (line.kind, line.source, line.args) == ("message", "alice", ())
    assert not set(line.text) & (set(SPOOFING) - {"\u200d"})
