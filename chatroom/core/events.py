"""
Everything the room tells anyone, as frozen dataclasses.

An event says what happened, with the server time it happened at, in
structured fields; it never holds wire bytes. Each transport's codec turns
an event into its own protocol's words, once per event however many
recipients get it. Where an event goes is its L{Audience}, given beside it
to the fan-out port (L{chatroom.core.ports.FanOut}).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chatroom.bans import Ban

# Audiences


@dataclass(frozen=True, slots=True)
class Everyone:
    """
    Every member of the room.
    """


@dataclass(frozen=True, slots=True)
class Admins:
    """
    The room's admins.
    """


@dataclass(frozen=True, slots=True)
class Members:
    """
    The members with these ids (each once).
    """

    ids: tuple[str, ...]


Audience = Everyone | Admins | Members
EVERYONE = Everyone()
ADMINS = Admins()


def one(member_id: str) -> Members:
    """
    The audience of one member.
    """
    return Members((member_id,))


# Events


def shown(address: str | None, cloak: str | None) -> str:
    """
    The address if the audience may see it, else the cloak.
    """
    return address if address is not None else cloak or "?"


@dataclass(frozen=True, slots=True)
class Event:
    """
    Something the room tells someone.

    @ivar at: The server time of the event, POSIX seconds.
    """

    at: float


@dataclass(frozen=True, slots=True)
class ChatEvent(Event):
    """
    Chat from a member: what members' filters may hide from them.

    @ivar sender: The name of the member it comes from.
    @ivar text: What the member wrote.
    """

    sender: str
    text: str

    @property
    def filtered_text(self) -> str:
        """
        The text filters are matched against.
        """
        return self.text


@dataclass(frozen=True, slots=True)
class Said(ChatEvent):
    """
    A member said C{text} to everyone.
    """


@dataclass(frozen=True, slots=True)
class Acted(ChatEvent):
    """
    A member acted (C{/me waves}): C{text} is the action, without the name.
    """

    @property
    def filtered_text(self) -> str:
        return f"{self.sender} {self.text}"


@dataclass(frozen=True, slots=True)
class Whispered(ChatEvent):
    """
    A member whispered C{text} to C{target} alone.
    """

    target: str


@dataclass(frozen=True, slots=True)
class Welcome(Event):
    """
    A new connection joined the room as C{name}.
    """

    name: str


@dataclass(frozen=True, slots=True)
class Joined(Event):
    """
    C{name} joined, connected from C{address} (C{host:port}).

    @ivar address: L{None} for an audience that may not see it (members
        other than admins and the one joining see its cloak instead).
    @ivar cloak: The member's address cloak; L{None} if the room shows
        addresses to everyone.
    """

    name: str
    address: str | None
    cloak: str | None = None

    @property
    def shown(self) -> str:
        """
        What the audience is told of where the member is: its address, or else its cloak.
        """
        return shown(self.address, self.cloak)


@dataclass(frozen=True, slots=True)
class Left(Event):
    """
    C{name} left the room, for C{reason}.
    """

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Arrivals(Event):
    """
    A summary of arrivals and departures past the room's budget of join
    and leave lines: C{left} are gone, then C{joined} (with whether each is
    admin) are here.
    """

    joined: tuple[tuple[str, bool], ...]
    left: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Renamed(Event):
    """
    C{old} is now called C{new}.
    """

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Listed(Event):
    """
    One chunk of the member list: C{names} (with whether each is admin),
    starting at position C{first} (from 1) of C{total}.
    """

    names: tuple[tuple[str, bool], ...]
    first: int
    total: int


@dataclass(frozen=True, slots=True)
class WhoisReply(Event):
    """
    What the room knows about one member; C{address} and C{cloak} as in
    L{Joined}.
    """

    name: str
    address: str | None
    connected_at: float
    idle: int
    admin: bool
    cloak: str | None = None

    @property
    def shown(self) -> str:
        """
        As L{Joined.shown}.
        """
        return shown(self.address, self.cloak)


@dataclass(frozen=True, slots=True)
class TextReply(Event):
    """
    A line of text for one member from the server.
    """

    text: str


@dataclass(frozen=True, slots=True)
class FilterReply(TextReply):
    """
    The answer to C{/filter} or C{/unfilter}.
    """


@dataclass(frozen=True, slots=True)
class HelpReply(TextReply):
    """
    One line of help.
    """


@dataclass(frozen=True, slots=True)
class Notice(TextReply):
    """
    Information from the server (a note, the shutdown notice).
    """


@dataclass(frozen=True, slots=True)
class ErrorReply(TextReply):
    """
    What was wrong with a command, or why a connection ends.

    @ivar code: The L{chatroom.core.errors.ChatError} code, if any.
    @ivar command: The name of the command that failed, if a command did.
    """

    code: str = ""
    command: str = ""


@dataclass(frozen=True, slots=True)
class Ping(Event):
    """
    The server asks the member to answer with C{/pong token}.
    """

    token: str


class AdminReason(StrEnum):
    """
    Why someone's admin rights changed.
    """

    FIRST = "first"
    SUCCESSION = "succession"
    PASSWORD = "password"
    GRANTED = "granted"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class AdminChanged(Event):
    """
    C{name} became admin (or stopped being one), for C{reason}.

    @ivar by: The admin who did it; L{None} for the server's own rules.
    @ivar previous: For a succession, the admin who left.
    """

    name: str
    admin: bool
    reason: AdminReason
    by: str | None = None
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class Kicked(Event):
    """
    C{by} kicked C{victim} out of the room.
    """

    by: str
    victim: str
    reason: str


@dataclass(frozen=True, slots=True)
class BanSet(Event):
    """
    An admin set C{ban} (for admins).
    """

    ban: Ban


@dataclass(frozen=True, slots=True)
class BanLifted(Event):
    """
    C{by} lifted the ban on C{target} (for admins).
    """

    by: str
    target: str


@dataclass(frozen=True, slots=True)
class BanCount(Event):
    """
    The head of a ban list: how many bans are in force, and which page
    (from 1) of how many follows.
    """

    count: int
    page: int = 1
    pages: int = 1


@dataclass(frozen=True, slots=True)
class BanEntry(Event):
    """
    One ban of a ban list.
    """

    ban: Ban


@dataclass(frozen=True, slots=True)
class BannedNotice(Event):
    """
    The connection is banned by C{ban} (what and why, not who).
    """

    ban: Ban


@dataclass(frozen=True, slots=True)
class TopicChanged(Event):
    """
    C{by} set the room's topic to C{text} (empty: cleared).
    """

    by: str
    text: str


@dataclass(frozen=True, slots=True)
class TopicReply(Event):
    """
    The room's topic, C{text} (empty if none), set by C{by} at C{set_at}.
    """

    text: str
    by: str
    set_at: float


# End-to-end encryption (chatroom.features.e2e)


@dataclass(frozen=True, slots=True)
class Challenge(Event):
    """
    The member should sign C{nonce} for room C{room_id} to register keys.
    """

    room_id: str
    nonce: str


@dataclass(frozen=True, slots=True)
class KeyAnnounced(Event):
    """
    C{name} has the encoded key bundle C{bundle} (fingerprint C{fingerprint}).
    """

    name: str
    bundle: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class KeyCount(Event):
    """
    The end of a key listing: C{count} members have keys.
    """

    count: int


@dataclass(frozen=True, slots=True)
class KeyDropped(Event):
    """
    C{name} has no end-to-end key any more.
    """

    name: str


@dataclass(frozen=True, slots=True)
class Sealed(Event):
    """
    An end-to-end envelope from C{sender}, forwarded as it came.
    """

    sender: str
    envelope: str


@dataclass(frozen=True, slots=True)
class GroupSealed(Event):
    """
    A room message from C{sender} encrypted with its group session,
    forwarded as it came to every member with keys.
    """

    sender: str
    message: str


# History (chatroom.features.history)


class HistoryKind(StrEnum):
    """
    What a stored history entry records.
    """

    SAID = "said"
    ACTED = "acted"
    JOINED = "joined"
    LEFT = "left"
    RENAMED = "renamed"
    KICKED = "kicked"
    TOPIC = "topic"


# The kinds that are chat (members' filters apply to them).
CHAT_HISTORY = frozenset({HistoryKind.SAID, HistoryKind.ACTED})


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """
    One stored message or room notice.

    @ivar id: The message id: unique, and increasing in the order entries
        were stored.
    @ivar at: The server time it happened, POSIX seconds.
    @ivar kind: What it was.
    @ivar sender: Who said or did it (the old name for a rename, the admin
        for a kick).
    @ivar text: The chat text, action, leave reason or kick reason.
    @ivar target: The new name of a rename, the kicked member; else empty.
    """

    id: int
    at: float
    kind: HistoryKind
    sender: str
    text: str = ""
    target: str = ""

    @property
    def filtered_text(self) -> str:
        """
        The text filters are matched against, as for the live event.
        """
        return f"{self.sender} {self.text}" if self.kind is HistoryKind.ACTED else self.text


@dataclass(frozen=True, slots=True)
class HistoryPurged(Event):
    """
    An admin removed C{name}'s stored messages: told to the room's
    observers (every process's history), never to a member.
    """

    name: str


@dataclass(frozen=True, slots=True)
class Replayed(Event):
    """
    One stored entry sent again (on joining, or on C{/history}); C{at} is
    when it happened.
    """

    entry: HistoryEntry


@dataclass(frozen=True, slots=True)
class ReplayEnd(Event):
    """
    The end of a run of L{Replayed} events: C{count} were sent; C{oldest}
    is the id of the oldest of them, if there may be older ones (a page
    back); C{newest} the id of the newest, if there may be newer ones (a
    page forward, C{/history after}).
    """

    count: int
    oldest: int | None
    newest: int | None = None
