"""
Helpers for the client tests: a recording view and server lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatroom.wire import Kind, ServerLine, format_line

T0 = 1_790_000_000.0


def server_line(kind: Kind, source: str = "*", text: str = "", args: tuple[str, ...] = ()) -> bytes:
    """
    One server line as the daemon sends it, line ending included.
    """
    return format_line(T0, kind, source, text, args) + b"\r\n"


@dataclass
class RecordingView:
    """
    A L{chatroom.client.protocol.ChatView} that keeps what it is told, in order.
    """

    events: list[tuple[str, object]] = field(default_factory=list)

    def connecting(self, address: str) -> None:
        self.events.append(("connecting", address))

    def connected(self, address: str) -> None:
        self.events.append(("connected", address))

    def disconnected(self, reason: str) -> None:
        self.events.append(("disconnected", reason))

    def retrying(self, delay: float) -> None:
        self.events.append(("retrying", delay))

    def line_received(self, line: ServerLine) -> None:
        self.events.append(("line", line))

    def name_changed(self, name: str) -> None:
        self.events.append(("name", name))

    def notice(self, text: str) -> None:
        self.events.append(("notice", text))

    def of(self, kind: str) -> list[object]:
        """
        The values of every event of C{kind}, in order.
        """
        return [value for event, value in self.events if event == kind]

    @property
    def lines(self) -> list[ServerLine]:
        return [line for line in self.of("line") if isinstance(line, ServerLine)]
