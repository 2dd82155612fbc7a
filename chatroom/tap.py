"""
Wiring for C{twistd -n chatroom}: options, and the service they make.

L{Options} only checks the command line. L{build_service} reads and makes
the files (certificate, state, password), composes the room (the core,
its stores and features) and puts one listener per C{--listen} under one
L{ChatService}. L{makeService}, which twistd calls, takes the reactor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import gc
import os
import signal
import socket
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, cast

from OpenSSL.crypto import Error as SSLError
from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorThreads, IReactorTime, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from chatroom.cloak import Cloaker, load_or_create_key
from chatroom.core.chat import new_room
from chatroom.core.events import Members, Notice
from chatroom.core.memory import InMemoryMembers, LocalFanOut
from chatroom.core.ports import FanOut, MemberDirectory
from chatroom.core.session import Sessions
from chatroom.features.e2e import (
    E2E_LINE_PREFIX,
    E2E_MAX_LINE_BYTES,
    E2EFeature,
    InMemoryKeyDirectory,
    KeyDirectory,
)
from chatroom.features.history import History, HistorySettings
from chatroom.features.moderation import Moderation, ModerationSettings, PasswordCheck
from chatroom.limits import ClientLimits, ConnectionLimits, RoomLimits
from chatroom.metrics import ChatMetrics, MeteredFanOut, Sampler
from chatroom.passwd import read_hash_file
from chatroom.state import StateError, clean_temporary_files, write_json
from chatroom.stores.files import STATE_FILE, DocumentBanStore, load_bans, load_topic
from chatroom.stores.redis.link import Link, parse_redis_url
from chatroom.stores.redis.room import SharedRoom
from chatroom.stores.sqlite import HISTORY_FILE, HistoryFileError, SQLiteHistory, open_history
from chatroom.tls import (
    CA_CERT_NAME,
    SERVER_CERT_NAME,
    SERVER_KEY_NAME,
    CertificateError,
    ServerTLS,
    create_local_ca,
    missing_names,
    san_entry,
)
from chatroom.transports.irc.protocol import DEFAULT_CHANNEL, IRCFactory, channel_problem
from chatroom.transports.line.protocol import LineFactory
from chatroom.transports.line.writer import TurnFlusher

DEFAULT_CERT_DIR = Path("certs")
DEFAULT_PORT = 6697
DEFAULT_HISTORY = 10_000
MAX_ON_JOIN = 1000
CLIENT_DEFAULTS = ClientLimits()
CONNECTION_DEFAULTS = ConnectionLimits()
ROOM_DEFAULTS = RoomLimits()
TRANSPORTS = ("line", "irc")

# (option, defaults, field, help): every limit is a twistd option whose
# default is the dataclass default; 0 disables a limit.
LIMIT_OPTIONS: list[tuple[str, ClientLimits | ConnectionLimits | RoomLimits, str, str]] = [
    (
        "send-queue",
        CLIENT_DEFAULTS,
        "send_queue",
        "Bytes queued for a client that does not read before it is dropped.",
    ),
    ("flood-rate", CLIENT_DEFAULTS, "flood_rate", "Lines per second a client may send, sustained."),
    ("flood-burst", CLIENT_DEFAULTS, "flood_burst", "Lines a client may send in a burst."),
    ("flood-kick", CLIENT_DEFAULTS, "flood_kick", "Lines refused for flooding, in a row, before a kick."),
    ("nick-rate", CLIENT_DEFAULTS, "nick_rate", "Name changes per second, sustained."),
    ("nick-burst", CLIENT_DEFAULTS, "nick_burst", "Name changes in a burst."),
    (
        "bad-input-burst",
        CLIENT_DEFAULTS,
        "bad_input_burst",
        "Bad lines a client may send before it is dropped.",
    ),
    ("bad-input-rate", CLIENT_DEFAULTS, "bad_input_rate", "Bad lines per second forgiven."),
    ("handshake-timeout", CLIENT_DEFAULTS, "handshake_timeout", "Seconds to finish the TLS handshake."),
    (
        "first-line-timeout",
        CLIENT_DEFAULTS,
        "first_line_timeout",
        "Seconds from the end of the handshake to joining the room.",
    ),
    (
        "ping-interval",
        CLIENT_DEFAULTS,
        "ping_interval",
        "Seconds of silence before the server pings a client that has sent /pong once.",
    ),
    ("ping-timeout", CLIENT_DEFAULTS, "ping_timeout", "Seconds a pinged client has to answer."),
    ("keepalive-idle", CLIENT_DEFAULTS, "keepalive_idle", "Seconds of silence before TCP keepalive probes."),
    ("keepalive-interval", CLIENT_DEFAULTS, "keepalive_interval", "Seconds between TCP keepalive probes."),
    (
        "keepalive-count",
        CLIENT_DEFAULTS,
        "keepalive_count",
        "Unanswered TCP keepalive probes before a peer is taken for gone.",
    ),
    (
        "byte-rate",
        CLIENT_DEFAULTS,
        "byte_rate",
        "Bytes per second a client may send (after normalisation), sustained.",
    ),
    ("byte-burst", CLIENT_DEFAULTS, "byte_burst", "Bytes a client may send in a burst."),
    (
        "address-byte-rate",
        CLIENT_DEFAULTS,
        "address_byte_rate",
        "Bytes per second all clients of one address may send, sustained.",
    ),
    ("address-byte-burst", CLIENT_DEFAULTS, "address_byte_burst", "Bytes they may send in a burst."),
    (
        "answer-rate",
        CLIENT_DEFAULTS,
        "answer_rate",
        "Bytes per second of answers to a client's own commands; past the burst its commands wait.",
    ),
    ("answer-burst", CLIENT_DEFAULTS, "answer_burst", "Bytes of answers a client may get at once."),
    (
        "memory-budget",
        CLIENT_DEFAULTS,
        "memory_budget",
        "Bytes all send queues and partial lines may hold; past it the largest are dropped.",
    ),
    ("max-connections", CONNECTION_DEFAULTS, "total", "Connections at once, in all."),
    (
        "max-handshakes",
        CONNECTION_DEFAULTS,
        "handshakes",
        "Connections at once still in the TLS handshake; past it the oldest is closed.",
    ),
    (
        "max-per-address",
        CONNECTION_DEFAULTS,
        "per_address",
        "Connections at once per address (IPv6: per /64).",
    ),
    ("connect-rate", CONNECTION_DEFAULTS, "rate", "New connections per address per --connect-window."),
    ("connect-window", CONNECTION_DEFAULTS, "window", "Seconds of the --connect-rate window."),
    ("notice-rate", ROOM_DEFAULTS, "notice_rate", "Join and leave lines per second, sustained."),
    (
        "notice-burst",
        ROOM_DEFAULTS,
        "notice_burst",
        "Join and leave lines in a burst; past it they are summed up in arrivals lines.",
    ),
    ("notice-interval", ROOM_DEFAULTS, "notice_interval", "Seconds between arrivals lines."),
    ("oper-checks", ROOM_DEFAULTS, "oper_checks", "Admin password checks per --oper-window, in all."),
    ("oper-window", ROOM_DEFAULTS, "oper_window", "Seconds of the --oper-checks window."),
    ("bans-page", ROOM_DEFAULTS, "bans_page", "Bans per /bans answer."),
]


HELP_HINT = "twistd -n chatroom --help lists the options."


def number(option: str, kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """
    A coerce function for C{--option}, whose error names the option.
    """

    def coerce(text: str) -> int | float:
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"--{option} takes {what}, not {text!r}") from None

    return coerce


# Seconds between looks at whether memory the sessions let go can go back
# to the system, and how much must have been let go for it to be worth it.
TRIM_INTERVAL = 5.0
TRIM_WORTH = 4 * 1024 * 1024


def malloc_trim() -> bool:
    """
    Hand the C heap's free pages back to the system (glibc's
    C{malloc_trim}); freed send queues otherwise stay in the process's
    resident memory. Whether it was there to call.
    """
    # Closed connections can sit in reference cycles holding their buffers
    # until the oldest generation is collected, which may take a long time.
    gc.collect()
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is None:
        return False
    trim(0)
    return True


def freeze_start_up() -> None:
    """
    Move what start-up made (modules, classes, the loaded state), which
    lives as long as the daemon, out of the garbage collector's reach: a
    full collection then walks only what the connections made since, and
    stalls the room for a millisecond instead of tens of them.
    """
    gc.collect()
    gc.freeze()


class MemoryTrimmer:
    """
    Calls C{trim} once the sessions have let go of at least L{TRIM_WORTH}
    bytes since their highest point.
    """

    def __init__(self, sessions: Sessions, trim: Callable[[], object] = malloc_trim) -> None:
        self.sessions = sessions
        self.trim = trim
        self._high = 0

    log = Logger()

    def check(self) -> None:
        held = self.sessions.held
        self._high = max(self._high, self.sessions.take_peak())
        if self._high - held >= TRIM_WORTH:
            self.log.info(
                "sessions let go of {freed} bytes: returning free memory to the system",
                freed=self._high - held,
            )
            self.trim()
            self._high = held


class StartupError(Exception):
    """
    The daemon cannot start; the message names the file or option and why.
    """


def split_endpoint(description: str) -> list[str]:
    """
    The colon-separated fields of a Twisted endpoint description
    (backslash escapes a colon or a backslash), unescaped.
    """
    fields, current, chars = [], [], iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def parse_listen(spec: str) -> tuple[str, str]:
    """
    Split C{--listen KIND:ENDPOINT} into the transport kind and the endpoint.

    @raise usage.UsageError: If the kind is unknown or the endpoint missing.
    """
    kind, _, endpoint = spec.partition(":")
    if kind not in TRANSPORTS:
        raise usage.UsageError(f"--listen {spec}: the kind must be one of {', '.join(TRANSPORTS)}")
    if not endpoint:
        raise usage.UsageError(f"--listen {spec}: give an endpoint, for example {kind}:ssl:6697")
    return kind, endpoint


def uses_own_certificate(endpoint: str) -> bool:
    """
    Whether C{endpoint} is an C{ssl:} endpoint that names no certificate of
    its own, so it gets the daemon's (reloaded on SIGHUP).
    """
    fields = split_endpoint(endpoint)
    return fields[0] == "ssl" and not any(f.startswith(("certKey=", "privateKey=")) for f in fields[1:])


def tls_endpoint(
    reactor: Any, endpoint: str, tls: ServerTLS, reuse_port: bool = False
) -> IStreamServerEndpoint:
    """
    An C{ssl:} endpoint (port, C{interface=}, C{backlog=}) served with the
    daemon's own reloadable TLS context, through C{listenSSL}.

    @raise usage.UsageError: If the endpoint's arguments are not those.
    """
    positional: list[str] = []
    named: dict[str, str] = {}
    for field in split_endpoint(endpoint)[1:]:
        key, sep, value = field.partition("=")
        if sep:
            named[key] = value
        else:
            positional.append(field)
    port = named.pop("port", positional[0] if positional else "")
    interface = named.pop("interface", "")
    backlog = named.pop("backlog", "50")
    if len(positional) > 1 or named or not port.isdigit() or not backlog.isdigit():
        raise usage.UsageError(
            f"ssl:{endpoint.partition(':')[2]}: use ssl:PORT[:interface=ADDRESS][:backlog=N],"
            " or give certKey= and privateKey="
        )
    if reuse_port:
        return ReusePortTLSEndpoint(reactor, int(port), tls, int(backlog), interface)
    return SSL4ServerEndpoint(reactor, int(port), tls, backlog=int(backlog), interface=interface)


@implementer(IStreamServerEndpoint)
class ReusePortTLSEndpoint:
    """
    A TLS server endpoint whose socket has C{SO_REUSEPORT}, so several
    processes listen on one port (the kernel spreads the connections): the
    socket is made here and handed to C{adoptStreamPort}.
    """

    def __init__(self, reactor: Any, port: int, tls: ServerTLS, backlog: int, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.tls = tls
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
            wrapped = TLSMemoryBIOFactory(self.tls, False, factory)
            port = self.reactor.adoptStreamPort(sock.fileno(), family, wrapped)
        except OSError:
            return fail()
        finally:
            # The reactor has its own copy of the descriptor.
            sock.close()
        return succeed(port)


class Options(usage.Options):
    """
    Command-line options of the chatroom daemon.
    """

    synopsis = "[options]"
    longdesc = (
        "A one-room chat daemon over TLS. With no --cert and --key and no"
        " certificate under certs/, it creates a local CA and a certificate"
        " for localhost there, and logs the CA file clients should trust."
    )
    optParameters: ClassVar[list[list[Any]]] = [
        [
            "port",
            "p",
            DEFAULT_PORT,
            "TLS port to listen on (0: any free port); --listen line:ssl:PORT.",
            number("port", int),
        ],
        ["interface", "i", "", "Address for --port (default: all IPv4; '::' for IPv6 too)."],
        ["cert", None, None, f"Server certificate, PEM [default: certs/{SERVER_CERT_NAME}]."],
        ["key", None, None, f"Server private key, PEM [default: certs/{SERVER_KEY_NAME}]."],
        [
            "state",
            None,
            "state",
            "Directory for data kept across restarts (the bans, the cloak key, the history).",
        ],
        [
            "admin-password-file",
            None,
            None,
            "File holding the admin password hash (make it with python -m chatroom.passwd):"
            " /oper <password> makes its sender admin, and the first member is no longer admin.",
        ],
        [
            "irc-channel",
            None,
            DEFAULT_CHANNEL,
            "The room's channel name on IRC listeners (--listen irc:...).",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this Twisted endpoint, for example"
            " tcp:9100:interface=127.0.0.1 (plain HTTP: keep it on a private address).",
        ],
        [
            "shutdown-grace",
            None,
            5.0,
            "Seconds to flush output to clients on shutdown.",
            number("shutdown-grace", float),
        ],
        [
            "history",
            None,
            DEFAULT_HISTORY,
            f"Messages and notices kept in --state/{HISTORY_FILE} (0: no history).",
            number("history", int),
        ],
        [
            "history-days",
            None,
            30.0,
            "Days a stored message is kept (0: no age bound).",
            number("history-days", float),
        ],
        [
            "history-on-join",
            None,
            50,
            f"Stored messages a member gets on joining (0 to {MAX_ON_JOIN}).",
            number("history-on-join", int),
        ],
        [
            "redis",
            None,
            None,
            "Share the room with other nodes through Redis at this URL (redis://HOST:PORT/DB,"
            " rediss:// for TLS); the bans are then kept there, not under --state.",
        ],
        [
            "redis-ca",
            None,
            None,
            "CA file (PEM) to check a rediss:// server's certificate against [default: the system's CAs].",
        ],
        [
            "node-name",
            None,
            None,
            "This node's name among the nodes of --redis [default: host name and pid].",
        ],
        [
            "node-timeout",
            None,
            15.0,
            "Seconds after which the other nodes count a silent node as dead and its members as gone.",
            number("node-timeout", float),
        ],
        *(
            [
                option,
                None,
                getattr(defaults, field),
                help_text,
                number(option, type(getattr(defaults, field))),
            ]
            for option, defaults, field, help_text in LIMIT_OPTIONS
        ),
    ]
    optFlags: ClassVar[list[list[Any]]] = [
        ["first-admin", None, "With --admin-password-file, still make the first member admin."],
        ["limit-loopback", None, "Apply the per-address limits to loopback clients too."],
        [
            "public-addresses",
            None,
            "Show every member's address to everyone; by default members see a cloak"
            " (admins and the member itself see the address).",
        ],
        [
            "no-tls-fast-path",
            None,
            "Write TLS through Twisted's public path only, not the writer's fast path (for comparison).",
        ],
        [
            "reuse-port",
            None,
            "Listen with SO_REUSEPORT on ssl: ports, so several processes can share one port.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["hostname"] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse as usual; under twistd (which sets C{parent}), a mistake
        exits with one error line and a hint to C{--help} instead of
        twistd's pages of usage text before the error.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            raise SystemExit(f"chatroom: {e}\n{HELP_HINT}") from None

    def opt_hostname(self, name: str) -> None:
        """
        A host name or address clients use to reach the daemon; repeatable.
        It goes into the certificate made under certs/, and a certificate
        reloaded on SIGHUP must cover it.
        """
        try:
            san_entry(name)
        except ValueError as e:
            raise usage.UsageError(f"--hostname {name}: {e}") from e
        self["hostname"].append(name)

    def opt_listen(self, spec: str) -> None:
        """
        Listen with transport KIND (line, or irc for IRC clients) on a Twisted
        server endpoint, for example line:ssl:6697, irc:ssl:6698 or
        irc:tcp:6667:interface=127.0.0.1; repeatable.
        An ssl: endpoint without certKey=/privateKey= uses the daemon's
        certificate. Without --listen: line:ssl:PORT on --interface.
        """
        self["listen"].append(parse_listen(spec))

    def postOptions(self) -> None:
        problem = channel_problem(self["irc-channel"])
        if problem is not None:
            raise usage.UsageError(f"--irc-channel {self['irc-channel']}: {problem}")
        if self["redis"] is not None:
            try:
                parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from e
        if self["node-name"] is None:
            self["node-name"] = f"{socket.gethostname()}-{os.getpid()}"
        elif not self["node-name"] or any(c.isspace() for c in self["node-name"]):
            raise usage.UsageError("--node-name: give a name without spaces")
        if self["node-timeout"] < 1:
            raise usage.UsageError("--node-timeout must be at least 1 second")
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port must be 0 to 65535, not {self['port']}")
        for option, _, _, _ in LIMIT_OPTIONS:
            if self[option] < 0:
                raise usage.UsageError(f"--{option} cannot be negative")
        if self["history"] < 0 or self["history-days"] < 0:
            raise usage.UsageError("--history and --history-days cannot be negative")
        if not 0 <= self["history-on-join"] <= MAX_ON_JOIN:
            raise usage.UsageError(f"--history-on-join must be 0 to {MAX_ON_JOIN}")
        client_fields = {f: self[o] for o, d, f, _ in LIMIT_OPTIONS if d is CLIENT_DEFAULTS}
        connection_fields = {f: self[o] for o, d, f, _ in LIMIT_OPTIONS if d is CONNECTION_DEFAULTS}
        self["client_limits"] = ClientLimits(**client_fields)
        self["connection_limits"] = ConnectionLimits(
            **connection_fields, exempt_loopback=not self["limit-loopback"]
        )
        self["room_limits"] = RoomLimits(**{f: self[o] for o, d, f, _ in LIMIT_OPTIONS if d is ROOM_DEFAULTS})
        if self["connection_limits"].handshakes > self["connection_limits"].total > 0:
            raise usage.UsageError("--max-handshakes must be at most --max-connections")
        if not self["listen"]:
            interface = self["interface"].replace(":", "\\:")
            where = f":interface={interface}" if interface else ""
            self["listen"] = [("line", f"ssl:{self['port']}{where}")]


@implementer(IStreamServerEndpoint)
class _Announced:
    """
    An endpoint that logs the address it listens on, and fails at once
    (so the daemon exits with an error) when it cannot listen.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        kind: str,
        announcement: str = "chatroom listening on {host}:{port} ({kind})",
    ) -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.announcement = announcement

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        listening = self.endpoint.listen(factory)
        failed: list[Any] = []
        listening.addCallbacks(self._listening, failed.append)
        if failed:
            failed[0].raiseException()
        return listening

    def _listening(self, port: IListeningPort) -> IListeningPort:
        address: Any = port.getHost()
        host, number = getattr(address, "host", "?"), getattr(address, "port", 0)
        self.log.info(self.announcement, host=host, port=number, kind=self.kind)
        return port


class ChatService(MultiService):
    """
    The daemon: a listener per C{--listen} while running; on stop, tells
    every client and lets its output drain (for at most C{grace} seconds)
    before closing, then saves the state. SIGHUP reloads the certificate
    and key, and the admin password file, if L{install_signals} was called.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        sessions: Sessions,
        moderation: Moderation,
        tls: ServerTLS,
        grace: float = 5.0,
        password_file: Path | None = None,
        sampler: Sampler | None = None,
        history: SQLiteHistory | None = None,
        shared: SharedRoom | None = None,
        links: tuple[Link, ...] = (),
    ) -> None:
        super().__init__()
        self.sampler = sampler
        self.history = history
        self.shared = shared
        self.links = links
        self.reactor = reactor
        self.sessions = sessions
        self.moderation = moderation
        self.tls = tls
        self.grace = grace
        self.password_file = password_file
        self._trimming = LoopingCall(MemoryTrimmer(sessions).check)
        self._trimming.clock = reactor

    def listen(self, endpoint: IStreamServerEndpoint, factory: Factory, kind: str) -> None:
        """
        Serve C{factory} on C{endpoint} while running.
        """
        StreamServerEndpointService(_Announced(endpoint, kind), factory).setServiceParent(self)

    def serve_metrics(self, endpoint: IStreamServerEndpoint, site: Site) -> None:
        """
        Serve the metrics C{site} on C{endpoint} while running.
        """
        announced = _Announced(endpoint, "metrics", "chatroom metrics on http://{host}:{port}/metrics")
        StreamServerEndpointService(announced, site).setServiceParent(self)

    def install_signals(self) -> None:
        """
        Reload on SIGHUP (the handler only schedules the work on the reactor).
        """
        reactor = self.reactor
        signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(self.reload))

    def reload(self) -> None:
        """
        Load the certificate and key again for new connections, and the
        admin password file; anything broken is refused, with a logged
        error, and the old one stays in use.
        """
        try:
            self.tls.reload()
        except CertificateError as e:
            self.log.error("reload refused, keeping the old certificate: {error}", error=str(e))
        else:
            self.log.info("reloaded the certificate {cert}", cert=self.tls.cert_path)
        if self.password_file is not None:
            try:
                password = read_hash_file(self.password_file)
            except ValueError as e:
                self.log.error("reload refused, keeping the old admin password: {error}", error=str(e))
            else:
                self.moderation.settings.password = password
                self.log.info("reloaded the admin password file {path}", path=self.password_file)

    def privilegedStartService(self) -> None:
        # With Redis, the listeners bind once the room is loaded (startService).
        if self.shared is None:
            super().privilegedStartService()
        else:
            Service.privilegedStartService(self)

    def startService(self) -> None:
        self._trimming.start(TRIM_INTERVAL, now=False)
        if self.sampler is not None:
            self.sampler.start()
        shared = self.shared
        if shared is None:
            super().startService()
            return
        # Listen only once the shared room is loaded from Redis.
        Service.startService(self)
        for link in self.links:
            link.start()
        self.log.info("connecting to Redis at {url}", url=self.links[0].address.host)
        shared.start().addCallback(lambda _: self._start_listeners())

    def _start_listeners(self) -> None:
        if self.running:
            for service in self:
                service.startService()

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        if self.sampler is not None:
            self.sampler.stop()
        if self._trimming.running:
            self._trimming.stop()
        # The listeners first: nobody new joins a room that is closing.
        if self.shared is None or all(s.running for s in self):
            yield super().stopService()
        else:
            Service.stopService(self)
        count = len(self.sessions.open)
        notice = Notice(self.reactor.seconds(), "the server is shutting down")
        if self.shared is not None:
            # Our members leave the shared room (the others stay in it).
            self.sessions.room.fanout.publish(notice, Members(tuple(self.shared.local_ids())))
            self.shared.leave_local("the server is shutting down")
        yield self.sessions.close_all(notice, self.grace)
        if self.shared is not None:
            yield self.shared.stop()
            yield self.shared.drained()
            for link in self.links:
                link.close()
        self.log.info("closed {count} connections", count=count)
        try:
            # Saved after every change already; again here in case one failed.
            yield self.moderation.save()
        except OSError as e:
            self.log.error("could not save the state at shutdown: {error}", error=e)
        if self.history is not None:
            try:
                # What the last turn said, then the file is closed.
                yield self.history.close()
            except Exception as e:
                self.log.error("could not close the history file: {error}", error=e)
        # twistd re-raises the signal that stopped it, so the exit status
        # would say "killed"; this was an orderly shutdown: exit 0 instead.
        if getattr(self.reactor, "_exitSignal", None) is not None:
            self.reactor._exitSignal = None


def compose(
    clock: IReactorTime,
    moderation: ModerationSettings,
    limits: ClientLimits | None = None,
    connection_limits: ConnectionLimits | None = None,
    e2e: bool = True,
    cloak: Callable[[str], str] | None = None,
    metrics: ChatMetrics | None = None,
    keys: KeyDirectory | None = None,
    members: MemberDirectory | None = None,
    fanout: FanOut | None = None,
    history: HistorySettings | None = None,
    room_limits: RoomLimits | None = None,
) -> tuple[Sessions, Moderation]:
    """
    The daemon's room on C{clock}: the chat commands, moderation and (with
    C{e2e}) end-to-end encryption, and the sessions of its connections;
    with C{cloak}, members see each other's cloaks, not addresses; with
    C{metrics}, the sessions and the fan-out count into it.

    @param keys: The end-to-end key directory (a new in-memory one by default).
    @param members: The member directory (in memory by default).
    @param fanout: The fan-out (to this process's sessions by default).
    @param history: The message history's settings; none without it.
    """
    # A fan-out from outside carries events to other processes: a shared room.
    shared = fanout is not None
    if members is None:
        members = InMemoryMembers()
    if fanout is None:
        fanout = LocalFanOut(members)
    if metrics is not None:
        fanout = MeteredFanOut(fanout, metrics)
    room = new_room(clock, members, fanout, cloak=cloak, limits=room_limits)
    feature = Moderation(room, moderation)
    room.add_feature(feature)
    if e2e:
        room.add_feature(E2EFeature(room, keys, shared=shared))
    if history is not None:
        room.add_feature(History(room, history))
    return Sessions(room, clock, limits, connection_limits, meter=metrics), feature


def line_factory(sessions: Sessions, flusher: TurnFlusher | None = None, e2e: bool = True) -> LineFactory:
    """
    A line transport factory for C{sessions}; with C{e2e}, lines carrying
    end-to-end envelopes may be longer.
    """
    if e2e:
        return LineFactory(sessions, flusher, E2E_LINE_PREFIX, E2E_MAX_LINE_BYTES)
    return LineFactory(sessions, flusher)


def build_service(
    config: Options,
    reactor: Any,
    run_in_thread: Callable[..., Deferred[Any]],
    run_history: Callable[..., Deferred[Any]] | None = None,
) -> ChatService:
    """
    Read and make the files C{config} names, and compose the daemon.

    @param run_in_thread: Runs a blocking callable off the reactor thread.
    @param run_history: Runs the history file's blocking calls one at a
        time, in order, off the reactor thread (default: C{run_in_thread},
        which must then do so).
    @raise StartupError: If a file is missing, unreadable or broken.
    """
    explicit = config["cert"] is not None or config["key"] is not None
    cert = Path(config["cert"] or DEFAULT_CERT_DIR / SERVER_CERT_NAME)
    key = Path(config["key"] or DEFAULT_CERT_DIR / SERVER_KEY_NAME)
    hostnames = config["hostname"]
    try:
        if not explicit and not cert.exists() and not key.exists():
            created = create_local_ca(DEFAULT_CERT_DIR, datetime.datetime.now(datetime.UTC), hostnames)
            ChatService.log.info("created a local CA; clients should trust {ca}", ca=created.resolve())
        elif config["cert"] is None:
            ChatService.log.info("clients should trust {ca}", ca=(DEFAULT_CERT_DIR / CA_CERT_NAME).resolve())
            missing = missing_names(cert, hostnames)
            if missing:
                raise StartupError(
                    f"the certificate {cert} is not for {', '.join(missing)}: move {DEFAULT_CERT_DIR}/ away"
                    " to make a new local CA with every --hostname, or give --cert and --key"
                )
        tls = ServerTLS(cert, key, hosts=hostnames)
    except (CertificateError, OSError, ValueError) as e:
        raise StartupError(str(e)) from e
    state = Path(config["state"])
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"cannot create the state directory {state}: {e.strerror}") from e
    try:
        # What a kill -9 left in the middle of a save.
        for leftover in clean_temporary_files(state):
            ChatService.log.info("removed the unfinished save {path}", path=leftover)
        bans = load_bans(state / STATE_FILE)
        topic = load_topic(state / STATE_FILE)
    except StateError as e:
        raise StartupError(str(e)) from e
    cloak = None
    if not config["public-addresses"]:
        try:
            cloak = Cloaker(load_or_create_key(state))
        except ValueError as e:
            raise StartupError(str(e)) from e
    password = None
    password_file = config["admin-password-file"]
    if password_file is not None:
        try:
            password = read_hash_file(Path(password_file))
        except ValueError as e:
            raise StartupError(str(e)) from e

    def run_check(check: PasswordCheck) -> Deferred[bool]:
        # scrypt takes tens of milliseconds: not on the reactor thread.
        return run_in_thread(check)

    shared: SharedRoom | None = None
    links: tuple[Link, ...] = ()
    if config["redis"] is not None:
        address = parse_redis_url(config["redis"])
        ca = None
        if config["redis-ca"] is not None:
            try:
                ca = Path(config["redis-ca"]).read_bytes()
                Certificate.loadPEM(ca)
            except OSError as e:
                raise StartupError(f"--redis-ca {config['redis-ca']}: {e.strerror}") from e
            except (SSLError, ValueError) as e:
                raise StartupError(f"--redis-ca {config['redis-ca']}: not a PEM certificate") from e
        writer, reader = Link(reactor, address, "writer", ca), Link(reactor, address, "reader", ca)
        links = (writer, reader)
        shared = SharedRoom(reactor, writer, reader, config["node-name"], config["node-timeout"])
        writer.on_up, writer.on_down = shared.writer_up, shared.writer_down
        reader.on_up = shared.reader_up
    # The topic stays in this node's moderation.json; with --redis the bans are shared.
    document = DocumentBanStore(bans, partial(write_json, state / STATE_FILE), run_in_thread, topic)
    settings = ModerationSettings(
        bans=document if shared is None else shared.bans,
        password=password,
        first_admin=password is None or bool(config["first-admin"]),
        run_check=run_check,
        topics=document,
    )
    metrics = sampler = site = None
    metrics_endpoint: IStreamServerEndpoint | None = None
    keys: KeyDirectory = InMemoryKeyDirectory() if shared is None else shared.keys
    if config["metrics"] is not None:
        # Its own registry, never prometheus_client's global one.
        metrics = ChatMetrics(CollectorRegistry(), TRANSPORTS)
        try:
            metrics_endpoint = serverFromString(reactor, config["metrics"])
        except (ValueError, KeyError) as e:
            raise StartupError(f"--metrics {config['metrics']}: {e}") from e
        site = metrics_site(metrics.registry)
    store = None
    history = None
    if config["history"] > 0:
        days = config["history-days"]
        try:
            store = open_history(
                state / HISTORY_FILE,
                reactor,
                run_history or run_in_thread,
                config["history"],
                days * 86400 if days > 0 else None,
                max(config["history-on-join"], 1),
                None if metrics is None else metrics.history_writes.inc,
            )
        except HistoryFileError as e:
            raise StartupError(str(e)) from e
        history = HistorySettings(store, config["history-on-join"])
    sessions, moderation = compose(
        reactor,
        settings,
        config["client_limits"],
        config["connection_limits"],
        cloak=cloak,
        metrics=metrics,
        keys=keys,
        members=None if shared is None else shared.members,
        fanout=None if shared is None else shared.fanout,
        history=history,
        room_limits=config["room_limits"],
    )
    if shared is not None:
        shared.attach(sessions.room)
    if metrics is not None:
        open_sessions = sessions.open
        sampler = Sampler(
            reactor,
            metrics,
            lambda: [session.connection.queued() for session in open_sessions],
            lambda: len(keys.items()),
        )
    service = ChatService(
        reactor,
        sessions,
        moderation,
        tls,
        config["shutdown-grace"],
        Path(password_file) if password_file is not None else None,
        sampler,
        store,
        shared,
        links,
    )
    flusher = TurnFlusher(reactor, fast_path=not config["no-tls-fast-path"])
    for kind, endpoint in config["listen"]:
        factory: Factory
        if kind == "irc":
            factory = IRCFactory(sessions, config["irc-channel"], flusher)
        else:
            factory = line_factory(sessions, flusher)
        try:
            if uses_own_certificate(endpoint):
                listener = tls_endpoint(reactor, endpoint, tls, config["reuse-port"])
            else:
                listener = serverFromString(reactor, endpoint)
        except (usage.UsageError, ValueError, KeyError) as e:
            raise StartupError(f"--listen {kind}:{endpoint}: {e}") from e
        service.listen(listener, factory, kind)
    if site is not None and metrics_endpoint is not None:
        service.serve_metrics(metrics_endpoint, site)
    return service


def metrics_site(registry: CollectorRegistry) -> Site:
    """
    A web site serving C{registry} in Prometheus' text format at C{/metrics},
    through prometheus_client's Twisted resource (which scrapes in the
    reactor's thread pool).
    """
    # Imported here: the module takes the global reactor when imported.
    from prometheus_client.twisted import MetricsResource

    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry))
    return _QuietSite(root)


class _QuietSite(Site):
    """
    A site that keeps no access log: a scrape every few seconds is not news.
    """

    noisy = False

    def log(self, request: Any) -> None:
        pass


def makeService(config: Options) -> ChatService:
    from twisted.internet import reactor

    threads = cast(IReactorThreads, reactor)

    def run_in_thread(work: Callable[[], Any]) -> Deferred[Any]:
        return deferToThreadPool(threads, threads.getThreadPool(), work)

    # The history file's one writer: one thread, one connection, in order.
    history_thread = ThreadPool(1, 1, "chatroom-history")
    reactor.callWhenRunning(history_thread.start)
    reactor.addSystemEventTrigger("during", "shutdown", history_thread.stop)
    # Once the state is loaded and the listeners are up.
    reactor.callWhenRunning(freeze_start_up)

    def run_history(work: Callable[[], Any]) -> Deferred[Any]:
        return deferToThreadPool(threads, history_thread, work)

    try:
        service = build_service(config, reactor, run_in_thread, run_history)
    except StartupError as e:
        raise SystemExit(f"chatroom: {e}") from None
    service.install_signals()
    return service
