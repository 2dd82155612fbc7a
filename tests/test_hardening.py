"""
Per-connection limits, timeouts and keepalive, on StringTransports and a fake clock.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides

from chatroom.core.events import Notice
from chatroom.limits import ClientLimits, ConnectionLimits
from tests.helpers import FakeClient, connect_named, make_room, make_server

DEFAULTS = ClientLimits()


def test_flood_is_refused_then_kicked() -> None:
    _, clock, factory = make_room(DEFAULTS)
    alice, bob = connect_named(factory, "alice", "bob")
    for n in range(int(DEFAULTS.flood_burst) - 1):  # /nick took one token
        alice.send(f"line {n}")
    assert len(bob.lines()) == DEFAULTS.flood_burst - 1
    alice.send("one too many")
    alice.send("and another")
    errors = [line for line in alice.lines() if line.kind == "error"]
    assert [e.text for e in errors] == ["flood: slow down, at most 5 lines per second"]
    assert bob.lines() == []
    clock.advance(1)
    alice.send("after a pause")
    assert [line.text for line in bob.lines()] == ["after a pause"]
    for n in range(DEFAULTS.flood_kick + 10):
        alice.send(f"flood {n}")
    assert alice.transport.disconnecting
    sent_to_bob = bob.lines()
    assert [line.text for line in sent_to_bob if line.kind == "leave"] == ["alice left (kicked for flooding)"]
    assert len([line for line in sent_to_bob if line.kind == "message"]) == 4


def test_nick_changes_have_their_own_slower_limit() -> None:
    _, clock, factory = make_room(DEFAULTS)
    (alice,) = connect_named(factory, "alice")  # one change already
    alice.send("/nick alice2")
    alice.send("/nick alice3")
    alice.send("/nick alice4")
    last = alice.lines()[-1]
    assert (last.kind, last.text) == ("error", "too many name changes: wait 10s before the next")
    # The real problem with a name is still said when the allowance is used up.
    alice.send("/nick 9lives")
    assert alice.lines()[-1].text.startswith("invalid name '9lives'")
    clock.advance(1 / DEFAULTS.nick_rate)
    alice.send("/nick alice4")
    assert alice.lines()[-1].kind == "rename"


def test_failed_renames_do_not_use_up_the_allowance() -> None:
    _, clock, factory = make_room(DEFAULTS)
    alice, _ = connect_named(factory, "alice", "bob")  # one change each
    for attempt in ("bob", "BOB", "b0b", "9x", "alice", "b" * 30):
        alice.send(f"/nick {attempt}")
        assert alice.lines()[-1].kind == "error"
    for name in ("alice2", "alice3"):
        alice.send(f"/nick {name}")
        assert alice.lines()[-1].kind == "rename"
    alice.send("/nick alice4")
    assert alice.lines()[-1].text == "too many name changes: wait 10s before the next"
    clock.advance(4)
    alice.send("/nick alice4")
    assert alice.lines()[-1].text == "too many name changes: wait 6s before the next"


def test_persistent_bad_input_is_dropped() -> None:
    _, _, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    for _ in range(int(DEFAULTS.bad_input_burst)):
        alice.send(b"\xff")
    assert not alice.transport.disconnecting
    alice.send(b"\xff")
    assert alice.transport.disconnecting
    assert alice.lines()[-1].text == "disconnected: too much bad input (invalid UTF-8)"
    assert bob.lines()[-1].text == "alice left (too much bad input (invalid UTF-8))"


def test_handshake_deadline() -> None:
    _, clock, factory = make_room()

    def tls_client(port: int) -> StringTransport:
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        alsoProvides(transport, ISSLTransport)
        return transport

    slow_transport = tls_client(1)
    slow = factory.buildProtocol(None)
    slow.makeConnection(slow_transport)
    quick_transport = tls_client(2)
    quick = factory.buildProtocol(None)
    quick.makeConnection(quick_transport)
    clock.advance(DEFAULTS.handshake_timeout - 1)
    quick.handshakeCompleted()
    clock.advance(1)
    assert slow_transport.disconnecting and slow.session.member is None
    assert not quick_transport.disconnecting and quick.session.member is not None


def test_a_silent_reader_stays_longer_than_every_deadline() -> None:
    server = make_server(DEFAULTS)
    room, clock, factory = server.room, server.clock, server.factory
    reader = FakeClient(factory, 1)
    talker = FakeClient(factory, 2)
    longest = max(
        DEFAULTS.first_line_timeout,
        DEFAULTS.handshake_timeout,
        DEFAULTS.ping_interval + DEFAULTS.ping_timeout,
    )
    for _ in range(10):
        clock.advance(longest)
        talker.send("still here")
    assert not reader.transport.disconnecting and reader.member_name == "guest1"
    # It got every line, and no ping asking a human to type /pong.
    assert [line.text for line in reader.lines() if line.kind == "message"] == ["still here"] * 10
    assert len(room.members) == 2


def test_pings_only_for_clients_that_answer_them() -> None:
    room, clock, factory = make_room(DEFAULTS)
    chatter = FakeClient(factory, 1)
    chatter.send("a human on openssl, who never typed /pong")
    talker = FakeClient(factory, 2)
    talker.send("/pong")  # what a client that answers pings says once it joins
    talker.lines()
    chatter.lines()
    clock.advance(DEFAULTS.ping_interval)
    ping = talker.lines()[-1]
    assert ping.kind == "ping"
    talker.send(f"/pong {ping.args[0]}")
    assert talker.lines() == []
    clock.advance(DEFAULTS.ping_timeout)
    assert not talker.transport.disconnecting
    clock.advance(DEFAULTS.ping_interval - DEFAULTS.ping_timeout)
    assert talker.lines()[-1].kind == "ping"
    clock.advance(DEFAULTS.ping_timeout)
    assert talker.transport.disconnecting
    assert [line.kind for line in chatter.lines()] == ["leave"]
    assert not chatter.transport.disconnecting and len(room.members) == 1


def test_every_line_puts_the_next_ping_off() -> None:
    _, clock, factory = make_room(DEFAULTS)
    talker = FakeClient(factory, 1)
    talker.send("/pong")
    talker.lines()
    half = DEFAULTS.ping_interval / 2
    for n in range(5):
        clock.advance(half)
        talker.send(f"line {n}")
    # A ping interval after the last line, not after the first.
    clock.advance(DEFAULTS.ping_interval - 1)
    assert [line.kind for line in talker.lines()] == ["message"] * 5
    clock.advance(1)
    assert talker.lines()[-1].kind == "ping"


def test_the_join_deadline_holds_only_before_joining() -> None:
    server = make_server(DEFAULTS)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
    alsoProvides(transport, ISSLTransport)
    protocol = server.factory.buildProtocol(None)
    protocol.makeConnection(transport)
    # The room never answers this join (a shared store that hangs).
    server.room.members.claim = lambda record: Deferred()  # type: ignore[method-assign]
    protocol.handshakeCompleted()
    server.clock.advance(DEFAULTS.first_line_timeout)
    assert transport.disconnecting


def test_a_client_that_stops_reading_is_dropped_at_the_cap() -> None:
    limits = ClientLimits(flood_rate=0, send_queue=10_000)
    _, _, factory = make_room(limits)
    alice, bob, stalled = connect_named(factory, "alice", "bob", "stalled")
    # What the transport does when its write buffer is full:
    stalled.transport.producer.pauseProducing()
    before = len(stalled.transport.value())
    message = "x" * 100
    sent = 0
    while not stalled.transport.disconnecting:
        alice.send(message)
        sent += 1
        assert sent < 1000
    final = b":disconnected: send queue over 10000 bytes: not reading\r\n"
    queued = len(stalled.transport.value()) - before
    # Everything up to the cap was kept; the line that would pass it was
    # not, only the short one that says why (past the cap).
    assert stalled.transport.value().endswith(final)
    assert 10_000 - 200 < queued - 100 <= 10_000
    assert bob.lines()[-1].text == "stalled left (send queue over 10000 bytes: not reading)"
    alice.send("carry on")
    assert bob.lines()[-1].text == "carry on"


def test_a_client_that_reads_again_is_kept() -> None:
    limits = ClientLimits(flood_rate=0, send_queue=1_000)
    _, _, factory = make_room(limits)
    alice, slow = connect_named(factory, "alice", "slow")
    for _ in range(5):
        slow.transport.producer.pauseProducing()
        for _ in range(5):  # about 700 bytes each time
            alice.send("y" * 100)
        slow.transport.producer.resumeProducing()
    assert not slow.transport.disconnecting


def test_connection_limits_per_address_with_loopback_exempt() -> None:
    server = make_server(ClientLimits(), connection_limits=ConnectionLimits(per_address=2))
    room, factory = server.room, server.factory
    remote = [FakeClient(factory, port, host="192.0.2.1") for port in range(3)]
    assert [c.transport.disconnecting for c in remote] == [False, False, True]
    assert remote[2].lines()[-1].text == "too many connections from your address (at most 2)"
    assert len(room.members) == 2
    remote[0].disconnect()
    assert not FakeClient(factory, 9, host="192.0.2.1").transport.disconnecting
    local = [FakeClient(factory, port) for port in range(10, 20)]
    assert not any(c.transport.disconnecting for c in local)


def test_close_all_tells_everyone_and_waits_for_the_connections() -> None:
    room, clock, factory = make_room()
    alice, bob = connect_named(factory, "alice", "bob")
    done: list[object] = []
    notice = Notice(clock.seconds(), "the server is shutting down")
    factory.sessions.close_all(notice, grace=5).addCallback(done.append)
    for client in (alice, bob):
        (line,) = client.lines()
        assert (line.kind, line.text) == ("info", "the server is shutting down")
        assert client.transport.disconnecting
    assert len(room.members) == 0
    alice.disconnect()
    assert done == []
    bob.disconnect()
    assert done == [None]
    # Nobody was told of the others leaving: there was nobody left to tell.
    assert alice.lines() == [] and bob.lines() == []
    clock.advance(10)


def test_close_all_aborts_what_does_not_drain_in_time() -> None:
    _, clock, factory = make_room()
    (alice,) = connect_named(factory, "alice")
    done: list[object] = []
    factory.sessions.close_all(Notice(clock.seconds(), "bye"), grace=5).addCallback(done.append)
    # StringTransport marks an abort with "disconnected", a close with "disconnecting".
    clock.advance(4)
    assert alice.transport.disconnecting and not alice.transport.disconnected
    clock.advance(1)
    assert alice.transport.disconnected
    alice.disconnect()
    assert done == [None]


def test_a_rename_the_store_refuses_late_costs_nothing() -> None:
    # A shared store can find a clash the local check could not see (a
    # member of another process took the name in between).
    server = make_server(DEFAULTS)
    alice, _ = connect_named(server.factory, "alice", "bob")
    real_rename = server.room.members.rename
    other = next(m for m in server.room.members if m.name == "bob")
    server.room.members.rename = lambda record, name: succeed(other)  # type: ignore[method-assign]
    for n in range(5):
        alice.send(f"/nick taken{n}")
        assert alice.lines()[-1].text == f"the name taken{n} looks too much like bob: choose another"
    server.room.members.rename = real_rename  # type: ignore[method-assign]
    for n in range(2):
        alice.send(f"/nick free{n}")
        assert alice.lines()[-1].kind == "rename"
