"""
The daemon's side of E2E: the key directory, registration and forwarding.

The server never holds a private key and never sees plaintext. It keeps the
current members' key bundles, hands them to members, checks that a client
registering a key holds it (it signs a fresh challenge), and forwards each
envelope line verbatim to the members whose session keys it lists. The
commands are all C{/e2e <subcommand>}:

    /e2e hello                      -> a challenge line (room id, nonce)
    /e2e register <bundle> <proof>  -> a key line to everyone
    /e2e keys                       -> one key line per member with keys, then a keys line
    /e2e send <envelope>            -> an e2e line to each listed recipient

Lines with an envelope may be up to L{E2E_MAX_LINE_BYTES} long; every other
line keeps the plain limit (L{chatroom.protocol.MAX_LINE_BYTES}).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from chatroom.e2e.envelope import E2E_MAX_LINE_BYTES, Envelope
from chatroom.e2e.keys import E2EError, KeyBundle, decode_b64, encode_b64, registration_data, verify_signature
from chatroom.moderation import ModerationSettings
from chatroom.protocol import MAX_LINE_BYTES, ChatFactory, ChatProtocol
from chatroom.room import ChatError, Member, MemberStore, Room
from chatroom.wire import Kind

ROOM_ID = "chatroom"
CHALLENGE_BYTES = 32
USAGE = "usage: /e2e hello | /e2e register <bundle> <proof> | /e2e keys | /e2e send <envelope>"


class KeyDirectory:
    """
    The current members' key bundles, findable by member and by session key id.
    """

    def __init__(self) -> None:
        self._bundles: dict[Member, KeyBundle] = {}
        self._by_session: dict[bytes, Member] = {}

    def register(self, member: Member, bundle: KeyBundle) -> None:
        """
        @raise ChatError: If another member registered the same session key.
        """
        holder = self._by_session.get(bundle.session_id)
        if holder is not None and holder is not member:
            raise ChatError("that session key is registered by someone else: make a new one")
        self.drop(member)
        self._bundles[member] = bundle
        self._by_session[bundle.session_id] = member

    def drop(self, member: Member) -> bool:
        """
        Forget C{member}'s keys; whether it had any.
        """
        bundle = self._bundles.pop(member, None)
        if bundle is None:
            return False
        del self._by_session[bundle.session_id]
        return True

    def get(self, member: Member) -> KeyBundle | None:
        return self._bundles.get(member)

    def holder(self, session_id: bytes) -> Member | None:
        return self._by_session.get(session_id)

    def items(self) -> list[tuple[Member, KeyBundle]]:
        return list(self._bundles.items())


class E2ERoom(Room):
    """
    A L{Room} with the C{/e2e} commands.

    @ivar room_id: The id clients bind their envelopes to.
    """

    def __init__(
        self,
        clock: IReactorTime,
        members: MemberStore | None = None,
        moderation: ModerationSettings | None = None,
        room_id: str = ROOM_ID,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(clock, members, moderation)
        self.room_id = room_id
        self.directory = KeyDirectory()
        self._random_bytes = random_bytes
        self._challenges: dict[Member, bytes] = {}
        self._handlers["e2e"] = self.e2e
        self._subcommands: dict[str, Callable[[Member, str], None]] = {
            "hello": self._hello,
            "register": self._register,
            "keys": self._keys,
            "send": self._send,
        }

    def leave(self, member: Member, reason: str) -> None:
        # Drop the keys at once: the very next envelope must not list them.
        present = member in self.members
        super().leave(member, reason)
        self._challenges.pop(member, None)
        if present and self.directory.drop(member):
            self.broadcast(self.line(Kind.KEYDROP, member.name, f"{member.name} has no end-to-end key now"))

    def e2e(self, member: Member, args: tuple[str, ...]) -> None:
        handler = self._subcommands.get(args[0].lower())
        if handler is None:
            raise ChatError(f"unknown /e2e subcommand {args[0]}: {USAGE}")
        handler(member, args[1] if len(args) > 1 else "")

    def _hello(self, member: Member, rest: str) -> None:
        challenge = self._random_bytes(CHALLENGE_BYTES)
        self._challenges[member] = challenge
        fields = (f"room={self.room_id}", f"nonce={encode_b64(challenge)}")
        self.tell(member, Kind.CHALLENGE, "sign this to register your end-to-end keys", fields)

    def _register(self, member: Member, rest: str) -> None:
        parts = rest.split()
        if len(parts) != 2:
            raise ChatError(f"missing argument: {USAGE}")
        challenge = self._challenges.pop(member, None)
        if challenge is None:
            raise ChatError("ask for a challenge first: /e2e hello")
        try:
            bundle = KeyBundle.decode(parts[0])
            proof = decode_b64(parts[1])
        except E2EError as e:
            raise ChatError(f"bad key bundle: {e}") from e
        if not verify_signature(bundle.identity, proof, registration_data(self.room_id, challenge, bundle)):
            raise ChatError("the proof does not match the challenge and key: /e2e hello and try again")
        self.directory.register(member, bundle)
        self.broadcast(self._key_line(member, bundle))

    def _key_line(self, member: Member, bundle: KeyBundle) -> bytes:
        text = f"{member.name} has end-to-end key {bundle.fingerprint}"
        return self.line(Kind.KEY, member.name, text, (bundle.encode(),))

    def _keys(self, member: Member, rest: str) -> None:
        entries = self.directory.items()
        for holder, bundle in entries:
            member.recipient.deliver(self._key_line(holder, bundle))
        self.tell(
            member, Kind.KEYS, f"{len(entries)} members have end-to-end keys", (f"count={len(entries)}",)
        )

    def _send(self, member: Member, rest: str) -> None:
        bundle = self.directory.get(member)
        if bundle is None:
            raise ChatError("register your end-to-end keys first: /e2e hello")
        try:
            envelope = Envelope.decode(rest)
        except E2EError as e:
            raise ChatError(f"bad envelope: {e}") from e
        if envelope.room != self.room_id:
            raise ChatError(f"the envelope is for room {envelope.room}, this is {self.room_id}")
        if (envelope.sender_key, envelope.sender_session) != (bundle.identity, bundle.session_id):
            raise ChatError("the envelope is not from your registered keys")
        if envelope.sender != member.name:
            raise ChatError(f"the envelope says it is from {envelope.sender}, but you are {member.name}")
        targets = {
            holder: None
            for wrap in envelope.recipients
            if (holder := self.directory.holder(wrap.session_id)) is not None
        }
        if not targets:
            raise ChatError("no recipient of the envelope is in the room")
        line = self.line(Kind.E2E, member.name, "", (rest,))
        for target in targets:
            target.recipient.deliver(line)


class E2EProtocol(ChatProtocol):
    """
    A L{ChatProtocol} that allows longer lines for C{/e2e} commands only.
    """

    # One more byte for the \r of a \r\n line ending, which the framing keeps.
    MAX_LENGTH = E2E_MAX_LINE_BYTES + 1
    too_long = f"line too long: at most {MAX_LINE_BYTES} bytes per line ({E2E_MAX_LINE_BYTES} for /e2e lines)"

    def lineReceived(self, line: bytes) -> None:
        body = line.removesuffix(b"\r")
        limit = E2E_MAX_LINE_BYTES if body[:5].lower() == b"/e2e " else MAX_LINE_BYTES
        if len(body) > limit:
            self._refuse(self.too_long, "an over-long line")
            return
        super().lineReceived(line)


class E2EFactory(ChatFactory):
    """
    Builds an L{E2EProtocol} for every connection.
    """

    def buildProtocol(self, addr: Any) -> E2EProtocol:
        return E2EProtocol(self)
