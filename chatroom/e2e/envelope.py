"""
The E2E envelope: one message, encrypted for every recipient and signed.

An envelope travels as one protocol line, unpadded base64url of this
binary layout (integers big-endian, C{strN} a UTF-8 string after an N-bit
length)::

    version     u8      1
    kind        u8      1 message, 2 action, 3 whisper, 4 key share
    room        str8    the room id the server announced
    sender      str8    the sender's name when sending (a valid member name)
    target      str8    a whisper's addressee; empty for other kinds
    sender key  32      the sender's Ed25519 identity public key
    sender sid  16      the key id of the sender's X25519 session key
    message id  16      random
    counter     u64     per sender session, +1 for every envelope
    timestamp   u64     the sender's clock, milliseconds since the epoch
    count       u16     number of recipients, 1 to L{MAX_RECIPIENTS}
    count x:
      sid       16      the key id of the recipient's session key
      wrap      80      HPKE(X25519, HKDF-SHA256, ChaCha20-Poly1305) of the content key
    body        u32+n   ChaCha20-Poly1305(content key, zero nonce, text, aad=header)
    signature   64      Ed25519 by the sender key over SIGN_CONTEXT + all the above

The I{header} is every field from C{version} to C{timestamp}. Each wrap's
HPKE C{info} binds the room, the sender key, the message id and the
recipient's session key id, so a wrap cannot be moved to another message or
recipient; the signature covers everything, so no byte can change unseen.
The content key is fresh for every message, which is why a fixed nonce is
safe. Decoding is strict (no trailing bytes, no duplicate recipients, only
canonical base64url), so one envelope has exactly one encoding.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chatroom.e2e.keys import (
    KEY_ID_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    E2EError,
    KeyBundle,
    Session,
    decode_b64,
    encode_b64,
    verify_signature,
)
from chatroom.names import name_problem
from chatroom.wire import has_control_characters

VERSION = 1
SIGN_CONTEXT = b"chatroom-e2e/1 envelope\x00"
WRAP_CONTEXT = b"chatroom-e2e/1 wrap\x00"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)

# The longest plaintext, in UTF-8 bytes: the same as a plain chat line.
MAX_TEXT_BYTES = 4096
MAX_ROOM_BYTES = 64
MAX_NAME_BYTES = MAX_ROOM_BYTES
CONTENT_KEY_BYTES = 32
TAG_BYTES = 16
WRAP_BYTES = PUBLIC_KEY_BYTES + CONTENT_KEY_BYTES + TAG_BYTES
RECIPIENT_BYTES = KEY_ID_BYTES + WRAP_BYTES
_NONCE = bytes(12)
_HEADER_TAIL = struct.Struct(f">{PUBLIC_KEY_BYTES}s{KEY_ID_BYTES}s{KEY_ID_BYTES}sQQ")

# The longest line a client may send with an envelope in it, in bytes.
# 64 KiB holds the largest message for several hundred recipients while
# keeping what one connection can make the server buffer modest.
E2E_MAX_LINE_BYTES = 65536
SEND_PREFIX = "/e2e send "
# The largest envelope without its recipients: version, kind, three string
# lengths, the fixed header fields, the longest room and names (room and
# names share one bound), count, body length, the longest body, signature.
_MAX_FIXED_BYTES = (
    5 + _HEADER_TAIL.size + 3 * MAX_NAME_BYTES + 2 + 4 + MAX_TEXT_BYTES + TAG_BYTES + SIGNATURE_BYTES
)
_MAX_FIXED_CHARS = math.ceil(_MAX_FIXED_BYTES * 4 / 3)
# Every recipient adds 96 bytes, exactly 128 base64 characters: 465 fit.
MAX_RECIPIENTS = (E2E_MAX_LINE_BYTES - len(SEND_PREFIX) - _MAX_FIXED_CHARS) // (RECIPIENT_BYTES * 4 // 3)


# How many listed sessions that are not a current member's the server lets
# through (members who left while the envelope was on its way).
FORWARD_SLACK = 8

_T = TypeVar("_T")


class RecipientError(E2EError):
    """
    One recipient's session key cannot be encrypted to.

    @ivar session_id: That recipient's session key id.
    """

    def __init__(self, session_id: bytes, reason: str) -> None:
        super().__init__(reason)
        self.session_id = session_id


class EnvelopeKind(IntEnum):
    """
    What an envelope carries, shown as the plain chat kinds are.
    """

    MESSAGE = 1
    ACTION = 2
    WHISPER = 3
    # The sender's group session (chatroom.e2e.group), for its recipients.
    KEY_SHARE = 4


@dataclass(frozen=True)
class Wrap:
    """
    The content key of one envelope, encrypted for one recipient session.
    """

    session_id: bytes
    wrap: bytes


@dataclass(frozen=True)
class Envelope:
    """
    One decoded envelope; L{verify} and L{decrypt} check and open it.
    """

    kind: EnvelopeKind
    room: str
    sender: str
    target: str
    sender_key: bytes
    sender_session: bytes
    message_id: bytes
    counter: int
    timestamp_ms: int
    recipients: tuple[Wrap, ...]
    body: bytes
    signature: bytes = b""

    def header(self) -> bytes:
        """
        The fields from C{version} to C{timestamp}, the body's associated data.
        """
        strings = b"".join(_str8(value) for value in (self.room, self.sender, self.target))
        tail = _HEADER_TAIL.pack(
            self.sender_key, self.sender_session, self.message_id, self.counter, self.timestamp_ms
        )
        return bytes((VERSION, self.kind)) + strings + tail

    def signed_part(self) -> bytes:
        """
        Everything the signature covers, without the signing context.
        """
        recipients = b"".join(r.session_id + r.wrap for r in self.recipients)
        return (
            self.header()
            + struct.pack(">H", len(self.recipients))
            + recipients
            + struct.pack(">I", len(self.body))
            + self.body
        )

    def encode(self) -> str:
        """
        The envelope as the text of one protocol line.
        """
        return encode_b64(self.signed_part() + self.signature)

    def recipient_ids(self) -> set[bytes]:
        return {r.session_id for r in self.recipients}

    @classmethod
    def decode(cls, text: str) -> Envelope:
        """
        Parse an envelope, checking its structure only (not its signature).

        @raise E2EError: If it is not a well-formed version 1 envelope.
        """
        reader = _Reader(decode_b64(text))
        version, kind_number = reader.take(1)[0], reader.take(1)[0]
        if version != VERSION:
            raise E2EError(f"unknown envelope version {version}")
        try:
            kind = EnvelopeKind(kind_number)
        except ValueError as e:
            raise E2EError(f"unknown envelope kind {kind_number}") from e
        room, sender, target = reader.str8(), reader.str8(), reader.str8()
        sender_key, sender_session, message_id, counter, timestamp_ms = _HEADER_TAIL.unpack(
            reader.take(_HEADER_TAIL.size)
        )
        count = reader.unpack(">H")
        if not 1 <= count <= MAX_RECIPIENTS:
            raise E2EError(f"an envelope has 1 to {MAX_RECIPIENTS} recipients, not {count}")
        recipients = tuple(Wrap(reader.take(KEY_ID_BYTES), reader.take(WRAP_BYTES)) for _ in range(count))
        body = reader.take(reader.unpack(">I"))
        signature = reader.take(SIGNATURE_BYTES)
        reader.finish()
        envelope = cls(
            kind,
            room,
            sender,
            target,
            sender_key,
            sender_session,
            message_id,
            counter,
            timestamp_ms,
            recipients,
            body,
            signature,
        )
        envelope.check_fields()
        return envelope

    def check_fields(self) -> None:
        """
        @raise E2EError: If a field is out of its documented range.
        """
        if len(self.room.encode()) > MAX_ROOM_BYTES or has_control_characters(self.room) or not self.room:
            raise E2EError("bad room id")
        for name in (self.sender, self.target) if self.kind is EnvelopeKind.WHISPER else (self.sender,):
            if name_problem(name) is not None:
                raise E2EError(f"bad name {name!r}")
        if self.kind is not EnvelopeKind.WHISPER and self.target:
            raise E2EError("only a whisper has a target")
        if len(self.recipient_ids()) != len(self.recipients):
            raise E2EError("a recipient is listed twice")
        if not TAG_BYTES <= len(self.body) <= MAX_TEXT_BYTES + TAG_BYTES:
            raise E2EError("bad body length")

    def verify(self) -> None:
        """
        Check the sender's signature over the whole envelope.

        @raise E2EError: If it does not hold.
        """
        if not verify_signature(self.sender_key, self.signature, SIGN_CONTEXT + self.signed_part()):
            raise E2EError("bad signature")

    def decrypt(self, session: Session) -> str:
        """
        Unwrap the content key for C{session} and decrypt the text.

        @raise E2EError: If C{session} is not a recipient or a check fails.
        """
        own = session.session_id
        wrap = next((r.wrap for r in self.recipients if r.session_id == own), None)
        if wrap is None:
            raise E2EError("not addressed to this session")
        info = wrap_info(self.room, self.sender_key, self.message_id, own)
        try:
            content_key = SUITE.decrypt(wrap, session.private, info=info)
            plain = ChaCha20Poly1305(content_key).decrypt(_NONCE, self.body, self.header())
            return plain.decode("utf-8")
        except (InvalidTag, ValueError) as e:
            raise E2EError("the envelope does not decrypt") from e


def wrap_info(room: str, sender_key: bytes, message_id: bytes, recipient_session: bytes) -> bytes:
    """
    The HPKE C{info} of one wrap: what the wrapped key is bound to.
    """
    return WRAP_CONTEXT + _str8(room) + sender_key + message_id + recipient_session


def seal(
    session: Session,
    *,
    kind: EnvelopeKind,
    room: str,
    sender: str,
    text: str,
    recipients: Sequence[KeyBundle],
    counter: int,
    timestamp_ms: int,
    target: str = "",
    message_id: bytes | None = None,
) -> Envelope:
    """
    Encrypt C{text} for every recipient session and sign the envelope.

    @raise E2EError: If the text is too long, there are no recipients or
        too many, or a name or the room is out of range.
    """
    plain = text.encode("utf-8")
    if len(plain) > MAX_TEXT_BYTES:
        raise E2EError(f"an encrypted message has at most {MAX_TEXT_BYTES} bytes of UTF-8")
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise E2EError(f"end-to-end encryption works for 1 to {MAX_RECIPIENTS} recipients")
    message_id = message_id if message_id is not None else os.urandom(KEY_ID_BYTES)
    unsealed = Envelope(
        kind, room, sender, target, session.bundle.identity, session.session_id, message_id, counter,
        timestamp_ms, (), b"",
    )  # fmt: skip
    content_key = ChaCha20Poly1305.generate_key()
    wraps = tuple(
        _wrap(content_key, bundle, room, session.bundle.identity, message_id) for bundle in recipients
    )
    body = ChaCha20Poly1305(content_key).encrypt(_NONCE, plain, unsealed.header())
    envelope = replace(unsealed, recipients=wraps, body=body)
    envelope.check_fields()
    return replace(envelope, signature=session.identity.sign(SIGN_CONTEXT + envelope.signed_part()))


def _wrap(content_key: bytes, bundle: KeyBundle, room: str, sender_key: bytes, message_id: bytes) -> Wrap:
    try:
        wrapped = SUITE.encrypt(
            content_key,
            X25519PublicKey.from_public_bytes(bundle.session),
            info=wrap_info(room, sender_key, message_id, bundle.session_id),
        )
    except ValueError as e:
        # A key of small order (refused by KeyBundle.decode, so only a
        # bundle made some other way gets here).
        raise RecipientError(
            bundle.session_id, f"the session key {bundle.session_id.hex()} is unusable"
        ) from e
    return Wrap(bundle.session_id, wrapped)


def forward_targets(envelope: Envelope, sessions: Mapping[bytes, _T], slack: int = FORWARD_SLACK) -> list[_T]:
    """
    Whom the server forwards C{envelope} to: the holder of every listed
    session that is a current member's (C{sessions}, by session key id),
    each once, in the envelope's order.

    An envelope costs the server one delivery per listed member, so the
    list must not be padded: at most C{slack} listed sessions may belong to
    no current member (members who left while it was on its way).

    @raise E2EError: If more are unknown, or no listed session is current.
    """
    targets: dict[int, _T] = {}
    unknown = 0
    for wrap in envelope.recipients:
        holder = sessions.get(wrap.session_id)
        if holder is None:
            unknown += 1
        else:
            targets.setdefault(id(holder), holder)
    if unknown > slack:
        raise E2EError(f"{unknown} listed sessions are no member's (at most {slack} may be)")
    if not targets:
        raise E2EError("no recipient of the envelope is in the room")
    return list(targets.values())


def _str8(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise E2EError("a string field has at most 255 bytes")
    return bytes((len(raw),)) + raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise E2EError("the envelope is truncated")
        chunk, self.position = self.data[self.position : end], end
        return chunk

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return int(value)

    def str8(self) -> str:
        raw = self.take(self.take(1)[0])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise E2EError("a string field is not UTF-8") from e

    def finish(self) -> None:
        if self.position != len(self.data):
            raise E2EError("trailing bytes after the signature")
