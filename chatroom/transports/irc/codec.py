"""
The IRC codec: core events in IRC's words (RFC 1459/2812 as clients use
them, with IRCv3's server-time tag).

Events that several members get (chat, joins, leaves, renames, kicks, mode
changes, the topic) are encoded by L{IRCCodec.shared}, once per event and
variant (with or without the C{time} tag, with or without the C{msgid}
tag): every IRC recipient of that variant gets the same bytes. Stored
entries sent again (history) are encoded per member: they may carry its
batch's reference. Replies to one member (numerics, notices) name
their recipient, so L{IRCCodec.reply} encodes them for that member.

IRC lines hold at most 512 bytes with their line ending (tags aside): a
longer chat text is split at character boundaries (at a space when one is
near the end of a piece) into several lines, never cut.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from chatroom import __version__
from chatroom.bans import Ban, network_text, parse_network
from chatroom.core.errors import BAD_NAME, NAME_TAKEN, NO_SUCH_MEMBER, NOT_ADMIN
from chatroom.core.events import (
    Acted,
    AdminChanged,
    BanLifted,
    BanSet,
    ErrorReply,
    Event,
    HistoryEntry,
    HistoryKind,
    Joined,
    Kicked,
    Left,
    Renamed,
    Said,
    TextReply,
    TopicChanged,
    Whispered,
)
from chatroom.transports.line.codec import replayed_text
from chatroom.wire import Timestamps

CRLF = b"\r\n"
# An IRC line, tags aside, line ending included.
MAX_LINE = 512
VERSION = f"chatroom-{__version__}"
# The host shown for a member the room no longer knows (it has left).
UNKNOWN_HOST = "chatroom"
# The tags of a client's variant of shared lines: IRCv3 server-time, and
# message ids (message-tags, where the room stores chat).
TIME = 1
IDS = 2
VARIANTS = 4


def irc_host(host: str) -> str:
    """
    C{host} as the host part of an IRC prefix: never starting with C{:}
    (C{::1} becomes C{0::1}, as IRC servers write it).
    """
    return "0" + host if host.startswith(":") else host


def split_text(text: str, budget: int) -> list[str]:
    """
    C{text} in pieces of at most C{budget} bytes of UTF-8 each, split at
    character boundaries (after a space, if there is one in the last
    quarter of a piece); nothing is dropped.
    """
    data = text.encode("utf-8")
    if len(data) <= budget:
        return [text]
    budget = max(budget, 4)
    pieces: list[str] = []
    while len(data) > budget:
        cut = budget
        # Not inside a UTF-8 sequence: continuation bytes are 10xxxxxx.
        while data[cut] & 0xC0 == 0x80:
            cut -= 1
        space = data.rfind(b" ", cut - budget // 4, cut)
        if space > 0:
            cut = space + 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    if data:
        pieces.append(data.decode("utf-8"))
    return pieces


def ban_masks(ban: Ban) -> list[str]:
    """
    The IRC masks of C{ban}: C{name!*@*} for its name, C{*!*@network} for
    its addresses.
    """
    masks = [] if ban.name is None else [f"{ban.name}!*@*"]
    if ban.network is not None:
        masks.append(f"*!*@{irc_host(network_text(ban.network))}")
    return masks


def target_mask(target: str) -> str:
    """
    The IRC mask of a ban target (a name, or a network as L{Ban.target}).
    """
    return f"*!*@{irc_host(target)}" if parse_network(target) is not None else f"{target}!*@*"


def _wildcard_network(host: str) -> str | None:
    # 10.1.* or 10.1.*.*: the IPv4 network of the whole octets before the *.
    octets = host.split(".")
    stars = [i for i, octet in enumerate(octets) if octet == "*"]
    if not stars or stars[0] == 0 or any(o != "*" for o in octets[stars[0] :]) or len(octets) > 4:
        return None
    fixed = octets[: stars[0]]
    text = ".".join(fixed + ["0"] * (4 - len(fixed)))
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return None
    return f"{text}/{8 * len(fixed)}"


def mask_target(mask: str) -> str:
    """
    What to ban (or unban) for IRC ban mask C{mask}: C{nick!*@*} (or a
    bare nick) is the name, C{*!*@address} (an address, a CIDR network, or
    whole IPv4 octets followed by C{*}) the address; the user part, which
    this server never checks, may be anything.

    @raise ValueError: For every other mask (the message says why).
    """
    nick, _, rest = mask.partition("!")
    host = rest.partition("@")[2] if "@" in rest else ("*" if not rest else "")
    if not rest and "@" in nick:
        nick, _, host = nick.partition("@")
    if not host:
        host = "*"
    name_given = nick not in ("", "*")
    host_given = host != "*"
    if name_given and not host_given:
        if any(c in nick for c in "*?"):
            raise ValueError(f"cannot ban {mask}: a name mask must be a whole name, without wildcards")
        return nick
    if host_given and not name_given:
        if host.startswith("0::") or host.startswith("0:"):
            host = host[1:]
        if parse_network(host) is not None:
            return host
        network = _wildcard_network(host)
        if network is not None:
            return network
        raise ValueError(
            f"cannot ban {mask}: give *!*@address, *!*@network/prefix or *!*@a.b.c.* (no host names)"
        )
    raise ValueError(f"cannot ban {mask}: give either nick!*@* (a name) or *!*@address (an address)")


class LastShared:
    """
    The last event one variant of L{IRCCodec.shared} encoded, and its bytes.
    """

    __slots__ = ("data", "event")

    def __init__(self) -> None:
        self.event: Event | None = None
        self.data = b""


class IRCCodec:
    """
    Encodes events for the IRC connections of one listener.

    @ivar server: The server name, the source of numerics.
    @ivar channel: The room's channel name.
    """

    def __init__(
        self,
        server: str,
        channel: str,
        host_of: Callable[[str], str | None],
        message_id: Callable[[Event], int | None] | None = None,
    ) -> None:
        """
        @param host_of: The host of the member called so, if it is present.
        @param message_id: The id an event going out is stored under, if
            it is (L{chatroom.core.room.Room.message_id}).
        """
        self.server = server
        self.channel = channel
        self._host_of = host_of
        self._message_id = message_id
        self._stamp = Timestamps().format
        self._source = f":{server}".encode()
        self._channel = channel.encode()
        # Per variant (the sum of its TIME and IDS): the last event and its
        # bytes, and the last chat (said or acted) and its bytes.
        self.variants = tuple(LastShared() for _ in range(VARIANTS))
        self.chats = tuple(LastShared() for _ in range(VARIANTS))
        self._shared: dict[type[Any], Callable[[Any], list[bytes]]] = {
            Said: self._said,
            Acted: self._acted,
            Whispered: self._whispered,
            Joined: lambda e: [self.prefix(e.name) + b" JOIN " + self._channel],
            Left: lambda e: [_fit(self.prefix(e.name) + b" QUIT :", e.reason)],
            Renamed: lambda e: [self.prefix(e.old, e.new) + b" NICK :" + e.new.encode()],
            AdminChanged: self._admin,
            Kicked: lambda e: [
                _fit(
                    self.prefix(e.by) + b" KICK " + self._channel + b" " + e.victim.encode() + b" :", e.reason
                )
            ],
            BanSet: lambda e: self._modes(e.ban.by, "+", ban_masks(e.ban)),
            BanLifted: lambda e: self._modes(e.by, "-", [target_mask(e.target)]),
            TopicChanged: lambda e: [self.prefix(e.by) + b" TOPIC " + self._channel + b" :" + _safe(e.text)],
        }

    # Sources

    def prefix(self, name: str, lookup: str | None = None) -> bytes:
        """
        C{:name!name@host}, the host of the member called C{lookup} (by
        default C{name}).
        """
        host = self._host_of(lookup or name)
        return f":{name}!{name}@{irc_host(host or UNKNOWN_HOST)}".encode()

    # What several members get

    def shares(self, event: Event) -> bool:
        """
        Whether L{shared} encodes C{event}.
        """
        return type(event) in self._shared

    def shared(self, event: Event, variant: int) -> bytes:
        """
        C{event}, which several members may get, as IRC lines with the
        tags of C{variant} (L{TIME}, L{IDS}): the same bytes for every
        recipient.
        """
        last = self.variants[variant]
        if event is last.event:
            return last.data
        kind = type(event)
        lines = self._shared[kind](event)
        if variant:
            id_ = self._message_id(event) if variant & IDS and self._message_id is not None else None
            data = self._tag(lines, [], event.at if variant & TIME else None, id_)
        else:
            data = b"".join(line + CRLF for line in lines)
        last.event = event
        last.data = data
        if kind is Said or kind is Acted:
            chat = self.chats[variant]
            chat.event = event
            chat.data = data
        return data

    def replayed(self, entry: HistoryEntry, variant: int, batch: str = "") -> bytes:
        """
        The stored C{entry} sent again as IRC lines, with the tags of
        C{variant} and, if given, those of the C{batch} it is part of.
        """
        return self._tag(
            self._replayed(entry),
            [f"batch={batch}"] if batch else [],
            entry.at if variant & TIME else None,
            entry.id if variant & IDS else None,
        )

    def _tag(self, lines: list[bytes], tags: list[str], at: float | None, id_: int | None) -> bytes:
        # The message id goes on the first line only: ids are unique, and a
        # chat text split over lines is one message.
        if not lines:
            return b""
        if at is not None:
            tags = [*tags, f"time={self._stamp(at)}"]
        every = f"@{';'.join(tags)} ".encode() if tags else b""
        first = f"@{';'.join([*tags, f'msgid={id_}'])} ".encode() if id_ is not None else every
        return first + lines[0] + CRLF + b"".join(every + line + CRLF for line in lines[1:])

    def _chat(self, sender: str, target: bytes, text: str, ctcp: bytes = b"") -> list[bytes]:
        head = self.prefix(sender) + b" PRIVMSG " + target + b" :"
        if ctcp:
            head += b"\x01" + ctcp + b" "
        tail = b"\x01" if ctcp else b""
        budget = MAX_LINE - len(CRLF) - len(head) - len(tail)
        return [head + _safe(piece) + tail for piece in split_text(text, budget)]

    def _replayed(self, entry: HistoryEntry) -> list[bytes]:
        # Stored chat as the chat it was (the time tag carries its time);
        # stored notices as a server NOTICE, not as joins and parts a
        # client would take for the channel's state now.
        if entry.kind is HistoryKind.SAID:
            return self._chat(entry.sender, self._channel, entry.text)
        if entry.kind is HistoryKind.ACTED:
            return self._chat(entry.sender, self._channel, entry.text, b"ACTION")
        notice = replayed_text(entry)
        head = f":{self.server} NOTICE ".encode() + self._channel + b" :[history] "
        return [head + _safe(piece) for piece in split_text(notice, MAX_LINE - len(CRLF) - len(head))]

    def _said(self, e: Said) -> list[bytes]:
        return self._chat(e.sender, self._channel, e.text)

    def _acted(self, e: Acted) -> list[bytes]:
        return self._chat(e.sender, self._channel, e.text, b"ACTION")

    def _whispered(self, e: Whispered) -> list[bytes]:
        return self._chat(e.sender, e.target.encode(), e.text)

    def _admin(self, e: AdminChanged) -> list[bytes]:
        return self._modes(e.by, "+" if e.admin else "-", [e.name], "o")

    def _modes(self, by: str | None, sign: str, params: list[str], mode: str = "b") -> list[bytes]:
        source = self._source if by is None else self.prefix(by)
        modes = f"{sign}{mode * len(params)} {' '.join(params)}"
        return [source + b" MODE " + self._channel + b" " + modes.encode()]

    # What one member gets

    def numeric(self, number: str, nick: str, *params: str, text: str | None = None) -> bytes:
        """
        One numeric reply to C{nick}, line ending included.
        """
        middle = "".join(f" {p}" for p in params)
        head = _safe_line(f":{self.server} {number} {nick or '*'}{middle}".encode())
        # A reply's text (which may quote a long parameter) is cut to fit, marked.
        return (head if text is None else _fit(head + b" :", text)) + CRLF

    def notice(self, nick: str, text: str, source: str | None = None) -> bytes:
        """
        C{text} as server notices to C{nick}, split to fit.
        """
        head = f":{source or self.server} NOTICE {nick or '*'} :".encode()
        budget = MAX_LINE - len(CRLF) - len(head)
        return b"".join(head + _safe(piece) + CRLF for piece in split_text(text, budget))

    def error_reply(self, e: ErrorReply, nick: str, target: str) -> bytes:
        """
        A failed command's error: the numeric its code stands for (about
        C{target}, the nick or name the command was about), else a notice.
        """
        match e.code:
            case "" if e.text.startswith("disconnected: "):
                return b"ERROR :" + _safe(e.text) + CRLF
            case c if c == NO_SUCH_MEMBER:
                return self.numeric("401", nick, target or "*", text=e.text)
            case c if c == NOT_ADMIN:
                return self.numeric("482", nick, self.channel, text=e.text)
            case c if c == NAME_TAKEN:
                return self.numeric("433", nick, target or "*", text=e.text)
            case c if c == BAD_NAME:
                return self.numeric("432", nick, target or "*", text=e.text)
        return self.notice(nick, e.text)

    def text_reply(self, e: TextReply, nick: str) -> bytes:
        return self.notice(nick, e.text)


def _safe(text: str) -> bytes:
    # The core allows no control characters in text; a line break here
    # would still be a second IRC command, so none gets through.
    data = text.encode("utf-8")
    if b"\r" in data or b"\n" in data or b"\0" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\0", b" ")
    return data


def _fit(head: bytes, reason: str) -> bytes:
    """
    C{head} and C{reason} as one line of at most L{MAX_LINE} bytes: a
    reason (of a quit, of a kick) has no second line, so one too long is
    cut at a character boundary, and ends with an ellipsis that says so.
    """
    budget = MAX_LINE - len(CRLF) - len(head)
    if len(reason.encode("utf-8")) <= budget:
        return head + _safe(reason)
    ellipsis = "\u2026"
    return head + _safe(split_text(reason, budget - len(ellipsis.encode("utf-8")))[0] + ellipsis)


def _safe_line(line: bytes) -> bytes:
    return line.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\0", b" ")
