"""
Group sessions: the ratchet, rotation, newcomers, departed members, replay
and gaps, the member set check, rooms past one envelope's recipients, and
the daemon's forwarding of group lines.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

import pytest
import vodozemac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chatroom.e2e import group as group_module
from chatroom.e2e.client import MEMBERSHIP_GRACE_SECONDS, Alert, Event, Rejected, Secure
from chatroom.e2e.envelope import (
    E2E_MAX_LINE_BYTES,
    MAX_RECIPIENTS,
    SEND_PREFIX,
    Envelope,
    EnvelopeKind,
    seal,
)
from chatroom.e2e.group import (
    GROUP_PREFIX,
    GROUP_ROTATE_AFTER_MESSAGES,
    GROUP_ROTATE_AFTER_MS,
    GroupLine,
    GroupPlain,
    InboundGroup,
    OutboundGroup,
    member_set_hash,
    parse_share,
    share_batch,
)
from chatroom.e2e.keys import E2EError, Session, decode_b64, encode_b64
from chatroom.wire import Kind, format_line
from tests.e2e_helpers import Party, join, make_e2e_room, settle
from tests.helpers import START, connect_named
from tests.test_e2e_attacks import NONCE, ROOM, HostileServer, Member, Outsider
from tests.test_e2e_server import new_session, only, register

SENDER_KEY = bytes(range(32))
SENDER_SESSION = bytes(16)


def plain(text: str, **fields: object) -> GroupPlain:
    values: dict[str, object] = {
        "kind": EnvelopeKind.MESSAGE,
        "room": "chatroom",
        "sender": "alice",
        "timestamp_ms": 1_000,
        "members": 2,
        "member_hash": member_set_hash([b"a" * 16, b"b" * 16]),
        "text": text,
    }
    values.update(fields)
    return GroupPlain(**values)  # type: ignore[arg-type]


def pair() -> tuple[OutboundGroup, InboundGroup]:
    outbound = OutboundGroup(SENDER_SESSION, 0)
    return outbound, InboundGroup(SENDER_KEY, SENDER_SESSION, outbound.session_key())


# The ratchet.


def test_a_group_message_round_trips_with_every_field() -> None:
    outbound, inbound = pair()
    assert inbound.group_id == outbound.group_id and len(outbound.group_id) == 32
    for index, text in enumerate(["one", "two", "ünïcödé " * 50]):
        message = plain(text, timestamp_ms=index)
        assert inbound.decrypt(outbound.encrypt(message)) == (message, index, 0)
    assert outbound.message_index == inbound.next_index == 3


def test_a_decrypted_message_cannot_be_decrypted_again_from_the_receivers_state() -> None:
    outbound, inbound = pair()
    first = outbound.encrypt(plain("first"))
    inbound.decrypt(first)
    # Forward secrecy within the session: the receiver kept only the
    # ratchet after "first"; even a copy of that state cannot open it.
    assert inbound.session.first_known_index == 1
    with pytest.raises(E2EError, match="a replay"):
        inbound.decrypt(first)
    stolen = group_module.vodozemac.InboundGroupSession.import_session(inbound.session.export_at(1))
    with pytest.raises(ValueError):
        stolen.decrypt(group_module.vodozemac.MegolmMessage.from_bytes(first))


def test_a_skipped_index_is_a_gap_and_an_older_one_a_replay() -> None:
    outbound, inbound = pair()
    messages = [outbound.encrypt(plain(str(i))) for i in range(4)]
    assert inbound.decrypt(messages[0])[2] == 0
    assert inbound.decrypt(messages[3])[1:] == (3, 2)
    with pytest.raises(E2EError, match="out of order"):
        inbound.decrypt(messages[2])


def test_a_changed_byte_or_another_sessions_message_is_refused() -> None:
    outbound, inbound = pair()
    message = bytearray(outbound.encrypt(plain("pay 10")))
    for position in (10, len(message) // 2, len(message) - 70, len(message) - 1):
        changed = bytearray(message)
        changed[position] ^= 1
        with pytest.raises(E2EError):
            inbound.decrypt(bytes(changed))
    other = OutboundGroup(SENDER_SESSION, 0)
    with pytest.raises(E2EError, match="does not decrypt"):
        inbound.decrypt(other.encrypt(plain("forged")))
    assert inbound.decrypt(bytes(message))[0].text == "pay 10"


def test_a_session_key_that_is_not_one_is_refused() -> None:
    outbound, _ = pair()
    key = bytearray(decode_b64(outbound.session_key().replace("+", "-").replace("/", "_")))
    key[-1] ^= 1  # the session key's own signature
    for text in ("", "AAAA", encode_b64(bytes(key))):
        with pytest.raises(E2EError):
            InboundGroup(SENDER_KEY, SENDER_SESSION, text)


def test_a_newcomer_gets_the_state_from_now_on() -> None:
    outbound, _ = pair()
    early = outbound.encrypt(plain("early"))
    newcomer = InboundGroup(SENDER_KEY, SENDER_SESSION, outbound.session_key())
    with pytest.raises(E2EError):
        newcomer.decrypt(early)
    assert newcomer.decrypt(outbound.encrypt(plain("later")))[0].text == "later"


def test_the_member_set_hash_ignores_order_and_sees_any_change() -> None:
    ids = [bytes([i]) * 16 for i in range(5)]
    assert member_set_hash(ids) == member_set_hash(reversed(ids))
    assert member_set_hash(ids) != member_set_hash(ids[:4])
    assert len(member_set_hash(ids)) == 16


def test_group_lines_and_plaintexts_are_parsed_strictly() -> None:
    line = GroupLine("alice", SENDER_KEY, SENDER_SESSION, bytes(32), b"megolm")
    assert GroupLine.decode(line.encode()) == line
    encoded = plain("hi").encode()
    assert GroupPlain.decode(encoded) == plain("hi")
    for bad in ("", encode_b64(b"\x02" + line.encode().encode()), line.encode()[:20], "not base64!"):
        with pytest.raises(E2EError):
            GroupLine.decode(bad)
    too_long = dataclasses.replace(line, message=bytes(group_module.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(E2EError, match="length"):
        GroupLine.decode(too_long.encode())
    for bad_plain in (b"", b"\x03" + encoded[1:], b"\x09" + encoded[1:], encoded[:12], encoded + b"\xff"):
        with pytest.raises(E2EError):
            GroupPlain.decode(bad_plain)
    with pytest.raises(E2EError, match="at most"):
        plain("x" * 4097).encode()


def test_key_shares_go_in_batches_of_64_to_465_in_about_12_lines() -> None:
    assert [share_batch(n) for n in (1, 64, 65, 768, 769, 5000, 5580, 10_000)] == [
        64,
        64,
        64,
        64,
        65,
        417,
        465,
        465,
    ]


def test_an_outbound_session_wears_out_after_its_messages_or_its_time() -> None:
    outbound = OutboundGroup(SENDER_SESSION, 0)
    assert not outbound.worn_out(GROUP_ROTATE_AFTER_MS - 1)
    assert outbound.worn_out(GROUP_ROTATE_AFTER_MS)
    for _ in range(GROUP_ROTATE_AFTER_MESSAGES - 1):
        outbound.encrypt(plain("x"))
    assert not outbound.worn_out(0)
    outbound.encrypt(plain("x"))
    assert outbound.worn_out(0)


# Clients in an honest in-memory room.


def sent_since(party: Party, start: int) -> tuple[list[Envelope], list[str]]:
    """
    The key shares and the group lines C{party} sent from C{start} on.
    """
    lines = party.sent[start:]
    shares = [Envelope.decode(s.removeprefix(SEND_PREFIX)) for s in lines if s.startswith(SEND_PREFIX)]
    return shares, [s.removeprefix(GROUP_PREFIX) for s in lines if s.startswith(GROUP_PREFIX)]


def say(party: Party, text: str) -> tuple[list[Envelope], list[str]]:
    start = len(party.sent)
    party.type(text)
    return sent_since(party, start)


def hear_group(party: Party, sender: str, line: str) -> list[Event]:
    """
    A group line as a hostile server would hand it to C{party}.
    """
    return party.client.receive(format_line(party.client.clock(), Kind.GROUP, sender, "", (line,)))


def readers(shares: list[Envelope]) -> set[bytes]:
    assert all(s.kind is EnvelopeKind.KEY_SHARE for s in shares)
    return set().union(*(s.recipient_ids() for s in shares))


def sid(party: Party) -> bytes:
    return party.client.session.session_id


def test_a_session_is_shared_once_and_messages_are_one_line() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, carol = join(factory, clock, "alice", "bob", "carol")
    shares, lines = say(alice, "one")
    assert readers(shares) == {sid(bob), sid(carol)} and len(lines) == 1
    settle(alice, bob, carol)
    for party in (alice, bob, carol):
        assert [m.text for m in party.take(Secure)] == ["one"]  # type: ignore[attr-defined]
    shares, lines = say(alice, "two")
    assert shares == [] and len(lines) == 1
    settle(alice, bob, carol)
    assert [m.text for m in carol.take(Secure)] == ["two"]  # type: ignore[attr-defined]
    assert not any(isinstance(e, Alert | Rejected) for p in (alice, bob, carol) for e in p.take())


@pytest.mark.parametrize("command", ["/quit", "/kick carol", "/ban carol 1h"])
def test_a_departed_member_cannot_read_what_follows(command: str) -> None:
    _, clock, factory = make_e2e_room()
    alice, bob, carol = join(factory, clock, "alice", "bob", "carol")
    say(alice, "before")
    settle(alice, bob, carol)
    assert [m.text for m in carol.take(Secure)] == ["before"]  # type: ignore[attr-defined]
    (carol if command == "/quit" else alice).type(command)
    settle(alice, bob, carol)
    for party in (alice, bob):
        party.take()
    shares, (line,) = say(alice, "after")
    # A new session, shared with bob only.
    assert readers(shares) == {sid(bob)}
    settle(alice, bob)
    assert [m.text for m in bob.take(Secure)] == ["after"]  # type: ignore[attr-defined]
    # Carol's client, still holding the old session, is handed the line
    # (past the grace a newcomer has for messages sent before its key was known).
    carol.client.directory[alice.client.name.casefold()] = alice.client.directory["alice"]
    clock.advance(MEMBERSHIP_GRACE_SECONDS + 1)
    events = hear_group(carol, "alice", line)
    assert not any(isinstance(e, Secure) for e in events)
    assert any(isinstance(e, Rejected) and "did not share" in e.reason for e in events), events


def test_a_newcomer_cannot_read_earlier_messages() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    _, (early,) = say(alice, "early")
    settle(alice, bob)
    (dave,) = join(factory, clock, "dave", others=(alice, bob))
    shares, _ = say(alice, "later")
    assert readers(shares) == {sid(dave)}
    settle(alice, bob, dave)
    assert [m.text for m in dave.take(Secure)] == ["later"]  # type: ignore[attr-defined]
    clock.advance(MEMBERSHIP_GRACE_SECONDS + 1)
    events = hear_group(dave, "alice", early)
    assert not any(isinstance(e, Secure) for e in events)
    assert any(isinstance(e, Rejected) for e in events)


def test_a_session_is_replaced_after_its_messages_and_after_its_time() -> None:
    _, clock, factory = make_e2e_room()
    alice, bob = join(factory, clock, "alice", "bob")
    for n in range(GROUP_ROTATE_AFTER_MESSAGES):
        shares, _ = say(alice, f"m{n}")
        assert bool(shares) == (n == 0)
        settle(alice, bob)
        clock.advance(1)  # within the flood limit
    shares, _ = say(alice, "the next one")
    assert readers(shares) == {sid(bob)}
    settle(alice, bob)
    clock.advance(GROUP_ROTATE_AFTER_MS / 1000)
    shares, _ = say(alice, "an hour later")
    assert readers(shares) == {sid(bob)}
    settle(alice, bob)
    events = bob.take()
    texts = [m.text for m in events if isinstance(m, Secure)]
    assert not any(isinstance(e, Alert | Rejected) for e in events)
    assert len(texts) == GROUP_ROTATE_AFTER_MESSAGES + 2 and texts[-1] == "an hour later"


# A hostile server.


def test_a_replayed_or_withheld_group_message_is_reported() -> None:
    server = HostileServer()
    alice, bob = server.room("alice", "bob")
    alice.type("one")
    first = alice.outbox()
    server.relay(alice, bob, lines=first)
    alice.type("two")
    alice.outbox()  # withheld from bob
    alice.type("three")
    server.relay(alice, bob)
    server.relay(alice, bob, lines=first[-1:])  # "one" again
    events = bob.take()
    assert [e.text for e in events if isinstance(e, Secure)] == ["one", "three"]
    assert any(
        "1 earlier room messages from alice did not reach you" in e.text
        for e in events
        if isinstance(e, Alert)
    )
    assert any(isinstance(e, Rejected) and "a replay" in e.reason for e in events)


def test_a_group_message_without_its_key_share_is_refused() -> None:
    server = HostileServer()
    alice, bob = server.room("alice", "bob")
    alice.type("you never got the key")
    (line,) = [s for s in alice.outbox() if s.startswith(GROUP_PREFIX)]
    events = bob.hear(Kind.GROUP, "alice", "", (line.removeprefix(GROUP_PREFIX),))
    assert [type(e) for e in events] == [Rejected]


def test_a_group_message_from_a_session_not_listed_is_refused() -> None:
    server = HostileServer()
    alice, bob = server.room("alice", "bob")
    # A session of bob's identity that the server kept: it shares a group
    # session with alice and writes in it.
    old = Outsider(server.clock, bob.identity)
    outbound = OutboundGroup(old.bundle.session_id, 0)
    share = old.seal("bob", [alice.bundle], outbound.session_key(), kind=EnvelopeKind.KEY_SHARE)
    alice.hear(Kind.E2E, "bob", "", (share,))
    now_ms = int(server.clock.seconds() * 1000)
    message = outbound.encrypt(plain("sign the contract", sender="bob", timestamp_ms=now_ms))
    line = GroupLine("bob", bob.identity.public, old.bundle.session_id, outbound.group_id, message)
    events = alice.hear(Kind.GROUP, "bob", "", (line.encode(),))
    assert not any(isinstance(e, Secure) for e in events)
    assert any(isinstance(e, Rejected) and "not the one listed" in e.reason for e in events)


def test_a_renamed_sender_or_another_room_is_refused() -> None:
    server = HostileServer()
    alice, bob, _carol = server.room("alice", "bob", "carol")
    alice.type("hello")
    share, line = alice.outbox()
    server.relay(alice, bob, lines=[share])
    # The server puts carol's name on alice's line.
    decoded = GroupLine.decode(line.removeprefix(GROUP_PREFIX))
    forged = dataclasses.replace(decoded, sender="carol").encode()
    events = bob.hear(Kind.GROUP, "carol", "", (forged,))
    assert [type(e) for e in events] == [Rejected]
    server.relay(alice, bob, lines=[line])
    assert [e.text for e in bob.take() if isinstance(e, Secure)] == ["hello"]


def test_a_reader_hidden_from_the_receiver_is_reported_but_a_leave_on_its_way_is_not() -> None:
    server = HostileServer()
    alice, bob, carol = server.room("alice", "bob", "carol")
    # An honest leave: bob already saw carol go when alice's message, sent
    # before she saw it, arrives.
    alice.type("carol, are you there?")
    bob.hear(Kind.LEAVE, "carol", "carol left")
    server.relay(alice, bob)
    assert [type(e) for e in bob.take() if isinstance(e, Alert)] == []
    # A ghost only alice is shown.
    ghost = Outsider(server.clock)
    alice.hear(Kind.LEAVE, "carol", "carol left")
    alice.hear(Kind.JOIN, "guest4711", "guest4711 joined")
    alice.hear(Kind.KEY, "guest4711", "key", (ghost.bundle.encode(),))
    server.clock.advance(60)
    alice.type("just us two")
    server.relay(alice, bob)
    events = bob.take()
    assert [e.text for e in events if isinstance(e, Secure)] == ["just us two"]
    (alert,) = [e.text for e in events if isinstance(e, Alert)]
    assert "shared with 3 sessions" in alert and "the 2 you see" in alert and "hides from you" in alert
    del carol


def test_a_room_larger_than_one_envelope_is_locked_and_shared_in_batches() -> None:
    server = HostileServer()
    alice, bob = server.room("alice", "bob")
    others = [Outsider(server.clock) for _ in range(MAX_RECIPIENTS + 40)]
    names = ["alice", "bob", *(f"m{i}" for i in range(len(others)))]
    alice.hear(Kind.LIST, "*", f"users 1-{len(names)} of {len(names)}", tuple(names))
    for i, other in enumerate(others):
        alice.hear(Kind.KEY, f"m{i}", "key", (other.bundle.encode(),))
    assert alice.client.secure
    alice.take()
    alice.type("hello everyone")
    *shares, line = alice.outbox()
    envelopes = [Envelope.decode(s.removeprefix(SEND_PREFIX)) for s in shares]
    # In batches of share_batch (64 here), within the line limit.
    assert [len(e.recipients) for e in envelopes] == [64] * 7 + [len(others) + 1 - 7 * 64]
    assert all(len(s) <= E2E_MAX_LINE_BYTES for s in shares)
    assert readers(envelopes) == {bob.bundle.session_id, *(o.bundle.session_id for o in others)}
    assert len(line) < 1024
    (for_bob,) = [
        s for s, e in zip(shares, envelopes, strict=True) if bob.bundle.session_id in e.recipient_ids()
    ]
    server.relay(alice, bob, lines=[for_bob, line])
    assert [e.text for e in bob.take() if isinstance(e, Secure)] == ["hello everyone"]


# The daemon.


def group_line(session: Session, sender: str = "alice") -> str:
    outbound = OutboundGroup(session.session_id, 0)
    message = outbound.encrypt(plain("secret words", sender=sender))
    return GroupLine(sender, session.identity.public, session.session_id, outbound.group_id, message).encode()


def test_the_daemon_forwards_a_group_line_to_every_member_with_keys() -> None:
    _, _, factory = make_e2e_room()
    alice, bob, carol, dave = connect_named(factory, "alice", "bob", "carol", "dave")
    keys = [new_session(START) for _ in range(3)]
    for client, session in zip((alice, bob, carol), keys, strict=True):
        register(client, session)
    for client in (alice, bob, carol, dave):
        client.lines()
    line = group_line(keys[0])
    alice.send(GROUP_PREFIX + line)
    for client in (alice, bob, carol):
        got = only(client.lines())
        assert (got.kind, got.source, got.args, got.text) == ("e2e-group", "alice", (line,), "")
    # Dave registered no keys: a group line is nothing he could read.
    assert dave.lines() == []


def test_the_daemon_refuses_group_lines_it_must_not_forward() -> None:
    _, _, factory = make_e2e_room()
    alice, bob = connect_named(factory, "alice", "bob")
    alice_key, bob_key, stranger = (new_session(START) for _ in range(3))
    alice.send(GROUP_PREFIX + group_line(alice_key))
    assert "register" in only(alice.lines()).text
    register(alice, alice_key)
    register(bob, bob_key)
    alice.lines()
    bob.lines()
    cases = {
        "bad group message": "AAAA",
        "not from your registered keys": group_line(stranger),
        "says it is from bob": group_line(alice_key, sender="bob"),
    }
    for reason, text in cases.items():
        alice.send(GROUP_PREFIX + text)
        got = only(alice.lines())
        assert got.kind == "error" and reason in got.text, (reason, got.text)
    assert bob.lines() == []


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("sender", "alice", "signed as"), ("room", "elsewhere", "another room"), ("timestamp_ms", 0, "stale")],
)
def test_what_a_member_signs_inside_a_group_message_is_checked(
    field: str, value: object, reason: str
) -> None:
    server = HostileServer()
    alice, bob = server.room("alice", "bob")
    now_ms = int(server.clock.seconds() * 1000)
    # Bob's own client, misbehaving: a group session of its listed session.
    outbound = OutboundGroup(bob.bundle.session_id, now_ms)
    share = seal(
        bob.client.session,
        kind=EnvelopeKind.KEY_SHARE,
        room="chatroom",
        sender="bob",
        text=outbound.session_key(),
        recipients=[alice.bundle],
        counter=1,
        timestamp_ms=now_ms,
    )
    assert alice.hear(Kind.E2E, "bob", "", (share.encode(),)) == []
    fields: dict[str, object] = {"sender": "bob", "timestamp_ms": now_ms, field: value}
    message = outbound.encrypt(plain("i am alice", **fields))
    line = GroupLine("bob", bob.identity.public, bob.bundle.session_id, outbound.group_id, message)
    events = alice.hear(Kind.GROUP, "bob", "", (line.encode(),))
    assert not any(isinstance(e, Secure) for e in events)
    assert any(isinstance(e, Rejected) and reason in e.reason for e in events), events


def test_a_key_that_expires_without_a_line_unlocks_the_room() -> None:
    server = HostileServer()
    alice, bob = server.room("alice", "bob")
    alice.type("while the keys are good")
    assert any(line.startswith(GROUP_PREFIX) for line in alice.outbox())
    # No line arrives for a day: the keys' signed lifetimes end anyway.
    server.clock.advance(25 * 3600)
    assert not alice.client.secure and "bob" in alice.client.missing()
    alice.type("a day later")
    assert not any(line.startswith(GROUP_PREFIX) for line in alice.outbox())
    del bob


# Known answers: the Megolm ratchet as its specification describes it
# (matrix.org's megolm.md), computed here with HMAC-SHA-256 alone, against
# vodozemac's; and the primitive it rests on, with RFC 4231's vectors.


def megolm_advance(parts: list[bytes], index: int) -> tuple[list[bytes], int]:
    """
    One step of the Megolm ratchet from C{index}: the parts from the
    highest one whose counter byte rolls over on are rehashed from it.
    """
    index += 1
    part = next((h for h in range(4) if index % (1 << (8 * (3 - h))) == 0), 3)
    source = parts[part]
    parts = list(parts)
    for j in range(3, part - 1, -1):
        parts[j] = hmac.new(source, bytes([j]), hashlib.sha256).digest()
    return parts, index


def exported(index: int, ratchet: bytes, public: bytes) -> str:
    # vodozemac's exported session key: version 1, index, ratchet, signing key.
    return base64.b64encode(bytes([1]) + index.to_bytes(4, "big") + ratchet + public).decode().rstrip("=")


def raw(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def test_the_ratchet_advances_as_megolm_specifies() -> None:
    public = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key().public_bytes_raw()
    ratchet = bytes(range(128))
    inbound = vodozemac.InboundGroupSession.import_session(
        vodozemac.ExportedSessionKey(exported(0, ratchet, public))
    )
    first = raw(inbound.export_at(1).to_base64())[5:133]
    # A fixed answer: parts 0 to 2 stay, part 3 is HMAC-SHA-256(R3, 0x03).
    assert first == ratchet[:96] + bytes.fromhex(
        "550744e334115fa1fd73d3b71176d4157288631cb37045a49fd62cd0608c8f5d"
    )
    parts, index = [ratchet[i : i + 32] for i in range(0, 128, 32)], 0
    for target in (1, 255, 256, 257, 65535, 65536, 65537):
        while index < target:
            parts, index = megolm_advance(parts, index)
        assert raw(inbound.export_at(target).to_base64())[5:133] == b"".join(parts), target


@pytest.mark.parametrize(
    ("key", "data", "digest"),
    [
        (
            bytes([0x0B] * 20),
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            bytes([0xAA] * 131),
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ],
)
def test_hmac_sha256_gives_rfc_4231s_answers(key: bytes, data: bytes, digest: str) -> None:
    assert hmac.new(key, data, hashlib.sha256).hexdigest() == digest


def test_a_message_sent_before_the_sender_knew_a_newcomer_is_dropped_quietly_at_first() -> None:
    server = HostileServer()
    alice, bob = server.room("alice", "bob")
    alice.type("before dave")
    (line,) = [s.removeprefix(GROUP_PREFIX) for s in alice.outbox() if s.startswith(GROUP_PREFIX)]
    dave = Member(server, "dave")
    dave.hear(Kind.WELCOME, "*", "Welcome, you are dave", ("dave",))
    dave.hear(Kind.LIST, "*", "users 1-3 of 3", ("alice", "bob", "dave"))
    dave.hear(Kind.CHALLENGE, "*", "sign", (f"room={ROOM}", f"nonce={NONCE}"))
    for member in (alice, bob, dave):
        dave.hear(Kind.KEY, member.name, "key", (member.bundle.encode(),))
    dave.take()
    # Just registered: alice cannot have shared with dave yet.
    assert dave.hear(Kind.GROUP, "alice", "", (line,)) == []
    # Later, a message without its key share is the server withholding it.
    server.clock.advance(31)
    events = dave.hear(Kind.GROUP, "alice", "", (line,))
    assert [type(e) for e in events] == [Rejected]
    del bob


def test_the_last_messages_before_a_rotation_that_did_not_arrive_are_reported() -> None:
    server = HostileServer()
    alice, bob, carol = server.room("alice", "bob", "carol")
    alice.type("one")
    server.relay(alice, bob)
    alice.type("two")
    alice.type("three")
    alice.outbox()  # both withheld from bob
    # Carol leaves: alice's next message starts a new group session.
    alice.hear(Kind.LEAVE, "carol", "carol left")
    bob.hear(Kind.LEAVE, "carol", "carol left")
    alice.type("four")
    server.relay(alice, bob)
    events = bob.take()
    assert [e.text for e in events if isinstance(e, Secure)] == ["one", "four"]
    (alert,) = [e.text for e in events if isinstance(e, Alert)]
    assert alert.startswith("2 earlier room messages from alice did not reach you"), alert
    del carol


def test_a_key_share_text_is_parsed_strictly() -> None:
    first = OutboundGroup(SENDER_SESSION, 0)
    first.encrypt(plain("x"))
    second = OutboundGroup(SENDER_SESSION, 0, first)
    assert parse_share(first.share_text()) == (first.session_key(), None)
    assert parse_share(second.share_text()) == (second.session_key(), (first.group_id, 1))
    key = second.session_key()
    for bad in (
        f"{key} x 1",
        f"{key} {encode_b64(first.group_id)} -1",
        f"{key} {encode_b64(bytes(31))} 1",
        f"{key} a b c",
    ):
        with pytest.raises(E2EError):
            parse_share(bad)
