"""
The server-to-client line format, shared by the daemon and its clients.

Every line the server sends has the shape::

    <timestamp> <kind> <source> [<arg> ...] :<text>

``timestamp`` is the server's UTC time in ISO 8601 with milliseconds
(``2026-11-22T10:15:03.250Z``); ``kind`` names the event (see L{Kind});
``source`` is the member the event comes from, or ``*`` for the server
itself; the optional ``arg`` tokens carry structured data (a target name,
a new name, ``key=value`` pairs); everything after the first ``" :"`` is
free text. Header tokens never contain spaces and never start with ``:``,
so the first ``" :"`` always ends the header, whatever the text holds.

User text can never forge a line: L{format_line} replaces every control
character (including ``\\r``, ``\\n`` and the Unicode line separators) so a
line is always exactly one line, and a fake prefix inside the text stays
inside the text field. It also removes the invisible format characters
(bidi controls, zero-width characters, the BOM), so text shows as what it
holds. See ``docs/protocol.rst`` for every kind.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

SERVER_SOURCE = "*"


class Kind(StrEnum):
    """
    The kinds of server-to-client lines.
    """

    WELCOME = "welcome"
    MESSAGE = "message"
    WHISPER = "whisper"
    ACTION = "action"
    JOIN = "join"
    LEAVE = "leave"
    ARRIVALS = "arrivals"
    RENAME = "rename"
    LIST = "list"
    WHOIS = "whois"
    FILTER = "filter"
    HELP = "help"
    INFO = "info"
    ERROR = "error"
    PING = "ping"
    ADMIN = "admin"
    KICK = "kick"
    BAN = "ban"
    UNBAN = "unban"
    BANLIST = "banlist"
    BANNED = "banned"
    TOPIC = "topic"
    # End-to-end encryption (chatroom.e2e.server).
    CHALLENGE = "challenge"
    KEY = "key"
    KEYS = "keys"
    KEYDROP = "keydrop"
    E2E = "e2e"
    # Message history (chatroom.features.history).
    HISTORY = "history"
    HISTORY_END = "historyend"
    GROUP = "e2e-group"


class WireError(ValueError):
    """
    A line does not follow the server-to-client format.
    """


@dataclass(frozen=True)
class ServerLine:
    """
    One parsed server-to-client line.
    """

    timestamp: datetime
    kind: str
    source: str
    args: tuple[str, ...]
    text: str

    @property
    def fields(self) -> dict[str, str]:
        """
        The C{key=value} arguments of this line as a dictionary.
        """
        return dict(arg.split("=", 1) for arg in self.args if "=" in arg)


# Every C0/C1 control character, DEL, and the Unicode line and paragraph
# separators: any of them could end or visually split a line in a client.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Every format character (Unicode category Cf, up to Unicode 15.1): the
# bidi embeddings, overrides, isolates and marks (U+202A-202E, U+2066-2069,
# U+200E, U+200F, U+061C), which can show text in another order than it
# is written (a reversed file name, a forged "<bob>"), and the invisible
# ones: zero-width space, non-joiner and joiner (U+200B-200D), the word
# joiner and invisible operators (U+2060-2064), the BOM (U+FEFF), the soft
# hyphen, tags (U+E0000-E007F, invisible ASCII) and the rest.
_INVISIBLE = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)
_ZWJ = "\u200d"
# What may come before a joiner in an emoji sequence besides a symbol: the
# emoji presentation selector and the skin tone modifiers.
_EMOJI_SUFFIXES = frozenset("\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")


def has_control_characters(text: str) -> bool:
    """
    Whether C{text} holds a character that must never reach another client.
    """
    if text.isascii() and text.isprintable():
        # Most text: no control character, and this is faster than the search.
        return False
    return _UNSAFE.search(text) is not None


def _is_symbol(character: str) -> bool:
    return character != "\ufffd" and unicodedata.category(character) == "So"


def _joins_emoji(text: str, at: int) -> bool:
    # A zero-width joiner between two symbols glues an emoji sequence
    # (U+1F469 U+200D U+1F4BB is one "woman technologist"): it hides nothing.
    if at == 0 or at + 1 == len(text) or not _is_symbol(text[at + 1]):
        return False
    before = text[at - 1]
    return before in _EMOJI_SUFFIXES or _is_symbol(before)


def _drop_invisible(match: re.Match[str]) -> str:
    found = match.group()
    return found if found == _ZWJ and _joins_emoji(match.string, match.start()) else ""


def strip_invisible(text: str) -> str:
    """
    C{text} without its invisible format characters (bidi controls,
    zero-width characters, the BOM, tags: see C{docs/protocol.rst}), but
    with a zero-width joiner kept between two symbols, where it joins an
    emoji sequence.

    They are dropped, not replaced: they have no visible form, so what
    remains is what a reader saw of the text, in the order it was written.
    """
    if text.isascii():
        # No format character is ASCII; most text is, and this is faster.
        return text
    return _INVISIBLE.sub(_drop_invisible, text)


def sanitize(text: str) -> str:
    """
    C{text} safe to show: every control character replaced with U+FFFD
    (so it stays one line), every invisible format character dropped (see
    L{strip_invisible}). C{sanitize(sanitize(text)) == sanitize(text)}.
    """
    if text.isascii() and text.isprintable():
        # Most text: nothing to replace or drop (see has_control_characters).
        return text
    return strip_invisible(_UNSAFE.sub("\ufffd", text))


def format_timestamp(seconds: float) -> str:
    """
    Format POSIX time C{seconds} as UTC ISO 8601 with milliseconds.
    """
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# The end of a timestamp after its second: ".000Z" to ".999Z" without the dot.
_MILLIS = tuple(f"{n:03d}Z" for n in range(1000))


class Timestamps:
    """
    L{format_timestamp} for the times of one stream of events: the part up
    to the second is formatted once for all the times within that second.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, seconds: float) -> str:
        if seconds < 0:
            return format_timestamp(seconds)
        # Rounded to the microsecond as datetime.fromtimestamp rounds (half
        # to even), so the figures are exactly those of format_timestamp.
        second = int(seconds)  # floor: not negative here
        micro = round((seconds - second) * 1e6)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        if second != self._second:
            moment = datetime.fromtimestamp(second, tz=UTC)
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S.")
            self._second = second
        return self._prefix + _MILLIS[micro // 1000]


def _check_token(token: str) -> str:
    if not token or " " in token or token.startswith(":") or has_control_characters(token):
        raise WireError(f"bad header token {token!r}")
    return token


def format_line(
    seconds: float,
    kind: Kind | str,
    source: str,
    text: str = "",
    args: tuple[str, ...] = (),
    stamp: Callable[[float], str] = format_timestamp,
) -> bytes:
    """
    Encode one server-to-client line, without its line ending.

    @param seconds: The server time of the event, POSIX seconds.
    @param kind: The event kind.
    @param source: The name the event comes from, or L{SERVER_SOURCE}.
    @param text: Free text; unsafe characters are replaced.
    @param args: Structured header tokens (no spaces, not starting with C{:}).
    @param stamp: Formats C{seconds} (L{format_timestamp}, or a
        L{Timestamps}'s C{format}).
    @raise WireError: If a header token is malformed (a programming error).
    """
    # A Kind is a str, its value, and a good token (tests/test_wire.py checks each).
    name = kind if isinstance(kind, Kind) else _check_token(kind)
    header = f"{stamp(seconds)} {name} {_check_token(source)}"
    for arg in args:
        header += " " + _check_token(arg)
    return f"{header} :{sanitize(text)}".encode()


def parse_line(line: bytes | str) -> ServerLine:
    """
    Parse one server-to-client line (a trailing C{\\r\\n} or C{\\n} is allowed).

    @raise WireError: If the line does not follow the format.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireError("line is not UTF-8") from e
    line = line.rstrip("\r\n")
    header, sep, text = line.partition(" :")
    if not sep:
        raise WireError("line has no text field")
    tokens = header.split(" ")
    if len(tokens) < 3 or not all(tokens):
        raise WireError("line header needs a timestamp, a kind and a source")
    stamp, kind, source, *args = tokens
    try:
        timestamp = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as e:
        raise WireError(f"bad timestamp {stamp!r}") from e
    return ServerLine(timestamp, kind, source, tuple(args), text)


def normalize_text(text: str) -> str:
    """
    Normalise user text to NFC so that equal-looking text compares equal.
    """
    return unicodedata.normalize("NFC", text)
