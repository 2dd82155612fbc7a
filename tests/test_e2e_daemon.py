"""
End to end over the real daemon: E2E clients on real TLS connections, and
the plaintext never reaches the server, its log, or a non-recipient.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from chatroom.e2e.client import E2EClient, KeyChanged, Secure
from chatroom.e2e.keys import Identity
from chatroom.e2e.pins import PinStore
from tests.daemon import Daemon, LineClient
from tests.e2e_helpers import User


class LiveParty(User):
    """
    An E2E client on a real TLS connection, driven line by line.
    """

    def __init__(self, daemon: Daemon, name: str) -> None:
        self.connection: LineClient = daemon.connect()
        super().__init__(E2EClient(Identity.generate(), PinStore()))
        self.received = bytearray()
        self.handle(self.client.start())
        self.type(f"/nick {name}")

    def write(self, line: str) -> None:
        self.connection.send(line)

    def until(self, done: Callable[[], bool]) -> None:
        """
        Read and handle server lines until C{done()} (each read has a deadline).
        """
        while not done():
            line = self.connection.read_line()
            self.received += line + b"\n"
            self.handle(self.client.receive(line))

    def got(self, text: str) -> Callable[[], bool]:
        return lambda: any(isinstance(e, Secure) and e.text == text for e in self.events)


def everyone_secure(parties: list[LiveParty]) -> None:
    # Each one registers (which needs its own lines read), then learns the others.
    for party in parties:
        party.until(lambda p=party: p.client.registered)  # type: ignore[misc]
    for party in parties:
        party.until(lambda p=party: p.client.secure and len(p.client.directory) == len(parties))  # type: ignore[misc]


def test_plaintext_never_reaches_the_server_or_a_non_recipient(daemon: Daemon) -> None:
    secret = f"attack at dawn {os.urandom(8).hex()}"
    whisper = f"only for bob {os.urandom(8).hex()}"
    alice = LiveParty(daemon, "alice")
    bob = LiveParty(daemon, "bob")
    carol = LiveParty(daemon, "carol")
    parties = [alice, bob, carol]
    everyone_secure(parties)

    alice.type(secret)
    for party in parties:
        party.until(party.got(secret))
        (message,) = [e for e in party.events if isinstance(e, Secure) and e.text == secret]
        assert message.sender == "alice"

    alice.type(f"/whisper bob {whisper}")
    bob.until(bob.got(whisper))
    # Carol's next line from alice comes after the whisper, which she never gets.
    alice.type("marker")
    carol.until(carol.got("marker"))
    assert not carol.got(whisper)()

    daemon.stop()
    log = bytes(daemon.output)
    assert b"alice" in log  # the log is the real one, with the joins in it
    for plaintext in (secret, whisper):
        raw = plaintext.encode()
        assert raw not in log
        assert all(plaintext not in line for party in parties for line in party.sent)
        assert all(raw not in party.received for party in parties)


def test_a_third_client_sees_the_key_change_when_one_restarts(daemon: Daemon) -> None:
    alice = LiveParty(daemon, "alice")
    bob = LiveParty(daemon, "bob")
    carol = LiveParty(daemon, "carol")
    everyone_secure([alice, bob, carol])
    bob.connection.close()
    carol.until(lambda: "bob" not in carol.client.directory)
    bob_again = LiveParty(daemon, "bob")
    bob_again.until(lambda: bob_again.client.registered)

    def warned() -> bool:
        return any(isinstance(e, KeyChanged) and e.name == "bob" for e in carol.events)

    carol.until(warned)
    sent = len(carol.sent)
    carol.type("hello bob?")
    assert len(carol.sent) == sent
    carol.type("/trust bob")
    carol.type("hello again bob")
    bob_again.until(bob_again.got("hello again bob"))
