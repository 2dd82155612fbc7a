"""
Write tests/data/e2e_golden.json: an envelope made once, which every later
version must still verify and decrypt. Run only to make a new version's
golden file; never to "fix" a failing golden test.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from chatroom.e2e.envelope import EnvelopeKind, seal
from chatroom.e2e.keys import Identity, Session

SEEDS = {
    "alice_identity": bytes(range(32)),
    "alice_session": bytes(range(32, 64)),
    "bob_identity": bytes(range(64, 96)),
    "bob_session": bytes(range(96, 128)),
}


def main() -> None:
    alice = Session(
        Identity(Ed25519PrivateKey.from_private_bytes(SEEDS["alice_identity"])),
        X25519PrivateKey.from_private_bytes(SEEDS["alice_session"]),
    )
    bob = Session(
        Identity(Ed25519PrivateKey.from_private_bytes(SEEDS["bob_identity"])),
        X25519PrivateKey.from_private_bytes(SEEDS["bob_session"]),
    )
    text = "Golden envelope, v1: caf\u00e9 \u2615 \U0001f510"
    envelope = seal(
        alice,
        kind=EnvelopeKind.WHISPER,
        room="chatroom",
        sender="alice",
        target="bob",
        text=text,
        recipients=[bob.bundle, alice.bundle],
        counter=7,
        timestamp_ms=1_795_000_000_250,
    )
    golden = {
        "seeds": {name: seed.hex() for name, seed in SEEDS.items()},
        "room": "chatroom",
        "text": text,
        "envelope": envelope.encode(),
    }
    path = Path(__file__).with_name("e2e_golden.json")
    path.write_text(json.dumps(golden, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
