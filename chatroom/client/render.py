"""
How server lines read in the message area: the text and a style for each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from chatroom.wire import Kind, ServerLine


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


@dataclass(frozen=True)
class Rendered:
    """
    One line of the message area, without its time.
    """

    text: str
    style: Style


def local_time(moment: datetime) -> str:
    """
    A server timestamp as the local wall-clock time, C{HH:MM:SS}.
    """
    return moment.astimezone().strftime("%H:%M:%S")


def render(line: ServerLine, me: str | None) -> Rendered:
    """
    The message-area form of C{line}, for a client called C{me}.
    """
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
    if kind == Kind.E2E:
        return Rendered(
            f"-- {line.source} sent an end-to-end encrypted message this client cannot read", Style.SERVER
        )
    if kind == Kind.LIST:
        return Rendered(f"-- {line.text}: {', '.join(line.args)}", Style.SERVER)
    return Rendered(f"-- {line.text}", Style.SERVER)


def client_notice(text: str) -> Rendered:
    """
    The message-area form of something the client itself says.
    """
    return Rendered(f"** {text}", Style.CLIENT)
