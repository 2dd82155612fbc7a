"""
The client's line protocol, without Tk and without a network.
"""

from __future__ import annotations

from OpenSSL.SSL import Error as TLSError
from service_identity import VerificationError
from twisted.internet import error
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import directlyProvides

from chatroom.client.protocol import (
    HANDSHAKE_TIMEOUT,
    MAX_NICK_TRIES,
    ChatClientProtocol,
    describe_failure,
    nick_variant,
)
from chatroom.names import MAX_NAME_LENGTH
from chatroom.wire import Kind
from tests.client_support import RecordingView, arrival, server_line


class Connection:
    """
    A protocol on a StringTransport, with what it reported.
    """

    def __init__(self, nick: str | None = None, tls: bool = False) -> None:
        self.view = RecordingView()
        self.clock = Clock()
        self.ready: list[ChatClientProtocol] = []
        self.lost: list[Failure] = []
        self.protocol = ChatClientProtocol(
            self.view, self.clock, nick, self.ready.append, lambda p, reason: self.lost.append(reason)
        )
        self.transport = StringTransport()
        if tls:
            directlyProvides(self.transport, ISSLTransport)
        self.protocol.makeConnection(self.transport)

    def receive(self, *lines: bytes) -> None:
        self.protocol.dataReceived(b"".join(lines))

    def sent(self) -> list[str]:
        data = self.transport.value().decode()
        self.transport.clear()
        return data.splitlines()

    def welcome(self, name: str = "guest1", *others: str) -> None:
        """
        Arrive as C{name}, with C{others} already in the room; the client's
        first line, that it answers pings, is checked and taken away.
        """
        self.receive(arrival(name, *others))
        sent = self.transport.value()
        assert sent.startswith(b"/pong\n"), sent
        self.transport.clear()
        self.transport.write(sent[len(b"/pong\n") :])


def test_a_welcomed_client_says_at_once_that_it_answers_pings() -> None:
    c = Connection()
    c.receive(arrival("guest1"))
    # The server pings only clients that have answered once (TCP keepalive
    # covers the others); this one answers every ping.
    assert c.sent()[0] == "/pong"


def test_lines_are_parsed_and_passed_on() -> None:
    c = Connection()
    data = server_line(Kind.MESSAGE, "bob", "hi :) there") + server_line(Kind.JOIN, "carol", "carol joined")
    # Split mid-line: framing must put it back together.
    c.receive(data[:30])
    assert c.view.lines == []
    c.receive(data[30:])
    assert [(line.kind, line.source, line.text) for line in c.view.lines] == [
        ("message", "bob", "hi :) there"),
        ("join", "carol", "carol joined"),
    ]
    assert c.view.lines[0].timestamp.timestamp() == 1_790_000_000.0


def test_plain_transport_is_ready_at_once() -> None:
    c = Connection()
    assert c.ready == [c.protocol]
    assert c.protocol.ready


def test_unreadable_line_is_a_notice_and_the_next_line_is_read() -> None:
    c = Connection()
    c.receive(b"garbage without a text field\r\n", server_line(Kind.INFO, "*", "still here"))
    notices = c.view.of("notice")
    assert len(notices) == 1 and "unreadable line" in str(notices[0])
    assert [line.text for line in c.view.lines] == ["still here"]


def test_over_long_line_disconnects_with_a_notice() -> None:
    c = Connection()
    c.receive(b"x" * (ChatClientProtocol.MAX_LENGTH + 1))
    assert "over" in str(c.view.of("notice")[0])
    assert c.transport.disconnecting


def test_send_line_sends_text_as_typed() -> None:
    c = Connection()
    c.protocol.send_line("/whisper bob héllo")
    assert c.transport.value() == "/whisper bob héllo\n".encode()


def test_welcome_names_the_client_and_asks_for_the_nick() -> None:
    c = Connection(nick="alice")
    c.welcome("guest7")
    assert c.view.of("name") == ["guest7"]
    assert c.sent() == ["/nick alice"]
    c.receive(server_line(Kind.RENAME, "guest7", "guest7 is now known as alice", ("alice",)))
    assert c.view.of("name") == ["guest7", "alice"]
    assert c.protocol.name == "alice"
    # Got the name asked for: nothing to say about it.
    assert c.view.of("notice") == []


def test_no_nick_asked_without_one() -> None:
    c = Connection()
    c.welcome()
    assert c.sent() == []


def test_taken_nick_takes_the_next_free_variant_and_says_so() -> None:
    c = Connection(nick="alice")
    c.welcome("guest3", "@Alice", "alice2")
    # Picked from the list: alice and alice2 are there.
    assert c.sent() == ["/nick alice3"]
    c.receive(server_line(Kind.RENAME, "guest3", "guest3 is now known as alice3", ("alice3",)))
    assert c.protocol.name == "alice3"
    assert c.view.of("notice") == ["the name alice is taken: you are alice3"]
    # A reconnect asks for the name wanted, not the variant.
    assert c.protocol.wanted_nick == "alice"


def test_look_alikes_in_the_list_count_as_taken() -> None:
    c = Connection(nick="alice")
    c.welcome("guest3", "Al1ce", "a_lice2")
    assert c.sent() == ["/nick alice3"]


def test_waits_for_the_whole_list_before_asking() -> None:
    c = Connection(nick="bob")
    c.receive(server_line(Kind.WELCOME, "*", "hi", ("guest9",)))
    c.receive(server_line(Kind.LIST, "*", "users 1-100 of 101", tuple(f"u{n}" for n in range(100))))
    assert c.sent() == ["/pong"]
    c.receive(server_line(Kind.LIST, "*", "users 101-101 of 101", ("bob",)))
    assert c.sent() == ["/nick bob2"]


def test_a_name_taken_since_the_list_moves_on_to_the_next() -> None:
    c = Connection(nick="alice")
    c.welcome("guest3")
    assert c.sent() == ["/nick alice"]
    c.receive(server_line(Kind.ERROR, "*", "the name alice is taken: choose another"))
    assert c.sent() == ["/nick alice2"]
    c.receive(server_line(Kind.ERROR, "*", "the name alice2 looks too much like aLice2: choose another"))
    assert c.sent() == ["/nick alice3"]
    c.receive(server_line(Kind.RENAME, "guest3", "guest3 is now known as alice3", ("alice3",)))
    assert c.protocol.name == "alice3"
    assert c.view.of("notice") == ["the name alice is taken: you are alice3"]
    # A reconnect asks for the name wanted, not the variant.
    assert c.protocol.wanted_nick == "alice"
    # Later errors are the user's business, not the nick logic's.
    c.receive(server_line(Kind.ERROR, "*", "the name alice3 is taken: choose another"))
    assert c.sent() == []


def test_other_errors_while_asking_do_not_disturb_the_nick() -> None:
    c = Connection(nick="alice")
    c.welcome()
    c.sent()
    c.receive(server_line(Kind.ERROR, "*", "no such user zed: type /list to see who is here"))
    assert c.sent() == []
    c.receive(server_line(Kind.ERROR, "*", "the name alice is taken: choose another"))
    assert c.sent() == ["/nick alice2"]


def test_rate_limit_ends_the_search() -> None:
    c = Connection(nick="bob")
    c.welcome()
    c.sent()
    c.receive(server_line(Kind.ERROR, "*", "too many name changes: wait a little before the next"))
    assert c.sent() == []
    assert "cannot take the name bob (too many name changes" in str(c.view.of("notice")[-1])


def test_gives_up_when_every_variant_is_listed() -> None:
    c = Connection(nick="bob")
    c.welcome("guest1", *(nick_variant("bob", n) for n in range(1, MAX_NICK_TRIES + 1)))
    assert c.sent() == []
    assert "no free variant of bob" in str(c.view.of("notice")[-1])


def test_gives_up_after_many_variants() -> None:
    c = Connection(nick="bob")
    c.welcome()
    for number in range(1, MAX_NICK_TRIES + 1):
        assert c.sent() == [f"/nick {nick_variant('bob', number)}"]
        c.receive(server_line(Kind.ERROR, "*", f"the name {nick_variant('bob', number)} is taken: x"))
    assert c.sent() == []
    assert "no free variant of bob" in str(c.view.of("notice")[-1])
    assert c.protocol.wanted_nick is None


def test_refused_name_gives_up() -> None:
    c = Connection(nick="bob")
    c.welcome()
    c.sent()
    c.receive(server_line(Kind.ERROR, "*", "invalid name 'bob': reserved"))
    assert c.sent() == []
    assert "cannot take the name bob (invalid name" in str(c.view.of("notice")[-1])


def test_a_name_the_user_chooses_is_kept_for_reconnects() -> None:
    c = Connection(nick="alice")
    c.welcome("guest1")
    c.receive(server_line(Kind.RENAME, "guest1", "", ("alice",)))
    c.protocol.send_line("/nick alicia")
    c.receive(server_line(Kind.RENAME, "alice", "alice is now known as alicia", ("alicia",)))
    assert c.protocol.wanted_nick == "alicia"
    # Someone else's rename changes nothing of ours.
    c.receive(server_line(Kind.RENAME, "bob", "bob is now known as rob", ("rob",)))
    assert (c.protocol.name, c.protocol.wanted_nick) == ("alicia", "alicia")


def test_nick_variants_stay_within_the_length_limit() -> None:
    assert [nick_variant("alice", n) for n in (1, 2, 10)] == ["alice", "alice2", "alice10"]
    long = "a" * MAX_NAME_LENGTH
    assert nick_variant(long, 12) == "a" * (MAX_NAME_LENGTH - 2) + "12"


def test_tls_waits_for_the_handshake() -> None:
    c = Connection(tls=True)
    assert c.ready == []
    c.protocol.handshakeCompleted()
    assert c.ready == [c.protocol]
    # The handshake timer is gone: time passing changes nothing.
    c.clock.advance(HANDSHAKE_TIMEOUT * 2)
    assert not c.transport.disconnecting


def test_handshake_that_never_ends_times_out() -> None:
    c = Connection(tls=True)
    c.clock.advance(HANDSHAKE_TIMEOUT - 1)
    assert not c.transport.disconnecting
    c.clock.advance(1)
    assert c.transport.disconnecting
    c.protocol.connectionLost(Failure(error.ConnectionAborted()))
    assert describe_failure(c.lost[0]) == "the connection attempt timed out"
    assert c.ready == []


def test_failures_are_described_in_words() -> None:
    def said(exception: BaseException) -> str:
        return describe_failure(Failure(exception))

    assert "not valid for this host name" in said(VerificationError(errors=[]))
    verify = TLSError([("SSL routines", "", "certificate verify failed")])
    assert "could not be verified" in said(verify)
    assert "TLS handshake failed" in said(TLSError([("SSL routines", "", "wrong version number")]))
    assert "refused" in said(error.ConnectionRefusedError())
    assert said(error.DNSLookupError("nowhere")) == "unknown host name"
    assert said(error.ConnectionDone()) == "the server closed the connection"
    assert said(error.ConnectionLost()) == "the connection was lost"
    assert "oops" in said(RuntimeError("oops"))


def test_pings_are_answered_and_not_shown() -> None:
    c = Connection()
    c.receive(server_line(Kind.PING, "*", "reply with /pong 1795000000", ("1795000000",)))
    assert c.sent() == ["/pong 1795000000"]
    assert c.view.lines == []


def test_a_kick_or_ban_of_this_client_is_remembered() -> None:
    c = Connection()
    c.welcome("carol")
    c.receive(server_line(Kind.KICK, "alice", "alice kicked bob", ("bob",)))
    assert c.protocol.sent_away is None
    c.receive(server_line(Kind.KICK, "alice", "alice kicked carol: shouting", ("carol",)))
    assert c.protocol.sent_away == "alice kicked carol: shouting"
    banned = Connection()
    banned.receive(server_line(Kind.BANNED, "*", "you are banned from this room", ("mallory",)))
    assert banned.protocol.sent_away == "you are banned from this room"


def test_pasted_line_breaks_cannot_make_a_second_command() -> None:
    c = Connection()
    c.protocol.send_line("first\r\n/quit\rthird\nfourth")
    assert c.transport.value() == b"first /quit third fourth\n"
