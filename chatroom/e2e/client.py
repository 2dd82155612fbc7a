"""
The headless E2E client: typed commands in, envelope lines out; server
lines in, verified plaintext events out. No network, no threads: the caller
moves the lines (a GUI, a test, a bot).

    client = E2EClient(Identity.load_or_create(path), PinStore(pins_path))
    for event in client.start(): ...          # Send("/e2e hello")
    for event in client.receive(raw_line): ...  # Send, Show, Secure, NewKey, ...
    for event in client.command("hello"): ...   # Send("/e2e send ...") when secure

Every event is a small dataclass: L{Send} (a line for the server), L{Show}
(a plain server line to display as it is), L{Secure} (a decrypted, verified
message), L{NewKey}, L{KeyChanged}, L{Rejected} and L{Notice}.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from chatroom.core.chat import CLIENT_COMMANDS
from chatroom.core.commands import ParseError, parse_command
from chatroom.e2e.envelope import MAX_RECIPIENTS, SEND_PREFIX, Envelope, EnvelopeKind, seal
from chatroom.e2e.keys import (
    E2EError,
    Identity,
    KeyBundle,
    Session,
    decode_b64,
    encode_b64,
    fingerprint,
    safety_number,
)
from chatroom.e2e.pins import PinCheck, PinStore
from chatroom.wire import ServerLine, WireError, parse_line, sanitize

# An envelope whose timestamp is further than this from the receiver's
# clock, either way, is stale (the window allows for clock skew).
REPLAY_WINDOW_SECONDS = 300.0
# Bounds on the replay state: message ids remembered, sender sessions tracked.
MAX_SEEN_IDS = 65_536
MAX_SENDER_SESSIONS = 4_096
MAX_FILTERS = 32
_GUEST = re.compile(r"guest[0-9]+", re.IGNORECASE)


@dataclass(frozen=True)
class Send:
    """
    A line the caller must send to the server.
    """

    line: str


@dataclass(frozen=True)
class Show:
    """
    A server line that is not end-to-end encrypted, to display as usual.
    """

    line: ServerLine


@dataclass(frozen=True)
class Secure:
    """
    A message that was verified and decrypted.

    @ivar sender: The name the sender signed, pinned to its key (never the
        server's idea of who sent it).
    @ivar verified: Whether the user verified the sender's key out of band.
    @ivar received: The server's timestamp; C{sent} is the sender's.
    """

    kind: EnvelopeKind
    sender: str
    text: str
    target: str
    fingerprint: str
    verified: bool
    received: datetime
    sent: float

    @property
    def display(self) -> str:
        if self.kind is EnvelopeKind.ACTION:
            return f"{self.sender} {self.text}"
        return self.text


@dataclass(frozen=True)
class NewKey:
    """
    A name was seen with a key for the first time, and pinned; unverified.
    """

    name: str
    fingerprint: str

    @property
    def text(self) -> str:
        return f"{self.name} has key {self.fingerprint} (unverified: compare with /verify {self.name})"


@dataclass(frozen=True)
class KeyChanged:
    """
    A name showed up with a key other than the pinned one. Loud: sending to
    that name stops until the user runs C{/trust <name>}.
    """

    name: str
    old_fingerprint: str
    new_fingerprint: str

    @property
    def text(self) -> str:
        return (
            f"WARNING: the key of {self.name} CHANGED from {self.old_fingerprint} to"
            f" {self.new_fingerprint}. Someone may be impersonating {self.name}. Nothing is sent"
            f" to {self.name} until you compare safety numbers (/verify {self.name}) and run"
            f" /trust {self.name}."
        )


@dataclass(frozen=True)
class Rejected:
    """
    An envelope that failed a check and was dropped.

    @ivar source: Who the server claimed sent it (unverified).
    """

    reason: str
    source: str


@dataclass(frozen=True)
class Notice:
    """
    Text for the user from the client itself (answers to /verify, /trust,
    refusals to send).
    """

    text: str


Event = Send | Show | Secure | NewKey | KeyChanged | Rejected | Notice


class ReplayGuard:
    """
    Refuses repeats, counters that went backwards and stale timestamps.
    Bounded: old message ids expire, and the least recently heard sender
    sessions are forgotten first.
    """

    def __init__(self, window: float = REPLAY_WINDOW_SECONDS) -> None:
        self.window = window
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._counters: OrderedDict[tuple[bytes, bytes], int] = OrderedDict()

    def check(self, envelope: Envelope, now: float) -> None:
        """
        @raise E2EError: If C{envelope} is stale, a repeat, or out of order.
        """
        if abs(now - envelope.timestamp_ms / 1000) > self.window:
            raise E2EError("stale: its timestamp is too far from now")
        while self._seen and next(iter(self._seen.values())) < now:
            self._seen.popitem(last=False)
        if envelope.message_id in self._seen:
            raise E2EError("a replay of a message already received")
        last = self._counters.get((envelope.sender_key, envelope.sender_session))
        if last is not None and envelope.counter <= last:
            raise E2EError("its counter went backwards: replayed or reordered")

    def accept(self, envelope: Envelope, now: float) -> None:
        """
        Remember C{envelope}, which passed L{check} and decrypted.
        """
        self._seen[envelope.message_id] = now + 2 * self.window
        if len(self._seen) > MAX_SEEN_IDS:
            self._seen.popitem(last=False)
        sender = (envelope.sender_key, envelope.sender_session)
        self._counters[sender] = envelope.counter
        self._counters.move_to_end(sender)
        if len(self._counters) > MAX_SENDER_SESSIONS:
            self._counters.popitem(last=False)


class E2EClient:
    """
    All the E2E state of one connection: keys, directory, pins, replay
    state and filters.

    @ivar enabled: Whether to encrypt when every member supports it (the
        user's switch; on by default).
    @ivar required: Whether to refuse to send chat in the clear when
        encryption is not possible (off by default: the room is then
        I{unlocked}, which the user sees through L{secure}).
    @ivar name: This client's name, as the server last said.
    @ivar members: The room's members by folded name.
    @ivar directory: Members' verified key bundles by folded name.
    @ivar blocked: Folded names whose key changed and is not trusted yet.
    """

    def __init__(
        self,
        identity: Identity,
        pins: PinStore,
        clock: Callable[[], float] = time.time,
        enabled: bool = True,
        required: bool = False,
    ) -> None:
        self.identity = identity
        self.session = Session(identity)
        self.pins = pins
        self.clock = clock
        self.enabled = enabled
        self.required = required
        self.name = ""
        self.room: str | None = None
        self.registered = False
        self.members: dict[str, str] = {}
        self.directory: dict[str, tuple[str, KeyBundle]] = {}
        self.blocked: set[str] = set()
        self.filters: list[str] = []
        self.guard = ReplayGuard()
        self._counter = 0

    # State the user sees

    @property
    def secure(self) -> bool:
        """
        The lock: whether chat typed now goes out end-to-end encrypted.
        """
        return (
            self.enabled
            and self.registered
            and 0 < len(self.members) <= MAX_RECIPIENTS
            and all(key in self.directory for key in self.members)
        )

    def start(self) -> list[Event]:
        """
        The lines to send once connected: ask for a registration challenge.
        """
        return [Send("/e2e hello")]

    # Typed commands

    def command(self, text: str) -> list[Event]:
        """
        Turn one line the user typed into events; chat goes out encrypted
        when L{secure} (a whisper: when its addressee has a key).
        """
        word, _, rest = text.partition(" ")
        local = {"/trust": self._trust, "/verify": self._verify}.get(word.lower())
        if local is not None:
            return local(rest.split())
        try:
            command = parse_command(text, CLIENT_COMMANDS)
        except ParseError:
            return [Send(text)]
        if command.name == "filter" and command.args:
            word = command.args[0].casefold()
            if word not in self.filters and len(self.filters) < MAX_FILTERS:
                self.filters.append(word)
        elif command.name == "unfilter" and command.args[0].casefold() in self.filters:
            self.filters.remove(command.args[0].casefold())
        elif command.name in ("say", "me"):
            kind = EnvelopeKind.MESSAGE if command.name == "say" else EnvelopeKind.ACTION
            return self._send_room(kind, command.args[0], text)
        elif command.name == "whisper":
            return self._send_whisper(command.args[0], command.args[1], text)
        return [Send(text)]

    def _send_room(self, kind: EnvelopeKind, body: str, typed: str) -> list[Event]:
        if not self.enabled:
            return [Send(typed)]
        changed = sorted(self.members[key] for key in self.blocked if key in self.members)
        if changed:
            return [Notice(f"not sent: the key of {', '.join(changed)} changed; /verify, then /trust")]
        if not self.secure:
            return self._in_the_clear(typed)
        bundles = [self.directory[key][1] for key in self.members]
        return self._seal(kind, body, bundles, "")

    def _send_whisper(self, target: str, body: str, typed: str) -> list[Event]:
        key = target.casefold()
        if key in self.blocked:
            return [Notice(f"not sent: the key of {target} changed; /verify {target}, then /trust {target}")]
        entry = self.directory.get(key)
        if not (self.enabled and self.registered and entry is not None):
            return self._in_the_clear(typed)
        name, bundle = entry
        own = self.directory[self.name.casefold()][1]
        return self._seal(EnvelopeKind.WHISPER, body, [bundle] if bundle == own else [bundle, own], name)

    def _in_the_clear(self, typed: str) -> list[Event]:
        if self.required:
            return [Notice("not sent: it cannot be end-to-end encrypted (someone has no keys)")]
        return [Send(typed)]

    def _seal(self, kind: EnvelopeKind, body: str, bundles: list[KeyBundle], target: str) -> list[Event]:
        assert self.room is not None
        self._counter += 1
        try:
            envelope = seal(
                self.session,
                kind=kind,
                room=self.room,
                sender=self.name,
                text=body,
                recipients=bundles,
                counter=self._counter,
                timestamp_ms=int(self.clock() * 1000),
                target=target,
            )
        except E2EError as e:
            return [Notice(f"not sent: {e}")]
        return [Send(SEND_PREFIX + envelope.encode())]

    def _trust(self, args: list[str]) -> list[Event]:
        if len(args) != 1:
            return [Notice("usage: /trust <user>")]
        key = args[0].casefold()
        if key not in self.blocked:
            return [Notice(f"nothing to trust: the key of {args[0]} has not changed")]
        name, bundle = self.directory[key]
        self.pins.pin(name, bundle.identity)
        self.blocked.discard(key)
        return [Notice(f"{name}'s new key {bundle.fingerprint} is trusted (unverified)")]

    def _verify(self, args: list[str]) -> list[Event]:
        if not 1 <= len(args) <= 2 or args[1:] not in ([], ["ok"]):
            return [Notice("usage: /verify <user>, then /verify <user> ok once the numbers match")]
        entry = self.directory.get(args[0].casefold())
        if entry is None:
            return [Notice(f"{args[0]} has no end-to-end key here")]
        name, bundle = entry
        if args[1:] == ["ok"]:
            if args[0].casefold() in self.blocked:
                return [Notice(f"run /trust {name} first: its key changed")]
            self.pins.mark_verified(name)
            return [Notice(f"{name} is verified")]
        number = safety_number(self.identity.public, bundle.identity)
        return [
            Notice(
                f"safety number with {name}: {number} (your key {self.identity.fingerprint},"
                f" theirs {bundle.fingerprint}). Compare it with {name} in person or by phone;"
                f" if it matches, type /verify {name} ok"
            )
        ]

    # Server lines

    def receive(self, raw: bytes | str) -> list[Event]:
        """
        Handle one line from the server.
        """
        try:
            line = parse_line(raw)
        except WireError as e:
            return [Notice(f"unreadable line from the server: {e}")]
        return self.handle(line)

    def handle(self, line: ServerLine) -> list[Event]:
        """
        Handle one server line, already parsed (by a client that frames and
        parses lines itself).
        """
        handler = self._handlers.get(line.kind)
        if handler is None:
            return [Show(line)]
        return handler(self, line)

    def _on_welcome(self, line: ServerLine) -> list[Event]:
        self.name = line.args[0] if line.args else self.name
        self.members[self.name.casefold()] = self.name
        return [Show(line)]

    def _on_list(self, line: ServerLine) -> list[Event]:
        if line.text.startswith("users 1-"):
            self.members.clear()
        for name in line.args:
            self.members[name.lstrip("@").casefold()] = name.lstrip("@")
        return [Show(line)]

    def _on_join(self, line: ServerLine) -> list[Event]:
        self.members[line.source.casefold()] = line.source
        return [Show(line)]

    def _on_leave(self, line: ServerLine) -> list[Event]:
        self._forget(line.source)
        self.members.pop(line.source.casefold(), None)
        return [Show(line)]

    def _on_rename(self, line: ServerLine) -> list[Event]:
        old, new = line.source, line.args[0] if line.args else line.source
        events: list[Event] = [Show(line)]
        if old.casefold() == self.name.casefold():
            self.name = new
        self.members.pop(old.casefold(), None)
        self.members[new.casefold()] = new
        entry = self.directory.get(old.casefold())
        self._forget(old)
        if entry is not None:
            events += self._learn(new, entry[1])
        return events

    def _on_challenge(self, line: ServerLine) -> list[Event]:
        try:
            room, nonce = line.fields["room"], decode_b64(line.fields["nonce"])
        except (KeyError, E2EError):
            return [Notice("the server sent a bad end-to-end challenge")]
        self.room = room
        proof = self.session.prove(room, nonce)
        return [
            Send(f"/e2e register {self.session.bundle.encode()} {encode_b64(proof)}"),
            Send("/e2e keys"),
        ]

    def _on_key(self, line: ServerLine) -> list[Event]:
        try:
            bundle = KeyBundle.decode(line.args[0] if line.args else "")
        except E2EError as e:
            return [Notice(f"ignored a bad key for {line.source}: {e}")]
        if bundle == self.session.bundle:
            self.registered = True
        return self._learn(line.source, bundle)

    def _on_keydrop(self, line: ServerLine) -> list[Event]:
        self._forget(line.source)
        return []

    def _on_keys(self, line: ServerLine) -> list[Event]:
        return []

    def _on_ping(self, line: ServerLine) -> list[Event]:
        return [Send(f"/pong {line.args[0]}" if line.args else "/pong")]

    def _on_envelope(self, line: ServerLine) -> list[Event]:
        try:
            envelope = Envelope.decode(line.args[0] if line.args else "")
            return self._open(envelope, line)
        except E2EError as e:
            return [Rejected(str(e), line.source)]

    _handlers: ClassVar[dict[str, Callable[[E2EClient, ServerLine], list[Event]]]] = {
        "welcome": _on_welcome,
        "list": _on_list,
        "join": _on_join,
        "leave": _on_leave,
        "rename": _on_rename,
        "challenge": _on_challenge,
        "key": _on_key,
        "keys": _on_keys,
        "keydrop": _on_keydrop,
        "ping": _on_ping,
        "e2e": _on_envelope,
    }

    def _learn(self, name: str, bundle: KeyBundle) -> list[Event]:
        """
        Put a member's key in the directory, checking it against the pins.
        """
        key = name.casefold()
        self.directory[key] = (name, bundle)
        if bundle.identity == self.identity.public:
            return []
        return self._check_pin(name, bundle.identity)

    def _check_pin(self, name: str, identity: bytes) -> list[Event]:
        if _GUEST.fullmatch(name):
            # The server hands guest names out again after a restart: they
            # name no one, so they are never pinned (and never verified).
            return []
        check = self.pins.check(name, identity)
        if check is PinCheck.NEW:
            self.pins.pin(name, identity)
            return [NewKey(name, fingerprint(identity))]
        if check is PinCheck.CHANGED:
            pin = self.pins.get(name)
            assert pin is not None
            first = name.casefold() not in self.blocked
            self.blocked.add(name.casefold())
            return [KeyChanged(name, fingerprint(pin.key), fingerprint(identity))] if first else []
        return []

    def _forget(self, name: str) -> None:
        self.directory.pop(name.casefold(), None)
        self.blocked.discard(name.casefold())

    def _open(self, envelope: Envelope, line: ServerLine) -> list[Event]:
        if envelope.room != self.room:
            raise E2EError(f"for another room ({envelope.room!r})")
        envelope.verify()
        now = self.clock()
        self.guard.check(envelope, now)
        if self.session.session_id not in envelope.recipient_ids():
            raise E2EError("not addressed to you")
        events: list[Event] = []
        own = envelope.sender_key == self.identity.public
        if not own:
            events = self._check_pin(envelope.sender, envelope.sender_key)
            if envelope.sender.casefold() in self.blocked:
                return [
                    *events,
                    Rejected(f"the key of {envelope.sender} changed; /trust it first", line.source),
                ]
        text = sanitize(envelope.decrypt(self.session))
        self.guard.accept(envelope, now)
        if not own and any(word in text.casefold() for word in self.filters):
            return events
        pin = self.pins.get(envelope.sender)
        verified = own or (pin is not None and pin.verified)
        secure = Secure(
            envelope.kind,
            envelope.sender,
            text,
            envelope.target,
            fingerprint(envelope.sender_key),
            verified,
            line.timestamp,
            envelope.timestamp_ms / 1000,
        )
        return [*events, secure]
