"""
Identity key files, key bundles, fingerprints, safety numbers and pins.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from chatroom.e2e.keys import (
    E2EError,
    Identity,
    KeyBundle,
    Session,
    decode_b64,
    encode_b64,
    fingerprint,
    party_fingerprint,
    safety_number,
)
from chatroom.e2e.pins import PinCheck, PinStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_identity_file_is_private_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "identity.pem"
    identity = Identity.load_or_create(path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert b"ENCRYPTED" not in path.read_bytes()
    assert Identity.load_or_create(path).public == identity.public
    assert [p.name for p in path.parent.iterdir()] == ["identity.pem"]


def test_identity_with_a_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    identity = Identity.generate()
    identity.save(path, b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert Identity.load(path, b"correct horse").public == identity.public
    with pytest.raises(E2EError, match="wrong passphrase"):
        Identity.load(path, b"battery staple")
    with pytest.raises(E2EError, match="a passphrase is needed"):
        Identity.load(path)


def test_an_identity_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    Identity.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(E2EError, match="chmod 600"):
        Identity.load(path)


def test_a_file_with_another_key_type_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    path = tmp_path / "identity.pem"
    pem = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(E2EError, match="Ed25519"):
        Identity.load(path)


def test_bundles_carry_a_signed_session_key() -> None:
    session = Session(Identity.generate())
    bundle = KeyBundle.decode(session.bundle.encode())
    assert bundle == session.bundle
    other = Session(Identity.generate())
    swapped = replace(session.bundle, session=other.bundle.session)
    with pytest.raises(E2EError, match="not signed"):
        KeyBundle.decode(swapped.encode())
    # The lifetime is signed too: it cannot be stretched.
    stretched = replace(session.bundle, expires_ms=session.bundle.expires_ms + 1)
    with pytest.raises(E2EError, match="not signed"):
        KeyBundle.decode(stretched.encode())
    assert bundle.valid_at(bundle.issued_ms) and not bundle.valid_at(bundle.expires_ms)
    with pytest.raises(E2EError, match="144 bytes"):
        KeyBundle.decode(encode_b64(decode_b64(session.bundle.encode())[:-1]))


def test_base64_has_one_canonical_form() -> None:
    assert decode_b64(encode_b64(b"\xff\xfe")) == b"\xff\xfe"
    assert encode_b64(b"\xff\xfe") == "__4"
    for bad in ("__5", "__4=", "_/4", "__ 4", "A", "é"):
        with pytest.raises(E2EError):
            decode_b64(bad)


def test_fingerprints_and_safety_numbers() -> None:
    alice, bob, carol = (Identity.generate() for _ in range(3))
    assert len(fingerprint(alice.public).split()) == 8
    number = safety_number(alice.public, "alice", bob.public, "bob")
    assert number == safety_number(bob.public, "Bob", alice.public, "alice")
    groups = number.split()
    assert len(groups) == 12 and all(len(g) == 5 and g.isdigit() for g in groups)
    # Each half is one party's: the same key and name give the same half.
    halves = {" ".join(groups[:6]), " ".join(groups[6:])}
    assert halves == {party_fingerprint(alice.public, "alice"), party_fingerprint(bob.public, "bob")}
    assert safety_number(alice.public, "alice", carol.public, "carol") != number
    assert party_fingerprint(alice.public, "alicia") != party_fingerprint(alice.public, "alice")


def test_pins_are_first_use_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    pins = PinStore(path)
    alice, mallory = Identity.generate().public, Identity.generate().public
    assert pins.check("alice", alice) is PinCheck.NEW
    pins.pin("alice", alice)
    assert mode(path) == 0o600
    again = PinStore(path)
    assert again.check("ALICE", alice) is PinCheck.SAME
    assert again.check("alice", mallory) is PinCheck.CHANGED
    # A look-alike name is the same contact, so a new key is a change.
    assert again.check("A1ice", mallory) is PinCheck.CHANGED
    assert not again.mark_verified("alice", mallory)
    assert again.mark_verified("alice", alice)
    pin = PinStore(path).get("alice")
    assert pin is not None and pin.verified
    again.pin("alice", mallory)
    pin = PinStore(path).get("alice")
    assert pin is not None and (pin.key, pin.verified) == (mallory, False)


def test_a_broken_pin_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text('{"pins": [{"name": "alice"}]}')
    path.chmod(0o600)
    with pytest.raises(E2EError, match="not a pin file"):
        PinStore(path)


def test_a_version_1_pin_file_is_converted_and_a_torn_record_ignored(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    alice, bob = Identity.generate().public, Identity.generate().public
    entry = {"name": "alice", "key": alice.hex(), "verified": True}
    path.write_text(json.dumps({"version": 1, "pins": [entry]}, indent=1))
    path.chmod(0o600)
    pins = PinStore(path)
    assert pins.check("alice", alice) is PinCheck.SAME
    pins.pin("bob", bob)
    with path.open("a") as out:
        out.write('{"name": "carol", "ke')
    again = PinStore(path)
    pin = again.get("alice")
    assert pin is not None and pin.verified
    assert again.check("bob", bob) is PinCheck.SAME and again.get("carol") is None


def test_a_full_pin_store_refuses_new_names_and_keeps_every_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chatroom.e2e.pins.MAX_PINS", 3)
    pins = PinStore()
    keys = [Identity.generate().public for _ in range(4)]
    assert [pins.pin(f"user{n}", key) for n, key in enumerate(keys)] == [True, True, True, False]
    assert pins.pin("user0", keys[3])
    assert len(pins) == 3 and pins.check("user1", keys[1]) is PinCheck.SAME
