"""
The daemon's E2E commands: registration, the directory, forwarding, line limits.
"""

from __future__ import annotations

from chatroom.e2e.envelope import E2E_MAX_LINE_BYTES, SEND_PREFIX, EnvelopeKind, seal
from chatroom.e2e.keys import Identity, Session, decode_b64, encode_b64
from chatroom.transports.line.protocol import MAX_LINE_BYTES
from chatroom.wire import ServerLine
from tests.e2e_helpers import make_e2e_room
from tests.helpers import START, FakeClient, connect_named


def new_session(issued: float = START) -> Session:
    """
    A session key issued at C{issued} (the test room's clock, by default).
    """
    return Session(Identity.generate(), issued_ms=int(issued * 1000))


def only(lines: list[ServerLine]) -> ServerLine:
    assert len(lines) == 1, lines
    return lines[0]


def register(client: FakeClient, session: Session) -> ServerLine:
    client.lines()
    client.send("/e2e hello")
    challenge = only(client.lines())
    assert challenge.kind == "challenge" and challenge.fields["room"] == "chatroom"
    proof = session.prove("chatroom", decode_b64(challenge.fields["nonce"]))
    client.send(f"/e2e register {session.bundle.encode()} {encode_b64(proof)}")
    return only(client.lines())


def test_register_announces_the_key_to_members_that_asked_for_e2e() -> None:
    _, _, factory = make_e2e_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    bob.send("/e2e hello")
    bob.lines()
    carol.lines()
    session = new_session()
    key = register(alice, session)
    assert (key.kind, key.source, key.args) == ("key", "alice", (session.bundle.encode(),))
    assert session.bundle.fingerprint in key.text
    assert only(bob.lines()) == key
    # carol (openssl, say) never sent /e2e hello: no key lines for her.
    assert carol.lines() == []


def test_register_needs_a_fresh_challenge_signed_by_the_key() -> None:
    _, _, factory = make_e2e_room()
    alice, bob = connect_named(factory, "alice", "bob")
    session, other = new_session(), new_session()
    bundle = session.bundle.encode()
    alice.send(f"/e2e register {bundle} {encode_b64(b'x' * 64)}")
    assert "/e2e hello" in only(alice.lines()).text
    alice.send("/e2e hello")
    nonce = only(alice.lines()).fields["nonce"]
    # Signed by another key: refused, and the challenge is used up.
    wrong = other.prove("chatroom", decode_b64(nonce))
    alice.send(f"/e2e register {bundle} {encode_b64(wrong)}")
    assert "proof does not match" in only(alice.lines()).text
    right = session.prove("chatroom", decode_b64(nonce))
    alice.send(f"/e2e register {bundle} {encode_b64(right)}")
    assert "/e2e hello" in only(alice.lines()).text
    assert bob.lines() == []
    alice.send("/e2e hello")
    alice.lines()
    alice.send("/e2e register notbase64! xx")
    assert only(alice.lines()).text.startswith("bad key bundle")
    alice.send("/e2e register onlyone")
    assert "usage" in only(alice.lines()).text


def test_errors_for_bad_subcommands() -> None:
    _, _, factory = make_e2e_room()
    (alice,) = connect_named(factory, "alice")
    alice.send("/e2e")
    assert only(alice.lines()).kind == "error"
    alice.send("/e2e dance")
    assert "unknown /e2e subcommand dance" in only(alice.lines()).text


def test_keys_lists_the_directory_to_a_member() -> None:
    _, _, factory = make_e2e_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    sessions = {"alice": new_session(), "bob": new_session()}
    register(alice, sessions["alice"])
    register(bob, sessions["bob"])
    carol.lines()
    carol.send("/e2e keys")
    *keys, end = carol.lines()
    assert {(k.kind, k.source, k.args[0]) for k in keys} == {
        ("key", name, s.bundle.encode()) for name, s in sessions.items()
    }
    assert (end.kind, end.fields["count"]) == ("keys", "2")


def test_leaving_drops_the_key() -> None:
    _, _, factory = make_e2e_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    bob.send("/e2e hello")
    register(alice, new_session())
    bob.lines()
    carol.lines()
    alice.send("/quit")
    seen = [(line.kind, line.source) for line in bob.lines() if line.kind != "admin"]
    assert seen == [("leave", "alice"), ("keydrop", "alice")]
    # A member that never asked for E2E sees the leave line only.
    plain = [(line.kind, line.source) for line in carol.lines() if line.kind != "admin"]
    assert plain == [("leave", "alice")]
    bob.send("/e2e keys")
    assert only(bob.lines()).fields["count"] == "0"


def envelope_for(session: Session, recipients: list[Session], **fields: object) -> str:
    arguments: dict[str, object] = {
        "kind": EnvelopeKind.MESSAGE,
        "room": "chatroom",
        "sender": "alice",
        "text": "secret words",
        "recipients": [s.bundle for s in recipients],
        "counter": 1,
        "timestamp_ms": 1,
    }
    arguments.update(fields)
    return seal(session, **arguments).encode()  # type: ignore[arg-type]


def test_send_forwards_verbatim_to_the_listed_recipients_only() -> None:
    _, _, factory = make_e2e_room()
    alice, bob, carol = connect_named(factory, "alice", "bob", "carol")
    keys = [new_session() for _ in range(3)]
    for client, session in zip((alice, bob, carol), keys, strict=True):
        register(client, session)
    for client in (alice, bob, carol):
        client.lines()
    envelope = envelope_for(keys[0], [keys[0], keys[1]])
    alice.send(SEND_PREFIX + envelope)
    for client in (alice, bob):
        line = only(client.lines())
        assert (line.kind, line.source, line.args, line.text) == ("e2e", "alice", (envelope,), "")
    assert carol.lines() == []
    assert b"secret" not in carol.transport.value()


def test_send_refuses_what_it_must_not_forward() -> None:
    _, _, factory = make_e2e_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice_key, bob_key, stranger = (new_session() for _ in range(3))
    alice.send(SEND_PREFIX + envelope_for(alice_key, [bob_key]))
    assert "register" in only(alice.lines()).text
    register(alice, alice_key)
    register(bob, bob_key)
    alice.lines()
    bob.lines()
    cases = {
        "bad envelope": "AAAA",
        "for room elsewhere": envelope_for(alice_key, [bob_key], room="elsewhere"),
        "not from your registered keys": envelope_for(stranger, [bob_key]),
        "says it is from bob": envelope_for(alice_key, [bob_key], sender="bob"),
        "no recipient": envelope_for(alice_key, [stranger]),
    }
    for reason, envelope in cases.items():
        alice.send(SEND_PREFIX + envelope)
        line = only(alice.lines())
        assert line.kind == "error" and reason in line.text, (reason, line.text)
    assert bob.lines() == []


def test_only_e2e_lines_may_be_longer_than_the_plain_limit() -> None:
    _, _, factory = make_e2e_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice.send("x" * (MAX_LINE_BYTES + 1))
    error = only(alice.lines())
    assert error.kind == "error" and f"at most {MAX_LINE_BYTES} bytes" in error.text
    assert bob.lines() == []
    alice.send("x" * MAX_LINE_BYTES)
    assert only(bob.lines()).text == "x" * MAX_LINE_BYTES
    alice.lines()
    # A long /e2e line gets through the framing to the command.
    alice.send("/E2E send " + "A" * (E2E_MAX_LINE_BYTES - 10))
    assert "register your end-to-end keys first" in only(alice.lines()).text
    alice.send("/e2e send " + "A" * (E2E_MAX_LINE_BYTES - 9))
    assert f"{E2E_MAX_LINE_BYTES} for /e2e lines" in only(alice.lines()).text
    alice.send("/e2e send " + "A" * (E2E_MAX_LINE_BYTES - 9), end=b"\n")
    assert f"{E2E_MAX_LINE_BYTES} for /e2e lines" in only(alice.lines()).text
    alice.send("/e2e send " + "A" * E2E_MAX_LINE_BYTES)
    assert "at most" in only(alice.lines()).text
    alice.send("still here")
    assert only(bob.lines()).text == "still here"


def test_register_refuses_a_key_outside_its_signed_lifetime() -> None:
    _, _, factory = make_e2e_room()
    (alice,) = connect_named(factory, "alice")
    for issued in (START - 2 * 86400, START + 3600):
        key = register(alice, new_session(issued))
        assert key.kind == "error" and "outside its signed lifetime" in key.text


def test_send_refuses_an_envelope_padded_with_sessions_of_nobody() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice_key, bob_key = new_session(), new_session()
    register(alice, alice_key)
    register(bob, bob_key)
    for client in (alice, bob):
        client.lines()
    padding = [new_session().bundle for _ in range(9)]
    envelope = seal(
        alice_key,
        kind=EnvelopeKind.MESSAGE,
        room="chatroom",
        sender="alice",
        text="hi",
        recipients=[alice_key.bundle, bob_key.bundle, *padding],
        counter=1,
        timestamp_ms=int(clock.seconds() * 1000),
    )
    alice.send(SEND_PREFIX + envelope.encode())
    (line,) = alice.lines()
    assert line.kind == "error" and "listed sessions are no member's" in line.text
    assert bob.lines() == []
