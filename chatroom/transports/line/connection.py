"""
The side of the core's Connection port every transport's protocol shares (the IRC
protocol too, as it writes through the same per-turn writer):
the send-queue watch, and closing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from chatroom.core.events import Event
from chatroom.core.session import Session
from chatroom.transports.line.writer import LineWriter


@implementer(IPushProducer)
class SendQueueWatch:
    """
    Registered with the transport so that it says when its write buffer is
    full (paused) and drained again (resumed): it tells C{paused} each time.

    @ivar queued: Bytes written while paused.
    """

    def __init__(self, paused: Callable[[bool], None], drained: Callable[[], None]) -> None:
        self.queued = 0
        self._tell_paused = paused
        self._drained = drained

    def pauseProducing(self) -> None:
        self._tell_paused(True)

    def resumeProducing(self) -> None:
        self._tell_paused(False)
        if self.queued:
            self.queued = 0
            self._drained()

    def stopProducing(self) -> None:
        self.resumeProducing()


class ConnectionSide:
    """
    The Connection port for a protocol that encodes events with its
    C{encode} (or overrides L{deliver}, calling L{_queue} while the send
    queue is full, as the line protocol does), writes through a
    L{LineWriter} and watches its send queue.
    """

    # Slots (here and in the protocols): fewer attributes in the instance
    # dict, so every one the delivery path reads stays fast to read.
    __slots__ = ("_paused", "_pending", "_producing", "_transport", "_watch", "_writer")

    session: Session
    encode: Callable[[Event], bytes]
    _transport: Any
    _writer: LineWriter
    # The writer's pending lines (LineWriter.pending).
    _pending: list[bytes]

    def __init__(self) -> None:
        self._watch = SendQueueWatch(self._set_paused, self._drained)
        # Whether the transport's write buffer is full (as the watch says), kept
        # here: every delivery reads it, and should not touch the watch.
        self._paused = False
        self._producing = False

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused

    def _drained(self) -> None:
        self.session.drained()

    def use_writer(self, writer: LineWriter) -> None:
        """
        Write through C{writer}.
        """
        self._writer = writer
        self._pending = writer.pending

    def watch_sends(self) -> None:
        """
        Have the transport say when its send queue fills and drains.
        """
        self._transport.registerProducer(self._watch, True)
        self._producing = True

    def deliver(self, event: Event, cap: int) -> int:
        # The hot path: once per member for every event told to the room.
        data = self.encode(event)
        if self._paused:
            return self._queue(data, cap)
        if self._pending:
            self._pending.append(data)
        elif data:
            self._writer.write(data)
        return len(data)

    def _queue(self, data: bytes, cap: int) -> int:
        # The client is not reading: count what piles up, up to the cap.
        size = len(data)
        watch = self._watch
        queued = watch.queued + size
        if cap and queued > cap:
            return -1
        if size:
            watch.queued = queued
            self._writer.write(data)
            self.session.queue_grew(queued)
        return size

    def queued(self) -> int:
        return self._watch.queued

    def close(self) -> None:
        if self._producing:
            # A registered producer would hold the connection open forever.
            self._producing = False
            self._transport.unregisterProducer()
        self._writer.close()

    def abort(self) -> None:
        self._writer.discard()
        self._transport.abortConnection()
