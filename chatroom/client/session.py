"""
One chat session: a connection kept alive with backoff, and the way to talk on it.

L{ChatSession} connects through any stream client endpoint (verified TLS in
the application), reports every step to a L{ChatView}, and after a failed
attempt or a dropped connection tries again after a growing delay, saying
so. It stops trying when the user leaves with C{/quit}, quits the client, or
is kicked or banned. With L{E2ESettings}, every connection gets its own
L{E2EClient} (a fresh session key) on the user's identity key and pins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IProtocol, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from chatroom.client.protocol import ChatClientProtocol, ChatView, Lock, describe_failure
from chatroom.core.chat import CLIENT_COMMANDS
from chatroom.core.commands import ParseError, parse_command
from chatroom.e2e.client import E2EClient
from chatroom.e2e.keys import Identity
from chatroom.e2e.pins import PinStore

# A connection that lasted this long was a success: the next drop starts the
# backoff afresh. A shorter one (a server that accepts and drops at once)
# counts as a failure, so the delays keep growing.
STABLE_AFTER = 10.0


def default_retry_policy() -> Callable[[int], float]:
    """
    1.5 s after the first failure, 1.5 times longer after each further one,
    at most a minute; plus up to 1 s of jitter.
    """
    return backoffPolicy(initialDelay=1.0, maxDelay=60.0, factor=1.5)


def is_quit(text: str) -> bool:
    """
    Whether the line C{text} is the C{/quit} command.
    """
    try:
        return parse_command(text, CLIENT_COMMANDS).name == "quit"
    except ParseError:
        return False


@dataclass
class E2ESettings:
    """
    What lasts across connections for end-to-end encryption.

    @ivar identity: The user's long-term identity key.
    @ivar pins: The names and keys seen so far (trust on first use).
    @ivar required: Refuse to send chat in the clear when the room is unlocked.
    @ivar ever_locked: Whether a connection of this run was locked: a new
        connection then asks for C{/plain} before anything goes in the clear.
    """

    identity: Identity
    pins: PinStore
    required: bool = False
    ever_locked: bool = False

    def client(self, clock: IReactorTime) -> E2EClient:
        """
        The E2E state of one new connection.
        """
        return E2EClient(
            self.identity,
            self.pins,
            clock=clock.seconds,
            required=self.required,
            ever_locked=self.ever_locked,
        )


class ChatSession:
    """
    Keeps one connection to the daemon and sends the user's lines on it.

    @ivar protocol: The connected protocol, or L{None} while disconnected.
    """

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        address: str,
        nick: str | None = None,
        retry_policy: Callable[[int], float] | None = None,
        e2e: E2ESettings | None = None,
    ) -> None:
        """
        @param clock: Schedules retries and times handshakes.
        @param endpoint: Makes one connection (TLS included) per attempt.
        @param address: The server's C{host:port}, for messages.
        @param nick: The name to ask for once connected.
        @param retry_policy: Seconds to wait after C{n} failures in a row.
        @param e2e: End-to-end encryption settings, or L{None} for none.
        """
        self.clock = clock
        self.endpoint = endpoint
        self.address = address
        self.nick = nick
        self.retry_policy = retry_policy or default_retry_policy()
        self.e2e = e2e
        self.protocol: ChatClientProtocol | None = None
        # The connection being set up or in use, ready or not.
        self._connection: ChatClientProtocol | None = None
        self._view: ChatView | None = None
        self._failures = 0
        self._ready_at = 0.0
        self._stopped = True
        self._attempt: Deferred[IProtocol] | None = None
        self._retry: IDelayedCall | None = None
        self._closed: list[Deferred[None]] = []

    def start(self, view: ChatView) -> None:
        """
        Start connecting, reporting to C{view}.
        """
        self._view = view
        self._stopped = False
        if self.e2e is not None:
            view.lock_changed(Lock.UNLOCKED)
        self._connect()

    @property
    def view(self) -> ChatView:
        assert self._view is not None, "start the session first"
        return self._view

    @property
    def idle(self) -> bool:
        """
        Whether there is neither a connection nor an attempt to make one.
        """
        return self.protocol is None and self._attempt is None and self._connection is None

    # Connecting

    def _connect(self) -> None:
        self._retry = None
        self.view.connecting(self.address)
        factory = Factory.forProtocol(self._build_protocol)
        attempt = self._attempt = self.endpoint.connect(factory)
        attempt.addCallbacks(self._attempt_made, self._attempt_failed)

    def _build_protocol(self) -> ChatClientProtocol:
        e2e = None if self.e2e is None else self.e2e.client(self.clock)
        protocol = ChatClientProtocol(self.view, self.clock, self.nick, self._ready, self._lost, e2e)
        self._connection = protocol
        return protocol

    def _attempt_made(self, protocol: IProtocol) -> None:
        self._attempt = None

    def _attempt_failed(self, reason: Failure) -> None:
        self._attempt = None
        if not self._stopped:
            self.view.disconnected(describe_failure(reason))
            self._failures += 1
            self._schedule_retry()

    def _ready(self, protocol: ChatClientProtocol) -> None:
        self.protocol = protocol
        self._ready_at = self.clock.seconds()
        self.view.connected(self.address)

    def _lost(self, protocol: ChatClientProtocol, reason: Failure) -> None:
        self.nick = protocol.wanted_nick
        was_ready, self.protocol, self._connection = protocol.ready, None, None
        if was_ready and self.clock.seconds() - self._ready_at >= STABLE_AFTER:
            self._failures = 0
        self._failures += 1
        closed, self._closed = self._closed, []
        for waiting in closed:
            waiting.callback(None)
        if self.e2e is not None and protocol.e2e is not None and protocol.e2e.ever_locked:
            # A reconnect must not be a way to downgrade to plain text.
            self.e2e.ever_locked = True
        if protocol.lock is Lock.LOCKED:
            # Offline, nothing goes out encrypted.
            self.view.lock_changed(Lock.UNLOCKED)
        if protocol.sent_away is not None:
            self._stopped = True
            self.view.disconnected(f"{protocol.sent_away} (press Reconnect to try again)")
        elif self._stopped:
            self.view.disconnected("you left the room (press Reconnect to join again)")
        else:
            self.view.disconnected(describe_failure(reason))
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        delay = self.retry_policy(self._failures)
        self.view.retrying(delay)
        self._retry = self.clock.callLater(delay, self._connect)

    def reconnect(self) -> None:
        """
        Connect now, unless connected or connecting; the backoff starts afresh.
        """
        if not self.idle:
            return
        if self._retry is not None:
            self._retry.cancel()
        self._failures = 0
        self._stopped = False
        self._connect()

    # Talking

    def send(self, text: str) -> bool:
        """
        Send one line as typed (through E2E, if on), if connected.

        @return: Whether it was sent.
        """
        if self.protocol is None:
            return False
        if is_quit(text):
            # The server closes the connection after /quit: do not come back.
            self._stopped = True
        self.protocol.send_typed(text)
        return True

    def stop(self, farewell: bool = False) -> Deferred[None]:
        """
        Stop trying and close the connection.

        @param farewell: Send C{/quit} first, so the room sees a clean exit.
        @return: Fires once the connection is closed.
        """
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
        connection = self._connection
        if connection is None or connection.transport is None:
            return succeed(None)
        if farewell and self.protocol is not None:
            self.protocol.send_line("/quit")
        waiting: Deferred[None] = Deferred()
        self._closed.append(waiting)
        connection.transport.loseConnection()
        return waiting
