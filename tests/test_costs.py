"""
Every cost bounded (issue 12): filters, answers, bytes, memory, arrivals,
password checks, handshakes and ban lists; and issue 13's tab rule. Each
test reproduces what the hostile tester found; none asserts a speed (the
figures are in bench/costs.py).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides

from chatroom.bans import Ban, BanList
from chatroom.core.events import Said
from chatroom.core.memory import InMemoryBans
from chatroom.features.moderation import ModerationSettings
from chatroom.limits import ClientLimits, ConnectionLimits, RoomLimits
from chatroom.roster import Roster
from chatroom.transports.line.protocol import MAX_LINE_BYTES, LineProtocol
from chatroom.wire import ServerLine
from tests.helpers import START, UNLIMITED, FakeClient, connect_named, make_server
from tests.test_moderation import PASSWORD


class CountingText(str):
    """
    Text that counts how often it is casefolded.
    """

    folds = 0

    def casefold(self) -> str:
        CountingText.folds += 1
        return str(self).casefold()


def test_chat_is_folded_once_per_message_not_per_member() -> None:
    server = make_server()
    clients = [FakeClient(server.factory, port) for port in range(1, 51)]
    for client in clients:
        for word in ("spoiler", "x.y", "EVIL"):
            client.send(f"/filter {word}")
        client.lines()
    CountingText.folds = 0
    server.room.broadcast(Said(START, "nobody", CountingText("harmless text")))
    assert CountingText.folds == 1
    assert all(len(client.lines()) == 1 for client in clients)


def test_all_filters_match_in_one_pattern_and_follow_changes() -> None:
    server = make_server()
    alice, bob = connect_named(server.factory, "alice", "bob")
    for word in ("x.y", "(", "Straße"):
        bob.send(f"/filter {word}")
    bob.lines()
    for text, shown in (("xzy", True), ("x.y!", False), ("a ( b", False), ("STRASSE", False), ("ok", True)):
        alice.send(text)
        assert bool([line for line in bob.lines() if line.kind == "message"]) is shown, text
    bob.send("/unfilter x.y")
    alice.send("x.y")
    assert [line.text for line in bob.lines() if line.kind == "message"] == ["x.y"]


def test_big_answers_cost_their_size_and_later_commands_wait() -> None:
    # /help is about 2.4 KB: a burst of 3 KB pays for one, and the next one
    # puts the client in debt; what comes after waits until it is paid.
    limits = ClientLimits(flood_rate=0, nick_rate=0, answer_rate=1000, answer_burst=3000)
    server = make_server(limits)
    (alice,) = connect_named(server.factory, "alice")
    alice.send("/help")
    size = len(alice.transport.value())
    help_lines = len(alice.lines())
    assert 1500 < size < 3000
    for line in ("/help", "/help", "/help", "hello"):
        alice.send(line)
    assert len(alice.lines()) == help_lines
    server.clock.advance(size / 1000)
    later = alice.lines()
    assert [line.kind for line in later] == ["help"] * help_lines
    server.clock.advance(2 * size / 1000)
    later = alice.lines()
    assert [line.kind for line in later] == ["help"] * help_lines + ["message"]


def test_bytes_are_counted_after_normalisation() -> None:
    limits = ClientLimits(flood_rate=0, nick_rate=0, byte_rate=1000, byte_burst=10_000)
    server = make_server(limits)
    alice, bob = connect_named(server.factory, "alice", "bob")
    # U+1D160 is 4 bytes; NFC makes it three characters of 4 bytes each.
    alice.send("\U0001d160" * 1000)
    assert alice.lines()[-1].text == "flood: slow down, at most 1000 bytes per second"
    assert bob.lines() == []
    alice.send("x" * 4000)
    assert bob.lines()[-1].text == "x" * 4000


def test_an_address_shares_one_byte_budget() -> None:
    limits = ClientLimits(flood_rate=0, nick_rate=0, address_byte_rate=1000, address_byte_burst=10_000)
    server = make_server(limits)
    senders = [FakeClient(server.factory, port, "10.1.2.3") for port in (1, 2, 3)]
    other = FakeClient(server.factory, 4, "10.9.9.9")
    listener = FakeClient(server.factory, 5)
    listener.lines()
    for sender in senders:
        sender.send("y" * 4000)
    said = [line for line in listener.lines() if line.kind == "message"]
    assert len(said) == 2
    assert senders[2].lines()[-1].text == "flood: slow down, at most 1000 bytes per second from your address"
    other.send("z" * 4000)
    assert listener.lines()[-1].text == "z" * 4000


def test_the_memory_budget_drops_the_largest_holders_first() -> None:
    limits = ClientLimits(flood_rate=0, byte_rate=0, send_queue=50_000, memory_budget=60_000)
    server = make_server(limits)
    alice, small, big, bigger = connect_named(server.factory, "alice", "small", "big", "bigger")
    big.transport.producer.pauseProducing()
    for _ in range(10):
        alice.send("b" * 1000)
    bigger.transport.producer.pauseProducing()
    for _ in range(40):
        alice.send("c" * 1000)
        assert server.sessions.held <= 60_000
    small.transport.producer.pauseProducing()
    alice.send("d" * 1000)
    # big went past the budget first, holding the most: it went, and only it.
    assert [m.name for m in server.room.members] == ["alice", "small", "bigger"]
    assert big.transport.disconnecting
    (left,) = [line.text for line in alice.lines() if line.kind == "leave"]
    assert left.startswith("big left (server memory budget exceeded: you held ")
    assert 0 < server.sessions.held <= 60_000


def test_a_plain_partial_line_is_held_to_4_kb() -> None:
    server = make_server()
    (alice,) = connect_named(server.factory, "alice")
    alice.protocol.dataReceived(b"x" * (MAX_LINE_BYTES + 2))
    assert alice.lines()[-1].text.startswith("line too long")
    assert server.sessions.held == 0
    alice.protocol.dataReceived(b"still the same line\r\nhello\r\n")
    assert [line.text for line in alice.lines()] == ["hello"]


def test_an_e2e_partial_line_may_be_longer() -> None:
    server = make_server()
    (alice,) = connect_named(server.factory, "alice")
    alice.protocol.dataReceived(b"/e2e send " + b"A" * 20_000)
    assert alice.lines() == []
    assert server.sessions.held == 20_010
    alice.protocol.dataReceived(b"\r\n")
    assert alice.lines()[-1].text.startswith("register your end-to-end keys first")
    assert server.sessions.held == 0


def test_oper_checks_have_one_budget_for_every_address() -> None:
    server = make_server(
        ClientLimits(),
        moderation=ModerationSettings(password=PASSWORD),
        room_limits=RoomLimits(oper_checks=3, oper_window=60),
    )
    answers = []
    for n in range(5):
        client = FakeClient(server.factory, 1, f"10.0.{n}.1")
        client.lines()
        client.send("/oper guess")
        answers.append(client.lines()[-1].text)
    assert answers[:3] == ["wrong password"] * 3
    assert answers[3].startswith("too many /oper attempts on this server: try again in 60s")
    server.clock.advance(60)
    client.send("/oper open sesame")
    assert client.lines()[-1].kind == "admin"


def roster_of(lines: list[ServerLine], roster: Roster) -> Roster:
    for line in lines:
        roster.apply(line)
    return roster


def test_a_join_flood_is_summed_up_and_the_lists_stay_exact() -> None:
    server = make_server(room_limits=RoomLimits(notice_rate=1, notice_burst=3, notice_interval=5))
    (bystander,) = connect_named(server.factory, "bystander")
    roster = roster_of(bystander.lines(), Roster())
    server.clock.advance(10)
    roster = Roster()
    bystander.send("/list")
    roster_of(bystander.lines(), roster)
    joiners = [FakeClient(server.factory, port) for port in range(100, 160)]
    joiners[5].send("/nick renamed")
    joiners[6].disconnect()
    joiners[0].send("/quit")
    seen = bystander.lines()
    assert [line.kind for line in seen].count("join") == 3
    assert len(seen) < 10
    server.clock.advance(5)
    summary = bystander.lines()
    assert {line.kind for line in summary} == {"arrivals"}
    assert len(summary) <= 2
    roster_of(seen + summary, roster)
    exact = sorted(m.name for m in server.room.members)
    assert sorted(roster.names()) == exact
    bystander.send("/list")
    listed = [arg for line in bystander.lines() for arg in line.args]
    assert sorted(name.lstrip("@") for name in listed) == exact
    # Quiet again: the next join is a join line.
    server.clock.advance(10)
    FakeClient(server.factory, 200)
    assert [line.kind for line in bystander.lines()] == ["join"]


def test_handshakes_have_a_cap_of_their_own() -> None:
    server = make_server(connection_limits=ConnectionLimits(handshakes=2))
    transports = []
    for port in range(1, 5):
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        alsoProvides(transport, ISSLTransport)
        protocol = server.factory.buildProtocol(None)
        assert isinstance(protocol, LineProtocol)
        protocol.makeConnection(transport)
        transports.append((transport, protocol))
        if port == 1:
            protocol.handshakeCompleted()  # a member: not in its handshake any more
    assert [t.disconnecting for t, _ in transports] == [False, True, False, False]
    assert server.sessions.handshaking == 2
    assert len(server.room.members) == 1


def test_bans_come_in_pages() -> None:
    bans = BanList()
    for n in range(5):
        bans.add(Ban(f"troll{n}", None, "root", START, None, f"reason {n}"), START)
    server = make_server(
        UNLIMITED,
        moderation=ModerationSettings(bans=InMemoryBans(bans), first_admin=True),
        room_limits=RoomLimits(bans_page=2),
    )
    (admin,) = connect_named(server.factory, "admin")
    admin.send("/bans")
    head, *entries = admin.lines()
    assert head.args == ("count=5", "page=1", "pages=3")
    assert head.text == "5 bans in force (page 1 of 3: /bans 2 for more)"
    assert [entry.args[0] for entry in entries] == ["troll0", "troll1"]
    admin.send("/bans 3")
    head, *entries = admin.lines()
    assert head.text == "5 bans in force (page 3 of 3)" and [e.args[0] for e in entries] == ["troll4"]
    admin.send("/bans 4")
    assert [line.text for line in admin.lines()] == ["no page 4 of the bans: give a page from 1 to 3"]


def test_a_tab_is_a_space() -> None:
    server = make_server()
    alice, bob = connect_named(server.factory, "alice", "bob")
    alice.send("def f():\tpass")
    assert [(line.kind, line.text) for line in bob.lines()] == [("message", "def f(): pass")]


def test_memory_is_handed_back_once_sessions_let_go_of_enough() -> None:
    from chatroom.tap import TRIM_WORTH, MemoryTrimmer

    limits = ClientLimits(flood_rate=0, byte_rate=0, send_queue=0, memory_budget=0)
    server = make_server(limits)
    trims: list[None] = []
    trimmer = MemoryTrimmer(server.sessions, lambda: trims.append(None))
    alice, stalled = connect_named(server.factory, "alice", "stalled")
    stalled.transport.producer.pauseProducing()
    for _ in range(TRIM_WORTH // 4000 + 10):
        alice.send("q" * 4000)
    trimmer.check()
    assert trims == [] and server.sessions.held > TRIM_WORTH
    stalled.disconnect()
    assert server.sessions.held == 0
    trimmer.check()
    trimmer.check()
    assert len(trims) == 1


def test_reconnecting_does_not_refill_an_address_budget() -> None:
    limits = ClientLimits(flood_rate=0, nick_rate=0, address_byte_rate=1000, address_byte_burst=10_000)
    server = make_server(limits)
    listener = FakeClient(server.factory, 5)
    for port in (1, 2):
        sender = FakeClient(server.factory, port, "10.1.2.3")
        sender.send("y" * 4000)
        sender.disconnect()
    sender = FakeClient(server.factory, 3, "10.1.2.3")
    sender.send("y" * 4000)
    assert sender.lines()[-1].text == "flood: slow down, at most 1000 bytes per second from your address"
    assert [line.kind for line in listener.lines()].count("message") == 2
    # Once full again and unused, the budget is forgotten (when another address comes).
    sender.disconnect()
    server.clock.advance(10)
    for n in range(4):
        FakeClient(server.factory, 10 + n, f"10.7.7.{n}").send("hi")
    assert server.sessions.address_budgets <= 4


def test_a_flood_of_bytes_is_told_once() -> None:
    limits = ClientLimits(flood_rate=0, nick_rate=0, byte_rate=100, byte_burst=5_000)
    server = make_server(limits)
    (alice,) = connect_named(server.factory, "alice")
    for _ in range(5):
        alice.send("x" * 4000)
    told = ["flood: slow down, at most 100 bytes per second"]
    assert [line.text for line in alice.lines() if line.kind == "error"] == told
    # Within the budget again, then over it: a new flood, told again.
    server.clock.advance(50)
    alice.send("x" * 4000)
    alice.send("x" * 4000)
    assert [(line.kind, line.text) for line in alice.lines()] == [("message", "x" * 4000), ("error", told[0])]


def test_changing_filters_over_and_over_is_paid_for() -> None:
    limits = ClientLimits(flood_rate=0, nick_rate=0, answer_rate=1000, answer_burst=20_000)
    server = make_server(limits)
    alice, bob = connect_named(server.factory, "alice", "bob")
    words = [f"{n:02d}" + "w" * 98 for n in range(31)]
    for word in words:
        alice.send(f"/filter {word}")
    alice.lines()
    # Each change builds a pattern of about 3,200 characters again.
    for _ in range(5):
        alice.send("/filter again" + "x" * 90)
        alice.send("/unfilter again" + "x" * 90)
    alice.send("done")
    assert "done" not in [line.text for line in bob.lines()]
    # About 400 KB of patterns built at 1000 bytes per second.
    server.clock.pump([1.0] * 300)
    assert bob.lines() == []
    server.clock.pump([1.0] * 1000)
    assert [line.text for line in bob.lines()] == ["done"]
    # Listing them builds nothing, and costs only its answer.
    alice.lines()
    alice.send("/filter")
    alice.send("/filter")
    alice.send("listed")
    assert bob.lines()[-1].text == "listed"
