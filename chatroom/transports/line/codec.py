"""
The line protocol's codec: each core event as one server line.

One map, L{ENCODERS}, gives every event type its line kind and how its
source, arguments and text are made; L{chatroom.wire} holds the line format
itself (which clients parse). L{LineCodec} remembers the last event it
encoded, so a broadcast handed to every line connection in turn is encoded
once and every recipient gets the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatroom.bans import Ban
from chatroom.core.events import (
    Acted,
    AdminChanged,
    AdminReason,
    Arrivals,
    BanCount,
    BanEntry,
    BanLifted,
    BannedNotice,
    BanSet,
    Challenge,
    ErrorReply,
    Event,
    FilterReply,
    GroupSealed,
    HelpReply,
    HistoryEntry,
    HistoryKind,
    Joined,
    KeyAnnounced,
    KeyCount,
    KeyDropped,
    Kicked,
    Left,
    Listed,
    Notice,
    Ping,
    Renamed,
    Replayed,
    ReplayEnd,
    Said,
    Sealed,
    TopicChanged,
    TopicReply,
    Welcome,
    Whispered,
    WhoisReply,
)
from chatroom.wire import SERVER_SOURCE, Kind, Timestamps, format_line, format_timestamp

LINE_END = b"\r\n"

# (kind, source, text, args) of one line.
Parts = tuple[Kind, str, str, tuple[str, ...]]


def _because(reason: str) -> str:
    return f": {reason}" if reason else ""


def _until(ban: Ban) -> str:
    return "permanently" if ban.expires is None else f"until {format_timestamp(ban.expires)}"


def _expires(ban: Ban) -> str:
    return f"expires={'never' if ban.expires is None else format_timestamp(ban.expires)}"


def _ban_fields(ban: Ban) -> tuple[str, ...]:
    address = () if ban.network is None else (f"address={ban.network}",)
    return (ban.target, *address, f"by={ban.by}", f"at={format_timestamp(ban.at)}", _expires(ban))


def _admin_text(e: AdminChanged) -> str:
    match e.reason:
        case AdminReason.FIRST:
            return f"{e.name} is the admin (first to join)"
        case AdminReason.SUCCESSION:
            return f"{e.name} is now the admin ({e.previous} left)"
        case AdminReason.PASSWORD:
            return f"{e.name} is now an admin (password)"
        case AdminReason.GRANTED:
            return f"{e.by} made {e.name} an admin"
        case AdminReason.REVOKED:
            if e.by == e.name:
                return f"{e.name} gave up admin rights"
            return f"{e.by} took admin rights from {e.name}"


def _ban_set(e: BanSet) -> Parts:
    ban = e.ban
    address = "" if ban.name is None or ban.network is None else f" ({ban.network})"
    text = f"{ban.by} banned {ban.target}{address} {_until(ban)}{_because(ban.reason)}"
    return Kind.BAN, ban.by, text, _ban_fields(ban)


def _banned(e: BannedNotice) -> Parts:
    # Who set the ban and when is for admins; the banned get what and why.
    ban = e.ban
    text = f"you are banned from this room {_until(ban)}{_because(ban.reason)}"
    return Kind.BANNED, SERVER_SOURCE, text, (ban.target, _expires(ban))


def _both(address: str | None, cloak: str | None) -> bool:
    # The address and, beside it, the cloak others see (for admins and oneself).
    return address is not None and cloak is not None


def _joined(e: Joined) -> Parts:
    where = f"{e.address} ({e.cloak})" if _both(e.address, e.cloak) else e.shown
    return Kind.JOIN, e.name, f"{e.name} joined from {where}", ()


def _whois(e: WhoisReply) -> Parts:
    connected = format_timestamp(e.connected_at)
    admin = "yes" if e.admin else "no"
    cloak = (f"cloak={e.cloak}",) if _both(e.address, e.cloak) else ()
    fields = (
        f"name={e.name}",
        f"address={e.shown}",
        *cloak,
        f"connected={connected}",
        f"idle={e.idle}",
        f"admin={admin}",
    )
    where = f"{e.address} ({e.cloak})" if cloak else e.shown
    text = f"{e.name} is at {where}, connected since {connected}, idle {e.idle}s, admin: {admin}"
    return Kind.WHOIS, SERVER_SOURCE, text, fields


def _listed(e: Listed) -> Parts:
    names = tuple(("@" if admin else "") + name for name, admin in e.names)
    text = f"users {e.first}-{e.first + len(names) - 1} of {e.total}"
    return Kind.LIST, SERVER_SOURCE, text, names


# Each stored entry kind as its live line's kind and text.
_REPLAYED: dict[HistoryKind, tuple[Kind, Callable[[HistoryEntry], str]]] = {
    HistoryKind.SAID: (Kind.MESSAGE, lambda h: h.text),
    HistoryKind.ACTED: (Kind.ACTION, lambda h: f"{h.sender} {h.text}"),
    HistoryKind.JOINED: (Kind.JOIN, lambda h: f"{h.sender} joined"),
    HistoryKind.LEFT: (Kind.LEAVE, lambda h: f"{h.sender} left ({h.text})"),
    HistoryKind.RENAMED: (Kind.RENAME, lambda h: f"{h.sender} is now known as {h.target}"),
    HistoryKind.KICKED: (Kind.KICK, lambda h: f"{h.sender} kicked {h.target}{_because(h.text)}"),
    HistoryKind.TOPIC: (Kind.TOPIC, lambda h: _topic_text(h.sender, h.text)),
}


def _topic_text(by: str, text: str) -> str:
    return f"{by} set the topic: {text}" if text else f"{by} cleared the topic"


def replayed_text(entry: HistoryEntry) -> str:
    """
    The text of the live line C{entry} stored (the IRC listener's stored
    notices say the same).
    """
    return _REPLAYED[entry.kind][1](entry)


def _replayed(e: Replayed) -> Parts:
    entry = e.entry
    kind = _REPLAYED[entry.kind][0]
    target = (entry.target,) if entry.target else ()
    return Kind.HISTORY, entry.sender, replayed_text(entry), (kind.value, f"id={entry.id}", *target)


def _replay_end(e: ReplayEnd) -> Parts:
    if e.oldest is not None:
        more: tuple[str, ...] = (f"more=#{e.oldest}",)
        text = f"{e.count} earlier messages; /history before #{e.oldest} for more"
    elif e.newest is not None:
        more = (f"next=#{e.newest}",)
        text = f"{e.count} earlier messages; /history after #{e.newest} for later ones"
    else:
        more = ()
        text = f"{e.count} earlier messages; that is all the server keeps"
    return Kind.HISTORY_END, SERVER_SOURCE, text, (f"count={e.count}", *more)


def _arrivals(e: Arrivals) -> Parts:
    # "-name" left, "+name" (or "+@name" for an admin) joined: a name never
    # starts with "+" or "-".
    joined = tuple("+" + ("@" if admin else "") + name for name, admin in e.joined)
    left = tuple("-" + name for name in e.left)
    parts = []
    if e.joined:
        parts.append(f"joined: {', '.join(name for name, _ in e.joined)}")
    if e.left:
        parts.append(f"left: {', '.join(e.left)}")
    return Kind.ARRIVALS, SERVER_SOURCE, "; ".join(parts), left + joined


def _ban_count(e: BanCount) -> Parts:
    in_force = f"{e.count} {'ban' if e.count == 1 else 'bans'} in force"
    if e.pages == 1:
        return Kind.BANLIST, S, in_force, (f"count={e.count}",)
    more = f": /bans {e.page + 1} for more" if e.page < e.pages else ""
    text = f"{in_force} (page {e.page} of {e.pages}{more})"
    return Kind.BANLIST, S, text, (f"count={e.count}", f"page={e.page}", f"pages={e.pages}")


S = SERVER_SOURCE
ENCODERS: dict[type[Any], Callable[[Any], Parts]] = {
    Said: lambda e: (Kind.MESSAGE, e.sender, e.text, ()),
    Acted: lambda e: (Kind.ACTION, e.sender, f"{e.sender} {e.text}", ()),
    Whispered: lambda e: (Kind.WHISPER, e.sender, e.text, (e.target,)),
    Welcome: lambda e: (
        Kind.WELCOME,
        S,
        f"Welcome, you are {e.name}. Type /help for the commands.",
        (e.name,),
    ),
    Joined: _joined,
    Left: lambda e: (Kind.LEAVE, e.name, f"{e.name} left ({e.reason})", ()),
    Arrivals: _arrivals,
    Renamed: lambda e: (Kind.RENAME, e.old, f"{e.old} is now known as {e.new}", (e.new,)),
    Listed: _listed,
    WhoisReply: _whois,
    FilterReply: lambda e: (Kind.FILTER, S, e.text, ()),
    HelpReply: lambda e: (Kind.HELP, S, e.text, ()),
    Notice: lambda e: (Kind.INFO, S, e.text, ()),
    ErrorReply: lambda e: (Kind.ERROR, S, e.text, ()),
    Ping: lambda e: (Kind.PING, S, f"reply with /pong {e.token}", (e.token,)),
    AdminChanged: lambda e: (
        Kind.ADMIN,
        S if e.by is None else e.by,
        _admin_text(e),
        (e.name, f"admin={'yes' if e.admin else 'no'}"),
    ),
    Kicked: lambda e: (Kind.KICK, e.by, f"{e.by} kicked {e.victim}{_because(e.reason)}", (e.victim,)),
    BanSet: _ban_set,
    BanLifted: lambda e: (Kind.UNBAN, e.by, f"{e.by} lifted the ban on {e.target}", (e.target,)),
    BanCount: _ban_count,
    BanEntry: lambda e: (Kind.BANLIST, S, e.ban.reason, _ban_fields(e.ban)),
    BannedNotice: _banned,
    TopicChanged: lambda e: (
        Kind.TOPIC,
        e.by,
        _topic_text(e.by, e.text),
        (),
    ),
    TopicReply: lambda e: (
        Kind.TOPIC,
        S,
        f"the topic is: {e.text} (set by {e.by}, {format_timestamp(e.set_at)})"
        if e.text
        else "no topic is set",
        (),
    ),
    Challenge: lambda e: (
        Kind.CHALLENGE,
        S,
        "sign this to register your end-to-end keys",
        (f"room={e.room_id}", f"nonce={e.nonce}"),
    ),
    KeyAnnounced: lambda e: (Kind.KEY, e.name, f"{e.name} has end-to-end key {e.fingerprint}", (e.bundle,)),
    KeyCount: lambda e: (
        Kind.KEYS,
        S,
        f"{e.count} {'member has' if e.count == 1 else 'members have'} end-to-end keys",
        (f"count={e.count}",),
    ),
    KeyDropped: lambda e: (Kind.KEYDROP, e.name, f"{e.name} has no end-to-end key now", ()),
    Sealed: lambda e: (Kind.E2E, e.sender, "", (e.envelope,)),
    Replayed: _replayed,
    ReplayEnd: _replay_end,
    GroupSealed: lambda e: (Kind.GROUP, e.sender, "", (e.message,)),
}


def encode(event: Event, stamp: Callable[[float], str] = format_timestamp) -> bytes:
    """
    C{event} as one line, line ending included.

    @param stamp: Formats the event's time (see L{format_line}).
    @raise KeyError: For an event type the line protocol has no words for (a bug).
    """
    kind, source, text, args = ENCODERS[type(event)](event)
    return format_line(event.at, kind, source, text, args, stamp) + LINE_END


class LineCodec:
    """
    Encodes events for line connections, remembering the last one.

    @ivar event: The last event encoded.
    @ivar data: Its line.
    """

    __slots__ = ("_stamp", "data", "event")

    def __init__(self) -> None:
        self.event: Event | None = None
        self.data = b""
        self._stamp = Timestamps().format

    def encode(self, event: Event) -> bytes:
        if event is not self.event:
            self.data = encode(event, self._stamp)
            self.event = event
        return self.data
