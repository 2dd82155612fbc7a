"""
The client session against the real daemon over real TLS, without Tk:
certificate and host name verification, refused connections.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatroom.client.session import ChatSession
from chatroom.tls import create_local_ca
from tests.client_support import RecordingView
from tests.daemon import Daemon, running_daemon
from tests.pump import global_reactor, local_endpoint, pump


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    directory = tmp_path / "daemon"
    directory.mkdir()
    with running_daemon(directory) as d:
        yield d


def run_session(reactor: Any, session: ChatSession, view: RecordingView, until: str) -> None:
    session.start(view)
    try:
        pump(reactor, lambda: view.of(until), what=f"a {until!r} event")
    finally:
        closed = session.stop()
        pump(reactor, lambda: closed.called, what="the session to stop")


def test_verified_connection_joins_the_room(daemon: Daemon) -> None:
    reactor = global_reactor()
    view = RecordingView()
    session = ChatSession(reactor, local_endpoint(reactor, daemon.port, daemon.ca_path), "here", "tlsuser")
    session.start(view)
    try:
        pump(reactor, lambda: "tlsuser" in view.of("name"), what="the nick")
    finally:
        closed = session.stop()
        pump(reactor, lambda: closed.called, what="the session to stop")
    assert view.of("connected") == ["here"]
    assert view.lines[0].kind == "welcome"


def test_unknown_ca_is_refused_with_a_clear_message(daemon: Daemon, tmp_path: Path) -> None:
    reactor = global_reactor()
    other_ca = create_local_ca(tmp_path / "other", datetime.datetime.now(datetime.UTC))
    view = RecordingView()
    session = ChatSession(reactor, local_endpoint(reactor, daemon.port, other_ca), "here")
    run_session(reactor, session, view, "retrying")
    assert view.of("connected") == []
    assert view.of("line") == []
    (reason,) = view.of("disconnected")
    assert "certificate could not be verified" in str(reason)


def test_wrong_host_name_is_refused_with_a_clear_message(daemon: Daemon) -> None:
    reactor = global_reactor()
    view = RecordingView()
    endpoint = local_endpoint(reactor, daemon.port, daemon.ca_path, tls_host="chat.example.com")
    session = ChatSession(reactor, endpoint, "here")
    run_session(reactor, session, view, "retrying")
    assert view.of("connected") == []
    (reason,) = view.of("disconnected")
    assert "not valid for this host name" in str(reason)


def test_refused_connection_is_reported(tmp_path: Path) -> None:
    reactor = global_reactor()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    create_local_ca(tmp_path, datetime.datetime.now(datetime.UTC))
    view = RecordingView()
    session = ChatSession(reactor, local_endpoint(reactor, port, tmp_path / "ca.pem"), "here")
    run_session(reactor, session, view, "retrying")
    assert view.of("disconnected") == ["connection refused: is the daemon running?"]
