"""
Wiring for C{twistd -n chatroom}: options, and the service they make.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, ClassVar

from twisted.application.service import Service
from twisted.internet.interfaces import IListeningPort, IReactorSSL
from twisted.logger import Logger
from twisted.python import usage

from chatroom.e2e.server import E2EFactory, E2ERoom
from chatroom.protocol import ChatFactory
from chatroom.tls import (
    CA_CERT_NAME,
    SERVER_CERT_NAME,
    SERVER_KEY_NAME,
    CertificateError,
    ServerTLS,
    create_local_ca,
)

DEFAULT_CERT_DIR = Path("certs")
DEFAULT_PORT = 6697


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
        ["state", None, "state", "Directory for data kept across restarts."],
    ]

    def postOptions(self) -> None:
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port must be 0 to 65535, not {self['port']}")
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


class ChatService(Service):
    """
    Listens for TLS clients while running.
    """

    log = Logger()

    def __init__(self, reactor: Any, factory: ChatFactory, tls: ServerTLS, port: int, interface: str) -> None:
        self.reactor: IReactorSSL = reactor
        self.factory = factory
        self.tls = tls
        self.port = port
        self.interface = interface
        self.listening: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        self.listening = self.reactor.listenSSL(self.port, self.factory, self.tls, interface=self.interface)
        address: Any = self.listening.getHost()
        self.log.info("chatroom listening on {host}:{port}", host=address.host, port=address.port)

    def stopService(self) -> Any:
        super().stopService()
        listening, self.listening = self.listening, None
        return listening.stopListening() if listening is not None else None


def makeService(config: Options) -> ChatService:
    from twisted.internet import reactor

    if config["created_ca"] is not None:
        ChatService.log.info(
            "created a local CA; clients should trust {ca}", ca=config["created_ca"].resolve()
        )
    elif config["cert"] is None:
        ChatService.log.info("clients should trust {ca}", ca=(DEFAULT_CERT_DIR / CA_CERT_NAME).resolve())
    factory = E2EFactory(E2ERoom(reactor))
    return ChatService(reactor, factory, config["tls"], config["port"], config["interface"])
