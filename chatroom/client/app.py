"""
C{chatroom-client}: the command line, the TLS endpoint and the reactor.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import tkinter as tk
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from chatroom.client.gui import ChatWindow
from chatroom.client.locks import FileLock, lock_e2e_files
from chatroom.client.session import ChatSession, E2ESettings
from chatroom.e2e.keys import E2EError, Identity
from chatroom.e2e.pins import PinStore
from chatroom.names import name_problem

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6697
DEFAULT_CA = Path("certs") / "ca.pem"
CONNECT_TIMEOUT = 10.0
# Quit waits this long at most for the connection to close cleanly.
QUIT_TIMEOUT = 2.0


def config_directory() -> Path:
    """
    Where the client keeps the user's keys: C{$XDG_CONFIG_HOME/chatroom},
    by default C{~/.config/chatroom}.
    """
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chatroom"


_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """
    Parse the command line; exit with a usage message if it is wrong.
    """
    parser = argparse.ArgumentParser(
        prog="chatroom-client",
        description="The chatroom GUI client: a Tk window on a verified TLS connection.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"server host name [default: {DEFAULT_HOST}]")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"server port [default: {DEFAULT_PORT}]"
    )
    parser.add_argument(
        "--ca",
        type=Path,
        default=DEFAULT_CA,
        help=f"CA certificate(s) to trust, PEM [default: {DEFAULT_CA}, the CA the daemon creates]",
    )
    parser.add_argument("--nick", help="name to take; if taken, NAME2, NAME3, ... instead")
    e2e = parser.add_argument_group("end-to-end encryption (on unless --no-e2e)")
    e2e.add_argument(
        "--identity",
        type=Path,
        help="your Ed25519 identity key, PEM, created (mode 0600) if missing"
        " [default: ~/.config/chatroom/identity.pem]",
    )
    e2e.add_argument(
        "--pins",
        type=Path,
        help="the names and keys you have seen (trust on first use) [default: ~/.config/chatroom/pins.json]",
    )
    e2e.add_argument(
        "--ask-passphrase",
        action="store_true",
        help="ask on the terminal for the passphrase that protects the identity key"
        " (a new key is then saved encrypted with it)",
    )
    e2e.add_argument(
        "--require-e2e",
        action="store_true",
        help="never send chat in the clear: refuse while the room is unlocked",
    )
    e2e.add_argument("--no-e2e", dest="e2e", action="store_false", help="turn end-to-end encryption off")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be 1 to 65535, not {args.port}")
    if args.nick is not None and (problem := name_problem(args.nick)) is not None:
        parser.error(f"--nick {args.nick!r}: {problem}")
    try:
        args.ca_certificates = load_certificates(args.ca.read_bytes())
    except OSError as e:
        parser.error(
            f"cannot read the CA file {args.ca}: {e.strerror} (pass --ca with the daemon's certs/ca.pem)"
        )
    except ValueError as e:
        parser.error(f"{args.ca}: {e}")
    if args.require_e2e and not args.e2e:
        parser.error("--require-e2e and --no-e2e contradict each other")
    return args


def e2e_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """
    The identity key and the pin file the command line asks for: by
    default C{identity.pem} and C{pins.json} in the user's config directory.
    """
    directory = config_directory()
    return args.identity or directory / "identity.pem", args.pins or directory / "pins.json"


def load_e2e(args: argparse.Namespace, ask: Callable[[str], str] = getpass.getpass) -> E2ESettings | None:
    """
    The E2E settings the command line asks for: the identity key (made on
    first use) and the pins, from the user's config directory unless given.

    @param ask: Asks the user for the key's passphrase (C{--ask-passphrase}).
    @raise E2EError: If the key or pin file cannot be used.
    """
    if not args.e2e:
        return None
    identity_path, pins_path = e2e_paths(args)
    passphrase = None
    if args.ask_passphrase:
        passphrase = ask(f"passphrase for {identity_path}: ").encode("utf-8")
        if not passphrase:
            raise E2EError("an empty passphrase protects nothing")
    try:
        identity = Identity.load_or_create(identity_path, passphrase)
    except OSError as e:
        raise E2EError(f"cannot use the identity key {identity_path}: {e.strerror}") from e
    try:
        pins = PinStore(pins_path)
    except OSError as e:
        raise E2EError(f"cannot read the pin file {pins_path}: {e.strerror}") from e
    return E2ESettings(identity, pins, args.require_e2e)


def load_certificates(pem: bytes) -> list[Certificate]:
    """
    Every certificate in a PEM file.

    @raise ValueError: If there is none, or one is broken.
    """
    blocks = _PEM_CERTIFICATE.findall(pem)
    if not blocks:
        raise ValueError("no PEM certificate in the file")
    try:
        return [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise ValueError(f"a certificate cannot be read ({e})") from e


def client_tls(host: str, trusted: Sequence[Certificate]) -> IOpenSSLClientConnectionCreator:
    """
    TLS options that accept only a server whose certificate is signed by one
    of C{trusted} and is, by service-identity's rules, for C{host} (a name
    or an IP address).
    """
    return optionsForClientTLS(host, trustRoot=trustRootFromCertificates(list(trusted)))


def tls_endpoint(reactor: Any, host: str, port: int, trusted: Sequence[Certificate]) -> IStreamClientEndpoint:
    """
    An endpoint that connects to C{host:port} (any of its addresses) over
    verified TLS; see L{client_tls}.
    """
    tcp = HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    return wrapClientTLS(client_tls(host, trusted), tcp)


def display_address(host: str, port: int) -> str:
    """
    C{host:port}, with an IPv6 address in brackets.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ClientApp:
    """
    The running client: the session and the window, and how it ends.
    """

    def __init__(self, reactor: Any, session: ChatSession) -> None:
        self.reactor = reactor
        self.session = session
        self._stopping = False

    def send(self, text: str) -> bool:
        return self.session.send(text)

    def reconnect(self) -> None:
        self.session.reconnect()

    def quit(self) -> None:
        """
        Say goodbye to the room, then stop the reactor (at the latest after
        L{QUIT_TIMEOUT}, should the network hang).
        """
        if self._stopping:
            return
        self._stopping = True
        timeout = self.reactor.callLater(QUIT_TIMEOUT, self._stop_reactor)
        closed = self.session.stop(farewell=True)
        closed.addBoth(lambda _: timeout.cancel() if timeout.active() else None)
        closed.addBoth(lambda _: self._stop_reactor())

    def _stop_reactor(self) -> None:
        if self.reactor.running:
            self.reactor.stop()


def run(reactor: Any, argv: Sequence[str] | None = None) -> int:
    """
    Parse the command line, open the window, and run the reactor until quit.
    """
    args = parse_args(argv)
    # Held until the client ends: one window per identity key.
    locks: list[FileLock] = []
    try:
        if args.e2e:
            locks = lock_e2e_files(*e2e_paths(args))
        e2e = load_e2e(args)
    except (E2EError, EOFError) as e:
        print(f"chatroom-client: {e or 'no passphrase given'} (or run with --no-e2e)", file=sys.stderr)
        return 2
    try:
        return _run_window(reactor, args, e2e)
    finally:
        for lock in locks:
            lock.release()


def _run_window(reactor: Any, args: argparse.Namespace, e2e: E2ESettings | None) -> int:
    """
    Open the window and run the reactor until the user quits.
    """
    from twisted.internet import tksupport

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])], redirectStandardIO=False
    )
    address = display_address(args.host, args.port)
    endpoint = tls_endpoint(reactor, args.host, args.port, args.ca_certificates)
    session = ChatSession(reactor, endpoint, address, args.nick, e2e=e2e)
    app = ClientApp(reactor, session)
    try:
        root = tk.Tk(className="chatroom")
    except tk.TclError as e:
        print(f"chatroom-client: cannot open a window: {e}", file=sys.stderr)
        return 2
    window = ChatWindow(root, app, address)
    tksupport.install(root)
    session.start(window)
    reactor.run()
    with suppress(tk.TclError):
        # Already gone if the window was destroyed rather than closed.
        root.destroy()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """
    The C{chatroom-client} console script.
    """
    from twisted.internet import reactor

    sys.exit(run(reactor, argv))
