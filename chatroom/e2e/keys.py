"""
Identity keys, session keys, key bundles, fingerprints and safety numbers.

Each client has a long-term Ed25519 I{identity} key, kept in a PEM file that
only its owner can read (mode 0600, optionally encrypted with a
passphrase), and a fresh X25519 I{session} key for every connection. The
identity key signs the session key; the pair and that signature form a
L{KeyBundle}, which is what the server's directory hands out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 16
SESSION_CONTEXT = b"chatroom-e2e/1 session\x00"
REGISTER_CONTEXT = b"chatroom-e2e/1 register\x00"
SAFETY_CONTEXT = b"chatroom-e2e/1 safety\x00"
SAFETY_GROUPS = 6

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class E2EError(ValueError):
    """
    Key material or an envelope is malformed, forged or refused; the
    message says what was wrong.
    """


def encode_b64(data: bytes) -> str:
    """
    Unpadded base64url, the text form of every binary E2E field.
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_b64(text: str) -> bytes:
    """
    Decode L{encode_b64} output, accepting only its one canonical form.

    @raise E2EError: For any other character, padding, or a text that a
        different string would also decode to (stray low bits at the end).
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise E2EError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as e:
        raise E2EError("not unpadded base64url") from e
    if encode_b64(data) != text:
        raise E2EError("not canonical base64url")
    return data


def key_id(public: bytes) -> bytes:
    """
    The short identifier of a public key: the first 16 bytes of its SHA-256.
    """
    return hashlib.sha256(public).digest()[:KEY_ID_BYTES]


def fingerprint(identity: bytes) -> str:
    """
    The fingerprint shown to users for an identity public key: its key id
    in eight groups of four hex digits.
    """
    digits = key_id(identity).hex()
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def safety_number(first: bytes, second: bytes) -> str:
    """
    The safety number of two identity public keys, the same whichever side
    computes it: six groups of five digits (about 100 bits) that two people
    read to each other to check that neither key was swapped.
    """
    digest = hashlib.sha256(SAFETY_CONTEXT + b"".join(sorted((first, second)))).digest()
    groups = (int.from_bytes(digest[i * 5 : i * 5 + 5], "big") % 100_000 for i in range(SAFETY_GROUPS))
    return " ".join(f"{group:05d}" for group in groups)


def verify_signature(public: bytes, signature: bytes, data: bytes) -> bool:
    """
    Whether C{signature} is C{public}'s Ed25519 signature of C{data}.
    """
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class KeyBundle:
    """
    A client's public keys: its identity key, its session key, and the
    identity key's signature of the session key.
    """

    identity: bytes
    session: bytes
    signature: bytes

    SIZE = 2 * PUBLIC_KEY_BYTES + SIGNATURE_BYTES

    @property
    def session_id(self) -> bytes:
        return key_id(self.session)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity)

    def encode(self) -> str:
        return encode_b64(self.identity + self.session + self.signature)

    @classmethod
    def decode(cls, text: str) -> KeyBundle:
        """
        Parse a bundle and check that its identity key signed its session key.

        @raise E2EError: If it is malformed or the signature does not hold.
        """
        raw = decode_b64(text)
        if len(raw) != cls.SIZE:
            raise E2EError(f"a key bundle has {cls.SIZE} bytes, not {len(raw)}")
        bundle = cls(raw[:32], raw[32:64], raw[64:])
        if not verify_signature(bundle.identity, bundle.signature, SESSION_CONTEXT + bundle.session):
            raise E2EError("the session key is not signed by the identity key")
        return bundle


def registration_data(room: str, challenge: bytes, bundle: KeyBundle) -> bytes:
    """
    What a client signs to prove to the server that it holds its identity key.
    """
    return REGISTER_CONTEXT + room.encode("utf-8") + b"\x00" + challenge + bundle.encode().encode("ascii")


class Identity:
    """
    A long-term Ed25519 identity key pair.
    """

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def save(self, path: Path, passphrase: bytes | None = None) -> None:
        """
        Write the private key to C{path} as PKCS#8 PEM, readable by the owner
        only, encrypted with C{passphrase} if one is given.
        """
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, pem)

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> Identity:
        """
        Read a key written by L{save}.

        @raise E2EError: If the file is readable by others, needs a
            passphrase that was not given (or a different one), or holds no
            Ed25519 key.
        """
        check_private_mode(path)
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
        except TypeError as e:
            raise E2EError(
                f"{path}: {'no passphrase needed' if passphrase else 'a passphrase is needed'}"
            ) from e
        except ValueError as e:
            raise E2EError(f"{path}: wrong passphrase or not a private key") from e
        if not isinstance(private, Ed25519PrivateKey):
            raise E2EError(f"{path} does not hold an Ed25519 key")
        return cls(private)

    @classmethod
    def load_or_create(cls, path: Path, passphrase: bytes | None = None) -> Identity:
        """
        Load the identity key at C{path}, creating it on first use.
        """
        if path.exists():
            return cls.load(path, passphrase)
        identity = cls.generate()
        identity.save(path, passphrase)
        return identity


def check_private_mode(path: Path) -> None:
    """
    Refuse a private file that others can read or write, as ssh does.

    @raise E2EError: If the mode lets anyone but the owner in.
    """
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise E2EError(f"{path} is open to others (mode {mode:04o}): run chmod 600 {path}")


def write_private(path: Path, data: bytes) -> None:
    """
    Replace C{path} with C{data} atomically, the new file mode 0600 from the start.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class Session:
    """
    The X25519 key of one connection, signed by the identity key.
    """

    def __init__(self, identity: Identity, private: X25519PrivateKey | None = None) -> None:
        self.identity = identity
        self.private = private if private is not None else X25519PrivateKey.generate()
        public = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.bundle = KeyBundle(identity.public, public, identity.sign(SESSION_CONTEXT + public))

    @property
    def session_id(self) -> bytes:
        return self.bundle.session_id

    def prove(self, room: str, challenge: bytes) -> bytes:
        """
        Sign the server's registration challenge.
        """
        return self.identity.sign(registration_data(room, challenge, self.bundle))
