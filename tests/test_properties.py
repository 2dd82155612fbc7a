"""
Property tests: random byte streams, random commands from several clients
and random disconnects, with the room's invariants checked after every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from chatroom.core.room import Room
from chatroom.features.moderation import ModerationSettings
from chatroom.transports.line.protocol import MAX_LINE_BYTES
from tests.helpers import START, FakeClient, make_server

# Every command the daemon serves, for the strategies below.
COMMANDS = make_server().room.commands.specs

CLIENTS = 4
NAMES = st.sampled_from(
    ["alice", "Alice", "al1ce", "bob", "b0b", "carol", "guest1", "guest2", "x" * 21, "9z"]
)
WORDS = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
COMMAND_LINES = st.one_of(
    st.builds(lambda n: f"/nick {n}", NAMES),
    st.builds(lambda n, w: f"/whisper {n} {w}", NAMES, WORDS),
    st.builds(lambda n: f"/whois {n}", NAMES),
    st.builds(lambda n: f"/kick {n} out", NAMES),
    st.builds(lambda n: f"/op {n}", NAMES),
    st.builds(lambda n: f"/deop {n}", NAMES),
    st.builds(lambda n: f"/ban {n} 10m", NAMES),
    st.builds(lambda n: f"/unban {n}", NAMES),
    st.builds(lambda w: f"/filter {w}", WORDS),
    st.builds(lambda w: f"/unfilter {w}", WORDS),
    st.builds(lambda w: f"/me {w}", WORDS),
    st.builds(lambda w: f"/quit {w}", WORDS),
    st.sampled_from([f"/{spec.name}" for spec in COMMANDS] + ["/?", "//x", "", "/"]),
    WORDS,
).map(lambda line: line.encode("utf-8", "surrogatepass"))
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("connect"), st.integers(0, CLIENTS - 1), st.just(b"")),
        st.tuples(st.just("drop"), st.integers(0, CLIENTS - 1), st.just(b"")),
        st.tuples(st.just("line"), st.integers(0, CLIENTS - 1), COMMAND_LINES),
        st.tuples(st.just("bytes"), st.integers(0, CLIENTS - 1), st.binary(max_size=200)),
        st.tuples(st.just("long"), st.integers(0, CLIENTS - 1), st.just(b"y" * (MAX_LINE_BYTES + 10))),
        st.tuples(st.just("time"), st.integers(0, 3), st.just(b"")),
    ),
    max_size=40,
)


@contextmanager
def failures_logged() -> Iterator[list[dict[str, Any]]]:
    """
    Collect every log event that carries a failure: a bug the protocol
    caught would otherwise pass silently.
    """
    caught: list[dict[str, Any]] = []

    def observer(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            caught.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield caught
    finally:
        globalLogPublisher.removeObserver(observer)


def check_invariants(room: Room, clients: dict[int, FakeClient], opped: bool) -> None:
    members = list(room.members)
    names = [m.name.casefold() for m in members]
    assert len(names) == len(set(names)), names
    if members:
        admins = sum(m.is_admin for m in members)
        # Under the first-member rule exactly one admin, unless /op made more.
        assert admins == 1 or (opped and admins > 1)
    # Every member is a live connection; nobody is left behind.
    live = {c.protocol.session.member for c in clients.values() if not c.transport.disconnecting}
    assert set(members) <= live | {None}
    assert all(member in room.members for member in live if member is not None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_random_sessions_keep_the_invariants(steps: list[tuple[str, int, bytes]]) -> None:
    clock = Clock()
    clock.advance(START)
    server = make_server(moderation=ModerationSettings(first_admin=True), clock=clock)
    room, factory = server.room, server.factory
    clients: dict[int, FakeClient] = {}
    port = 40000
    opped = False
    with failures_logged() as failures:
        for action, index, data in steps:
            client = clients.get(index)
            if action == "time":
                clock.advance(10**index)
            elif action == "connect" and client is None:
                port += 1
                clients[index] = FakeClient(factory, port)
            elif client is not None and action == "drop":
                client.disconnect()
                del clients[index]
            elif client is not None and action in ("line", "bytes", "long"):
                opped = opped or data.lower().startswith(b"/op ")
                for other in clients.values():
                    other.transport.clear()
                client.protocol.dataReceived(data + (b"\n" if action != "bytes" else b""))
                # Output per input line stays bounded: a broadcast or two per
                # member and line, or the help text, never more.
                out_lines = sum(c.transport.value().count(b"\n") for c in clients.values())
                lines_in = max(1, data.count(b"\n") + 1)
                assert out_lines <= lines_in * (3 * len(clients) + len(COMMANDS) + 5)
            # A closed connection goes away, as the transport would report.
            for key, other in list(clients.items()):
                if other.transport.disconnecting:
                    other.disconnect()
                    del clients[key]
            check_invariants(room, clients, opped)
        assert failures == []
