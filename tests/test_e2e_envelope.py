"""
The envelope: round trips, the golden envelope, tampering, limits.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from chatroom.e2e.envelope import (
    E2E_MAX_LINE_BYTES,
    MAX_RECIPIENTS,
    MAX_TEXT_BYTES,
    RECIPIENT_BYTES,
    SEND_PREFIX,
    SUITE,
    Envelope,
    EnvelopeKind,
    seal,
    wrap_info,
)
from chatroom.e2e.keys import E2EError, Identity, Session, decode_b64, encode_b64

NOW_MS = 1_795_000_000_000
GOLDEN = Path(__file__).parent / "data" / "e2e_golden.json"


def sessions(count: int) -> list[Session]:
    return [Session(Identity.generate()) for _ in range(count)]


def make(by: Session, recipients: list[Session], text: str = "hello", **fields: object) -> Envelope:
    arguments: dict[str, object] = {
        "kind": EnvelopeKind.MESSAGE,
        "room": "chatroom",
        "sender": "alice",
        "text": text,
        "recipients": [s.bundle for s in recipients],
        "counter": 1,
        "timestamp_ms": NOW_MS,
    }
    arguments.update(fields)
    return seal(by, **arguments)  # type: ignore[arg-type]


def opened(text: str, session: Session) -> str:
    envelope = Envelope.decode(text)
    envelope.verify()
    return envelope.decrypt(session)


TEXTS = {
    "empty": "",
    "max-ascii": "x" * MAX_TEXT_BYTES,
    "max-non-ascii": "\u00e9\u4e2d\U0001f510" * (MAX_TEXT_BYTES // 9) + "a" * (MAX_TEXT_BYTES % 9),
    "non-ascii": "gr\u00fc\u00df dich, \u4e16\u754c \U0001f44b \u202eevil\u202c",
}


@pytest.mark.parametrize("count", [1, 2, 10, 100])
@pytest.mark.parametrize("label", list(TEXTS))
def test_round_trip(count: int, label: str) -> None:
    text = TEXTS[label]
    assert len(text.encode()) <= MAX_TEXT_BYTES
    group = sessions(count)
    line = make(group[0], group, text).encode()
    for reader in group:
        assert opened(line, reader) == text


def test_maximum_text_is_exact() -> None:
    alice, bob = sessions(2)
    make(alice, [bob], "\u00e9" * (MAX_TEXT_BYTES // 2))
    with pytest.raises(E2EError, match="at most 4096 bytes"):
        make(alice, [bob], "x" * (MAX_TEXT_BYTES + 1))


def test_recipient_limits_and_the_line_limit() -> None:
    (alice,) = sessions(1)
    with pytest.raises(E2EError, match="1 to"):
        make(alice, [])
    # The largest envelope (longest room, names and text, every recipient
    # slot used) fits one E2E line.
    one = make(
        alice,
        [alice],
        "x" * MAX_TEXT_BYTES,
        room="r" * 64,
        sender="a" * 20,
        target="b" * 20,
        kind=EnvelopeKind.WHISPER,
    )
    unique = tuple(
        replace(one.recipients[0], session_id=i.to_bytes(16, "big")) for i in range(MAX_RECIPIENTS)
    )
    worst = replace(one, recipients=unique).encode()
    spare = E2E_MAX_LINE_BYTES - len(SEND_PREFIX + worst)
    # The budget reserves 64 bytes for each name (real names have 20), and
    # what is left is less than one more recipient.
    assert 0 <= spare < RECIPIENT_BYTES * 4 // 3 + 2 * (64 - 20) * 4 // 3 + 3
    Envelope.decode(worst)
    too_many = replace(one, recipients=(*unique, replace(unique[0], session_id=b"\xff" * 16)))
    with pytest.raises(E2EError, match="recipients"):
        Envelope.decode(too_many.encode())


def test_golden_envelope_still_verifies_and_decrypts() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    seeds = {name: bytes.fromhex(seed) for name, seed in golden["seeds"].items()}
    alice = Identity(Ed25519PrivateKey.from_private_bytes(seeds["alice_identity"]))
    bob = Session(
        Identity(Ed25519PrivateKey.from_private_bytes(seeds["bob_identity"])),
        X25519PrivateKey.from_private_bytes(seeds["bob_session"]),
    )
    envelope = Envelope.decode(golden["envelope"])
    envelope.verify()
    assert envelope.sender_key == alice.public
    assert (envelope.kind, envelope.room, envelope.sender, envelope.target) == (
        EnvelopeKind.WHISPER,
        "chatroom",
        "alice",
        "bob",
    )
    assert (envelope.counter, envelope.timestamp_ms) == (7, 1_795_000_000_250)
    assert envelope.decrypt(bob) == golden["text"]
    assert envelope.encode() == golden["envelope"]


def test_flipping_any_byte_is_rejected() -> None:
    alice, bob = sessions(2)
    line = make(alice, [bob, alice], "the plan").encode()
    raw = decode_b64(line)
    for position in range(len(raw)):
        for bit in (0x01, 0x80):
            tampered = bytearray(raw)
            tampered[position] ^= bit
            with pytest.raises(E2EError):
                opened(encode_b64(bytes(tampered)), bob)
    assert opened(line, bob) == "the plan"


def test_changing_any_character_of_the_line_is_rejected() -> None:
    alice, bob = sessions(2)
    line = make(alice, [bob], "x").encode()
    for position in range(len(line)):
        for other in ("A", "B", "_", "-"):
            if line[position] != other:
                with pytest.raises(E2EError):
                    opened(line[:position] + other + line[position + 1 :], bob)
    for bad in (line + "=", line + "A", line[:-1], " " + line, line + "\n"):
        with pytest.raises(E2EError):
            opened(bad, bob)


def test_a_non_recipient_cannot_open_it() -> None:
    alice, bob, eve = sessions(3)
    envelope = Envelope.decode(make(alice, [alice, bob]).encode())
    envelope.verify()
    with pytest.raises(E2EError, match="not addressed"):
        envelope.decrypt(eve)


def test_a_wrap_moved_to_another_recipient_does_not_open() -> None:
    alice, bob, eve = sessions(3)
    envelope = make(alice, [bob])
    # Relabel bob's wrap for eve: eve's key cannot open it, and the info
    # (recipient id) no longer matches either.
    moved = replace(envelope, recipients=(replace(envelope.recipients[0], session_id=eve.session_id),))
    with pytest.raises(E2EError, match="does not decrypt"):
        moved.decrypt(eve)


def test_wraps_are_bound_to_room_sender_message_and_recipient() -> None:
    alice, bob = sessions(2)
    envelope = make(alice, [bob])
    wrap = envelope.recipients[0].wrap
    right = ("chatroom", alice.bundle.identity, envelope.message_id, bob.session_id)
    assert len(SUITE.decrypt(wrap, bob.private, info=wrap_info(*right))) == 32
    for index, other in enumerate(("another", bob.bundle.identity, b"\x00" * 16, alice.session_id)):
        info = list(right)
        info[index] = other
        with pytest.raises(InvalidTag):
            SUITE.decrypt(wrap, bob.private, info=wrap_info(*info))  # type: ignore[arg-type]


def test_a_signature_by_another_key_is_rejected() -> None:
    alice, mallory, bob = sessions(3)
    envelope = make(alice, [bob])
    forged = make(mallory, [bob])
    with pytest.raises(E2EError, match="bad signature"):
        replace(envelope, signature=forged.signature).verify()
    with pytest.raises(E2EError, match="bad signature"):
        replace(forged, sender_key=alice.bundle.identity).verify()


def test_field_rules() -> None:
    alice, bob = sessions(2)
    with pytest.raises(E2EError, match="bad name"):
        make(alice, [bob], sender="not a name")
    with pytest.raises(E2EError, match="only a whisper"):
        make(alice, [bob], target="bob")
    with pytest.raises(E2EError, match="bad name"):
        make(alice, [bob], kind=EnvelopeKind.WHISPER)
    with pytest.raises(E2EError, match="bad room"):
        make(alice, [bob], room="a\nroom")
    with pytest.raises(E2EError, match="twice"):
        make(alice, [bob, bob])
