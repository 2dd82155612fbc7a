"""
The headless E2E client: typed commands in, envelope lines out; server
lines in, verified plaintext events out. No network, no threads: the caller
moves the lines (a GUI, a test, a bot).

    client = E2EClient(Identity.load_or_create(path), PinStore(pins_path))
    for event in client.start(): ...          # Send("/e2e hello")
    for event in client.receive(raw_line): ...  # Send, Show, Secure, NewKey, ...
    for event in client.command("hello"): ...   # Send("/e2e send ...") when secure
    for event in client.check_timeouts(): ...   # now and then: Alert if unregistered

Every event is a small dataclass: L{Send} (a line for the server), L{Show}
(a plain server line to display as it is), L{Secure} (a decrypted, verified
message), L{NewKey}, L{KeyChanged}, L{Rejected}, L{Notice}, L{Alert} (a
warning about what the server does), L{LockChange} (the lock moved: a line
for the message area) and L{Unauthenticated} (plain chat that must not be
shown under a member's name).

The server is the adversary: it writes the member list, the key lines and
decides what is delivered. So the client keeps its own view of the room
(one L{Roster}, the same model the window shows), encrypts only to members
of that view, pins members' keys only, refuses envelopes from a session not
listed for their sender, shares its group session with the members of that
view only (a new one after anyone leaves), compares every room message's
member set with its view, reports index and counter gaps, and never sends
chat in the clear without the user's consent once the room was locked (or
while its own keys are not registered).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from chatroom.core.chat import CLIENT_COMMANDS
from chatroom.core.commands import ParseError, parse_command
from chatroom.e2e.envelope import (
    SEND_PREFIX,
    Envelope,
    EnvelopeKind,
    RecipientError,
    seal,
)
from chatroom.e2e.group import (
    GROUP_PREFIX,
    GroupLine,
    GroupPlain,
    InboundGroup,
    OutboundGroup,
    member_set_hash,
    parse_share,
    share_batch,
)
from chatroom.e2e.keys import (
    SESSION_LIFETIME_MS,
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
from chatroom.roster import Roster
from chatroom.wire import Kind, ServerLine, WireError, parse_line, sanitize

# An envelope whose timestamp is further than this from the receiver's
# clock, either way, is stale (the window allows for clock skew).
REPLAY_WINDOW_SECONDS = 300.0
# Bounds on the replay state: message ids remembered, counter streams kept.
MAX_SEEN_IDS = 65_536
MAX_SENDER_SESSIONS = 4_096
# Keys kept for names not (yet) in the member list.
MAX_UNLISTED = 10_000
# Group sessions kept per sender session: the current one and a few that
# messages on their way may still use.
MAX_GROUPS_PER_SENDER = 4
# Views of the room (member set hashes) kept for the grace period.
MAX_RECENT_VIEWS = 64
MAX_FILTERS = 32
# A server that has not completed registration this long after /e2e hello
# is reported.
REGISTER_TIMEOUT = 15.0
# A new session key is made once the current one is this old.
ROTATE_AFTER_MS = SESSION_LIFETIME_MS // 2
# A member who left (or joined) less than this ago may still be missing
# from (or listed in) a message that was on its way: no warning for that.
MEMBERSHIP_GRACE_SECONDS = 30.0
# The sender's signed time and the server's differ by more than this: say so.
CLOCK_FLAG_SECONDS = 60.0
_GUEST = re.compile(r"guest[0-9]+", re.IGNORECASE)
_CHAT = (Kind.MESSAGE, Kind.WHISPER, Kind.ACTION)
_ROOM_KINDS = (EnvelopeKind.MESSAGE, EnvelopeKind.ACTION)


def is_guest(name: str) -> bool:
    """
    Whether C{name} is a guest name the server hands out (never pinned).
    """
    return _GUEST.fullmatch(name) is not None


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
    @ivar received: The server's (unsigned) timestamp; C{sent} is the
        sender's signed one, in seconds, which is the one to show.
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

    @property
    def time(self) -> datetime:
        """
        The sender's signed time: the time to show.
        """
        return datetime.fromtimestamp(self.sent, UTC)

    @property
    def clock_difference(self) -> float:
        """
        Seconds between the server's timestamp and the signed one.
        """
        return self.received.timestamp() - self.sent


@dataclass(frozen=True)
class NewKey:
    """
    A member was seen with a key for the first time (pinned, unverified;
    a guest's key is never pinned): it receives what is sent to the room.
    """

    name: str
    fingerprint: str
    guest: bool = False
    pinned: bool = True

    @property
    def text(self) -> str:
        if self.guest:
            return (
                f"{self.name} has key {self.fingerprint} and now receives your messages (a guest name:"
                " never pinned, cannot be verified)"
            )
        if not self.pinned:
            return (
                f"{self.name} has key {self.fingerprint}, NOT pinned: the pin store is full (a key"
                f" change for {self.name} would not be noticed)"
            )
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


@dataclass(frozen=True)
class Alert:
    """
    A warning about what the server (or a member) did: a recipient list
    that differs from this client's view, missing messages, an unanswered
    registration, an odd listing of this client's own keys.
    """

    text: str


@dataclass(frozen=True)
class LockChange:
    """
    The lock moved: chat typed from now on goes encrypted (C{locked}) or
    not. C{missing} names who has no keys; C{consent} says whether chat
    needs C{/plain} before it goes in the clear.
    """

    locked: bool
    missing: tuple[str, ...] = ()
    consent: bool = True
    members: int = 0

    @property
    def text(self) -> str:
        if self.locked:
            return f"Locked: chat goes end-to-end encrypted to the {self.members} members shown"
        who = ", ".join(self.missing) or "someone"
        then = (
            "nothing goes in the clear unless you type /plain"
            if self.consent
            else "chat goes in the clear (the server can read and change it)"
        )
        return f"UNLOCKED: not end-to-end encrypted, as {who} has no keys (or the server hides them); {then}"


@dataclass(frozen=True)
class Unauthenticated:
    """
    Plain chat that must not be shown under a member's name: it came while
    the room was locked, or is said to be from a member with keys, so the
    server may have written it.
    """

    line: ServerLine

    @property
    def text(self) -> str:
        kinds: dict[str, str] = {Kind.WHISPER: "whisper", Kind.ACTION: "action"}
        what = kinds.get(self.line.kind, "message")
        return (
            f"unauthenticated plain {what} the server says is from {self.line.source}"
            f" (anyone could have written it): {self.line.text}"
        )


Event = Send | Show | Secure | NewKey | KeyChanged | Rejected | Notice | Alert | LockChange | Unauthenticated


class ReplayGuard:
    """
    Refuses repeats, counters that did not go up and stale timestamps, and
    reports gaps in a sender's counters.

    Counters are kept per sender identity, session and I{stream} (the
    room's messages, or the whispers to one name: each has its own counter,
    so a receiver can tell a gap from a message that was not for it). The
    client only checks envelopes from sessions listed for their sender, so
    made-up sessions never reach this state; a session's counters are
    dropped (L{forget}) when it is no longer listed.
    """

    def __init__(self, window: float = REPLAY_WINDOW_SECONDS) -> None:
        self.window = window
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._counters: OrderedDict[tuple[bytes, bytes, str], int] = OrderedDict()

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
        last = self._counters.get(_stream(envelope))
        if last is not None and envelope.counter <= last:
            raise E2EError("its counter went backwards: replayed or reordered")

    def accept(self, envelope: Envelope, now: float) -> int:
        """
        Remember C{envelope}, which passed L{check} and decrypted.

        @return: How many messages of its stream are missing before it.
        """
        self._seen[envelope.message_id] = now + 2 * self.window
        if len(self._seen) > MAX_SEEN_IDS:
            self._seen.popitem(last=False)
        stream = _stream(envelope)
        last = self._counters.get(stream)
        self._counters[stream] = envelope.counter
        self._counters.move_to_end(stream)
        if len(self._counters) > MAX_SENDER_SESSIONS:
            self._counters.popitem(last=False)
        return 0 if last is None else envelope.counter - last - 1

    def forget(self, session_id: bytes) -> None:
        """
        Drop the counters of a session that is no longer listed.
        """
        for stream in [s for s in self._counters if s[1] == session_id]:
            del self._counters[stream]


def _next_change(bundle: KeyBundle, now_ms: int, skew_ms: int) -> float:
    """
    When C{bundle} next becomes usable or unusable (L{KeyBundle.valid_at}).
    """
    if now_ms < bundle.issued_ms - skew_ms:
        return bundle.issued_ms - skew_ms
    if now_ms < bundle.expires_ms + skew_ms:
        return bundle.expires_ms + skew_ms
    return float("inf")


def stream_of(kind: EnvelopeKind, target: str) -> str:
    """
    The counter stream of a message: the room's, the whispers to C{target},
    or the key shares (each receiver gets only some of those, so their
    counter only has to go up).
    """
    if kind is EnvelopeKind.KEY_SHARE:
        return "share"
    return f"whisper {target.casefold()}" if kind is EnvelopeKind.WHISPER else "room"


class _Directory(dict[str, tuple[str, KeyBundle]]):
    """
    Members' key bundles by folded name, counting its changes (so the
    member set hash of the view is computed once per change, not per message).
    """

    version = 0

    def __setitem__(self, key: str, value: tuple[str, KeyBundle]) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.version += 1
        super().__delitem__(key)

    def pop(self, key: str, *default: None) -> tuple[str, KeyBundle] | None:  # type: ignore[override]
        self.version += 1
        return super().pop(key, *default)


def _stream(envelope: Envelope) -> tuple[bytes, bytes, str]:
    return (envelope.sender_key, envelope.sender_session, stream_of(envelope.kind, envelope.target))


class E2EClient:
    """
    All the E2E state of one connection: keys, the room as this client
    sees it, directory, pins, replay state and filters.

    @ivar enabled: Whether to encrypt when every member supports it (the
        user's switch; on by default).
    @ivar required: Whether to refuse to send chat in the clear even with
        consent (C{--require-e2e}).
    @ivar ever_locked: Whether the room was locked on this or an earlier
        connection of the same run: from then on chat goes in the clear
        only after C{/plain}.
    @ivar name: This client's name, as the server last said.
    @ivar roster: The room's members, as the window shows them.
    @ivar directory: Members' verified key bundles by folded name.
    @ivar blocked: Folded names whose key changed and is not trusted yet,
        with every new key shown for each since.
    """

    def __init__(
        self,
        identity: Identity,
        pins: PinStore,
        clock: Callable[[], float] = time.time,
        enabled: bool = True,
        required: bool = False,
        ever_locked: bool = False,
    ) -> None:
        self.identity = identity
        self.pins = pins
        self.clock = clock
        self.session = Session(identity, issued_ms=self._now_ms())
        self.enabled = enabled
        self.required = required
        self.ever_locked = ever_locked
        self.name = ""
        self.room: str | None = None
        self.registered = False
        self.roster = Roster()
        self.directory = _Directory()
        self.blocked: dict[str, list[bytes]] = {}
        self.filters: list[str] = []
        self.guard = ReplayGuard()
        self._counters: dict[str, int] = {}
        # Keys for names not (yet) in the member list, and when keys were learned.
        self._unlisted: OrderedDict[str, tuple[str, KeyBundle]] = OrderedDict()
        self._learned: dict[bytes, float] = {}
        # Sessions of members who just left: still fine in messages on their way.
        self._departed: dict[bytes, float] = {}
        # The key whose safety number /verify showed, by folded name.
        self._shown: dict[str, bytes] = {}
        # Who lacked keys when the user typed /plain; None: no consent.
        self._consent: frozenset[str] | None = None
        self._locked = False
        self._hello_at: float | None = None
        self._hello_reported = False
        self._next_session: Session | None = None
        self._previous_session: Session | None = None
        # This client's group session, and the senders' ones by sender session.
        self._outbound: OutboundGroup | None = None
        self._inbound: dict[bytes, OrderedDict[bytes, InboundGroup]] = {}
        # The member set hash of this client's view of the room, of the
        # directory version it was computed for, and earlier views with the
        # time until which a message may still carry them.
        self._view: tuple[int, int, bytes] = (-1, 0, b"")
        self._recent_views: OrderedDict[bytes, float] = OrderedDict()
        self._missing: tuple[tuple[int, int, bool, str, bytes], float, tuple[str, ...]] | None = None
        self._registered_at = 0.0

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # State the user sees

    @property
    def secure(self) -> bool:
        """
        The lock: whether chat typed now goes out end-to-end encrypted.
        """
        return self.enabled and self.registered and len(self.roster) > 0 and not self.missing()

    def missing(self) -> list[str]:
        """
        Who in the room has no usable key here: none listed, or one past its
        signed lifetime ("you" first if this client's own keys are not
        registered or no longer valid).
        """
        # Computed once per change of the members, the keys, or the time a
        # key becomes usable or expires, not for every line.
        now = self._now_ms()
        key = (
            self.roster.version,
            self.directory.version,
            self.registered,
            self.name,
            self.session.session_id,
        )
        cached = self._missing
        if cached is not None and cached[0] == key and now < cached[1]:
            return list(cached[2])
        skew = int(REPLAY_WINDOW_SECONDS * 1000)
        until = _next_change(self.session.bundle, now, skew)
        names = []
        for name in self.roster.names():
            entry = self.directory.get(name.casefold())
            if entry is not None:
                until = min(until, _next_change(entry[1], now, skew))
            if entry is None or not self._usable(entry[1]):
                names.append(name)
        names.sort()
        if not self._ready:
            names = ["you", *(n for n in names if n.casefold() != self.name.casefold())]
        self._missing = (key, until, tuple(names))
        return names

    @property
    def _ready(self) -> bool:
        # This client's own keys are registered and within their lifetime.
        return self.registered and self._usable(self.session.bundle)

    def _usable(self, bundle: KeyBundle) -> bool:
        return bundle.valid_at(self._now_ms(), int(REPLAY_WINDOW_SECONDS * 1000))

    @property
    def needs_consent(self) -> bool:
        """
        Whether chat may go in the clear only after C{/plain}: once the room
        was locked, and while this client's own keys are not registered.
        """
        return self.enabled and (self.ever_locked or not self.registered)

    def start(self) -> list[Event]:
        """
        The lines to send once connected: ask for a registration challenge.
        """
        self._hello_at = self.clock()
        return [Send("/e2e hello")]

    def check_timeouts(self) -> list[Event]:
        """
        Report a server that has not completed registration
        L{REGISTER_TIMEOUT} seconds after C{/e2e hello} (call it then).
        """
        if (
            self.registered
            or self._hello_reported
            or self._hello_at is None
            or self.clock() - self._hello_at < REGISTER_TIMEOUT
        ):
            return []
        self._hello_reported = True
        return [
            Alert(
                f"the server has not registered your end-to-end keys {REGISTER_TIMEOUT:.0f} s after"
                " /e2e hello: nothing you type is end-to-end encrypted, and nothing goes in the clear"
                " unless you type /plain"
            )
        ]

    # Typed commands

    def command(self, text: str) -> list[Event]:
        """
        Turn one line the user typed into events; chat goes out encrypted
        when L{secure} (a whisper: when its addressee has a key), in the
        clear only as L{needs_consent} allows.
        """
        events = self._rotate()
        word, _, rest = text.partition(" ")
        local = {"/trust": self._trust, "/verify": self._verify, "/plain": self._plain}.get(word.lower())
        if local is not None:
            return [*events, *local(rest.split())]
        try:
            command = parse_command(text, CLIENT_COMMANDS)
        except ParseError:
            return [*events, Send(text)]
        if self.enabled and command.name in ("filter", "unfilter"):
            events.append(self._filter(command.name, command.args))
        elif command.name in ("say", "me"):
            kind = EnvelopeKind.MESSAGE if command.name == "say" else EnvelopeKind.ACTION
            events += self._send_room(kind, command.args[0], text)
        elif command.name == "whisper":
            events += self._send_whisper(command.args[0], command.args[1], text)
        else:
            events.append(Send(text))
        return self._with_lock(events)

    def _filter(self, name: str, args: tuple[str, ...]) -> Notice:
        # With E2E the server cannot read the chat it would filter, and the
        # words would tell it what the user hides: they stay here.
        if not args:
            shown = ", ".join(self.filters) or "none"
            return Notice(f"your filters (kept in this client, not sent to the server): {shown}")
        word = args[0].casefold()
        if name == "unfilter":
            if word not in self.filters:
                return Notice(f"no filter {args[0]}")
            self.filters.remove(word)
            return Notice(f"filter removed: {args[0]}")
        if word in self.filters:
            return Notice(f"already filtered: {args[0]}")
        if len(self.filters) >= MAX_FILTERS:
            return Notice(f"at most {MAX_FILTERS} filters")
        self.filters.append(word)
        return Notice(f"filter added, kept in this client (the server is not told): {args[0]}")

    def _send_room(self, kind: EnvelopeKind, body: str, typed: str) -> list[Event]:
        if not self.enabled:
            return [Send(typed)]
        changed = sorted(self.directory[key][0] for key in self.blocked if key in self.directory)
        if changed:
            return [Notice(f"not sent: the key of {', '.join(changed)} changed; /verify, then /trust")]
        if not self.secure:
            return self._in_the_clear(typed, self.missing())
        return self._send_group(kind, body)

    def _send_group(self, kind: EnvelopeKind, body: str) -> list[Event]:
        """
        Encrypt a room message with this client's group session: a new one
        when a session it was shared with is no longer in the room (a
        leave, kick, ban or new key), after L{GROUP_ROTATE_AFTER_MESSAGES}
        messages or L{GROUP_ROTATE_AFTER_MS}; shared first with every
        member who lacks it (a newcomer gets the current state, so no
        earlier message). The members are looked at only when the directory
        changed since the last message.
        """
        assert self.room is not None
        now = self._now_ms()
        own = self.session.session_id
        count, member_hash = self._view_hash()
        plain = GroupPlain(kind, self.room, self.name, now, count, member_hash, body)
        try:
            plain.encode()
        except E2EError as e:
            return [Notice(f"not sent: {e}")]
        group = previous = self._outbound
        if group is not None and (group.owner_session != own or group.worn_out(now)):
            group = None
        if group is not None and group.directory_version == self.directory.version:
            return self._encrypt_group(group, plain, [])
        bundles = {bundle.session_id: bundle for _, bundle in self.directory.values()}
        if group is None or not group.shared <= bundles.keys():
            group = OutboundGroup(own, now, previous)
            group.shared.add(own)
            self._keep_inbound(InboundGroup(self.identity.public, own, group.session_key()))
        newcomers = [bundle for session_id, bundle in bundles.items() if session_id not in group.shared]
        events: list[Event] = []
        size = share_batch(len(newcomers))
        for start in range(0, len(newcomers), size):
            batch = newcomers[start : start + size]
            shared = self._seal(EnvelopeKind.KEY_SHARE, group.share_text(), batch, "")
            if not all(isinstance(event, Send) for event in shared):
                return shared
            events += shared
        group.shared.update(bundle.session_id for bundle in newcomers)
        group.directory_version = self.directory.version
        self._outbound = group
        return self._encrypt_group(group, plain, events)

    def _encrypt_group(self, group: OutboundGroup, plain: GroupPlain, events: list[Event]) -> list[Event]:
        message = group.encrypt(plain)
        line = GroupLine(self.name, self.identity.public, group.owner_session, group.group_id, message)
        return [*events, Send(GROUP_PREFIX + line.encode())]

    def _view_hash(self) -> tuple[int, bytes]:
        """
        The number and L{member_set_hash} of the sessions this client sees
        in the room (its own included), computed once per change; a view
        replaced by a newer one stays acceptable in messages for
        L{MEMBERSHIP_GRACE_SECONDS}.
        """
        version, count, current = self._view
        if version != self.directory.version:
            sessions = {bundle.session_id for _, bundle in self.directory.values()}
            count, new = len(sessions), member_set_hash(sessions)
            if new != current:
                now = self.clock()
                if current:
                    self._recent_views[current] = now + MEMBERSHIP_GRACE_SECONDS
                self._recent_views.pop(new, None)
                for old in [h for h, until in self._recent_views.items() if until < now]:
                    del self._recent_views[old]
                while len(self._recent_views) > MAX_RECENT_VIEWS:
                    self._recent_views.popitem(last=False)
            self._view = (self.directory.version, count, new)
            current = new
        return count, current

    def _tail_gap(
        self, sender: str, sender_session: bytes, previous: tuple[bytes, int] | None
    ) -> list[Event]:
        """
        Report the last messages of a sender's replaced group session that
        did not arrive (a gap the next message's index cannot show).
        """
        groups = self._inbound.get(sender_session)
        old = None if previous is None or groups is None else groups.get(previous[0])
        if old is None or previous is None or old.next_index >= previous[1]:
            return []
        gap, old.next_index = previous[1] - old.next_index, previous[1]
        return [
            Alert(
                f"{gap} earlier room messages from {sender} did not reach you (its previous group session"
                f" ended at index {previous[1]}): the server dropped or withheld them"
            )
        ]

    def _keep_inbound(self, group: InboundGroup) -> None:
        groups = self._inbound.setdefault(group.sender_session, OrderedDict())
        if group.group_id in groups:
            # A session is shared once: never back to an earlier state of
            # one already held (what it read or skipped stays gone).
            return
        groups[group.group_id] = group
        while len(groups) > MAX_GROUPS_PER_SENDER:
            groups.popitem(last=False)

    def _send_whisper(self, target: str, body: str, typed: str) -> list[Event]:
        if not self.enabled:
            return [Send(typed)]
        key = target.casefold()
        if key in self.blocked:
            return [Notice(f"not sent: the key of {target} changed; /verify {target}, then /trust {target}")]
        entry = self.directory.get(key)
        if not self._ready or entry is None or not self._usable(entry[1]):
            return self._in_the_clear(typed, [target] if self._ready else self.missing())
        name, bundle = entry
        own = self.session.bundle
        return self._seal(EnvelopeKind.WHISPER, body, [bundle] if bundle == own else [bundle, own], name)

    def _in_the_clear(self, typed: str, missing: list[str]) -> list[Event]:
        who = ", ".join(missing) or "someone"
        if self.required:
            return [Notice(f"not sent: it cannot be end-to-end encrypted ({who} has no keys)")]
        if self.needs_consent and not (self._consent is not None and set(missing) <= self._consent):
            return [
                Notice(
                    f"not sent: it cannot be end-to-end encrypted, as {who} has no keys (or the server"
                    " hides them). Type /plain to send chat in the clear (the server can read and change"
                    " it) until the room locks again"
                )
            ]
        return [Send(typed)]

    def _plain(self, args: list[str]) -> list[Event]:
        if args:
            return [Notice("usage: /plain (then chat goes in the clear until the room locks again)")]
        if self.secure:
            return [Notice("the room is locked: chat goes end-to-end encrypted, nothing to allow")]
        if self.required:
            return [Notice("--require-e2e is on: chat never goes in the clear")]
        missing = self.missing()
        self._consent = frozenset(missing)
        return [
            Notice(
                f"chat now goes IN THE CLEAR (the server can read and change it) while"
                f" {', '.join(missing)} {'have' if len(missing) > 1 else 'has'} no keys; this ends when the"
                " room locks again, or when someone else turns up without keys"
            )
        ]

    def _seal(self, kind: EnvelopeKind, body: str, bundles: list[KeyBundle], target: str) -> list[Event]:
        assert self.room is not None
        stream = stream_of(kind, target)
        counter = self._counters.get(stream, 0) + 1
        try:
            envelope = seal(
                self.session,
                kind=kind,
                room=self.room,
                sender=self.name,
                text=body,
                recipients=bundles,
                counter=counter,
                timestamp_ms=self._now_ms(),
                target=target,
            )
        except RecipientError as e:
            who = next((n for n, b in self.directory.values() if b.session_id == e.session_id), "a member")
            return [Notice(f"not sent: the session key of {who} is unusable ({e})")]
        except E2EError as e:
            return [Notice(f"not sent: {e}")]
        self._counters[stream] = counter
        return [Send(SEND_PREFIX + envelope.encode())]

    def _trust(self, args: list[str]) -> list[Event]:
        if not args:
            return [Notice("usage: /trust <user> [fingerprint]")]
        key = args[0].casefold()
        if key not in self.blocked or key not in self.directory:
            return [Notice(f"nothing to trust: the key of {args[0]} has not changed")]
        name, bundle = self.directory[key]
        given = "".join(args[1:]).lower()
        shown = self.blocked[key]
        if given:
            if given != bundle.fingerprint.replace(" ", ""):
                return [
                    Alert(
                        f"not trusted: {name}'s key is now {bundle.fingerprint}, not the fingerprint you"
                        " typed (has it changed again?)"
                    )
                ]
        elif shown != [bundle.identity]:
            return [
                Notice(
                    f"{name}'s key changed {len(shown)} times since it was last trusted: type /trust"
                    f" {name} <fingerprint> with the one you checked (now {bundle.fingerprint})"
                )
            ]
        if not self.pins.pin(name, bundle.identity):
            return [Alert(f"cannot trust {name}'s key: the pin store is full")]
        del self.blocked[key]
        self._shown.pop(key, None)
        return [Notice(f"{name}'s new key {bundle.fingerprint} is trusted (unverified)")]

    def _verify(self, args: list[str]) -> list[Event]:
        if not 1 <= len(args) <= 2 or args[1:] not in ([], ["ok"]):
            return [Notice("usage: /verify <user>, then /verify <user> ok once the numbers match")]
        key = args[0].casefold()
        if is_guest(args[0]):
            return [
                Notice(f"{args[0]} is a guest name, which is never pinned: ask them to pick a name first")
            ]
        entry = self.directory.get(key)
        if entry is None:
            return [Notice(f"{args[0]} has no end-to-end key here")]
        name, bundle = entry
        if args[1:] == ["ok"]:
            shown = self._shown.get(key)
            if shown is None:
                return [Notice(f"run /verify {name} first, and compare the number it shows")]
            if shown != bundle.identity:
                return [
                    Alert(
                        f"NOT verified: {name}'s key changed since the safety number was shown; run"
                        f" /verify {name} again"
                    )
                ]
            if key in self.blocked:
                return [Notice(f"run /trust {name} first: its key changed")]
            if not self.pins.mark_verified(name, shown):
                return [Notice(f"NOT verified: {name}'s key is not the pinned one")]
            return [Notice(f"{name} is verified (key {bundle.fingerprint})")]
        number = safety_number(self.identity.public, self.name, bundle.identity, name)
        self._shown[key] = bundle.identity
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
        events = self._rotate()
        if self._locked:
            # Keep the view as it is before this line changes it: messages
            # sent under it may still be on their way (computed only when
            # the directory changed, and never while keys are being listed).
            self._view_hash()
        handler = self._handlers.get(line.kind)
        events += [Show(line)] if handler is None else handler(self, line)
        return self._with_lock(events)

    def _with_lock(self, events: list[Event]) -> list[Event]:
        locked = self.secure
        if locked == self._locked:
            return events
        self._locked = locked
        if locked:
            self.ever_locked = True
            self._consent = None
        missing = () if locked else tuple(self.missing())
        return [*events, LockChange(locked, missing, self.needs_consent, len(self.roster))]

    def _rotate(self) -> list[Event]:
        """
        Register a new session key once the current one is half way through
        its signed lifetime.
        """
        if (
            not self.registered
            or self._next_session is not None
            or self._now_ms() - self.session.bundle.issued_ms < ROTATE_AFTER_MS
        ):
            return []
        self._next_session = Session(self.identity, issued_ms=self._now_ms())
        return [Send("/e2e hello")]

    def _members_changed(self) -> list[Event]:
        """
        Bring the directory in line with the roster: drop the keys of names
        that left, take up keys that came before their name was listed.
        """
        now = self.clock()
        for key in [k for k in self.directory if k not in self.roster]:
            self._forget(key, now)
        events: list[Event] = []
        for key in [k for k in self._unlisted if k in self.roster]:
            name, bundle = self._unlisted.pop(key)
            events += self._learn(name, bundle)
        return events

    def _on_roster(self, line: ServerLine) -> list[Event]:
        if line.kind == Kind.WELCOME and line.args:
            self.name = line.args[0]
        if line.kind == Kind.RENAME and line.args:
            return self._on_rename(line)
        self.roster.apply(line)
        return [Show(line), *self._members_changed()]

    def _on_rename(self, line: ServerLine) -> list[Event]:
        old, new = line.source, line.args[0]
        if old.casefold() == self.name.casefold():
            self.name = new
        entry = self.directory.pop(old.casefold(), None)
        self.blocked.pop(old.casefold(), None)
        self.roster.apply(line)
        events: list[Event] = [Show(line)]
        if entry is not None and new.casefold() in self.roster:
            events += self._learn(new, entry[1])
        return [*events, *self._members_changed()]

    def _on_chat(self, line: ServerLine) -> list[Event]:
        own = line.source.casefold() == self.name.casefold()
        if not self.enabled or own:
            return [Show(line)]
        if self.secure or line.source.casefold() in self.directory:
            # No member with keys sends plain chat in a locked room (nor
            # would it be told apart from the server's own writing).
            return [Unauthenticated(line)]
        if any(word in line.text.casefold() for word in self.filters):
            return []
        return [Show(line)]

    def _on_challenge(self, line: ServerLine) -> list[Event]:
        try:
            room, nonce = line.fields["room"], decode_b64(line.fields["nonce"])
        except (KeyError, E2EError):
            return [Notice("the server sent a bad end-to-end challenge")]
        if self.room is not None and room != self.room:
            return [Alert(f"the server changed the room id from {self.room} to {room}: ignored")]
        self.room = room
        session = self._next_session or self.session
        proof = session.prove(room, nonce)
        sends: list[Event] = [Send(f"/e2e register {session.bundle.encode()} {encode_b64(proof)}")]
        if self._next_session is None:
            sends.append(Send("/e2e keys"))
        return sends

    def _on_key(self, line: ServerLine) -> list[Event]:
        try:
            bundle = KeyBundle.decode(line.args[0] if line.args else "")
        except E2EError as e:
            return [Notice(f"ignored a bad key for {line.source}: {e}")]
        name = line.source
        if not self._usable(bundle):
            return [Alert(f"ignored a key for {name} that is outside its signed lifetime (an old key?)")]
        me = name.casefold() == self.name.casefold()
        if bundle.identity == self.identity.public:
            return self._own_key(name, bundle, me)
        if me:
            return [
                Alert(
                    f"the server lists you with someone else's key {bundle.fingerprint}: ignored (messages"
                    " to you may go to someone else)"
                )
            ]
        if name.casefold() not in self.roster:
            self._unlisted[name.casefold()] = (name, bundle)
            if len(self._unlisted) > MAX_UNLISTED:
                self._unlisted.popitem(last=False)
            return []
        return self._learn(name, bundle)

    def _own_key(self, name: str, bundle: KeyBundle, me: bool) -> list[Event]:
        if me and bundle == self.session.bundle:
            if not self.registered:
                self._registered_at = self.clock()
            self.registered = True
            self.directory[name.casefold()] = (name, bundle)
            return []
        if me and self._next_session is not None and bundle == self._next_session.bundle:
            self._previous_session, self.session = self.session, self._next_session
            self._next_session = None
            self.directory[name.casefold()] = (name, bundle)
            return []
        where = "you" if me else name
        return [
            Alert(
                f"the server lists {where} with your identity key but a session key that is not this"
                " connection's (an old or stolen one?): ignored"
            )
        ]

    def _on_keydrop(self, line: ServerLine) -> list[Event]:
        key = line.source.casefold()
        if key == self.name.casefold():
            self.registered = False
            self.directory.pop(key, None)
            return [Alert("the server says you have no end-to-end keys now")]
        self._unlisted.pop(key, None)
        self._forget(key, self.clock())
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

    def _on_group(self, line: ServerLine) -> list[Event]:
        try:
            return self._open_group(GroupLine.decode(line.args[0] if line.args else ""), line)
        except E2EError as e:
            return [Rejected(str(e), line.source)]

    _handlers: ClassVar[dict[str, Callable[[E2EClient, ServerLine], list[Event]]]] = {
        Kind.WELCOME: _on_roster,
        Kind.LIST: _on_roster,
        Kind.JOIN: _on_roster,
        Kind.LEAVE: _on_roster,
        Kind.RENAME: _on_roster,
        Kind.ADMIN: _on_roster,
        Kind.MESSAGE: _on_chat,
        Kind.WHISPER: _on_chat,
        Kind.ACTION: _on_chat,
        Kind.CHALLENGE: _on_challenge,
        Kind.KEY: _on_key,
        Kind.KEYS: _on_keys,
        Kind.KEYDROP: _on_keydrop,
        Kind.PING: _on_ping,
        Kind.E2E: _on_envelope,
        Kind.GROUP: _on_group,
    }

    def _learn(self, name: str, bundle: KeyBundle) -> list[Event]:
        """
        Put a member's key in the directory, checking it against the pins.
        """
        key = name.casefold()
        old = self.directory.get(key)
        self.directory[key] = (name, bundle)
        if old is None or old[1].session != bundle.session:
            if old is not None:
                self._departed[old[1].session_id] = self.clock() + MEMBERSHIP_GRACE_SECONDS
                self.guard.forget(old[1].session_id)
                self._inbound.pop(old[1].session_id, None)
            self._learned[bundle.session_id] = self.clock()
        if is_guest(name):
            # The server hands guest names out again after a restart: they
            # name no one, so they are never pinned (and never verified),
            # but a new reader is always announced.
            same = old is not None and old[1].identity == bundle.identity
            return [] if same else [NewKey(name, fingerprint(bundle.identity), guest=True)]
        check = self.pins.check(name, bundle.identity)
        if check is PinCheck.NEW:
            pinned = self.pins.pin(name, bundle.identity)
            return [NewKey(name, fingerprint(bundle.identity), pinned=pinned)]
        if check is PinCheck.CHANGED:
            pin = self.pins.get(name)
            assert pin is not None
            shown = self.blocked.setdefault(key, [])
            if old is not None and old[1].identity == bundle.identity and bundle.identity in shown:
                # The same key again (a new session of it): already said.
                return []
            if bundle.identity not in shown:
                shown.append(bundle.identity)
            # Every change is said, also while the name is already held.
            return [KeyChanged(name, fingerprint(pin.key), fingerprint(bundle.identity))]
        # Back to the pinned key: nothing to trust any more.
        self.blocked.pop(key, None)
        return []

    def _purge_departed(self, now: float) -> None:
        for session_id in [s for s, until in self._departed.items() if until < now]:
            del self._departed[session_id]
        while len(self._departed) > MAX_SENDER_SESSIONS:
            del self._departed[next(iter(self._departed))]

    def _forget(self, key: str, now: float) -> None:
        self._purge_departed(now)
        entry = self.directory.pop(key, None)
        self.blocked.pop(key, None)
        self._shown.pop(key, None)
        if entry is not None:
            session_id = entry[1].session_id
            self._departed[session_id] = now + MEMBERSHIP_GRACE_SECONDS
            self._learned.pop(session_id, None)
            self.guard.forget(session_id)
            self._inbound.pop(session_id, None)

    def _own_sessions(self) -> list[Session]:
        return [s for s in (self.session, self._previous_session, self._next_session) if s is not None]

    def _check_sender(self, sender: str, sender_key: bytes, sender_session: bytes) -> bool:
        """
        Check that a message comes from the identity and session key listed
        for the name it is signed with (or from this connection).

        @return: Whether it is this client's own.
        @raise E2EError: If not.
        """
        if sender_key == self.identity.public:
            if sender_session not in {s.session_id for s in self._own_sessions()}:
                raise E2EError("signed by your key from a session that is not this connection's")
            return True
        entry = self.directory.get(sender.casefold())
        if entry is None:
            raise E2EError(f"{sender} is not in the room with a key (as you see it)")
        if entry[1].identity != sender_key:
            raise E2EError(f"not signed by the key listed for {sender}")
        if entry[1].session_id != sender_session:
            raise E2EError(f"sent from a session that is not the one listed for {sender}")
        if sender.casefold() in self.blocked:
            raise E2EError(f"the key of {sender} changed; /trust it first")
        return False

    def _open(self, envelope: Envelope, line: ServerLine) -> list[Event]:
        if envelope.room != self.room:
            raise E2EError(f"for another room ({envelope.room!r})")
        envelope.verify()
        own = self._check_sender(envelope.sender, envelope.sender_key, envelope.sender_session)
        sessions = {s.session_id: s for s in self._own_sessions()}
        now = self.clock()
        self.guard.check(envelope, now)
        mine = next((sessions[r.session_id] for r in envelope.recipients if r.session_id in sessions), None)
        if mine is None:
            raise E2EError("not addressed to you")
        if envelope.kind is EnvelopeKind.KEY_SHARE:
            session_key, previous = parse_share(envelope.decrypt(mine))
            group = InboundGroup(envelope.sender_key, envelope.sender_session, session_key)
            self.guard.accept(envelope, now)
            tail = self._tail_gap(envelope.sender, envelope.sender_session, previous)
            self._keep_inbound(group)
            return tail
        text = sanitize(envelope.decrypt(mine))
        gap = self.guard.accept(envelope, now)
        events: list[Event] = []
        if gap > 0:
            what = "whispers" if envelope.kind is EnvelopeKind.WHISPER else "room messages"
            events.append(
                Alert(
                    f"{gap} earlier {what} from {envelope.sender} did not reach you (its counter jumped"
                    f" to {envelope.counter}): the server dropped or withheld them"
                )
            )
        if envelope.kind in _ROOM_KINDS:
            events += self._compare_recipients(envelope, now)
        else:
            allowed = {envelope.sender_session, mine.session_id}
            target = self.directory.get(envelope.target.casefold())
            if target is not None:
                allowed.add(target[1].session_id)
            extra = envelope.recipient_ids() - allowed
            if extra:
                events.append(
                    Alert(
                        f"{envelope.sender}'s whisper was also encrypted to {len(extra)} other"
                        " session(s): someone else may be able to read it"
                    )
                )
        return self._show_secure(events, own, envelope.kind, envelope.sender, envelope.sender_key, text,
                                 envelope.target, line, envelope.timestamp_ms)  # fmt: skip

    def _show_secure(
        self,
        events: list[Event],
        own: bool,
        kind: EnvelopeKind,
        sender: str,
        sender_key: bytes,
        text: str,
        target: str,
        line: ServerLine,
        timestamp_ms: int,
    ) -> list[Event]:
        if not own and any(word in text.casefold() for word in self.filters):
            return events
        pin = self.pins.get(sender)
        verified = own or (pin is not None and pin.verified and pin.key == sender_key)
        secure = Secure(
            kind, sender, text, target, fingerprint(sender_key), verified, line.timestamp, timestamp_ms / 1000
        )
        return [*events, secure]

    def _open_group(self, message: GroupLine, line: ServerLine) -> list[Event]:
        """
        Check and decrypt a room message sent with a group session: from
        the session listed for its sender, in a group session that sender
        shared with this client, its index past the last one (a jump is
        reported), fresh, for this room, and shared with the members this
        client sees (else a warning).
        """
        own = self._check_sender(message.sender, message.sender_key, message.sender_session)
        groups = self._inbound.get(message.sender_session)
        group = None if groups is None else groups.get(message.group_id)
        if group is None or group.sender_key != message.sender_key:
            if self.clock() - self._registered_at < MEMBERSHIP_GRACE_SECONDS:
                # Sent before the sender knew this client's key: the server
                # hands a group message to every member with keys.
                return []
            raise E2EError(
                f"{message.sender} did not share that group session with you (sent before you joined, or"
                " the server withheld the key)"
            )
        plain, index, gap = group.decrypt(message.message)
        if plain.room != self.room:
            raise E2EError(f"for another room ({plain.room!r})")
        if plain.sender != message.sender:
            raise E2EError(f"signed as {plain.sender!r}, delivered as {message.sender!r}")
        now = self.clock()
        if abs(now - plain.timestamp_ms / 1000) > self.guard.window:
            raise E2EError("stale: its timestamp is too far from now")
        events: list[Event] = []
        if gap > 0:
            events.append(
                Alert(
                    f"{gap} earlier room messages from {message.sender} did not reach you (its message index"
                    f" jumped to {index}): the server dropped or withheld them"
                )
            )
        if not own:
            events += self._compare_members(plain, now)
        return self._show_secure(events, own, plain.kind, plain.sender, message.sender_key,
                                 sanitize(plain.text), "", line, plain.timestamp_ms)  # fmt: skip

    def _compare_members(self, plain: GroupPlain, now: float) -> list[Event]:
        """
        Warn when a group message was shared with a member set other than
        this client's view of the room, now or in the last
        L{MEMBERSHIP_GRACE_SECONDS} (joins and leaves on their way).
        """
        count, current = self._view_hash()
        if plain.member_hash == current or self._recent_views.get(plain.member_hash, 0.0) >= now:
            return []
        if plain.members > count:
            why = f"a reader the server shows {plain.sender} that it hides from you"
        elif plain.members < count:
            why = f"members you see that the server hides from {plain.sender}"
        else:
            why = f"members the server shows you and {plain.sender} differently"
        return [
            Alert(
                f"{plain.sender}'s message was shared with {plain.members} sessions, a different member set"
                f" from the {count} you see: there may be {why}"
            )
        ]

    def _compare_recipients(self, envelope: Envelope, now: float) -> list[Event]:
        """
        Warn where a room message's signed recipients differ from the room
        as this client sees it.
        """
        self._purge_departed(now)
        listed = envelope.recipient_ids()
        view = {bundle.session_id: name for name, bundle in self.directory.values()}
        for session in self._own_sessions():
            view[session.session_id] = self.name
        unknown = [s for s in listed if s not in view and s not in self._departed]
        left_out = sorted(
            name
            for session_id, name in view.items()
            if session_id not in listed
            and name.casefold() != self.name.casefold()
            and now - self._learned.get(session_id, 0.0) > MEMBERSHIP_GRACE_SECONDS
        )
        events: list[Event] = []
        if unknown:
            events.append(
                Alert(
                    f"{envelope.sender}'s message was also encrypted to {len(unknown)} session(s) that"
                    " belong to no member you see: the server may be showing a reader to"
                    f" {envelope.sender} that it hides from you"
                )
            )
        if left_out:
            events.append(
                Alert(
                    f"{envelope.sender}'s message did not go to {', '.join(left_out)}, who you see in the"
                    f" room: the server may be hiding them from {envelope.sender}"
                )
            )
        return events
