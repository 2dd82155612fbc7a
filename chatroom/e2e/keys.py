"""
Identity keys, session keys, key bundles, fingerprints and safety numbers.

Each client has a long-term Ed25519 I{identity} key, kept in a file that
only its owner can read (mode 0600, in a directory no one else can write;
optionally encrypted under a passphrase with scrypt), and a fresh X25519
I{session} key for every connection. The identity key signs the session
key with its issue time and expiry; together with that signature they form
a L{KeyBundle}, which is what the server's directory hands out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
import struct
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 16
# Version 2 of the session signature covers the issue time and the expiry.
SESSION_CONTEXT = b"chatroom-e2e/2 session\x00"
REGISTER_CONTEXT = b"chatroom-e2e/1 register\x00"
# A session key is good for a day at most; a client makes a new one sooner.
SESSION_LIFETIME_MS = 24 * 3600 * 1000
# Safety numbers as Signal computes them: per party, an iterated SHA-512 of
# the version, the key and the name; 30 digits each, 60 shown.
FINGERPRINT_VERSION = 0
FINGERPRINT_ITERATIONS = 5200
SAFETY_GROUPS = 6
# The key file's passphrase KDF: scrypt with OWASP's parameters.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_FILE_MAGIC = b"chatroom-identity/2 scrypt chacha20poly1305\x00"
_KEY_FILE_LABEL = "CHATROOM ENCRYPTED IDENTITY"
_SCRYPT_HEADER = struct.Struct(">16sIBB12s")
# A clamped X25519 scalar is a multiple of 8, so it takes every point of
# small order to the identity: an all-zero result, which the exchange refuses.
_LOW_ORDER_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

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


def party_fingerprint(identity: bytes, name: str) -> str:
    """
    One party's half of a safety number, as Signal computes it: SHA-512 of
    the version, the key and the (case-folded) name, iterated
    L{FINGERPRINT_ITERATIONS} times over the key; its first 30 bytes as six
    groups of five digits.

    Each half depends on one party's key only, so a server that swaps both
    keys cannot search for a collision between the two numbers: it must
    find a key whose half equals the genuine one (a second preimage).
    """
    data = struct.pack(">H", FINGERPRINT_VERSION) + identity + name.casefold().encode("utf-8")
    digest = hashlib.sha512(data).digest()
    for _ in range(FINGERPRINT_ITERATIONS):
        digest = hashlib.sha512(digest + identity).digest()
    groups = (int.from_bytes(digest[i * 5 : i * 5 + 5], "big") % 100_000 for i in range(SAFETY_GROUPS))
    return " ".join(f"{group:05d}" for group in groups)


def safety_number(first: bytes, first_name: str, second: bytes, second_name: str) -> str:
    """
    The safety number of two parties, the same whichever side computes it:
    both L{party_fingerprint}s, the smaller first (60 digits in 12 groups).
    """
    halves = sorted((party_fingerprint(first, first_name), party_fingerprint(second, second_name)))
    return " ".join(halves)


def verify_signature(public: bytes, signature: bytes, data: bytes) -> bool:
    """
    Whether C{signature} is C{public}'s Ed25519 signature of C{data}.
    """
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_session_key(public: bytes) -> None:
    """
    Refuse an X25519 public key of small order (or one that reduces to
    one): every key exchange with it would give the all-zero secret.

    @raise E2EError: If C{public} is such a key.
    """
    try:
        _LOW_ORDER_PROBE.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as e:
        raise E2EError("the session key is of small order: no one can encrypt to it") from e


_BUNDLE_TIMES = struct.Struct(">QQ")


@dataclass(frozen=True)
class KeyBundle:
    """
    A client's public keys: its identity key, its session key, when the
    session key was made and until when it is good (milliseconds since the
    epoch), and the identity key's signature of the last three.
    """

    identity: bytes
    session: bytes
    signature: bytes
    issued_ms: int = 0
    expires_ms: int = 0

    SIZE = 2 * PUBLIC_KEY_BYTES + _BUNDLE_TIMES.size + SIGNATURE_BYTES

    @cached_property
    def session_id(self) -> bytes:
        return key_id(self.session)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity)

    @staticmethod
    def signed_data(session: bytes, issued_ms: int, expires_ms: int) -> bytes:
        """
        What the identity key signs: the session key and its lifetime.
        """
        return SESSION_CONTEXT + session + _BUNDLE_TIMES.pack(issued_ms, expires_ms)

    def valid_at(self, now_ms: int, skew_ms: int = 0) -> bool:
        """
        Whether the session key is within its signed lifetime at C{now_ms},
        allowing C{skew_ms} of clock difference either way.
        """
        return self.issued_ms - skew_ms <= now_ms < self.expires_ms + skew_ms

    def encode(self) -> str:
        times = _BUNDLE_TIMES.pack(self.issued_ms, self.expires_ms)
        return encode_b64(self.identity + self.session + times + self.signature)

    @classmethod
    def decode(cls, text: str) -> KeyBundle:
        """
        Parse a bundle and check that its identity key signed its session
        key and lifetime, that the lifetime is at most
        L{SESSION_LIFETIME_MS}, and that the session key is not of small
        order. Whether it is valid I{now} is L{valid_at}'s to say.

        @raise E2EError: If it is malformed, the signature does not hold,
            or a key or the lifetime is unusable.
        """
        raw = decode_b64(text)
        if len(raw) != cls.SIZE:
            raise E2EError(f"a key bundle has {cls.SIZE} bytes, not {len(raw)}")
        issued_ms, expires_ms = _BUNDLE_TIMES.unpack(raw[64:80])
        bundle = cls(raw[:32], raw[32:64], raw[80:], issued_ms, expires_ms)
        if not verify_signature(
            bundle.identity, bundle.signature, cls.signed_data(bundle.session, issued_ms, expires_ms)
        ):
            raise E2EError("the session key is not signed by the identity key")
        if not 0 < expires_ms - issued_ms <= SESSION_LIFETIME_MS:
            raise E2EError("the session key's signed lifetime is empty or longer than a day")
        check_session_key(bundle.session)
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
        Write the private key to C{path}, readable by the owner only: as
        PKCS#8 PEM, or, given a C{passphrase}, encrypted with
        ChaCha20-Poly1305 under a key scrypt derives from it
        (L{SCRYPT_N}, L{SCRYPT_R}, L{SCRYPT_P}; the parameters and a random
        salt are stored in the file).
        """
        if passphrase:
            raw = self.private.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            salt, nonce = os.urandom(16), os.urandom(12)
            header = _KEY_FILE_MAGIC + _SCRYPT_HEADER.pack(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, nonce)
            key = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
            sealed = header + ChaCha20Poly1305(key).encrypt(nonce, raw, header)
            body = base64.encodebytes(sealed).decode("ascii")
            pem = f"-----BEGIN {_KEY_FILE_LABEL}-----\n{body}-----END {_KEY_FILE_LABEL}-----\n".encode()
        else:
            pem = self.private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_private_directory(path)
        write_private(path, pem)

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None = None) -> Identity:
        """
        Read a key written by L{save} (or an older PKCS#8 file, encrypted or not).

        @raise E2EError: If the file is readable by others or in a directory
            others can write, needs a passphrase that was not given (or a
            different one), or holds no Ed25519 key.
        """
        check_private_mode(path)
        data = path.read_bytes()
        if data.startswith(f"-----BEGIN {_KEY_FILE_LABEL}-----".encode()):
            return cls._load_scrypt(path, data, passphrase)
        try:
            private = serialization.load_pem_private_key(data, password=passphrase)
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
    def _load_scrypt(cls, path: Path, data: bytes, passphrase: bytes | None) -> Identity:
        if not passphrase:
            raise E2EError(f"{path}: a passphrase is needed")
        try:
            body = data.split(b"-----", 3)[2]
            sealed = base64.b64decode(body, validate=False)
            if not sealed.startswith(_KEY_FILE_MAGIC):
                raise ValueError("unknown format")
            header_end = len(_KEY_FILE_MAGIC) + _SCRYPT_HEADER.size
            salt, n, r, p, nonce = _SCRYPT_HEADER.unpack(sealed[len(_KEY_FILE_MAGIC) : header_end])
            if n < 2**14 or n > 2**22 or not 1 <= r <= 32 or not 1 <= p <= 16:
                raise ValueError("scrypt parameters out of range")
        except (ValueError, IndexError, struct.error, binascii.Error) as e:
            raise E2EError(f"{path} is not an identity key file: {e}") from e
        key = _scrypt(passphrase, salt, n, r, p)
        try:
            raw = ChaCha20Poly1305(key).decrypt(nonce, sealed[header_end:], sealed[:header_end])
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        except (InvalidTag, ValueError) as e:
            raise E2EError(f"{path}: wrong passphrase or not a private key") from e

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


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def check_private_mode(path: Path) -> None:
    """
    Refuse a private file that others can read or write, or that sits in a
    directory others can write (they could replace it), as ssh does.

    @raise E2EError: If the mode lets anyone but the owner in.
    """
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise E2EError(f"{path} is open to others (mode {mode:04o}): run chmod 600 {path}")
    check_private_directory(path)


def check_private_directory(path: Path) -> None:
    """
    Refuse a private file's directory if others can write it.

    @raise E2EError: If the group or others may write the directory.
    """
    if os.name == "posix":
        directory = path.absolute().parent
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o022:
            raise E2EError(
                f"{directory} can be written by others (mode {mode:04o}), who could replace {path.name}:"
                f" run chmod go-w {directory}"
            )


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

    def __init__(
        self,
        identity: Identity,
        private: X25519PrivateKey | None = None,
        issued_ms: int | None = None,
        lifetime_ms: int = SESSION_LIFETIME_MS,
    ) -> None:
        """
        @param issued_ms: When the key is made (now, by default); it is
            signed good for C{lifetime_ms} from then.
        """
        self.identity = identity
        self.private = private if private is not None else X25519PrivateKey.generate()
        public = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        issued = int(time.time() * 1000) if issued_ms is None else issued_ms
        expires = issued + lifetime_ms
        signature = identity.sign(KeyBundle.signed_data(public, issued, expires))
        self.bundle = KeyBundle(identity.public, public, signature, issued, expires)

    @property
    def session_id(self) -> bytes:
        return self.bundle.session_id

    def prove(self, room: str, challenge: bytes) -> bytes:
        """
        Sign the server's registration challenge.
        """
        return self.identity.sign(registration_data(room, challenge, self.bundle))
