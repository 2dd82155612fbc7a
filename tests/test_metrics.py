"""
The daemon's metrics: what is counted where, in a registry of its own, and
served in Prometheus' text format by the real daemon.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from chatroom.e2e.directory import InMemoryKeyDirectory
from chatroom.e2e.keys import Identity, Session, decode_b64, encode_b64
from chatroom.features.moderation import ModerationSettings
from chatroom.limits import ClientLimits
from chatroom.metrics import ChatMetrics, Sampler, drop_reason
from chatroom.tap import compose, line_factory
from tests.daemon import running_daemon
from tests.helpers import START, FakeClient


class Metered:
    """
    The daemon's room counting into a registry of its own, on a fake clock.
    """

    def __init__(self, limits: ClientLimits | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.registry = CollectorRegistry()
        self.metrics = ChatMetrics(self.registry, ("line",))
        self.keys = InMemoryKeyDirectory()
        self.sessions, _ = compose(
            self.clock,
            ModerationSettings(first_admin=True),
            limits or ClientLimits(flood_rate=0, nick_rate=0),
            metrics=self.metrics,
            keys=self.keys,
        )
        self.factory = line_factory(self.sessions)
        self._port = 40000

    def connect(self) -> FakeClient:
        self._port += 1
        return FakeClient(self.factory, self._port, f"10.0.0.{self._port - 40000}")

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


def test_connections_members_messages_deliveries_and_bytes() -> None:
    room = Metered()
    assert room.value("chatroom_connections", transport="line") == 0
    alice, bob = room.connect(), room.connect()
    assert room.value("chatroom_connections", transport="line") == 2
    assert room.value("chatroom_members", transport="line") == 2
    before = room.value("chatroom_deliveries_total", transport="line")
    sent = room.value("chatroom_sent_bytes_total", transport="line")
    alice.lines()
    bob.lines()
    alice.send("hello")
    bob.send("/me waves")
    got = alice.lines() + bob.lines()
    assert room.value("chatroom_messages_total", kind="say") == 1
    assert room.value("chatroom_messages_total", kind="me") == 1
    assert room.value("chatroom_deliveries_total", transport="line") == before + 4 == before + len(got)
    raw = sum(len(line.text) for line in got)
    assert room.value("chatroom_sent_bytes_total", transport="line") - sent > raw
    bob.send("/quit")
    bob.disconnect()
    assert room.value("chatroom_members", transport="line") == 1
    assert room.value("chatroom_connections", transport="line") == 1
    alice.disconnect()
    assert room.value("chatroom_members", transport="line") == 0
    assert room.value("chatroom_connections", transport="line") == 0
    # Nothing went to prometheus_client's global registry.
    assert REGISTRY.get_sample_value("chatroom_connections", {"transport": "line"}) is None


def test_drops_by_reason_and_flood_refusals() -> None:
    room = Metered(ClientLimits(flood_rate=1, flood_burst=2, flood_kick=3))
    alice = room.connect()
    for _ in range(5):
        alice.send("spam")
    assert room.value("chatroom_flood_refusals_total", transport="line") == 3
    assert room.value("chatroom_drops_total", transport="line", reason="flood") == 1
    # Dropped: no longer a member, though the connection drains first.
    assert room.value("chatroom_members", transport="line") == 0
    bob = room.connect()
    # A client that answers pings, then stops: dropped for it.
    bob.send("/pong")
    room.clock.advance(ClientLimits().ping_interval)
    room.clock.advance(ClientLimits().ping_timeout)
    assert room.value("chatroom_drops_total", transport="line", reason="ping_timeout") == 1
    bob.disconnect()
    assert drop_reason("send queue over 1048576 bytes: not reading") == "send_queue"
    assert drop_reason("too much bad input (an over-long line)") == "bad_input"
    assert drop_reason("something new") == "other"


def test_the_sampler_measures_queues_keys_and_reactor_lag() -> None:
    room = Metered()
    sampler = Sampler(
        room.clock,
        room.metrics,
        lambda: [s.connection.queued() for s in room.sessions.open],
        lambda: len(room.keys.items()),
        interval=1.0,
    )
    alice = room.connect()
    alice.send("/e2e hello")
    (challenge,) = [line for line in alice.lines() if line.kind == "challenge"]
    session = Session(Identity.generate(), issued_ms=int(room.clock.seconds() * 1000))
    proof = session.prove("chatroom", decode_b64(challenge.fields["nonce"]))
    alice.send(f"/e2e register {session.bundle.encode()} {encode_b64(proof)}")
    sampler.start()
    assert room.value("chatroom_e2e_members") == 1
    # The call scheduled "at once" runs 0.3 s late: the reactor lagged.
    room.clock.advance(0.3)
    assert room.value("chatroom_reactor_lag_seconds_count") == 1
    assert room.value("chatroom_reactor_lag_seconds_bucket", le="0.2") == 0
    assert room.value("chatroom_reactor_lag_seconds_bucket", le="0.5") == 1
    alice.send("/quit")
    room.clock.advance(1)
    assert room.value("chatroom_e2e_members") == 0
    sampler.stop()
    assert room.value("chatroom_send_queue_bytes") == 0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_daemon_serves_metrics_that_follow_the_chat(tmp_path: Path) -> None:
    line = (("transport", "line"),)
    with running_daemon(tmp_path, "--metrics", "tcp:0:interface=127.0.0.1") as daemon:
        alice = daemon.connect().join_as("alice")
        daemon.wait_for_log("chatroom metrics on http://127.0.0.1:", alice)
        match = re.search(rb"chatroom metrics on http://127\.0\.0\.1:(\d+)/metrics", daemon.output)
        assert match is not None
        port = int(match.group(1))
        first = scrape(port)
        assert first[("chatroom_connections", line)] == 1
        assert first[("chatroom_members", line)] == 1
        assert first[("chatroom_messages_total", (("kind", "say"),))] == 0
        for name in ("chatroom_send_queue_bytes", "chatroom_e2e_members", "chatroom_history_writes_total"):
            assert (name, ()) in first
        assert ("chatroom_reactor_lag_seconds_count", ()) in first

        bob = daemon.connect().join_as("bob")
        alice.send("hello bob")
        assert bob.read_kind("message")[-1].text == "hello bob"
        alice.read_kind("message")
        second = scrape(port)
        assert second[("chatroom_connections", line)] == 2
        assert second[("chatroom_members", line)] == 2
        assert second[("chatroom_messages_total", (("kind", "say"),))] == 1
        deliveries = ("chatroom_deliveries_total", line)
        sent = ("chatroom_sent_bytes_total", line)
        assert second[deliveries] > first[deliveries]
        assert second[sent] > first[sent]
        # The history is written by its own thread: round trips as the clock.
        for _ in range(200):
            if scrape(port)[("chatroom_history_writes_total", ())] > 0:
                break
            alice.send("/help me")
            alice.read_kind("help")
        else:
            raise AssertionError("no history write was counted")
    # A scrape is not news: no access log line for it.
    assert b"GET /metrics" not in daemon.output
