"""
Per-sender group sessions: room messages at one symmetric encryption and
one signature, whatever the room size.

Each member has an I{outbound} group session, a Megolm session of
U{vodozemac<https://github.com/matrix-org/vodozemac>} (the Rust library
behind Matrix's end-to-end encryption): a hash ratchet whose key is
advanced for every message (so a message key, once used, cannot be
computed again from the session's later state), and an Ed25519 key of the
session that signs every message. The sender shares the session's current
state with each member once, in a L{KEY_SHARE<EnvelopeKind.KEY_SHARE>}
envelope (HPKE to the member's session key, signed by the identity key, as
a whisper is); from then on a room message is one line for everyone.

A receiver keeps, per sender session, the inbound state of that sender's
latest group sessions, and after every message it decrypts it keeps only
the ratchet I{after} that message: what it received cannot be decrypted
from its memory later (forward secrecy within the session), and an index
that did not go up is refused (replay and order), a jump is a gap.

A group line is unpadded base64url of::

    version     u8      1
    sender      str8    the sender's name when sending
    sender key  32      the sender's Ed25519 identity key
    sender sid  16      the key id of the sender's X25519 session key
    group id    32      the group session's Ed25519 key (its id)
    message     rest    the Megolm message (version, index, AES-256-CBC
                        ciphertext, HMAC-SHA-256 cut to 8 bytes, signature)

and the Megolm plaintext is::

    kind        u8      1 message, 2 action
    room        str8    the room id
    sender      str8    the sender's name
    timestamp   u64     the sender's clock, milliseconds since the epoch
    members     u32     how many sessions the sender shared the group with
    member hash 16      L{member_set_hash} of those sessions (sender included)
    text        rest    UTF-8, at most L{MAX_TEXT_BYTES}

The clear part says only where to look the session up; everything a
receiver shows comes from the signed, encrypted part.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import vodozemac

from chatroom.e2e.envelope import MAX_NAME_BYTES, MAX_RECIPIENTS, MAX_ROOM_BYTES, MAX_TEXT_BYTES, EnvelopeKind
from chatroom.e2e.keys import KEY_ID_BYTES, PUBLIC_KEY_BYTES, E2EError, decode_b64, encode_b64

GROUP_VERSION = 1
GROUP_PREFIX = "/e2e group "
MEMBERS_CONTEXT = b"chatroom-e2e/2 members\x00"
# A new outbound session after this many messages or this long (Megolm's
# default is 100 messages; a week, which is long for a chat room).
GROUP_ROTATE_AFTER_MESSAGES = 100
GROUP_ROTATE_AFTER_MS = 3600 * 1000
# A key share goes to the members in envelopes of at least this many (and
# at most MAX_RECIPIENTS), in as few as SHARE_LINES lines: every member gets
# the whole envelope its wrap is in, so smaller envelopes cost the room fewer
# bytes, and fewer lines stay within the server's flood burst.
SHARE_BATCH = 64
SHARE_LINES = 12
MEMBER_HASH_BYTES = 16
GROUP_ID_BYTES = PUBLIC_KEY_BYTES
# Megolm's overhead: version, protobuf index and ciphertext headers, up to
# one block of padding, the MAC and the signature.
_MEGOLM_OVERHEAD = 1 + 16 + 16 + 8 + 64
_PLAIN_TAIL = struct.Struct(f">QI{MEMBER_HASH_BYTES}s")
MAX_PLAIN_BYTES = 1 + 2 * (1 + MAX_NAME_BYTES) + _PLAIN_TAIL.size + MAX_TEXT_BYTES
MAX_MESSAGE_BYTES = MAX_PLAIN_BYTES + _MEGOLM_OVERHEAD
_HEADER = struct.Struct(f">{PUBLIC_KEY_BYTES}s{KEY_ID_BYTES}s{GROUP_ID_BYTES}s")
ROOM_KINDS = (EnvelopeKind.MESSAGE, EnvelopeKind.ACTION)

__all__ = [
    "GROUP_PREFIX",
    "GroupLine",
    "GroupPlain",
    "InboundGroup",
    "OutboundGroup",
    "member_set_hash",
]


def share_batch(members: int) -> int:
    """
    How many members one key share envelope lists, for C{members} to share with.
    """
    return max(SHARE_BATCH, min(MAX_RECIPIENTS, -(-members // SHARE_LINES)))


def member_set_hash(session_ids: Iterable[bytes]) -> bytes:
    """
    The short hash of a set of session key ids, the same in any order.
    """
    return hashlib.sha256(MEMBERS_CONTEXT + b"".join(sorted(session_ids))).digest()[:MEMBER_HASH_BYTES]


def _session_id(text: str) -> bytes:
    # vodozemac names a session by its Ed25519 key in unpadded standard base64.
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _str8(value: str, limit: int) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > limit:
        raise E2EError(f"a string field has at most {limit} bytes")
    return bytes((len(raw),)) + raw


def _take_str8(data: bytes, position: int) -> tuple[str, int]:
    if position >= len(data):
        raise E2EError("the group message is truncated")
    end = position + 1 + data[position]
    if end > len(data):
        raise E2EError("the group message is truncated")
    try:
        return data[position + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError as e:
        raise E2EError("a string field is not UTF-8") from e


@dataclass(frozen=True)
class GroupLine:
    """
    One group message as it travels: where to find the session, and the
    Megolm message.
    """

    sender: str
    sender_key: bytes
    sender_session: bytes
    group_id: bytes
    message: bytes

    def encode(self) -> str:
        return encode_b64(
            bytes((GROUP_VERSION,))
            + _str8(self.sender, MAX_NAME_BYTES)
            + _HEADER.pack(self.sender_key, self.sender_session, self.group_id)
            + self.message
        )

    @classmethod
    def decode(cls, text: str) -> GroupLine:
        """
        Parse a group line, checking its structure only.

        @raise E2EError: If it is not a well-formed version 1 group line.
        """
        data = decode_b64(text)
        if not data or data[0] != GROUP_VERSION:
            raise E2EError("not a version 1 group message")
        sender, position = _take_str8(data, 1)
        end = position + _HEADER.size
        if end > len(data):
            raise E2EError("the group message is truncated")
        sender_key, sender_session, group_id = _HEADER.unpack(data[position:end])
        message = data[end:]
        if not 0 < len(message) <= MAX_MESSAGE_BYTES:
            raise E2EError("bad group message length")
        return cls(sender, sender_key, sender_session, group_id, message)


@dataclass(frozen=True)
class GroupPlain:
    """
    What a group message says, once decrypted.

    @ivar members: How many sessions the sender shared its group with.
    @ivar member_hash: L{member_set_hash} of those sessions.
    """

    kind: EnvelopeKind
    room: str
    sender: str
    timestamp_ms: int
    members: int
    member_hash: bytes
    text: str

    def encode(self) -> bytes:
        raw = self.text.encode("utf-8")
        if len(raw) > MAX_TEXT_BYTES:
            raise E2EError(f"an encrypted message has at most {MAX_TEXT_BYTES} bytes of UTF-8")
        return (
            bytes((self.kind,))
            + _str8(self.room, MAX_ROOM_BYTES)
            + _str8(self.sender, MAX_NAME_BYTES)
            + _PLAIN_TAIL.pack(self.timestamp_ms, self.members, self.member_hash)
            + raw
        )

    @classmethod
    def decode(cls, data: bytes) -> GroupPlain:
        """
        @raise E2EError: If C{data} is not a well-formed plaintext.
        """
        if not data:
            raise E2EError("an empty group message")
        try:
            kind = EnvelopeKind(data[0])
        except ValueError as e:
            raise E2EError(f"unknown group message kind {data[0]}") from e
        if kind not in ROOM_KINDS:
            raise E2EError(f"a group message cannot be a {kind.name.lower()}")
        room, position = _take_str8(data, 1)
        sender, position = _take_str8(data, position)
        end = position + _PLAIN_TAIL.size
        if end > len(data):
            raise E2EError("the group message is truncated")
        timestamp_ms, members, member_hash = _PLAIN_TAIL.unpack(data[position:end])
        try:
            text = data[end:].decode("utf-8")
        except UnicodeDecodeError as e:
            raise E2EError("the text is not UTF-8") from e
        if len(data) - end > MAX_TEXT_BYTES:
            raise E2EError("the text is too long")
        return cls(kind, room, sender, timestamp_ms, members, member_hash, text)


class OutboundGroup:
    """
    This client's outbound group session: the ratchet it encrypts with, and
    the sessions it was shared with.

    @ivar owner_session: The key id of the X25519 session key it was made
        under (receivers file it under that).
    @ivar shared: The key ids of the sessions it was shared with.
    """

    def __init__(self, owner_session: bytes, now_ms: int, previous: OutboundGroup | None = None) -> None:
        """
        @param previous: The session this one replaces: its id and how many
            messages it sent go with every share, so that a receiver can
            tell that the last of them did not reach it.
        """
        self.session = vodozemac.GroupSession()
        self.previous: tuple[bytes, int] | None = (
            None if previous is None else (previous.group_id, previous.message_index)
        )
        self.owner_session = owner_session
        self.created_ms = now_ms
        self.shared: set[bytes] = set()
        # The client's directory version when it was last shared (L{shared}
        # is then the view, and nothing needs checking until it changes).
        self.directory_version = -1
        self.group_id: bytes = _session_id(self.session.session_id)

    @property
    def message_index(self) -> int:
        return self.session.message_index

    def session_key(self) -> str:
        """
        The ratchet's current state and the session's signing key, signed
        by it: what a member needs to decrypt from the next message on.
        """
        return self.session.session_key.to_base64()

    def share_text(self) -> str:
        """
        The text of a key share: the L{session_key}, then, if it replaces
        one, that session's id and its number of messages.
        """
        if self.previous is None:
            return self.session_key()
        group_id, count = self.previous
        return f"{self.session_key()} {encode_b64(group_id)} {count}"

    def worn_out(self, now_ms: int) -> bool:
        """
        Whether it has sent L{GROUP_ROTATE_AFTER_MESSAGES} messages or is
        L{GROUP_ROTATE_AFTER_MS} old.
        """
        return (
            self.message_index >= GROUP_ROTATE_AFTER_MESSAGES
            or now_ms - self.created_ms >= GROUP_ROTATE_AFTER_MS
        )

    def encrypt(self, plain: GroupPlain) -> bytes:
        """
        Encrypt and sign one message, advancing the ratchet.
        """
        return self.session.encrypt(plain.encode()).to_bytes()


def parse_share(text: str) -> tuple[str, tuple[bytes, int] | None]:
    """
    Split a key share's text (L{OutboundGroup.share_text}).

    @return: The session key, and the replaced session's id and message
        count, if any.
    @raise E2EError: If it is not in that form.
    """
    parts = text.split(" ")
    if len(parts) == 1:
        return parts[0], None
    if len(parts) != 3 or not parts[2].isdigit() or len(parts[2]) > 10:
        raise E2EError("a malformed key share")
    group_id = decode_b64(parts[1])
    if len(group_id) != GROUP_ID_BYTES:
        raise E2EError("a malformed key share")
    return parts[0], (group_id, int(parts[2]))


class InboundGroup:
    """
    A sender's group session as one receiver holds it: the ratchet from the
    next expected message on, never earlier.

    @ivar next_index: The index the next message should have.
    """

    def __init__(self, sender_key: bytes, sender_session: bytes, session_key: str) -> None:
        """
        @raise E2EError: If C{session_key} is not a signed Megolm session key.
        """
        try:
            self.session = vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key))
        except ValueError as e:
            raise E2EError(f"not a group session key: {e}") from e
        self.sender_key = sender_key
        self.sender_session = sender_session
        self.group_id = _session_id(self.session.session_id)
        self.next_index = self.session.first_known_index

    def decrypt(self, message: bytes) -> tuple[GroupPlain, int, int]:
        """
        Check and decrypt one message, then forget the keys up to it.

        @return: The plaintext, its index, and how many messages of the
            session were skipped before it (a gap).
        @raise E2EError: If the message is malformed, its index did not go
            up (a replay or a reordering), or its MAC or signature fails.
        """
        try:
            parsed = vodozemac.MegolmMessage.from_bytes(message)
        except ValueError as e:
            raise E2EError(f"not a group message: {e}") from e
        index = parsed.message_index()
        if index < self.next_index:
            raise E2EError(
                f"a replay, or out of order: its index {index} is behind the next expected one"
                f" ({self.next_index})"
            )
        try:
            decrypted = self.session.decrypt(parsed)
        except ValueError as e:
            raise E2EError("the group message does not decrypt or is not signed by its session") from e
        plain = GroupPlain.decode(decrypted.plaintext)
        # Keep only the ratchet after this message: what was decrypted now
        # cannot be decrypted again from this memory (forward secrecy).
        exported = self.session.export_at(index + 1)
        if exported is not None:
            self.session = vodozemac.InboundGroupSession.import_session(exported)
        gap = index - self.next_index
        self.next_index = index + 1
        return plain, index, gap
