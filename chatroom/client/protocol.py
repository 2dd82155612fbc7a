"""
The client's line protocol: server lines in, calls on a L{ChatView} out.

L{ChatClientProtocol} frames and parses the server's lines with
L{chatroom.wire.parse_line} and knows nothing of Tk. Besides framing it
answers the server's pings, and does one job the server cannot: when a name
was asked for with C{--nick} and it is taken, it asks for the next free
variant (C{NAME2}, C{NAME3}, ...). It picks the variant from the member list
the server sends after the welcome, so that one C{/nick} usually does (the
server limits name changes); a refusal, should someone take the name first,
moves on to the next.

Given an L{E2EClient}, the protocol drives it: what the user types goes
through L{E2EClient.command} (chat comes out as envelopes while the room is
locked), every server line through L{E2EClient.handle}, and its events
become calls on the view. The cryptography stays in L{chatroom.e2e}; the
view only ever sees verified plaintext.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol, cast

from OpenSSL.SSL import Error as TLSError
from service_identity import VerificationError
from twisted.internet import error
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom.e2e.client import (
    REGISTER_TIMEOUT,
    Alert,
    E2EClient,
    Event,
    KeyChanged,
    LockChange,
    NewKey,
    Notice,
    Rejected,
    Secure,
    Send,
    Show,
    Unauthenticated,
)
from chatroom.e2e.envelope import E2E_MAX_LINE_BYTES
from chatroom.names import MAX_NAME_LENGTH, skeleton
from chatroom.roster import Roster
from chatroom.wire import Kind, ServerLine, WireError, parse_line

# Server lines are short, but an end-to-end envelope is one long line: the
# longest the daemon forwards plus room for the line's header. A line beyond
# this is a broken or hostile server, not a message.
MAX_SERVER_LINE_BYTES = E2E_MAX_LINE_BYTES + 1024
# A server that accepts TCP but never finishes the TLS handshake must not
# leave the client waiting forever.
HANDSHAKE_TIMEOUT = 15.0
_LINE_BREAKS = re.compile(r"\r\n|[\r\n]")
# How many numbered variants of a taken name to try before giving up.
MAX_NICK_TRIES = 50


class Lock(StrEnum):
    """
    The lock the window shows: how chat typed now goes out.
    """

    OFF = "off"
    """End-to-end encryption is turned off: chat goes in the clear."""
    UNLOCKED = "unlocked"
    """E2E is on, but not every member has keys yet: chat goes in the clear."""
    LOCKED = "locked"
    """Chat goes end-to-end encrypted to every member."""


class ChatView(Protocol):
    """
    What the client shows: the window implements this, tests record it.
    """

    def connecting(self, address: str) -> None:
        """
        A connection attempt to C{address} (C{host:port}) has started.
        """

    def connected(self, address: str) -> None:
        """
        The TLS connection to C{address} is up and the server verified.
        """

    def disconnected(self, reason: str) -> None:
        """
        The connection, or the attempt to make one, ended for C{reason}.
        """

    def retrying(self, delay: float) -> None:
        """
        The client will try to connect again in C{delay} seconds.
        """

    def line_received(self, line: ServerLine) -> None:
        """
        The server sent C{line}.
        """

    def name_changed(self, name: str) -> None:
        """
        The server now knows this client as C{name}.
        """

    def notice(self, text: str) -> None:
        """
        Something the client itself has to say (not from the server).
        """

    def lock_changed(self, lock: Lock) -> None:
        """
        Chat typed from now on goes out as C{lock} says.
        """

    def secure_message(self, message: Secure) -> None:
        """
        An end-to-end message arrived, verified and decrypted; its sender
        is the name its signing key is pinned to.
        """

    def key_changed(self, change: KeyChanged) -> None:
        """
        A member's identity key is not the one pinned for its name: say so
        loudly (nothing is sent to it until the user runs C{/trust}).
        """

    def warning(self, text: str) -> None:
        """
        Something the user must see about what the server does: the lock
        moving, recipients that differ from the room shown, missing
        messages, an unanswered registration.
        """


def unauthenticated_line(event: Unauthenticated) -> ServerLine:
    """
    Plain chat the client must not show under a member's name, as a line
    from the server itself (which is what it may well be).
    """
    line = event.line
    return ServerLine(line.timestamp, Kind.INFO, "*", (), event.text)


def nick_variant(name: str, number: int) -> str:
    """
    The C{number}th variant of C{name}: C{name} itself, then C{name2}, ...

    The name is shortened where the suffix would make it too long.
    """
    if number <= 1:
        return name
    suffix = str(number)
    return name[: MAX_NAME_LENGTH - len(suffix)] + suffix


def describe_failure(reason: Failure) -> str:
    """
    Say in words why a connection failed or ended.
    """
    if reason.check(VerificationError):
        return f"the server's certificate is not valid for this host name ({reason.value})"
    if reason.check(TLSError):
        details = str(reason.value)
        if "certificate verify failed" in details:
            return "the server's certificate could not be verified: is --ca the CA file the daemon created?"
        return f"the TLS handshake failed ({details})"
    if reason.check(error.ConnectionRefusedError):
        return "connection refused: is the daemon running?"
    if reason.check(error.DNSLookupError):
        return "unknown host name"
    if reason.check(error.TimeoutError):
        return "the connection attempt timed out"
    if reason.check(error.ConnectionDone):
        return "the server closed the connection"
    if reason.check(error.ConnectionLost, error.ConnectionAborted):
        return "the connection was lost"
    return f"the connection failed ({reason.getErrorMessage()})"


@implementer(IHandshakeListener)
class ChatClientProtocol(LineReceiver):
    """
    One connection to the daemon.

    @ivar name: The name the server knows this client by, once welcomed.
    @ivar wanted_nick: The name to ask for after the welcome (and after a
        reconnect): C{--nick}, or the last name the user chose with C{/nick}.
    @ivar sent_away: Why the server is sending this client away (a kick or
        a ban), if it is: coming straight back would be rude or futile.
    @ivar e2e: The end-to-end state of this connection, if E2E is on.
    @ivar lock: The lock state last told to the view.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_SERVER_LINE_BYTES

    def __init__(
        self,
        view: ChatView,
        clock: IReactorTime,
        wanted_nick: str | None,
        on_ready: Callable[[ChatClientProtocol], None],
        on_lost: Callable[[ChatClientProtocol, Failure], None],
        e2e: E2EClient | None = None,
    ) -> None:
        """
        @param view: Where lines, names and notices go.
        @param clock: Times the TLS handshake.
        @param wanted_nick: The name to ask for once welcomed, if any.
        @param on_ready: Called once the connection is usable (TLS verified).
        @param on_lost: Called when the connection ends, with the reason.
        @param e2e: A fresh E2E client for this connection (new session
            key), or L{None} for plain chat only.
        """
        self.view = view
        self.clock = clock
        self.wanted_nick = wanted_nick
        self.name: str | None = None
        self.ready = False
        self.sent_away: str | None = None
        self.e2e = e2e
        self.lock = Lock.OFF if e2e is None else Lock.UNLOCKED
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._handshake_timer: IDelayedCall | None = None
        self._register_timer: IDelayedCall | None = None
        self._timed_out = False
        # The name asked for automatically, and which variant it is.
        self._nick_try: str | None = None
        self._nick_number = 0
        # Who is here when the client arrives, to pick a free variant.
        self._arrival: Roster | None = None

    # Connection events

    def connectionMade(self) -> None:
        assert self.transport is not None
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        if ISSLTransport.providedBy(self.transport):
            self._handshake_timer = self.clock.callLater(HANDSHAKE_TIMEOUT, self._handshake_timed_out)
        else:
            self.handshakeCompleted()

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        self._timed_out = True
        cast(ITCPTransport, self.transport).abortConnection()

    def handshakeCompleted(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.ready = True
        self._on_ready(self)
        if self.e2e is not None:
            self._handle(self.e2e.start())
            self._register_timer = self.clock.callLater(REGISTER_TIMEOUT, self._register_timed_out)

    def _register_timed_out(self) -> None:
        self._register_timer = None
        if self.e2e is not None:
            self._handle(self.e2e.check_timeouts())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if self._register_timer is not None:
            self._register_timer.cancel()
            self._register_timer = None
        if self._timed_out:
            reason = Failure(error.TimeoutError("the TLS handshake timed out"))
        self._on_lost(self, reason)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.view.notice(f"the server sent a line over {self.MAX_LENGTH} bytes: disconnecting")
        assert self.transport is not None
        self.transport.loseConnection()

    # Lines

    def send_line(self, text: str) -> None:
        """
        Send one line as it is; the server parses it.

        Line breaks (pasted text) become spaces: one call is one line, so a
        paste can never slip in a second command.
        """
        self.sendLine(_LINE_BREAKS.sub(" ", text).encode("utf-8"))

    def send_typed(self, text: str) -> None:
        """
        Send one line the user typed: as it is, or, with E2E on, as
        L{E2EClient.command} says (an envelope, the line itself, or nothing
        but a notice; C{/trust} and C{/verify} never leave the client).
        """
        if self.e2e is None:
            self.send_line(text)
        else:
            self._handle(self.e2e.command(_LINE_BREAKS.sub(" ", text)))

    def lineReceived(self, line: bytes) -> None:
        try:
            parsed = parse_line(line)
        except WireError as e:
            self.view.notice(f"unreadable line from the server ({e}): {line[:200]!r}")
            return
        if parsed.kind == Kind.PING:
            # Keepalive: answered here, not worth showing.
            self.send_line(f"/pong {parsed.args[0]}" if parsed.args else "/pong")
            return
        if self.e2e is None:
            self._show(parsed)
        else:
            self._handle(self.e2e.handle(parsed))

    def _handle(self, events: list[Event]) -> None:
        """
        Carry out what the E2E client says; every move of the lock is a
        line in the message area as well as the lock itself.
        """
        for event in events:
            match event:
                case Send(line):
                    self.send_line(line)
                case Show(line):
                    self._show(line)
                case Secure():
                    self.view.secure_message(event)
                case KeyChanged():
                    self.view.key_changed(event)
                case Rejected(reason, source):
                    self.view.notice(f"refused an end-to-end message (said to be from {source}): {reason}")
                case NewKey(guest=guest, pinned=pinned):
                    if guest or not pinned:
                        self.view.warning(event.text)
                    else:
                        self.view.notice(event.text)
                case Notice():
                    self.view.notice(event.text)
                case Alert(text):
                    self.view.warning(text)
                case Unauthenticated(line):
                    self.view.line_received(unauthenticated_line(event))
                case LockChange(locked=locked):
                    self.lock = Lock.LOCKED if locked else Lock.UNLOCKED
                    self.view.lock_changed(self.lock)
                    if locked:
                        self.view.notice(event.text)
                    else:
                        self.view.warning(event.text)

    def _show(self, parsed: ServerLine) -> None:
        self.view.line_received(parsed)
        if parsed.kind == Kind.BANNED or (
            parsed.kind == Kind.KICK and parsed.args and parsed.args[0] == self.name
        ):
            self.sent_away = parsed.text
        elif parsed.kind == Kind.WELCOME and parsed.args:
            self._welcomed(parsed.args[0])
        elif parsed.kind == Kind.LIST and self._arrival is not None:
            self._arrival.apply(parsed)
            if not self._arrival.receiving:
                self._ask_free_nick(self._arrival)
                self._arrival = None
        elif parsed.kind == Kind.RENAME and parsed.args and parsed.source == self.name:
            self._renamed(parsed.args[0])
        elif parsed.kind == Kind.ERROR and self._nick_try is not None:
            self._nick_refused(parsed.text)

    # Names

    def _welcomed(self, name: str) -> None:
        self.name = name
        self.view.name_changed(name)
        # The server pings only clients that have answered once: this
        # client answers every ping, so it says so at once.
        self.send_line("/pong")
        if self.wanted_nick is not None and self.wanted_nick != name:
            # The member list follows the welcome: choose once it is in.
            self._arrival = Roster()

    def _ask_free_nick(self, present: Roster) -> None:
        taken = {skeleton(name) for name in present.names() if name != self.name}
        assert self.wanted_nick is not None
        for number in range(1, MAX_NICK_TRIES + 1):
            if skeleton(nick_variant(self.wanted_nick, number)) not in taken:
                self._ask_nick(number)
                return
        self._give_up_nick(f"no free variant of {self.wanted_nick}: type /nick with another name")

    def _ask_nick(self, number: int) -> None:
        assert self.wanted_nick is not None
        self._nick_number = number
        self._nick_try = nick_variant(self.wanted_nick, number)
        self.send_line(f"/nick {self._nick_try}")

    def _renamed(self, new_name: str) -> None:
        self.name = new_name
        self.view.name_changed(new_name)
        if self._nick_try is not None and new_name == self._nick_try:
            if self._nick_number > 1:
                self.view.notice(f"the name {self.wanted_nick} is taken: you are {new_name}")
        else:
            # The user chose this name: keep it across reconnects.
            self.wanted_nick = new_name
        self._nick_try = None

    def _nick_refused(self, text: str) -> None:
        # The server says "the name X is taken" or "... looks too much like Y"
        # when someone took it since the list; other refusals end the search.
        if text.startswith(f"the name {self._nick_try} "):
            if self._nick_number < MAX_NICK_TRIES:
                self._ask_nick(self._nick_number + 1)
            else:
                self._give_up_nick(f"no free variant of {self.wanted_nick}: type /nick with another name")
        elif text.startswith(("invalid name", "too many name changes")):
            self._give_up_nick(f"cannot take the name {self.wanted_nick} ({text})")
        # Anything else is about a line the user typed meanwhile.

    def _give_up_nick(self, why: str) -> None:
        self.view.notice(why)
        self._nick_try = None
        self.wanted_nick = None
