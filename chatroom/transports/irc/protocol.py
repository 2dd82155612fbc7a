"""
The IRC transport: a thin C{LineReceiver} adapter between an IRC client
and a core L{Session}, like L{chatroom.transports.line.protocol}.

The room is one channel (C{--irc-channel}). L{IRCProtocol} does IRC's
registration (C{CAP}, C{PASS}, C{NICK}, C{USER}) itself, then joins the
room through its session and takes the client's nick with the core's
C{nick} command; from then on every IRC command is a core L{Command} run
through C{session.run}, so limits, flood control, the send queue,
timeouts and bans are the shared session's. Events come back through the
L{Connection} side, in IRC's words from the shared L{IRCCodec}.

IRC members carry no end-to-end keys: end-to-end envelopes and key events
are never sent to them (and the room, which has a member without keys, is
not end to end encrypted).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from chatroom.core.commands import Command
from chatroom.core.events import (
    Acted,
    AdminChanged,
    BanCount,
    BanEntry,
    BannedNotice,
    Challenge,
    ErrorReply,
    Event,
    HistoryEntry,
    KeyAnnounced,
    KeyCount,
    KeyDropped,
    Kicked,
    Left,
    Listed,
    Ping,
    Renamed,
    Replayed,
    ReplayEnd,
    Said,
    Sealed,
    TextReply,
    TopicReply,
    Welcome,
    Whispered,
    WhoisReply,
)
from chatroom.core.session import Session, Sessions
from chatroom.names import MAX_NAME_LENGTH, name_problem
from chatroom.transports.irc.codec import (
    CRLF,
    IDS,
    MAX_LINE,
    TIME,
    VERSION,
    IRCCodec,
    LastShared,
    ban_masks,
    irc_host,
    mask_target,
    split_text,
)
from chatroom.transports.line.connection import ConnectionSide
from chatroom.transports.line.writer import LineWriter, TurnFlusher
from chatroom.wire import has_control_characters, normalize_text

DEFAULT_CHANNEL = "#chatroom"
MAX_CHANNEL_LENGTH = 50
_CHANNEL = re.compile(rf"#[^\x00-\x20,:\x7f]{{1,{MAX_CHANNEL_LENGTH - 1}}}")


def channel_problem(channel: str) -> str | None:
    """
    Why C{channel} cannot be the room's IRC channel name, if so.
    """
    if _CHANNEL.fullmatch(channel) is None:
        most = MAX_CHANNEL_LENGTH - 1
        return f"a channel name is # and 1 to {most} characters, without spaces, commas or colons"
    return None


# What a client may send in tags before the 512 bytes of the line itself
# (IRCv3 message-tags: 4094 bytes of client tags and the @ and space).
MAX_TAGS = 4096
# Lines a client may send before it is registered (CAP, PASS, NICK, USER
# and a few nick retries); past that it is closed.
MAX_REGISTRATION_LINES = 30
CAPABILITIES = ("server-time", "message-tags", "echo-message", "multi-prefix")
# Where the room keeps a history: IRCv3 draft/chathistory, in batches.
HISTORY_CAPABILITIES = ("batch", "draft/chathistory")
CHATHISTORY = "draft/chathistory"
# The most entries one CHATHISTORY answers with (the room's /history page).
CHATHISTORY_LIMIT = 100
# Each CHATHISTORY subcommand served, as the /history word it becomes.
CHATHISTORY_WORDS = {"LATEST": "since", "BEFORE": "before", "AFTER": "after"}
_MSGID = re.compile(r"msgid=([0-9]{1,18})")
_TIMESTAMP = re.compile(r"timestamp=([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z?)")
TOPICLEN = 300
# IRC's text formatting (bold, colours, italics, reset...): dropped, as the
# room's text holds no control characters.
_FORMATTING = re.compile("\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]")
# End-to-end events: for clients with keys only.
_NEVER: frozenset[type[Event]] = frozenset((Challenge, KeyAnnounced, KeyCount, KeyDropped, Sealed))


def parse_message(line: str) -> tuple[str, list[str]]:
    """
    The command (upper case) and parameters of one IRC line; tags and the
    source are dropped.
    """
    if line.startswith("@"):
        line = line.partition(" ")[2]
    line = line.lstrip(" ")
    if line.startswith(":"):
        line = line.partition(" ")[2]
    head, sep, trailing = line.partition(" :")
    words = head.split()
    if not words:
        return "", []
    params = words[1:]
    if sep:
        params.append(trailing)
    return words[0].upper(), params


def _clean(text: str) -> str:
    if text.isascii() and text.isprintable():
        # Nothing to drop or normalise: most chat, on every message.
        return text
    return normalize_text(_FORMATTING.sub("", text))


def history_bound(reference: str) -> str | None:
    """
    A CHATHISTORY message reference (C{msgid=N}, C{timestamp=ISO 8601}) as
    the bound C{/history} takes (C{#N}, the time); L{None} if it is neither.
    """
    if (match := _MSGID.fullmatch(reference)) is not None:
        return f"#{int(match[1])}"
    if (match := _TIMESTAMP.fullmatch(reference)) is not None:
        return match[1]
    return None


@dataclass
class HistoryRequest:
    """
    A run of history a client asked for and has not had all of yet.

    @ivar subcommand: The CHATHISTORY subcommand; empty for the entries
        sent on joining the channel.
    @ivar target: The CHATHISTORY target.
    @ivar batch: The reference of its batch, once opened.
    """

    subcommand: str = ""
    target: str = ""
    batch: str = ""


class IRCProtocol(ConnectionSide, LineReceiver):
    """
    One IRC client connection.

    @ivar nick: The member's name in the room (once joined).
    @ivar caps: The IRCv3 capabilities the client enabled.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_TAGS + MAX_LINE
    __slots__ = (
        "_bans_left",
        "_batches",
        "_chat",
        "_discarding",
        "_echo",
        "_folded_channel",
        "_histories",
        "_in_channel",
        "_joining",
        "_kicked",
        "_last",
        "_lines",
        "_negotiating",
        "_own",
        "_registered",
        "_target",
        "_user",
        "_variant",
        "_wanted",
        "caps",
        "channel",
        "codec",
        "factory",
        "host",
        "nick",
        "port",
        "server",
        "session",
    )

    def __init__(self, factory: IRCFactory) -> None:
        self.factory = factory
        self.codec = factory.codec
        self.server = factory.codec.server
        self.channel = factory.codec.channel
        self._folded_channel = self.channel.casefold()
        self.host = "?"
        self.port = 0
        self.nick = ""
        self.caps: set[str] = set()
        # Which tags this client gets on shared lines (TIME, IDS).
        self._variant = 0
        # The hot path's state (see _refresh).
        self._chat: LastShared | None = None
        self._own = ""
        # History runs asked for, oldest first, and the last batch reference.
        self._histories: deque[HistoryRequest] = deque()
        self._batches = 0
        self._echo = False
        self._wanted = ""
        self._user = False
        self._negotiating = False
        self._joining = False
        self._registered = False
        self._in_channel = False
        self._lines = 0
        ConnectionSide.__init__(self)
        self._discarding = False
        # What the last command was about (its nick), for error numerics.
        self._target = ""
        self._last = ""
        self._bans_left = 0
        self._kicked = ""

    # Connection events

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self._transport = transport
        flusher = self.factory.flusher
        self.use_writer(flusher.writer(transport) if flusher else LineWriter(transport))
        peer: Any = transport.getPeer()
        self.host, self.port = getattr(peer, "host", "?"), getattr(peer, "port", 0)
        # IRC clients answer PING by themselves.
        self.session: Session = self.factory.sessions.session(self, "irc", pings=True)
        # IRC registration is the handshake: the session's handshake timeout
        # bounds it (with TLS's own handshake), and the room is joined after.
        if not self.session.opened(handshake=True):
            return
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.watch_sends()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._writer.discard()
        self.session.lost(clean=reason.check(ConnectionDone) is not None)

    # The Connection port, for the session

    def deliver(self, event: Event, cap: int) -> int:
        # Chat while in the channel and reading (_chat is set then).
        chat = self._chat
        if chat is not None and event is chat.event:
            # The hot path, once per member for every line of chat: the
            # bytes the codec made for the first member of the variant.
            data = chat.data
        elif chat is not None and (type(event) is Said or type(event) is Acted):
            # The first member of its variant to get it.
            data = self.codec.shared(event, self._variant)
        else:
            return ConnectionSide.deliver(self, event, cap)
        said: Any = event
        if said.sender == self._own:
            return 0
        pending = self._pending
        if pending:
            pending.append(data)
        else:
            self._writer.write(data)
        return len(data)

    def _set_paused(self, paused: bool) -> None:
        ConnectionSide._set_paused(self, paused)
        self._refresh()

    def _refresh(self) -> None:
        # What the hot path reads, kept up to date as the state it stands
        # for changes: the codec's last chat for this client's variant
        # while it is in the channel and reading, and whose chat it does
        # not get back (its own, without echo-message; "" is nobody's).
        self._chat = self.codec.chats[self._variant] if self._in_channel and not self._paused else None
        self._own = "" if self._echo else self.nick

    def encode(self, event: Event) -> bytes:
        kind = type(event)
        if kind is Said or kind is Acted:
            # Chat while the send queue is full (else deliver has it).
            chat: Any = event
            if self._in_channel and (self._echo or chat.sender != self.nick):
                return self.codec.shared(event, self._variant)
            return b""
        if kind is Whispered:
            whisper: Any = event
            if whisper.sender == self.nick and whisper.target != self.nick and not self._echo:
                return b""
            return self.codec.shared(event, self._variant)
        if self.codec.shares(event):
            return self._shared(event)
        if kind is Replayed:
            replayed: Any = event
            return self._replayed(replayed.entry)
        if kind is ReplayEnd:
            return self._replay_end()
        if kind in _NEVER:
            return b""
        return self._reply(event)

    def _shared(self, event: Event) -> bytes:
        if isinstance(event, Renamed):
            if event.old == self.nick:
                self.nick = event.new
                self._refresh()
                if not self._registered:
                    return self._welcome()
            elif not self._in_channel:
                return b""
            return self.codec.shared(event, self._variant)
        if isinstance(event, AdminChanged) and event.name == self.nick and event.admin and self._registered:
            you = self.codec.numeric("381", self.nick, text="You are now an IRC operator (a room admin)")
            return (self.codec.shared(event, self._variant) if self._in_channel else b"") + you
        if not self._in_channel:
            return b""
        if isinstance(event, Kicked):
            # The leave that follows a kick is not a second departure on IRC.
            self._kicked = event.victim
        elif isinstance(event, Left) and event.name == self._kicked:
            self._kicked = ""
            return b""
        return self.codec.shared(event, self._variant)

    def _replayed(self, entry: HistoryEntry) -> bytes:
        if not self._histories:
            # Sent on joining the room, before the client joined the channel.
            return b""
        request = self._histories[0]
        if not request.subcommand:
            return self.codec.replayed(entry, self._variant) if self._in_channel else b""
        return self._open(request) + self.codec.replayed(entry, self._variant, request.batch)

    def _replay_end(self) -> bytes:
        if not self._histories:
            return b""
        request = self._histories.popleft()
        return self._open(request) + self._close(request) if request.subcommand else b""

    def _open(self, request: HistoryRequest) -> bytes:
        # A CHATHISTORY answer is one batch, even an empty one (for a
        # client that asked for batches).
        if request.batch or "batch" not in self.caps:
            return b""
        self._batches += 1
        request.batch = f"h{self._batches}"
        return f":{self.server} BATCH +{request.batch} chathistory {request.target}".encode() + CRLF

    def _close(self, request: HistoryRequest) -> bytes:
        return f":{self.server} BATCH -{request.batch}".encode() + CRLF if request.batch else b""

    def _fail(self, code: str, subcommand: str, *context: str, text: str) -> bytes:
        # IRCv3 standard replies.
        middle = "".join(f" {c}" for c in (code, subcommand, *context))
        return f":{self.server} FAIL CHATHISTORY{middle} :{text}".encode() + CRLF

    def _reply(self, event: Event) -> bytes:
        codec, nick = self.codec, self.nick
        if isinstance(event, Welcome):
            self.nick = event.name
            self._refresh()
            return b""
        if isinstance(event, ErrorReply) and event.command == "history" and self._histories:
            request = self._histories.popleft()
            if request.subcommand:
                failed = self._fail(
                    "MESSAGE_ERROR",
                    request.subcommand,
                    request.target,
                    text=f"Messages could not be retrieved: {event.text}",
                )
                return self._close(request) + failed
        if isinstance(event, ErrorReply):
            if not self._registered:
                if self.session.member is not None and self._last == "nick":
                    # The nick the client registered with is gone: it goes on
                    # as its guest name (001 tells it).
                    self._last = ""
                    return codec.error_reply(event, "*", self._wanted) + self._welcome()
                return b"ERROR :" + event.text.encode() + CRLF
            data = codec.error_reply(event, nick, self._target)
            if self._last == "whois":
                data += codec.numeric("318", nick, self._target or "*", text="End of /WHOIS list.")
            elif self._last == "oper" and not event.code:
                data = codec.numeric("464", nick, text=event.text)
            elif self._last == "bans" and event.code:
                # Only admins may list the bans.
                data = codec.numeric(
                    "368", nick, self.channel, text=f"End of channel ban list ({event.text})"
                )
            return data
        if isinstance(event, Listed):
            return self._names(event)
        if isinstance(event, WhoisReply):
            return self._whois(event)
        if isinstance(event, TopicReply):
            if not self._in_channel:
                # Told on joining the room, before the client joins the channel.
                return b""
            if event.text:
                return codec.numeric("332", nick, self.channel, text=event.text) + codec.numeric(
                    "333", nick, self.channel, event.by, f"{event.set_at:.0f}"
                )
            return codec.numeric("331", nick, self.channel, text="No topic is set")
        if isinstance(event, BanCount):
            self._bans_left = event.count
            return b"" if event.count else self._end_of_bans()
        if isinstance(event, BanEntry):
            ban = event.ban
            data = b"".join(
                codec.numeric("367", nick, self.channel, mask, ban.by, f"{ban.at:.0f}")
                for mask in ban_masks(ban)
            )
            self._bans_left -= 1
            return data + (self._end_of_bans() if self._bans_left <= 0 else b"")
        if isinstance(event, BannedNotice):
            return codec.numeric(
                "465", nick, text=f"You are banned from this room: {event.ban.reason or 'banned'}"
            )
        if isinstance(event, Ping):
            return b"PING :" + event.token.encode() + CRLF
        if isinstance(event, TextReply):
            return codec.text_reply(event, nick)
        return b""

    def _end_of_bans(self) -> bytes:
        return self.codec.numeric("368", self.nick, self.channel, text="End of channel ban list")

    def _names(self, event: Listed) -> bytes:
        if not self._in_channel:
            return b""
        codec, nick = self.codec, self.nick
        head = f":{self.server} 353 {nick} = {self.channel} :".encode()
        names = " ".join(("@" if admin else "") + name for name, admin in event.names)
        budget = MAX_LINE - len(CRLF) - len(head)
        data = b"".join(head + piece.strip().encode() + CRLF for piece in split_text(names, budget))
        if event.first + len(event.names) - 1 >= event.total:
            data += codec.numeric("366", nick, self.channel, text="End of /NAMES list.")
        return data

    def _whois(self, e: WhoisReply) -> bytes:
        codec, nick = self.codec, self.nick
        # The address without its port where the asker may see it, else the cloak.
        host = e.shown if e.address is None else e.address.rpartition(":")[0].strip("[]") or e.address
        data = codec.numeric("311", nick, e.name, e.name, irc_host(host), "*", text=e.name)
        data += codec.numeric("312", nick, e.name, self.server, text="chatroom")
        if e.admin:
            data += codec.numeric("313", nick, e.name, text="is a room admin")
        data += codec.numeric(
            "317", nick, e.name, str(e.idle), f"{e.connected_at:.0f}", text="seconds idle, signon time"
        )
        data += codec.numeric("319", nick, e.name, text=("@" if e.admin else "") + self.channel)
        return data + codec.numeric("318", nick, e.name, text="End of /WHOIS list.")

    def write(self, data: bytes) -> None:
        if not data:
            return
        watch = self._watch
        if self._paused:
            watch.queued += len(data)
            cap = self.session.limits.send_queue
            if cap and watch.queued > cap:
                # Replies this adapter writes itself (WHO, NAMES...) count
                # towards the session's cap too.
                self.session.drop(f"send queue over {cap} bytes: not reading", at_once=True)
                return
            self._writer.write(data)
            self.session.queue_grew(watch.queued)
            return
        self._writer.write(data)

    # Framing

    def dataReceived(self, data: bytes) -> None:
        if self._discarding:
            end = data.find(self.delimiter)
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1 :]
        super().dataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        end = line.find(self.delimiter)
        if end < 0:
            self._discarding = True
            self.clearLineBuffer()
        else:
            self.clearLineBuffer()
            super().dataReceived(line[end + 1 :])
        self._too_long()

    def _too_long(self) -> None:
        if self._registered:
            self.session.bad_input(
                f"line too long: at most {MAX_LINE} bytes per IRC line", "an over-long line"
            )
        else:
            self._send(self.codec.numeric("417", "*", text="Input line was too long"))

    def _send(self, data: bytes) -> None:
        self.write(data)

    def lineReceived(self, raw: bytes) -> None:
        raw = raw.removesuffix(b"\r")
        body = raw.partition(b" ")[2] if raw.startswith(b"@") else raw
        if len(body) > MAX_LINE - len(CRLF):
            self._too_long()
            return
        if self.session.member is not None and not self._registered and self._last != "nick":
            # The room was joined asynchronously: take the nick now.
            self._take_nick()
        if self._registered:
            # Error replies until the next command are about this line's.
            self._target = self._last = ""
            if not self.session.line_received():
                return
        else:
            self._lines += 1
            if self._lines > MAX_REGISTRATION_LINES:
                self._send(b"ERROR :too many lines before registration" + CRLF)
                self.session.abort()
                return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._bad("invalid UTF-8: send text encoded as UTF-8", "invalid UTF-8")
            return
        command, params = parse_message(line)
        if not command:
            return
        # Printable ASCII (most lines) holds no formatting and no control characters.
        plain = line.isascii() and line.isprintable()
        if not plain and has_control_characters(_FORMATTING.sub("", line).replace("\x01", "")):
            self._bad("control characters are not allowed in a line", "control characters")
            return
        if self._registered:
            handler = self._commands.get(command)
            if handler is None:
                self._numeric("421", command, text="Unknown command")
                return
            handler(self, params)
        else:
            self._register(command, params)

    def _bad(self, reply: str, what: str) -> None:
        if self._registered:
            self.session.bad_input(reply, what)
        else:
            self._send(b"ERROR :" + reply.encode() + CRLF)
            self.session.abort()

    def _numeric(self, number: str, *params: str, text: str | None = None) -> None:
        self.write(self.codec.numeric(number, self.nick or "*", *params, text=text))

    def _notice(self, text: str) -> None:
        self.write(self.codec.notice(self.nick or "*", text))

    def _run(self, command: Command, target: str = "") -> None:
        self._target = target
        self._last = command.name
        self.session.run(command)

    # Registration

    def _register(self, command: str, params: list[str]) -> None:
        if command == "CAP":
            self._cap(params)
        elif command == "PASS":
            # No server password: accepted and not checked (OPER for admins).
            pass
        elif command == "NICK":
            if not params or not params[0]:
                self._numeric("431", text="No nickname given")
                return
            nick = params[0]
            problem = name_problem(nick)
            room = self.session.room
            if problem is not None:
                self._numeric("432", nick, text=f"Erroneous nickname: {problem}")
                return
            refusal = room.name_refusal(nick)
            if refusal is not None:
                self._numeric("432", nick, text=refusal)
                return
            other = room.members.clash(nick)
            if other is not None:
                why = (
                    "is taken"
                    if other.name.casefold() == nick.casefold()
                    else f"looks too much like {other.name}"
                )
                self._numeric("433", nick, text=f"Nickname is already in use: {nick} {why}")
                return
            self._wanted = nick
            self._maybe_join()
        elif command == "USER":
            if len(params) < 4:
                self._numeric("461", "USER", text="Not enough parameters")
                return
            self._user = True
            self._maybe_join()
        elif command == "PING":
            self.write(f":{self.server} PONG {self.server} :{params[0] if params else ''}".encode() + CRLF)
        elif command == "PONG":
            pass
        elif command == "QUIT":
            self._send(b"ERROR :Closing link (quit)" + CRLF)
            self.session.close()
        else:
            self._numeric("451", command, text="You have not registered")

    def _cap(self, params: list[str]) -> None:
        sub = params[0].upper() if params else ""
        who = self.nick if self._registered else "*"
        if sub == "LS":
            if not self._registered:
                self._negotiating = True
            self.write(f"CAP {who} LS :{' '.join(self.factory.capabilities)}".encode() + CRLF)
        elif sub == "LIST":
            self.write(f"CAP {who} LIST :{' '.join(sorted(self.caps))}".encode() + CRLF)
        elif sub == "REQ":
            if not self._registered:
                self._negotiating = True
            wanted = params[1].split() if len(params) > 1 else []
            if not wanted or any(cap.removeprefix("-") not in self.factory.capabilities for cap in wanted):
                self.write(f"CAP {who} NAK :{' '.join(wanted)}".encode() + CRLF)
                return
            for cap in wanted:
                if cap.startswith("-"):
                    self.caps.discard(cap[1:])
                else:
                    self.caps.add(cap)
            self._variant = (TIME if "server-time" in self.caps else 0) | (
                IDS if "message-tags" in self.caps and self.factory.history else 0
            )
            self._echo = "echo-message" in self.caps
            self._refresh()
            self.write(f"CAP {who} ACK :{' '.join(wanted)}".encode() + CRLF)
        elif sub == "END":
            self._negotiating = False
            self._maybe_join()
        else:
            self._numeric("410", sub or "*", text="Invalid CAP command")

    def _maybe_join(self) -> None:
        if self._joining or not self._wanted or not self._user or self._negotiating:
            return
        self._joining = True
        self.session.ready()
        if self.session.member is not None:
            self._take_nick()

    def _take_nick(self) -> None:
        if self.nick == self._wanted or not self._wanted:
            self.write(self._welcome())
            return
        self._run(Command("nick", (self._wanted,)), self._wanted)

    def _welcome(self) -> bytes:
        if self._registered:
            return b""
        self._registered = True
        self._last = ""
        codec, nick = self.codec, self.nick
        isupport: tuple[str, ...] = (
            "CHANTYPES=#",
            "PREFIX=(o)@",
            "CHANMODES=b,,,nt",
            "CASEMAPPING=ascii",
            f"NICKLEN={MAX_NAME_LENGTH}",
            f"CHANNELLEN={MAX_CHANNEL_LENGTH}",
            f"TOPICLEN={TOPICLEN}",
            f"LINELEN={MAX_LINE}",
            "CHANLIMIT=#:1",
            "MODES=4",
            "TARGMAX=PRIVMSG:1,NOTICE:1,KICK:1,WHOIS:1,NAMES:1,JOIN:1,PART:1",
            "NETWORK=chatroom",
        )
        if self.factory.history:
            isupport += (f"CHATHISTORY={CHATHISTORY_LIMIT}", "MSGREFTYPES=msgid,timestamp")
        return b"".join(
            (
                codec.numeric("001", nick, text=f"Welcome to the chatroom IRC gateway, {nick}"),
                codec.numeric("002", nick, text=f"Your host is {self.server}, running version {VERSION}"),
                codec.numeric("003", nick, text=f"This room is {self.channel}"),
                codec.numeric("004", nick, self.server, VERSION, "o", "bnot", "bo"),
                # At most 13 tokens a line: with the nick and the text, 15 parameters.
                *(
                    codec.numeric("005", nick, *isupport[i : i + 13], text="are supported by this server")
                    for i in range(0, len(isupport), 13)
                ),
                self._lusers(),
                codec.numeric("422", nick, text=f"MOTD File is missing: /join {self.channel} to chat"),
            )
        )

    def _lusers(self) -> bytes:
        codec, nick = self.codec, self.nick
        members = list(self.session.room.members)
        admins = sum(1 for m in members if m.is_admin)
        return b"".join(
            (
                codec.numeric(
                    "251", nick, text=f"There are {len(members)} users and 0 invisible on 1 servers"
                ),
                codec.numeric("252", nick, str(admins), text="operator(s) online"),
                codec.numeric("254", nick, "1", text="channels formed"),
                codec.numeric("255", nick, text=f"I have {len(members)} clients and 0 servers"),
            )
        )

    # Commands, once registered

    def _mine(self, channel: str) -> bool:
        return channel == self.channel or channel.casefold() == self._folded_channel

    def _need(self, command: str, params: list[str], count: int) -> bool:
        if len(params) < count or not all(params[:count]):
            self._numeric("461", command, text="Not enough parameters")
            return False
        return True

    def irc_JOIN(self, params: list[str]) -> None:
        if not self._need("JOIN", params, 1):
            return
        for channel in params[0].split(","):
            if channel == "0":
                self.irc_PART([self.channel])
            elif not self._mine(channel):
                self._numeric("403", channel, text=f"No such channel: this server has only {self.channel}")
            elif not self._in_channel:
                self._in_channel = True
                self._refresh()
                self.write(self.codec.prefix(self.nick) + b" JOIN " + self.channel.encode() + CRLF)
                self._run(Command("topic"))
                self._run(Command("list"))
                if self._variant & TIME and self.factory.history and CHATHISTORY not in self.caps:
                    # Earlier chat, with its own times: only for a client
                    # that shows server-time tags (others would take it for
                    # new) and does not ask for it itself.
                    self._histories.append(HistoryRequest())
                    self._run(Command("history"))

    def irc_PART(self, params: list[str]) -> None:
        if not self._need("PART", params, 1):
            return
        for channel in params[0].split(","):
            if not self._mine(channel):
                self._numeric("403", channel, text="No such channel")
            elif not self._in_channel:
                self._numeric("442", channel, text="You're not on that channel")
            else:
                self._in_channel = False
                self._refresh()
                reason = f" :{params[1]}" if len(params) > 1 else ""
                self.write(self.codec.prefix(self.nick) + f" PART {self.channel}{reason}".encode() + CRLF)

    def irc_NAMES(self, params: list[str]) -> None:
        channel = params[0] if params else self.channel
        if self._mine(channel) and self._in_channel:
            self._run(Command("list"))
        else:
            self._numeric("366", channel, text="End of /NAMES list.")

    def irc_TOPIC(self, params: list[str]) -> None:
        if not self._need("TOPIC", params, 1):
            return
        if not self._mine(params[0]):
            self._numeric("403", params[0], text="No such channel")
        elif len(params) < 2:
            self._run(Command("topic"))
        else:
            self._run(Command("topic", (_clean(params[1]) or "-",)))

    def irc_PRIVMSG(self, params: list[str], notice: bool = False) -> None:
        command = "NOTICE" if notice else "PRIVMSG"
        if not params or not params[0]:
            self._numeric("411", text=f"No recipient given ({command})")
            return
        if len(params) < 2 or not params[1]:
            self._numeric("412", text="No text to send")
            return
        target, text = params[0], params[1]
        if text.startswith("\x01"):
            self._ctcp(target, text.strip("\x01"), notice)
            return
        text = _clean(text)
        if not text.strip():
            self._numeric("412", text="No text to send")
            return
        if target.startswith("#"):
            if not self._mine(target):
                self._numeric("403", target, text="No such channel")
            elif not self._in_channel:
                self._numeric("404", target, text="Cannot send to channel: join it first")
            else:
                self._run(Command("say", (text,)))
        else:
            self._run(Command("whisper", (target, text)), target)

    def irc_NOTICE(self, params: list[str]) -> None:
        self.irc_PRIVMSG(params, notice=True)

    def _ctcp(self, target: str, body: str, notice: bool) -> None:
        verb, _, rest = body.partition(" ")
        verb = verb.upper()
        if verb == "ACTION":
            text = _clean(rest)
            if not text.strip():
                return
            if target.startswith("#"):
                if not self._mine(target) or not self._in_channel:
                    self._numeric("404", target, text="Cannot send to channel")
                else:
                    self._run(Command("me", (text,)))
            else:
                # The room has no private actions: a whisper that reads as one.
                self._run(Command("whisper", (target, f"* {self.nick} {text}")), target)
            return
        if notice:
            # A CTCP reply: nothing here asked for it.
            return
        # Answered by the server, for whoever was asked (nobody else speaks CTCP).
        if verb == "VERSION":
            reply = f"VERSION {VERSION}"
        elif verb == "PING":
            reply = f"PING {rest}"
        elif verb == "CLIENTINFO":
            reply = "CLIENTINFO ACTION CLIENTINFO PING VERSION"
        else:
            self._notice(f"CTCP {verb} is not supported here (only ACTION, VERSION, PING, CLIENTINFO)")
            return
        source = target if not target.startswith("#") else self.server
        self.write(self.codec.notice(self.nick, f"\x01{reply}\x01", source))

    def irc_NICK(self, params: list[str]) -> None:
        if not params or not params[0]:
            self._numeric("431", text="No nickname given")
            return
        self._run(Command("nick", (params[0],)), params[0])

    def irc_QUIT(self, params: list[str]) -> None:
        self.write(b"ERROR :Closing link (quit)" + CRLF)
        message = _clean(params[0]) if params and params[0] else ""
        self._run(Command("quit", (message,) if message else ()))

    def irc_PING(self, params: list[str]) -> None:
        self.write(f":{self.server} PONG {self.server} :{params[0] if params else ''}".encode() + CRLF)

    def irc_PONG(self, params: list[str]) -> None:
        self._run(Command("pong", tuple(params[-1:])))

    def irc_KICK(self, params: list[str]) -> None:
        if not self._need("KICK", params, 2):
            return
        if not self._mine(params[0]):
            self._numeric("403", params[0], text="No such channel")
            return
        reason = _clean(params[2]) if len(params) > 2 and params[2] else ""
        for victim in params[1].split(","):
            self._run(Command("kick", (victim, reason) if reason else (victim,)), victim)

    def irc_OPER(self, params: list[str]) -> None:
        if not self._need("OPER", params, 2):
            return
        self._run(Command("oper", (params[1],)))

    def irc_MODE(self, params: list[str]) -> None:
        if not self._need("MODE", params, 1):
            return
        target = params[0]
        if not target.startswith("#"):
            if target.casefold() != self.nick.casefold():
                self._numeric("502", text="Can't change mode for other users")
            elif len(params) == 1:
                self._numeric("221", "+")
            # User modes (+i, +w...) mean nothing here: accepted, no effect.
            return
        if not self._mine(target):
            self._numeric("403", target, text="No such channel")
            return
        if len(params) == 1:
            self._numeric("324", self.channel, "+nt")
            created = min((m.connected_at for m in self.session.room.members), default=0.0)
            self._numeric("329", self.channel, f"{created:.0f}")
            return
        modes, args = params[1], params[2:]
        sign = "+"
        for letter in modes:
            if letter in "+-":
                sign = letter
            elif letter == "b":
                if not args:
                    self._run(Command("bans"))
                    continue
                mask = args.pop(0)
                try:
                    what = mask_target(mask)
                except ValueError as e:
                    self._notice(str(e))
                    continue
                self._run(Command("ban" if sign == "+" else "unban", (what,)), what)
            elif letter == "o":
                if not args:
                    self._numeric("461", "MODE", text="Not enough parameters")
                    return
                who = args.pop(0)
                self._run(Command("op" if sign == "+" else "deop", (who,)), who)
            elif letter in "nt":
                self._numeric("482", self.channel, text=f"Channel mode {letter} is always set here")
            else:
                self._numeric("472", letter, text="is unknown mode char to me")

    def irc_WHO(self, params: list[str]) -> None:
        mask = params[0] if params else "*"
        room = self.session.room
        if self._mine(mask) or mask == "*":
            members = list(room.members)
        else:
            found = room.members.find(mask)
            members = [] if found is None else [found]
        for m in members:
            flags = "H" + ("@" if m.is_admin else "")
            self._numeric(
                "352", self.channel, m.name, irc_host(m.host), self.server, m.name, flags, text=f"0 {m.name}"
            )
        self._numeric("315", mask, text="End of /WHO list.")

    def irc_WHOIS(self, params: list[str]) -> None:
        if not self._need("WHOIS", params, 1):
            return
        # WHOIS server nick: the last parameter is the nick.
        nick = params[-1].split(",")[0]
        self._run(Command("whois", (nick,)), nick)

    def irc_CHATHISTORY(self, params: list[str]) -> None:
        if not self.factory.history:
            self._numeric("421", "CHATHISTORY", text="Unknown command")
            return
        subcommand = params[0].upper() if params else ""
        if subcommand not in CHATHISTORY_WORDS:
            text = "Unknown subcommand: this server has LATEST, BEFORE and AFTER"
            self.write(self._fail("UNKNOWN_COMMAND", subcommand or "*", text=text))
            return
        if len(params) < 4:
            self.write(self._fail("NEED_MORE_PARAMS", subcommand, text="Missing parameters"))
            return
        target, reference, limit = params[1:4]
        bound = None if reference == "*" and subcommand == "LATEST" else history_bound(reference)
        if (bound is None and reference != "*") or (reference == "*" and subcommand != "LATEST"):
            self.write(self._fail("INVALID_PARAMS", subcommand, reference, text="Bad message reference"))
            return
        if not limit.isdigit() or not 0 < int(limit) < 10**6:
            self.write(self._fail("INVALID_PARAMS", subcommand, limit, text="Bad limit"))
            return
        count = str(min(int(limit), CHATHISTORY_LIMIT))
        request = HistoryRequest(subcommand, target)
        if not self._mine(target):
            if target.startswith("#"):
                self.write(self._fail("INVALID_TARGET", subcommand, target, text="No such channel"))
            else:
                # Whispers are not stored: a conversation has no history.
                self.write(self._open(request) + self._close(request))
            return
        word = CHATHISTORY_WORDS[subcommand]
        self._histories.append(request)
        self._run(Command("history", (word, bound, count) if bound is not None else (count,)))

    def irc_LUSERS(self, params: list[str]) -> None:
        self.write(self._lusers())

    def irc_MOTD(self, params: list[str]) -> None:
        self._numeric("422", text="MOTD File is missing")

    def irc_VERSION(self, params: list[str]) -> None:
        self._numeric("351", VERSION, self.server, text="chatroom's IRC gateway")

    def irc_CAP(self, params: list[str]) -> None:
        self._cap(params)

    def irc_PASS(self, params: list[str]) -> None:
        self._numeric("462", text="You may not reregister")

    def irc_USER(self, params: list[str]) -> None:
        self._numeric("462", text="You may not reregister")

    def irc_USERHOST(self, params: list[str]) -> None:
        found = [self.session.room.members.find(n) for n in params[:5]]
        replies = [
            f"{m.name}{'*' if m.is_admin else ''}=+{m.name}@{irc_host(m.host)}"
            for m in found
            if m is not None
        ]
        self._numeric("302", text=" ".join(replies))

    def irc_ISON(self, params: list[str]) -> None:
        names = " ".join(params).split()
        present = [m.name for n in names if (m := self.session.room.members.find(n)) is not None]
        self._numeric("303", text=" ".join(present))

    _commands: ClassVar[dict[str, Callable[[IRCProtocol, list[str]], None]]] = {}


IRCProtocol._commands = {
    name.removeprefix("irc_"): method for name, method in vars(IRCProtocol).items() if name.startswith("irc_")
}


class IRCFactory(ServerFactory):
    """
    Builds an L{IRCProtocol} for every connection, all in one room.
    """

    noisy = False

    def __init__(
        self,
        sessions: Sessions,
        channel: str = DEFAULT_CHANNEL,
        flusher: TurnFlusher | None = None,
        server: str = "chatroom.irc",
    ) -> None:
        self.sessions = sessions
        self.flusher = flusher
        members = sessions.room.members

        def host_of(name: str) -> str | None:
            member = members.find(name)
            return None if member is None else member.host

        room = sessions.room
        # Whether the room keeps a history (IRCv3 chathistory, message ids).
        self.history = room.commands.handler("history") is not None
        self.capabilities = CAPABILITIES + (HISTORY_CAPABILITIES if self.history else ())
        self.codec = IRCCodec(server, channel, host_of, room.message_id if self.history else None)

    def buildProtocol(self, addr: Any) -> IRCProtocol:
        return IRCProtocol(self)
