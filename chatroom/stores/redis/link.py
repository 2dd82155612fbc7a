"""
Connections to Redis through txredisapi, on the reactor it is given.

txredisapi 1.6 connects a L{txredisapi.RedisFactory} through a
L{twisted.application.internet.ClientService} (C{startConnecting}), which
reconnects with backoff by itself; a L{Link} is one such connection, told
when it comes and goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import txredisapi  # type: ignore[import-untyped]
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

# Seconds between reconnection attempts grow to this.
MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class RedisAddress:
    """
    Where Redis is, from a C{redis://} or C{rediss://} URL.
    """

    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None


def parse_redis_url(url: str) -> RedisAddress:
    """
    @raise ValueError: If C{url} is not a C{redis://} or C{rediss://} URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url}: use redis://HOST[:PORT][/DB] or rediss://...")
    if not parts.hostname:
        raise ValueError(f"{url}: no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{url}: the path must be a database number")
    try:
        port = parts.port or 6379
    except ValueError as e:
        raise ValueError(f"{url}: {e}") from e
    return RedisAddress(
        parts.hostname,
        port,
        int(path or 0),
        parts.scheme == "rediss",
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


class _Protocol(txredisapi.HiredisProtocol):  # type: ignore[misc]
    """
    Replies parsed and decoded in C by hiredis: the stream's entries are
    the daemon's main cost from Redis, and txredisapi would otherwise decode
    each string again in Python.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reader = hiredis.Reader(
            protocolError=txredisapi.InvalidData, replyError=txredisapi.ResponseError, encoding="utf-8"
        )

    def tryConvertData(self, data: Any) -> Any:
        return data


class _Factory(txredisapi.RedisFactory):  # type: ignore[misc]
    protocol = _Protocol

    def __init__(self, link: Link, address: RedisAddress) -> None:
        super().__init__(
            f"{address.host}:{address.port}",
            address.db or None,
            1,
            isLazy=True,
            password=address.password,
            username=address.username,
            convertNumbers=False,
        )
        self.maxDelay = MAX_BACKOFF
        self.initialDelay = 0.2
        self.link = link

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.link._up(conn)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self.link._down(conn)


def _plain_connection_error(failure: Failure) -> Any:
    if failure.check(txredisapi.ConnectionError):
        raise ConnectionError(failure.getErrorMessage())
    if failure.check(txredisapi.ResponseError):
        raise RuntimeError(f"Redis: {failure.getErrorMessage()}")
    return failure


class Link:
    """
    One connection to Redis, kept up (with backoff) until L{close}.

    @ivar on_up: Called once the connection is usable (again).
    @ivar on_down: Called when it is lost.
    """

    log = Logger()

    def __init__(self, reactor: Any, address: RedisAddress, name: str, ca: bytes | None = None) -> None:
        self.address = address
        self.name = name
        self.on_up: Callable[[], None] = lambda: None
        self.on_down: Callable[[], None] = lambda: None
        self._protocol: Any = None
        self._factory = _Factory(self, address)
        endpoint: Any = HostnameEndpoint(reactor, address.host, address.port, timeout=5)
        if address.tls:
            # The server's certificate must be for the URL's host, from the
            # system's CAs or from C{ca} (PEM).
            trust = None if ca is None else Certificate.loadPEM(ca)
            endpoint = wrapClientTLS(optionsForClientTLS(address.host, trustRoot=trust), endpoint)
        self._endpoint = endpoint

    def start(self) -> None:
        self._factory.startConnecting(self._endpoint)

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    def execute(self, *args: Any) -> Deferred[Any]:
        """
        Send one command; fails with the built-in L{ConnectionError} if not
        connected or if the connection is lost before the reply (nothing is
        queued here).
        """
        protocol = self._protocol
        if protocol is None:
            return fail(ConnectionError("not connected to Redis"))
        try:
            result: Deferred[Any] = protocol.execute_command(*args)
        except txredisapi.ConnectionError as e:
            return fail(ConnectionError(str(e)))
        return result.addErrback(_plain_connection_error)

    def close(self) -> Deferred[Any]:
        return self._factory.disconnect()  # type: ignore[no-any-return]

    def _up(self, protocol: Any) -> None:
        self._protocol = protocol
        self.on_up()

    def _down(self, protocol: Any) -> None:
        if self._protocol is protocol:
            self._protocol = None
            self.on_down()
