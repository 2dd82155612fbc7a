"""
Drive the global reactor (and Tk) in a bounded loop, for tests.

The reactor cannot be restarted in one process, so tests never call
C{reactor.run()}: they turn it (and every Tk root given) by hand until a
condition holds, and fail if it does not hold in time.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint

from chatroom.client.app import client_tls, load_certificates

DEFAULT_TIMEOUT = 20.0


def global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def pump(
    reactor: Any,
    done: Callable[[], object],
    roots: Iterable[tk.Misc] = (),
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "the condition",
) -> None:
    """
    Turn the reactor and the Tk roots until C{done()} is true.

    @raise AssertionError: If it is not true within C{timeout} seconds.
    """
    roots = list(roots)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        reactor.iterate(0.01)
        for root in roots:
            root.update()


def local_endpoint(
    reactor: Any, port: int, ca_path: Path, tls_host: str = "localhost"
) -> IStreamClientEndpoint:
    """
    The client's verified TLS to 127.0.0.1:C{port}, expecting C{tls_host}.

    A plain IPv4 endpoint stands in for the application's HostnameEndpoint,
    whose name resolution needs the reactor's thread pool (started only by
    C{reactor.run()}).
    """
    options = client_tls(tls_host, load_certificates(ca_path.read_bytes()))
    return wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10))
