"""
How server lines read in the message area: the text and a style for each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from chatroom.e2e.client import CLOCK_FLAG_SECONDS, Secure
from chatroom.e2e.envelope import EnvelopeKind
from chatroom.wire import Kind, ServerLine, sanitize

# With E2E on, every chat line says whether it was end-to-end encrypted: a
# plain one could have been written by the server.
SECURE_MARK = "[E2E] "
UNVERIFIED_MARK = "[E2E, unverified] "
PLAIN_MARK = "[plain] "
_CHAT = (Kind.MESSAGE, Kind.WHISPER, Kind.ACTION)
# What the window shows above a run of history lines.
HISTORY_RULE = "──────── earlier messages ────────"


class Style(StrEnum):
    """
    The visual styles of the message area; the window gives each a look.
    """

    MESSAGE = "message"
    OWN = "own"
    WHISPER = "whisper"
    ACTION = "action"
    SERVER = "server"
    ERROR = "error"
    CLIENT = "client"
    WARNING = "warning"
    ALARM = "alarm"
    # Stored messages the server sends again: shown apart, greyed.
    HISTORY = "history"


@dataclass(frozen=True)
class Rendered:
    """
    One line of the message area, without its time.
    """

    text: str
    style: Style

    def __post_init__(self) -> None:
        # Whatever a server or a peer sent: no bidi control, invisible or
        # control character reaches the window (see chatroom.wire.sanitize).
        object.__setattr__(self, "text", sanitize(self.text))


def local_time(moment: datetime) -> str:
    """
    A server timestamp as the local wall-clock time, C{HH:MM:SS}.
    """
    return moment.astimezone().strftime("%H:%M:%S")


def display_time(moment: datetime, now: datetime) -> str:
    """
    A line's time as the window shows it: L{local_time} if C{moment} is
    today (local time, as of C{now}), else with the date before it,
    C{YYYY-MM-DD HH:MM:SS}.
    """
    local = moment.astimezone()
    if local.date() == now.astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def replayed_line(line: ServerLine) -> ServerLine | None:
    """
    The line a C{history} line replays: its original kind (the first arg),
    time, source, args (those after C{id=}) and text; L{None} if C{line}
    is not a well-formed history line.
    """
    if line.kind != Kind.HISTORY or len(line.args) < 2 or not line.args[1].startswith("id="):
        return None
    return ServerLine(line.timestamp, line.args[0], line.source, line.args[2:], line.text)


def history_rule() -> Rendered:
    """
    The rule the window shows above a run of history lines.
    """
    return Rendered(HISTORY_RULE, Style.HISTORY)


def render(line: ServerLine, me: str | None, e2e: bool = False) -> Rendered:
    """
    The message-area form of C{line}, for a client called C{me}; with
    C{e2e} on, chat is marked as sent in the clear (stored chat too).
    A history line reads as the line it replays, in the history style.
    """
    if line.kind in (Kind.HISTORY, Kind.HISTORY_END):
        original = replayed_line(line)
        if original is None or original.kind == Kind.HISTORY:
            return Rendered(f"-- {line.text}", Style.HISTORY)
        return Rendered(render(original, me, e2e).text, Style.HISTORY)
    rendered = _render(line, me)
    if e2e and line.kind in _CHAT:
        return Rendered(PLAIN_MARK + rendered.text, rendered.style)
    return rendered


def _render(line: ServerLine, me: str | None) -> Rendered:
    kind = line.kind
    if kind == Kind.MESSAGE:
        style = Style.OWN if line.source == me else Style.MESSAGE
        return Rendered(f"<{line.source}> {line.text}", style)
    if kind == Kind.WHISPER:
        target = line.args[0] if line.args else "?"
        if line.source == me:
            return Rendered(f"(whisper to {target}) {line.text}", Style.WHISPER)
        return Rendered(f"(whisper from {line.source}) {line.text}", Style.WHISPER)
    if kind == Kind.ACTION:
        return Rendered(f"* {line.text}", Style.ACTION)
    if kind == Kind.ERROR:
        return Rendered(f"! {line.text}", Style.ERROR)
    if kind in (Kind.E2E, Kind.GROUP):
        return Rendered(
            f"-- {line.source} sent an end-to-end encrypted message this client cannot read", Style.SERVER
        )
    if kind == Kind.LIST:
        return Rendered(f"-- {line.text}: {', '.join(line.args)}", Style.SERVER)
    return Rendered(f"-- {line.text}", Style.SERVER)


def render_secure(message: Secure, me: str | None) -> Rendered:
    """
    The message-area form of a verified, decrypted message: marked as
    end-to-end encrypted, and as unverified until the user compared safety
    numbers with its sender.
    """
    rendered = _render_secure(message, me)
    difference = message.clock_difference
    if abs(difference) > CLOCK_FLAG_SECONDS:
        # The time shown is the signed one; the server's is not authenticated.
        note = (
            f" (signed {abs(difference):.0f} s {'before' if difference > 0 else 'after'} the server's time)"
        )
        return Rendered(rendered.text + note, rendered.style)
    return rendered


def _render_secure(message: Secure, me: str | None) -> Rendered:
    mark = SECURE_MARK if message.verified else UNVERIFIED_MARK
    own = message.sender.casefold() == (me or "").casefold()
    if message.kind is EnvelopeKind.ACTION:
        return Rendered(f"{mark}* {message.display}", Style.ACTION)
    if message.kind is EnvelopeKind.WHISPER:
        if own:
            return Rendered(f"{mark}(whisper to {message.target}) {message.text}", Style.WHISPER)
        return Rendered(f"{mark}(whisper from {message.sender}) {message.text}", Style.WHISPER)
    return Rendered(f"{mark}<{message.sender}> {message.text}", Style.OWN if own else Style.MESSAGE)


def warning(text: str) -> Rendered:
    """
    The message-area form of a warning about what the server does (an
    unlocked room, recipients that differ from the room shown, gaps).
    """
    return Rendered(f"!! {text}", Style.WARNING)


def client_notice(text: str) -> Rendered:
    """
    The message-area form of something the client itself says.
    """
    return Rendered(f"** {text}", Style.CLIENT)
