"""
E2E clients wired to an in-memory E2E room, with no network.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from chatroom.core.room import Room
from chatroom.e2e.client import E2EClient, Event, Send
from chatroom.e2e.keys import Identity
from chatroom.e2e.pins import PinStore
from chatroom.features.moderation import ModerationSettings
from chatroom.transports.line.protocol import LineFactory
from tests.helpers import FakeClient, make_server


def make_e2e_room() -> tuple[Room, Clock, LineFactory]:
    """
    An E2E room on a fake clock; its first member is admin.
    """
    server = make_server(moderation=ModerationSettings(first_admin=True))
    return server.room, server.clock, server.factory


class User:
    """
    An L{E2EClient} whose L{Send} events go to a connection (L{write}) and
    whose other events are kept.

    @ivar sent: Every line sent.
    """

    def __init__(self, client: E2EClient) -> None:
        self.client = client
        self.events: list[Event] = []
        self.sent: list[str] = []

    def write(self, line: str) -> None:
        raise NotImplementedError

    def handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Send):
                self.sent.append(event.line)
                self.write(event.line)
            else:
                self.events.append(event)

    def type(self, text: str) -> None:
        self.handle(self.client.command(text))

    def take(self, kind: type | None = None) -> list[Event]:
        """
        The events of C{kind} (all, if None) since the last call; all are cleared.
        """
        events, self.events = self.events, []
        return [e for e in events if kind is None or isinstance(e, kind)]


class Party(User):
    """
    A L{User} on a L{FakeClient} connection.

    @ivar raw: Every byte the server sent this party.
    """

    def __init__(
        self,
        factory: LineFactory,
        clock: Clock,
        port: int,
        identity: Identity | None = None,
        pins: PinStore | None = None,
        e2e: bool = True,
    ) -> None:
        self.wire = FakeClient(factory, port)
        super().__init__(E2EClient(identity or Identity.generate(), pins or PinStore(), clock=clock.seconds))
        self.raw = bytearray()
        if e2e:
            self.handle(self.client.start())

    def write(self, line: str) -> None:
        self.wire.send(line)

    def pump(self) -> bool:
        data = self.wire.transport.value()
        self.wire.transport.clear()
        self.raw += data
        for raw in data.split(b"\r\n")[:-1]:
            self.handle(self.client.receive(raw))
        return bool(data)


def settle(*parties: Party) -> None:
    """
    Move lines until no party has anything left to read.
    """
    for _ in range(100):
        if not any([party.pump() for party in parties]):
            return
    raise AssertionError("the parties never settled")


def join(factory: LineFactory, clock: Clock, *names: str, others: tuple[Party, ...] = ()) -> list[Party]:
    """
    Connect one E2E party per name, named, registered, everything settled and cleared.
    """
    parties = [Party(factory, clock, 41000 + len(others) + i) for i, _ in enumerate(names)]
    everyone = (*others, *parties)
    for party, name in zip(parties, names, strict=True):
        party.type(f"/nick {name}")
        settle(*everyone)
    for party in everyone:
        party.take()
    return parties
