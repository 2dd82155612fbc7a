"""
Known-answer tests for the primitives, called the way chatroom.e2e calls them.

The vectors are the RFCs' own: RFC 8032 section 7.1 (Ed25519), RFC 7748
sections 5.2 and 6.1 (X25519), RFC 8439 section 2.8.2 (ChaCha20-Poly1305),
RFC 9180 appendix A.2.1 (HPKE base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305), decrypt direction.
"""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chatroom.e2e.envelope import SUITE
from chatroom.e2e.keys import Identity, verify_signature

h = bytes.fromhex

# RFC 8032, 7.1: TEST 1, TEST 2, TEST 3 (secret key, public key, message, signature).
ED25519 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), ED25519)
def test_ed25519_rfc8032(secret: str, public: str, message: str, signature: str) -> None:
    identity = Identity(Ed25519PrivateKey.from_private_bytes(h(secret)))
    assert identity.public == h(public)
    assert identity.sign(h(message)) == h(signature)
    assert verify_signature(h(public), h(signature), h(message))
    assert not verify_signature(h(public), h(signature), h(message) + b"\x00")


# RFC 7748, 5.2: scalar, input u-coordinate, output u-coordinate.
X25519_LADDER = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]


@pytest.mark.parametrize(("scalar", "u", "out"), X25519_LADDER)
def test_x25519_rfc7748_ladder(scalar: str, u: str, out: str) -> None:
    shared = X25519PrivateKey.from_private_bytes(h(scalar)).exchange(X25519PublicKey.from_public_bytes(h(u)))
    assert shared == h(out)


def test_x25519_rfc7748_diffie_hellman() -> None:
    alice = X25519PrivateKey.from_private_bytes(
        h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = X25519PrivateKey.from_private_bytes(
        h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    alice_public = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_public = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert alice.public_key().public_bytes_raw() == alice_public
    assert bob.public_key().public_bytes_raw() == bob_public
    assert alice.exchange(X25519PublicKey.from_public_bytes(bob_public)) == shared
    assert bob.exchange(X25519PublicKey.from_public_bytes(alice_public)) == shared


SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future,"
    b" sunscreen would be it."
)


def test_chacha20_poly1305_rfc8439() -> None:
    key = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
    nonce = h("070000004041424344454647")
    aad = h("50515253c0c1c2c3c4c5c6c7")
    ciphertext = h(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
    )
    tag = h("1ae10b594f09e26a7e902ecbd0600691")
    aead = ChaCha20Poly1305(key)
    assert aead.encrypt(nonce, SUNSCREEN, aad) == ciphertext + tag
    assert aead.decrypt(nonce, ciphertext + tag, aad) == SUNSCREEN
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, ciphertext + tag, aad[:-1])


# RFC 9180, A.2.1: the receiver's key, the encapsulated key, info, and the
# first encryption (sequence number 0).
HPKE_SKRM = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb"
HPKE_PKRM = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a"
HPKE_ENC = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a"
HPKE_INFO = "4f6465206f6e2061204772656369616e2055726e"
HPKE_PT = "4265617574792069732074727574682c20747275746820626561757479"
HPKE_AAD = "436f756e742d30"
HPKE_CT = "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28"


def test_hpke_rfc9180_decrypt() -> None:
    # The envelope's own suite object. The public single-shot API fixes the
    # AAD to empty while the RFC's vectors use "Count-0", so the vector goes
    # through the same suite's AAD-taking entry point.
    receiver = X25519PrivateKey.from_private_bytes(h(HPKE_SKRM))
    assert receiver.public_key().public_bytes_raw() == h(HPKE_PKRM)
    sealed = h(HPKE_ENC) + h(HPKE_CT)
    opened = rust_openssl.hpke._decrypt_with_aad(SUITE, sealed, receiver, info=h(HPKE_INFO), aad=h(HPKE_AAD))
    assert opened == h(HPKE_PT)
    with pytest.raises(InvalidTag):
        rust_openssl.hpke._decrypt_with_aad(SUITE, sealed, receiver, info=b"another info", aad=h(HPKE_AAD))


def test_hpke_as_used_binds_info() -> None:
    receiver = X25519PrivateKey.generate()
    sealed = SUITE.encrypt(b"k" * 32, receiver.public_key(), info=b"room, sender, id, recipient")
    # X25519 enc (32) + key (32) + tag (16): the wrap size the envelope assumes.
    assert len(sealed) == 80
    assert SUITE.decrypt(sealed, receiver, info=b"room, sender, id, recipient") == b"k" * 32
    with pytest.raises(InvalidTag):
        SUITE.decrypt(sealed, receiver, info=b"room, sender, id, someone else")
