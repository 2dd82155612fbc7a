"""
The client session: connecting, backoff, reconnecting and stopping, with a
fake endpoint and a fake clock.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from chatroom.client.session import STABLE_AFTER, ChatSession, is_quit
from chatroom.wire import Kind
from tests.client_support import POLICY, FakeEndpoint, RecordingView, arrival, server_line


def make_session(nick: str | None = None) -> tuple[ChatSession, FakeEndpoint, RecordingView, Clock]:
    clock, endpoint, view = Clock(), FakeEndpoint(), RecordingView()
    session = ChatSession(clock, endpoint, "localhost:6697", nick, POLICY)
    session.start(view)
    return session, endpoint, view, clock


def test_refused_attempts_back_off_and_say_so() -> None:
    session, endpoint, view, clock = make_session()
    assert view.events == [("connecting", "localhost:6697")]
    endpoint.refuse()
    assert view.events[1:] == [
        ("disconnected", "connection refused: is the daemon running?"),
        ("retrying", 2.0),
    ]
    clock.advance(1.9)
    assert len(endpoint.attempts) == 1
    clock.advance(0.1)
    assert len(endpoint.attempts) == 2
    endpoint.refuse()
    clock.advance(4)
    endpoint.refuse()
    assert view.of("retrying") == [2.0, 4.0, 8.0]
    assert not session.send("hello")


def test_connected_session_sends_and_reconnects_after_a_drop() -> None:
    session, endpoint, view, clock = make_session(nick="alice")
    protocol, transport = endpoint.accept()
    assert view.of("connected") == ["localhost:6697"]
    protocol.dataReceived(arrival("guest1"))
    assert transport.value() == b"/pong\n/nick alice\n"
    protocol.dataReceived(server_line(Kind.RENAME, "guest1", "", ("alice",)))
    transport.clear()
    assert session.send("hello all")
    assert transport.value() == b"hello all\n"
    # The user renames, then the connection drops after a good while.
    session.send("/nick alicia")
    protocol.dataReceived(server_line(Kind.RENAME, "alice", "", ("alicia",)))
    clock.advance(STABLE_AFTER)
    protocol.connectionLost(Failure(error.ConnectionLost()))
    assert view.events[-2:] == [("disconnected", "the connection was lost"), ("retrying", 2.0)]
    assert not session.send("lost?")
    clock.advance(2)
    protocol, transport = endpoint.accept()
    protocol.dataReceived(arrival("guest2"))
    # The name chosen last is asked for again.
    assert transport.value() == b"/pong\n/nick alicia\n"


def test_a_connection_dropped_at_once_counts_as_a_failure() -> None:
    # A server that accepts and drops straight away must not be hammered.
    _session, endpoint, view, clock = make_session()
    for _ in range(3):
        protocol, _ = endpoint.accept()
        protocol.connectionLost(Failure(error.ConnectionDone()))
        clock.advance(60)
    assert view.of("retrying") == [2.0, 4.0, 8.0]


def test_quit_stops_reconnecting() -> None:
    session, endpoint, view, clock = make_session()
    protocol, transport = endpoint.accept()
    assert session.send("/QUIT bye")
    assert transport.value() == b"/QUIT bye\n"
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert view.events[-1] == ("disconnected", "you left the room (press Reconnect to join again)")
    clock.advance(3600)
    assert len(endpoint.attempts) == 1
    # Reconnect brings the user back.
    session.reconnect()
    assert len(endpoint.attempts) == 2


def test_reconnect_connects_at_once_and_not_twice() -> None:
    session, endpoint, _view, clock = make_session()
    endpoint.refuse()
    endpoint.attempts.clear()
    session.reconnect()
    assert len(endpoint.attempts) == 1
    session.reconnect()
    assert len(endpoint.attempts) == 1
    # The retry that was pending is gone.
    clock.advance(3600)
    assert len(endpoint.attempts) == 1
    endpoint.accept()
    session.reconnect()
    assert len(endpoint.attempts) == 1


def test_stop_says_goodbye_and_fires_when_closed() -> None:
    session, endpoint, _view, clock = make_session()
    protocol, transport = endpoint.accept()
    closed = session.stop(farewell=True)
    assert transport.value() == b"/quit\n"
    assert transport.disconnecting
    fired: list[None] = []
    closed.addCallback(fired.append)
    assert fired == []
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert fired == [None]
    clock.advance(3600)
    assert len(endpoint.attempts) == 1


def test_stop_while_waiting_or_connecting() -> None:
    session, endpoint, view, clock = make_session()
    endpoint.refuse()
    fired: list[None] = []
    session.stop().addCallback(fired.append)
    assert fired == [None]
    clock.advance(3600)
    assert len(endpoint.attempts) == 1
    session.reconnect()
    session.stop().addCallback(fired.append)
    # The pending attempt was cancelled quietly.
    assert endpoint.attempts[-1][0].called
    assert fired == [None, None]
    assert view.events[-1] == ("connecting", "localhost:6697")


def test_is_quit() -> None:
    assert is_quit("/quit") and is_quit("/Quit see you")
    assert not is_quit("quit") and not is_quit("//quit") and not is_quit("/quiet")


def test_kicked_client_does_not_come_straight_back() -> None:
    session, endpoint, view, clock = make_session()
    protocol, _ = endpoint.accept()
    protocol.dataReceived(server_line(Kind.WELCOME, "*", "hi", ("carol",)))
    protocol.dataReceived(server_line(Kind.KICK, "alice", "alice kicked carol: shouting", ("carol",)))
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert view.events[-1] == ("disconnected", "alice kicked carol: shouting (press Reconnect to try again)")
    clock.advance(3600)
    assert len(endpoint.attempts) == 1
    session.reconnect()
    assert len(endpoint.attempts) == 2
