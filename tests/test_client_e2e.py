"""
The client protocol driving end-to-end encryption, without Tk and without a
network: client protocols on StringTransports wired to the in-memory E2E room.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatroom.client.app import load_e2e, parse_args
from chatroom.client.protocol import MAX_SERVER_LINE_BYTES, ChatClientProtocol, Lock
from chatroom.client.render import Style, render, render_secure
from chatroom.client.session import ChatSession, E2ESettings
from chatroom.e2e.client import KeyChanged, Secure
from chatroom.e2e.envelope import E2E_MAX_LINE_BYTES, MAX_RECIPIENTS, MAX_TEXT_BYTES, EnvelopeKind, seal
from chatroom.e2e.keys import E2EError, Identity, Session
from chatroom.e2e.pins import PinStore
from chatroom.tls import create_local_ca
from chatroom.transports.line.protocol import LineFactory
from chatroom.wire import Kind, format_line, parse_line
from tests.client_support import POLICY, FakeEndpoint, RecordingView, server_line
from tests.e2e_helpers import make_e2e_room
from tests.helpers import FakeClient


def settings() -> E2ESettings:
    return E2ESettings(Identity.generate(), PinStore())


class Wired:
    """
    A client protocol with E2E, its bytes carried to and from a server-side
    connection of the E2E room by L{settle}.

    @ivar up: Everything the client sent; C{down} everything it received.
    """

    def __init__(
        self, factory: LineFactory, clock: Clock, port: int, nick: str, e2e: E2ESettings | None = None
    ) -> None:
        self.e2e = e2e or settings()
        self.server = FakeClient(factory, port)
        self.view = RecordingView()
        self.transport = StringTransport()
        self.protocol = ChatClientProtocol(
            self.view, clock, nick, lambda p: None, lambda p, reason: None, self.e2e.client(clock)
        )
        self.protocol.makeConnection(self.transport)
        self.up = bytearray()
        self.down = bytearray()
        # Lines from the server are held here (and may be altered) on their way.
        self.intercept: list[bytes] | None = None

    def move(self) -> bool:
        up = self.transport.value()
        self.transport.clear()
        self.up += up
        if up:
            self.server.protocol.dataReceived(up)
        down = self.server.transport.value()
        self.server.transport.clear()
        self.down += down
        if down and self.intercept is not None:
            self.intercept.append(down)
        elif down:
            self.protocol.dataReceived(down)
        return bool(up or down)

    def leave(self) -> None:
        self.server.disconnect()
        self.protocol.connectionLost()

    def secure(self) -> list[Secure]:
        return [m for m in self.view.of("secure") if isinstance(m, Secure)]

    def notices(self) -> list[str]:
        return [str(n) for n in self.view.of("notice")]


def settle(*parties: Wired) -> None:
    for _ in range(100):
        if not any([party.move() for party in parties]):
            return
    raise AssertionError("the parties never settled")


def room(*names: str) -> tuple[LineFactory, Clock, list[Wired]]:
    _, clock, factory = make_e2e_room()
    parties: list[Wired] = []
    for port, name in enumerate(names, start=43000):
        parties.append(Wired(factory, clock, port, name))
        settle(*parties)
    return factory, clock, parties


def test_two_clients_chat_end_to_end_and_the_server_sees_no_plaintext() -> None:
    _, _, (alice, bob) = room("alice", "bob")
    for party in (alice, bob):
        assert party.view.of("lock")[-1] is Lock.LOCKED
        assert party.protocol.lock is Lock.LOCKED
    # The key lines are not shown as they are: bob's arrival is announced
    # to alice with his fingerprint, unverified.
    assert not any(line.kind in (Kind.KEY, Kind.KEYS, Kind.CHALLENGE) for line in alice.view.lines)
    assert any(bob.e2e.identity.fingerprint in n and "unverified" in n for n in alice.notices())

    alice.protocol.send_typed("meet me at the\nold mill")
    settle(alice, bob)
    for party in (alice, bob):
        (message,) = party.secure()
        assert (message.sender, message.text) == ("alice", "meet me at the old mill")
    assert b"old mill" not in alice.up + bob.down
    assert alice.up.splitlines()[-2].startswith(b"/e2e send ")  # the key share
    assert alice.up.splitlines()[-1].startswith(b"/e2e group ")
    # No plain chat line was shown for it.
    assert not any(line.kind == Kind.MESSAGE for line in bob.view.lines)


def test_the_name_shown_is_the_signed_one_not_the_servers() -> None:
    _, _, (alice, bob, mallory) = room("alice", "bob", "mallory")
    bob.intercept = []
    mallory.protocol.send_typed("trust me")
    settle(alice, bob, mallory)
    # A server that puts alice's name on mallory's envelope.
    (held,) = bob.intercept
    assert b" e2e mallory " in held
    bob.protocol.dataReceived(held.replace(b" e2e mallory ", b" e2e alice "))
    (message,) = bob.secure()
    assert (message.sender, message.text) == ("mallory", "trust me")
    assert render_secure(message, "bob").text == "[E2E, unverified] <mallory> trust me"


def test_a_replayed_envelope_is_refused_with_a_notice() -> None:
    _, _, (alice, bob) = room("alice", "bob")
    bob.intercept = []
    alice.protocol.send_typed("once")
    settle(alice, bob)
    (held,) = bob.intercept
    bob.protocol.dataReceived(held)
    bob.protocol.dataReceived(held)
    assert [m.text for m in bob.secure()] == ["once"]
    assert "refused an end-to-end message (said to be from alice): a replay" in bob.notices()[-1]


def test_a_key_change_is_loud_and_holds_chat_until_trust() -> None:
    factory, clock, (alice, bob, carol) = room("alice", "bob", "carol")
    bob.leave()
    settle(alice, carol)
    # Bob comes back with a new identity key.
    bob_again = Wired(factory, clock, 43010, "bob")
    settle(alice, carol, bob_again)
    (change,) = carol.view.of("key changed")
    assert isinstance(change, KeyChanged) and change.name == "bob"
    assert change.new_fingerprint == bob_again.e2e.identity.fingerprint
    assert "CHANGED" in change.text

    sent = len(carol.up)
    carol.protocol.send_typed("are you really bob?")
    settle(alice, carol, bob_again)
    assert len(carol.up) == sent
    assert "not sent: the key of bob changed" in carol.notices()[-1]
    carol.protocol.send_typed("/trust bob")
    settle(alice, carol, bob_again)
    assert len(carol.up) == sent
    assert "trusted" in carol.notices()[-1]
    carol.protocol.send_typed("welcome back")
    settle(alice, carol, bob_again)
    assert [m.text for m in bob_again.secure()] == ["welcome back"]


def test_verify_is_answered_locally_and_marks_messages_verified() -> None:
    _, _, (alice, bob) = room("alice", "bob")
    sent = len(alice.up), len(bob.up)
    alice.protocol.send_typed("/verify bob")
    bob.protocol.send_typed("/verify alice")
    settle(alice, bob)
    assert (len(alice.up), len(bob.up)) == sent
    number = alice.notices()[-1].split(": ")[1].split(" (")[0]
    assert len(number) == 71 and number in bob.notices()[-1]

    bob.protocol.send_typed("before")
    settle(alice, bob)
    alice.protocol.send_typed("/verify bob ok")
    bob.protocol.send_typed("after")
    settle(alice, bob)
    shown = [render_secure(m, "alice").text for m in alice.secure()]
    assert shown == ["[E2E, unverified] <bob> before", "[E2E] <bob> after"]


def test_a_member_without_keys_unlocks_the_room_and_chat_goes_plain() -> None:
    factory, _, (alice,) = room("alice")
    assert alice.view.of("lock") == [Lock.LOCKED]
    plain = FakeClient(factory, 43020)
    plain.send("/nick dave")
    settle(alice)
    assert alice.view.of("lock") == [Lock.LOCKED, Lock.UNLOCKED]
    # The unlock is a line in the message area, naming who has no keys.
    unlocked = str(alice.view.of("warning")[0])
    assert "UNLOCKED" in unlocked and "guest2 has no keys" in unlocked
    alice.protocol.send_typed("hi dave")
    settle(alice)
    assert b"hi dave" not in alice.up
    assert "/plain" in alice.notices()[-1]
    alice.protocol.send_typed("/plain")
    alice.protocol.send_typed("hi dave")
    settle(alice)
    assert alice.up.splitlines()[-1] == b"hi dave"
    assert [(line.source, line.text) for line in plain.lines() if line.kind == Kind.MESSAGE] == [
        ("alice", "hi dave")
    ]
    # Plain chat is marked as such while E2E is on.
    (echo,) = [line for line in alice.view.lines if line.kind == Kind.MESSAGE]
    assert render(echo, "alice", e2e=True).text == "[plain] <alice> hi dave"
    plain.send("/quit")
    settle(alice)
    assert alice.view.of("lock")[-1] is Lock.LOCKED


def test_required_e2e_refuses_to_send_in_the_clear() -> None:
    _, clock, factory = make_e2e_room()
    FakeClient(factory, 43030).send("/nick dave")
    strict = E2ESettings(Identity.generate(), PinStore(), required=True)
    alice = Wired(factory, clock, 43031, "alice", strict)
    settle(alice)
    sent = len(alice.up)
    alice.protocol.send_typed("hello")
    assert len(alice.up) == sent
    assert "not sent" in alice.notices()[-1]


def test_a_full_size_envelope_line_is_read() -> None:
    view = RecordingView()
    clock = Clock()
    clock.advance(1_790_000_000)
    e2e = settings().client(clock)
    protocol = ChatClientProtocol(view, clock, None, lambda p: None, lambda p, reason: None, e2e)
    transport = StringTransport()
    protocol.makeConnection(transport)
    challenge = server_line(Kind.CHALLENGE, "*", "sign", ("room=chatroom", "nonce=AAAA"))
    sender = Session(Identity.generate(), issued_ms=int(clock.seconds() * 1000))
    protocol.dataReceived(
        server_line(Kind.WELCOME, "*", "hi", ("me",))
        + challenge
        + server_line(Kind.LIST, "*", "users 1-2 of 2", ("alice", "me"))
        + server_line(Kind.KEY, "alice", "key", (sender.bundle.encode(),))
    )
    others = [Session(Identity.generate()).bundle for _ in range(MAX_RECIPIENTS - 1)]
    envelope = seal(
        sender,
        kind=EnvelopeKind.MESSAGE,
        room="chatroom",
        sender="alice",
        text="é" * (MAX_TEXT_BYTES // 2),
        recipients=[*others, e2e.session.bundle],
        counter=1,
        timestamp_ms=int(clock.seconds() * 1000),
    )
    line = format_line(clock.seconds(), Kind.E2E, "alice", "", (envelope.encode(),)) + b"\r\n"
    assert E2E_MAX_LINE_BYTES - 1000 < len(line) <= MAX_SERVER_LINE_BYTES
    protocol.dataReceived(line)
    assert not transport.disconnecting
    (message,) = view.of("secure")
    assert isinstance(message, Secure) and message.text == "é" * (MAX_TEXT_BYTES // 2)


def test_each_connection_has_its_own_session_key_and_starts_registering() -> None:
    clock, endpoint, view = Clock(), FakeEndpoint(), RecordingView()
    e2e = settings()
    session = ChatSession(clock, endpoint, "localhost:6697", None, POLICY, e2e)
    session.start(view)
    assert view.events[0] == ("lock", Lock.UNLOCKED)
    first, transport = endpoint.accept()
    assert transport.value() == b"/e2e hello\n"
    assert first.e2e is not None and first.e2e.identity is e2e.identity
    # Pretend the room locked, then the connection drops: offline is unlocked.
    first.lock = Lock.LOCKED
    first.connectionLost()
    assert view.of("lock")[-1] is Lock.UNLOCKED
    clock.advance(10)
    second, _ = endpoint.accept()
    assert second.e2e is not None and second.e2e.pins is e2e.pins
    assert second.e2e.session.bundle != first.e2e.session.bundle


def test_without_e2e_lines_go_as_typed_and_envelopes_stay_unread() -> None:
    clock, endpoint, view = Clock(), FakeEndpoint(), RecordingView()
    session = ChatSession(clock, endpoint, "localhost:6697", None, POLICY)
    session.start(view)
    protocol, transport = endpoint.accept()
    assert protocol.e2e is None and transport.value() == b""
    session.send("/trust bob")
    assert transport.value() == b"/trust bob\n"
    protocol.dataReceived(server_line(Kind.E2E, "bob", "", ("AAAA",)))
    assert "cannot read" in render(view.lines[-1], "me").text
    assert view.of("lock") == []


def test_render_secure_forms() -> None:
    clock = 1_790_000_000.0
    received = parse_line(format_line(clock, Kind.INFO, "*", "x")).timestamp

    def message(
        kind: EnvelopeKind, sender: str, text: str, target: str = "", verified: bool = True
    ) -> Secure:
        return Secure(kind, sender, text, target, "f", verified, received, clock)

    cases = [
        (message(EnvelopeKind.MESSAGE, "bob", "hi"), "[E2E] <bob> hi", Style.MESSAGE),
        (message(EnvelopeKind.MESSAGE, "Me", "hi"), "[E2E] <Me> hi", Style.OWN),
        (
            message(EnvelopeKind.ACTION, "bob", "waves", verified=False),
            "[E2E, unverified] * bob waves",
            Style.ACTION,
        ),
        (message(EnvelopeKind.WHISPER, "bob", "psst", "me"), "[E2E] (whisper from bob) psst", Style.WHISPER),
        (message(EnvelopeKind.WHISPER, "me", "psst", "bob"), "[E2E] (whisper to bob) psst", Style.WHISPER),
    ]
    for secure, text, style in cases:
        rendered = render_secure(secure, "me")
        assert (rendered.text, rendered.style) == (text, style)


# The command line


@pytest.fixture
def ca_path(tmp_path: Path) -> Path:
    return create_local_ca(tmp_path / "daemon", datetime.datetime.now(datetime.UTC))


def test_identity_is_made_private_under_the_config_directory(
    ca_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    e2e = load_e2e(parse_args(["--ca", str(ca_path)]))
    assert e2e is not None and not e2e.required
    key = tmp_path / "config" / "chatroom" / "identity.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    # The same key next time.
    again = load_e2e(parse_args(["--ca", str(ca_path)]))
    assert again is not None and again.identity.public == e2e.identity.public
    assert again.pins.path == key.parent / "pins.json"


def test_identity_and_pins_paths_and_switches(ca_path: Path, tmp_path: Path) -> None:
    key, pins = tmp_path / "k" / "me.pem", tmp_path / "p.json"
    e2e = load_e2e(
        parse_args(["--ca", str(ca_path), "--identity", str(key), "--pins", str(pins), "--require-e2e"])
    )
    assert e2e is not None and e2e.required and e2e.pins.path == pins
    assert key.exists()
    assert load_e2e(parse_args(["--ca", str(ca_path), "--no-e2e"])) is None


def test_a_key_file_others_can_read_is_refused(ca_path: Path, tmp_path: Path) -> None:
    key = tmp_path / "me.pem"
    Identity.generate().save(key)
    os.chmod(key, 0o644)
    with pytest.raises(E2EError, match="open to others"):
        load_e2e(parse_args(["--ca", str(ca_path), "--identity", str(key)]))


def test_no_e2e_and_require_e2e_contradict(ca_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--ca", str(ca_path), "--no-e2e", "--require-e2e"])
    assert "contradict" in capsys.readouterr().err


def test_ask_passphrase_protects_the_identity_key(ca_path: Path, tmp_path: Path) -> None:
    key = tmp_path / "me.pem"
    argv = ["--ca", str(ca_path), "--identity", str(key), "--pins", str(tmp_path / "p.json")]
    prompts: list[str] = []

    def ask(answer: str) -> Callable[[str], str]:
        def answering(prompt: str) -> str:
            prompts.append(prompt)
            return answer

        return answering

    made = load_e2e(parse_args([*argv, "--ask-passphrase"]), ask("open sesame"))
    assert made is not None and prompts == [f"passphrase for {key}: "]
    assert b"ENCRYPTED" in key.read_bytes()
    with pytest.raises(E2EError, match="a passphrase is needed"):
        load_e2e(parse_args(argv))
    with pytest.raises(E2EError, match="wrong passphrase"):
        load_e2e(parse_args([*argv, "--ask-passphrase"]), ask("open barley"))
    with pytest.raises(E2EError, match="empty passphrase"):
        load_e2e(parse_args([*argv, "--ask-passphrase"]), ask(""))
    again = load_e2e(parse_args([*argv, "--ask-passphrase"]), ask("open sesame"))
    assert again is not None and again.identity.public == made.identity.public
