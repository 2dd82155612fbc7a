"""
The daemon's metrics, in Prometheus' text format (C{--metrics ENDPOINT}).

L{ChatMetrics} keeps every figure in one C{CollectorRegistry} of its own
(never prometheus_client's global one), made in C{build_service} and handed
to what counts: the sessions (through the core's L{Meter} port), the
fan-out (L{MeteredFanOut}: messages), and whoever else has something to
count (L{ChatMetrics.history_writes}). Everything is counted on the reactor
thread; a scrape, which prometheus_client's Twisted resource serves from the
reactor's thread pool, only reads values under prometheus_client's locks.

What is measured rather than counted (the bytes waiting in send queues, the
members with end-to-end keys, the reactor's lag) is sampled by
L{ChatMetrics.sample}, every L{SAMPLE_INTERVAL} seconds on the reactor.
The reactor lag is what Synapse's reactor metrics show: how late a call
scheduled to run at once actually runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from chatroom.core.events import Acted, Audience, Event, GroupSealed, Said, Sealed, Whispered
from chatroom.core.ports import FanOut, Recipient

SAMPLE_INTERVAL = 1.0
# Seconds, as Synapse's reactor tick histogram.
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

# Drop reasons, by the start of the reason text the member gets: a bounded
# set of label values, whatever the text holds (sizes, what was bad).
DROP_REASONS = (
    ("send queue over", "send_queue"),
    ("kicked for flooding", "flood"),
    ("too much bad input", "bad_input"),
    ("ping timeout", "ping_timeout"),
    ("no line received in time", "first_line_timeout"),
    ("TLS handshake timeout", "handshake_timeout"),
)

MESSAGE_KINDS: dict[type[Event], str] = {
    Said: "say",
    Acted: "me",
    Whispered: "whisper",
    Sealed: "e2e",
    GroupSealed: "e2e-group",
}


def drop_reason(reason: str) -> str:
    """
    The label of a drop for C{reason}; C{other} for a reason not listed.
    """
    return next((label for start, label in DROP_REASONS if reason.startswith(start)), "other")


class ChatMetrics:
    """
    Every figure the daemon exports, in C{registry}; a
    L{chatroom.core.metering.Meter} for the sessions.

    @ivar history_writes: Count one per message written to the history
        (C{.inc()}), by the history store.
    """

    def __init__(self, registry: CollectorRegistry, transports: Iterable[str] = ()) -> None:
        """
        @param transports: The transport kinds to show (at 0) before any
            connection of theirs.
        """
        self.registry = registry
        self.connections = Gauge(
            "chatroom_connections", "Open client connections.", ["transport"], registry=registry
        )
        self.members = Gauge("chatroom_members", "Members in the room.", ["transport"], registry=registry)
        self.messages = Counter(
            "chatroom_messages", "Chat messages published, by command.", ["kind"], registry=registry
        )
        self.deliveries = _Deliveries()
        registry.register(self.deliveries)
        self.drops = Counter(
            "chatroom_drops", "Connections dropped, by reason.", ["transport", "reason"], registry=registry
        )
        self.flood_refusals = Counter(
            "chatroom_flood_refusals", "Lines refused for flooding.", ["transport"], registry=registry
        )
        self.send_queue = Gauge(
            "chatroom_send_queue_bytes",
            "Bytes queued for clients that they have not taken yet, in all.",
            registry=registry,
        )
        self.e2e_members = Gauge(
            "chatroom_e2e_members", "Members with registered end-to-end keys.", registry=registry
        )
        self.history_writes = Counter(
            "chatroom_history_writes", "Messages written to the history.", registry=registry
        )
        self.reactor_lag = Histogram(
            "chatroom_reactor_lag_seconds",
            "How late a call scheduled to run at once ran on the reactor.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        for transport in transports:
            for metric in (self.connections, self.members, self.flood_refusals):
                metric.labels(transport)
            self.deliveries.declare(transport)
        for kind in MESSAGE_KINDS.values():
            self.messages.labels(kind)

    # The Meter port, for the sessions

    def connection_opened(self, transport: str) -> None:
        self.connections.labels(transport).inc()

    def connection_closed(self, transport: str) -> None:
        self.connections.labels(transport).dec()

    def member_joined(self, transport: str) -> None:
        self.members.labels(transport).inc()

    def member_left(self, transport: str) -> None:
        self.members.labels(transport).dec()

    def delivered(self, transport: str, size: int) -> None:
        deliveries = self.deliveries
        deliveries.count[transport] = deliveries.count.get(transport, 0) + 1
        deliveries.size[transport] = deliveries.size.get(transport, 0) + size

    def dropped(self, transport: str, reason: str) -> None:
        self.drops.labels(transport, drop_reason(reason)).inc()

    def flood_refused(self, transport: str) -> None:
        self.flood_refusals.labels(transport).inc()

    # Messages, for the fan-out

    def published(self, event: Event) -> None:
        kind = MESSAGE_KINDS.get(type(event))
        if kind is not None:
            self.messages.labels(kind).inc()


class _Deliveries(Collector):
    """
    The deliveries and their bytes, by transport: counted once per member
    per event, so in plain integers (far cheaper than a labelled Counter),
    exported as counters when scraped.
    """

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.size: dict[str, int] = {}

    def declare(self, transport: str) -> None:
        self.count.setdefault(transport, 0)
        self.size.setdefault(transport, 0)

    def collect(self) -> Iterator[Metric]:
        # Copied first (each copy is one step for the interpreter): a scrape
        # runs in a thread while the reactor goes on counting.
        count, size = dict(self.count), dict(self.size)
        deliveries = CounterMetricFamily(
            "chatroom_deliveries", "Events queued for a member.", labels=["transport"]
        )
        sent = CounterMetricFamily(
            "chatroom_sent_bytes", "Bytes queued for members (before TLS).", labels=["transport"]
        )
        for transport, n in count.items():
            deliveries.add_metric([transport], n)
            sent.add_metric([transport], size.get(transport, 0))
        yield deliveries
        yield sent


class Sampler:
    """
    Samples what is measured rather than counted, every C{interval} seconds
    on C{clock}: the send queues, the members with keys, the reactor's lag.

    @param queued: The bytes each connection has queued.
    @param e2e_members: How many members have end-to-end keys.
    """

    def __init__(
        self,
        clock: IReactorTime,
        metrics: ChatMetrics,
        queued: Callable[[], Iterable[int]],
        e2e_members: Callable[[], int],
        interval: float = SAMPLE_INTERVAL,
    ) -> None:
        self.clock = clock
        self.metrics = metrics
        self.queued = queued
        self.e2e_members = e2e_members
        self.interval = interval
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sample(self) -> None:
        self.metrics.send_queue.set(sum(self.queued()))
        self.metrics.e2e_members.set(self.e2e_members())
        # Whatever else the reactor has to do before this runs is the lag.
        self.clock.callLater(0, self._lagged, self.clock.seconds())

    def _lagged(self, scheduled: float) -> None:
        self.metrics.reactor_lag.observe(max(0.0, self.clock.seconds() - scheduled))


class MeteredFanOut:
    """
    A L{FanOut} that counts the messages published through it.
    """

    def __init__(self, fanout: FanOut, metrics: ChatMetrics) -> None:
        self.fanout = fanout
        self.metrics = metrics

    def subscribe(self, member_id: str, recipient: Recipient) -> None:
        self.fanout.subscribe(member_id, recipient)

    def unsubscribe(self, member_id: str) -> None:
        self.fanout.unsubscribe(member_id)

    def publish(self, event: Event, audience: Audience) -> None:
        self.metrics.published(event)
        self.fanout.publish(event, audience)

    def disconnect(self, member_id: str) -> None:
        self.fanout.disconnect(member_id)
