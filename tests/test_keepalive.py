"""
Issue 13, item 1: a member who only reads is never asked to type; TCP
keepalive finds a peer that vanished without a FIN.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.interfaces import ISSLTransport
from zope.interface import implementer

from chatroom.limits import ClientLimits
from chatroom.transports.line.protocol import keep_alive

REPO = Path(__file__).resolve().parent.parent


class TCPTransport:
    """
    The part of a TCP transport keep_alive uses, over a real socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(enabled))

    def getHandle(self) -> socket.socket:
        return self.sock


@implementer(ISSLTransport)
class TLSTransport:
    """
    A TLS transport over a TCP one, as TLSMemoryBIOProtocol is: its own
    handle is the TLS connection, not the socket.
    """

    def __init__(self, transport: TCPTransport) -> None:
        self.transport = transport

    def getHandle(self) -> Any:
        return object()


def options(sock: socket.socket) -> tuple[int, ...]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


@pytest.mark.parametrize("tls", [False, True])
def test_keepalive_is_set_on_the_real_socket(tls: bool) -> None:
    limits = ClientLimits(keepalive_idle=42, keepalive_interval=7, keepalive_count=3)
    with socket.socket() as sock:
        tcp = TCPTransport(sock)
        assert keep_alive(TLSTransport(tcp) if tls else tcp, limits)
        assert options(sock) == (1, 42, 7, 3, (42 + 7 * 3) * 1000)


def test_keepalive_off() -> None:
    with socket.socket() as sock:
        assert not keep_alive(TCPTransport(sock), ClientLimits(keepalive_idle=0))
        assert options(sock)[0] == 0


def _namespaces() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-rn", "ip", "rule", "show"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _namespaces(), reason="needs unshare -rn and ip (a network namespace of our own)")
def test_a_vanished_peer_is_found_within_the_documented_time(tmp_path: Path) -> None:
    # In a namespace of its own, the client's address is made to drop every
    # packet (no FIN, no reset): only keepalive can tell it is gone.
    run = subprocess.run(
        ["unshare", "-rn", sys.executable, str(REPO / "tests" / "netns_vanish.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "detected guest2 after" in run.stdout
    assert "guest2 left (connection lost)" in run.stdout
