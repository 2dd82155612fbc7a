"""
The daemon's side of E2E, as a feature of the room: the key directory,
registration and forwarding.

The server never holds a private key and never sees plaintext. It keeps the
current members' key bundles, hands them to members, checks that a client
registering a key holds it (it signs a fresh challenge), and forwards each
envelope verbatim to the members whose session keys it lists. The commands
are all C{/e2e <subcommand>}:

    /e2e hello                      -> a challenge (room id, nonce)
    /e2e register <bundle> <proof>  -> a key announcement to every member
                                       that sent /e2e hello (so do key drops)
    /e2e keys                       -> one key per member with keys, then a count
    /e2e send <envelope>            -> the envelope to each listed recipient
    /e2e group <message>            -> the group message to every member with keys

Lines with an envelope may be up to L{E2E_MAX_LINE_BYTES} long; transports
that frame lines allow that for lines starting with L{E2E_LINE_PREFIX} only.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from chatroom.core.commands import CommandRegistry, CommandSpec
from chatroom.core.errors import ChatError
from chatroom.core.events import (
    EVERYONE,
    Audience,
    Challenge,
    GroupSealed,
    KeyAnnounced,
    KeyCount,
    KeyDropped,
    Members,
    Sealed,
)
from chatroom.core.ports import MemberRecord
from chatroom.core.room import Feature, Room
from chatroom.e2e.directory import InMemoryKeyDirectory, KeyDirectory
from chatroom.e2e.envelope import E2E_MAX_LINE_BYTES, Envelope, forward_targets
from chatroom.e2e.group import GroupLine
from chatroom.e2e.keys import E2EError, KeyBundle, decode_b64, encode_b64, registration_data, verify_signature

ROOM_ID = "chatroom"
CHALLENGE_BYTES = 32
# Clock difference allowed between a client's signed key lifetime and the server.
BUNDLE_SKEW_MS = 300_000
E2E_LINE_PREFIX = b"/e2e "
USAGE = (
    "usage: /e2e hello | /e2e register <bundle> <proof> | /e2e keys | /e2e send <envelope>"
    " | /e2e group <message>"
)
E2E = CommandSpec(
    "e2e", "<hello|register|keys|send|group> [args]", "end-to-end encryption (used by clients)", 1, 2
)

__all__ = ["E2E_LINE_PREFIX", "E2E_MAX_LINE_BYTES", "E2EFeature", "InMemoryKeyDirectory", "KeyDirectory"]


class E2EFeature(Feature):
    """
    The C{/e2e} commands of a room.

    @ivar room_id: The id clients bind their envelopes to.
    """

    def __init__(
        self,
        room: Room,
        directory: KeyDirectory | None = None,
        room_id: str = ROOM_ID,
        random_bytes: Callable[[int], bytes] = os.urandom,
        shared: bool = False,
    ) -> None:
        """
        @param shared: The room spans several processes: who asked for E2E
            is known only on the member's own node, so key and keydrop
            lines go to everyone (a member that registers on another node
            at the same moment would otherwise miss them).
        """
        self.room = room
        self._shared = shared
        self.directory: KeyDirectory = directory if directory is not None else InMemoryKeyDirectory()
        self.room_id = room_id
        self._random_bytes = random_bytes
        # The members that sent /e2e hello, in that order: only they get
        # key and keydrop lines (a human on a plain client has no use for them).
        self._asked: dict[str, None] = {}
        self._subcommands: dict[str, Callable[[MemberRecord, str], None]] = {
            "hello": self._hello,
            "register": self._register,
            "keys": self._keys,
            "send": self._send,
            "group": self._group,
        }

    def register(self, commands: CommandRegistry) -> None:
        commands.add(E2E, self.e2e)

    def participants(self) -> Audience:
        """
        The audience of key announcements: the members that sent C{/e2e hello}
        here, and every member with registered keys (in a shared room, the
        members of the other nodes that asked).
        """
        if self._shared:
            return EVERYONE
        registered = (member_id for member_id, _ in self.directory.items())
        return Members(tuple(dict.fromkeys([*self._asked, *registered])))

    def left(self, member: MemberRecord) -> None:
        self._asked.pop(member.id, None)
        # Drop the keys at once: the very next envelope must not list them.
        if self.directory.drop(member.id):
            self.room.fanout.publish(KeyDropped(self.room.now(), member.name), self.participants())

    def e2e(self, member: MemberRecord, args: tuple[str, ...]) -> None:
        handler = self._subcommands.get(args[0].lower())
        if handler is None:
            raise ChatError(f"unknown /e2e subcommand {args[0]}: {USAGE}")
        handler(member, args[1] if len(args) > 1 else "")

    def _hello(self, member: MemberRecord, rest: str) -> None:
        challenge = self._random_bytes(CHALLENGE_BYTES)
        self._asked[member.id] = None
        self.directory.set_challenge(member.id, challenge)
        self.room.tell(member, Challenge(self.room.now(), self.room_id, encode_b64(challenge)))

    def _register(self, member: MemberRecord, rest: str) -> None:
        parts = rest.split()
        if len(parts) != 2:
            raise ChatError(f"missing argument: {USAGE}")
        challenge = self.directory.take_challenge(member.id)
        if challenge is None:
            raise ChatError("ask for a challenge first: /e2e hello")
        try:
            bundle = KeyBundle.decode(parts[0])
            proof = decode_b64(parts[1])
        except E2EError as e:
            raise ChatError(f"bad key bundle: {e}") from e
        if not bundle.valid_at(int(self.room.now() * 1000), BUNDLE_SKEW_MS):
            raise ChatError(
                "the session key is outside its signed lifetime: check your clock, then /e2e hello"
            )
        if not verify_signature(bundle.identity, proof, registration_data(self.room_id, challenge, bundle)):
            raise ChatError("the proof does not match the challenge and key: /e2e hello and try again")
        self.directory.register(member.id, bundle)
        self.room.fanout.publish(self._announcement(member, bundle), self.participants())

    def _announcement(self, member: MemberRecord, bundle: KeyBundle) -> KeyAnnounced:
        return KeyAnnounced(self.room.now(), member.name, bundle.encode(), bundle.fingerprint)

    def _keys(self, member: MemberRecord, rest: str) -> None:
        entries = [
            (holder, bundle)
            for member_id, bundle in self.directory.items()
            if (holder := self.room.members.get(member_id)) is not None
        ]
        for holder, bundle in entries:
            self.room.tell(member, self._announcement(holder, bundle))
        self.room.tell(member, KeyCount(self.room.now(), len(entries)))

    def _registered(self, member: MemberRecord) -> KeyBundle:
        """
        C{member}'s registered keys.

        @raise ChatError: If it has none.
        """
        bundle = self.directory.get(member.id)
        if bundle is None:
            raise ChatError("register your end-to-end keys first: /e2e hello")
        return bundle

    @staticmethod
    def _check_sender(
        what: str, member: MemberRecord, bundle: KeyBundle, key: bytes, session: bytes, sender: str
    ) -> None:
        """
        Refuse C{what} (a message C{member} sent) unless it names C{member}
        and its registered keys as its sender.
        """
        if (key, session) != (bundle.identity, bundle.session_id):
            raise ChatError(f"{what} is not from your registered keys")
        if sender != member.name:
            raise ChatError(f"{what} says it is from {sender}, but you are {member.name}")

    def _send(self, member: MemberRecord, rest: str) -> None:
        bundle = self._registered(member)
        try:
            envelope = Envelope.decode(rest)
        except E2EError as e:
            raise ChatError(f"bad envelope: {e}") from e
        if envelope.room != self.room_id:
            raise ChatError(f"the envelope is for room {envelope.room}, this is {self.room_id}")
        self._check_sender(
            "the envelope", member, bundle, envelope.sender_key, envelope.sender_session, envelope.sender
        )
        # Only current members' sessions, each once, and an envelope padded
        # with sessions of nobody is refused: one envelope costs at most a
        # delivery per member.
        sessions = {bundle.session_id: member_id for member_id, bundle in self.directory.items()}
        try:
            targets = forward_targets(envelope, sessions)
        except E2EError as e:
            raise ChatError(f"bad envelope: {e}") from e
        self.room.fanout.publish(Sealed(self.room.now(), member.name, rest), Members(tuple(targets)))

    def _group(self, member: MemberRecord, rest: str) -> None:
        # A group message goes to every member with keys, whatever it says:
        # it costs the server what a plain chat line costs (one delivery
        # per member, at most a few kilobytes), so only who sends it and
        # its structure are checked here; receivers check the rest.
        bundle = self._registered(member)
        try:
            message = GroupLine.decode(rest)
        except E2EError as e:
            raise ChatError(f"bad group message: {e}") from e
        self._check_sender(
            "the group message", member, bundle, message.sender_key, message.sender_session, message.sender
        )
        targets = tuple(member_id for member_id, _ in self.directory.items())
        self.room.fanout.publish(GroupSealed(self.room.now(), member.name, rest), Members(targets))
