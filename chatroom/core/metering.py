"""
The metering port: what sessions count, for whatever exports it.

The core only reports; L{chatroom.metrics} keeps the figures (Prometheus)
in the daemon. Every call comes from the reactor thread and must be cheap:
one per connection, line or delivery.
"""

from __future__ import annotations

from typing import Protocol


class Meter(Protocol):
    """
    Counts what happens to connections and members, by transport kind.
    """

    def connection_opened(self, transport: str) -> None: ...

    def connection_closed(self, transport: str) -> None: ...

    def member_joined(self, transport: str) -> None: ...

    def member_left(self, transport: str) -> None: ...

    def delivered(self, transport: str, size: int) -> None:
        """
        One event of C{size} bytes queued for one member.
        """

    def dropped(self, transport: str, reason: str) -> None:
        """
        A connection was dropped for C{reason} (the text its member got).
        """

    def flood_refused(self, transport: str) -> None:
        """
        A line was refused for flooding.
        """


class NoMeter:
    """
    A L{Meter} that counts nothing.
    """

    def connection_opened(self, transport: str) -> None:
        pass

    def connection_closed(self, transport: str) -> None:
        pass

    def member_joined(self, transport: str) -> None:
        pass

    def member_left(self, transport: str) -> None:
        pass

    def delivered(self, transport: str, size: int) -> None:
        pass

    def dropped(self, transport: str, reason: str) -> None:
        pass

    def flood_refused(self, transport: str) -> None:
        pass
