"""
Wiring for C{twistd -n chatroom}: options, and the service they make.
"""

from __future__ import annotations

import datetime
import signal
from collections.abc import Generator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IListeningPort, IReactorSSL, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage

from chatroom.e2e.server import E2EFactory, E2ERoom
from chatroom.limits import ClientLimits, ConnectionLimits
from chatroom.moderation import STATE_FILE, ModerationSettings, PasswordCheck, load_bans
from chatroom.passwd import read_hash_file
from chatroom.protocol import ChatFactory
from chatroom.state import StateError, write_json
from chatroom.tls import (
    CA_CERT_NAME,
    SERVER_CERT_NAME,
    SERVER_KEY_NAME,
    CertificateError,
    ServerTLS,
    create_local_ca,
)
from chatroom.writer import TurnFlusher

DEFAULT_CERT_DIR = Path("certs")
DEFAULT_PORT = 6697
CLIENT_DEFAULTS = ClientLimits()
CONNECTION_DEFAULTS = ConnectionLimits()

# (option, defaults, field, help): every limit is a twistd option whose
# default is the dataclass default; 0 disables a limit.
LIMIT_OPTIONS: list[tuple[str, ClientLimits | ConnectionLimits, str, str]] = [
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
    ("first-line-timeout", CLIENT_DEFAULTS, "first_line_timeout", "Seconds from joining to the first line."),
    ("ping-interval", CLIENT_DEFAULTS, "ping_interval", "Seconds of silence before the server pings."),
    ("ping-timeout", CLIENT_DEFAULTS, "ping_timeout", "Seconds a pinged client has to answer."),
    ("max-connections", CONNECTION_DEFAULTS, "total", "Connections at once, in all."),
    (
        "max-per-address",
        CONNECTION_DEFAULTS,
        "per_address",
        "Connections at once per address (IPv6: per /64).",
    ),
    ("connect-rate", CONNECTION_DEFAULTS, "rate", "New connections per address per --connect-window."),
    ("connect-window", CONNECTION_DEFAULTS, "window", "Seconds of the --connect-rate window."),
]


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
        ["port", "p", DEFAULT_PORT, "TLS port to listen on (0: any free port).", int],
        ["interface", "i", "", "Address to listen on (default: all IPv4; '::' for IPv6 too)."],
        ["cert", None, None, f"Server certificate, PEM [default: certs/{SERVER_CERT_NAME}]."],
        ["key", None, None, f"Server private key, PEM [default: certs/{SERVER_KEY_NAME}]."],
        ["state", None, "state", "Directory for data kept across restarts (the bans)."],
        [
            "admin-password-file",
            None,
            None,
            "File holding the admin password hash (make it with python -m chatroom.passwd):"
            " /oper <password> makes its sender admin, and the first member is no longer admin.",
        ],
        ["shutdown-grace", None, 5.0, "Seconds to flush output to clients on shutdown.", float],
        *(
            [option, None, getattr(defaults, field), help_text, type(getattr(defaults, field))]
            for option, defaults, field, help_text in LIMIT_OPTIONS
        ),
    ]
    optFlags: ClassVar[list[list[Any]]] = [
        ["first-admin", None, "With --admin-password-file, still make the first member admin."],
        ["limit-loopback", None, "Apply the per-address limits to loopback clients too."],
    ]

    def postOptions(self) -> None:
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port must be 0 to 65535, not {self['port']}")
        for option, _, _, _ in LIMIT_OPTIONS:
            if self[option] < 0:
                raise usage.UsageError(f"--{option} cannot be negative")
        client_fields = {f: self[o] for o, d, f, _ in LIMIT_OPTIONS if d is CLIENT_DEFAULTS}
        connection_fields = {f: self[o] for o, d, f, _ in LIMIT_OPTIONS if d is CONNECTION_DEFAULTS}
        self["client_limits"] = ClientLimits(**client_fields)
        self["connection_limits"] = ConnectionLimits(
            **connection_fields, exempt_loopback=not self["limit-loopback"]
        )
        explicit = self["cert"] is not None or self["key"] is not None
        cert = Path(self["cert"] or DEFAULT_CERT_DIR / SERVER_CERT_NAME)
        key = Path(self["key"] or DEFAULT_CERT_DIR / SERVER_KEY_NAME)
        self["created_ca"] = None
        if not explicit and not cert.exists() and not key.exists():
            now = datetime.datetime.now(datetime.UTC)
            self["created_ca"] = create_local_ca(DEFAULT_CERT_DIR, now)
        try:
            self["tls"] = ServerTLS(cert, key)
        except CertificateError as e:
            raise usage.UsageError(str(e)) from e
        state = Path(self["state"])
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise usage.UsageError(f"cannot create the state directory {state}: {e.strerror}") from e
        try:
            self["bans"] = load_bans(state / STATE_FILE)
        except StateError as e:
            raise usage.UsageError(str(e)) from e
        self["password"] = None
        if self["admin-password-file"] is not None:
            try:
                self["password"] = read_hash_file(Path(self["admin-password-file"]))
            except ValueError as e:
                raise usage.UsageError(str(e)) from e


class ChatService(Service):
    """
    Listens for TLS clients while running; on stop, tells every client and
    lets its output drain (for at most C{grace} seconds) before closing.
    SIGHUP reloads the certificate and key, if L{install_signals} was called.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        factory: ChatFactory,
        tls: ServerTLS,
        port: int,
        interface: str,
        grace: float = 5.0,
        password_file: Path | None = None,
    ) -> None:
        self.reactor: IReactorSSL = reactor
        self.password_file = password_file
        self.factory = factory
        self.tls = tls
        self.port = port
        self.interface = interface
        self.grace = grace
        self.listening: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        self.listening = self.reactor.listenSSL(self.port, self.factory, self.tls, interface=self.interface)
        address: Any = self.listening.getHost()
        self.log.info("chatroom listening on {host}:{port}", host=address.host, port=address.port)

    def install_signals(self) -> None:
        """
        Reload on SIGHUP (the handler only schedules the work on the reactor).
        """
        reactor: Any = self.reactor
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
                self.factory.room.moderation.settings.password = password
                self.log.info("reloaded the admin password file {path}", path=self.password_file)

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        super().stopService()
        listening, self.listening = self.listening, None
        if listening is not None:
            yield maybeDeferred(listening.stopListening)
        count = len(self.factory.connections_open)
        yield self.factory.close_all("the server is shutting down", self.grace)
        self.log.info("closed {count} connections", count=count)
        try:
            # Saved after every change already; again here in case one failed.
            self.factory.room.moderation.save()
        except OSError as e:
            self.log.error("could not save the state at shutdown: {error}", error=e)
        # twistd re-raises the signal that stopped it, so the exit status
        # would say "killed"; this was an orderly shutdown: exit 0 instead.
        if getattr(self.reactor, "_exitSignal", None) is not None:
            self.reactor._exitSignal = None  # type: ignore[attr-defined]


def makeService(config: Options) -> ChatService:
    from twisted.internet import reactor

    if config["created_ca"] is not None:
        ChatService.log.info(
            "created a local CA; clients should trust {ca}", ca=config["created_ca"].resolve()
        )
    elif config["cert"] is None:
        ChatService.log.info("clients should trust {ca}", ca=(DEFAULT_CERT_DIR / CA_CERT_NAME).resolve())

    threads = cast(IReactorThreads, reactor)

    def run_check(check: PasswordCheck) -> Deferred[bool]:
        # scrypt takes tens of milliseconds: not on the reactor thread.
        return deferToThreadPool(threads, threads.getThreadPool(), check)

    moderation = ModerationSettings(
        bans=config["bans"],
        password=config["password"],
        first_admin=config["password"] is None or bool(config["first-admin"]),
        save=partial(write_json, Path(config["state"]) / STATE_FILE),
        run_check=run_check,
    )
    factory = E2EFactory(
        E2ERoom(reactor, moderation=moderation),
        config["client_limits"],
        config["connection_limits"],
        flusher=TurnFlusher(reactor),
    )
    password_file = config["admin-password-file"]
    service = ChatService(
        reactor,
        factory,
        config["tls"],
        config["port"],
        config["interface"],
        config["shutdown-grace"],
        Path(password_file) if password_file is not None else None,
    )
    service.install_signals()
    return service
