"""
One room across several daemon processes (nodes), through Redis.

Every node keeps a replica of the shared state (members, bans, E2E keys)
for the core's synchronous reads, and one Redis stream carries every change
and every room event in order: each node appends what happens on it (XADD,
trimmed; the events of one reactor turn as one entry) and reads what the
others appended (XREAD BLOCK from the last id it read, so after a reconnect
it reads what it missed), and its own entries' numbers, which release the
chat it held for them (see L{SharedFanOut}). Names are claimed
atomically on their look-alike skeleton by Lua scripts that also append
the change to the stream, so no node sees a claim out of order.

Audiences travel as they are (everyone, the admins, member ids) and are
resolved on each node against its own sessions. A member's events that
only its own node's members get never leave the node.

Each node refreshes a heartbeat key with an expiry; a node whose heartbeat
is gone has died, and one survivor (under a lock) makes its members leave
the room, which frees their names. While Redis is unreachable, a node keeps
serving its own clients: what it appends waits in a bounded outbox and goes
out on reconnection, and what did not fit is reported to its members and
logged; then it writes its members again (Redis may have lost them) and
reads on from its last id.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.bans import BanList
from chatroom.core.errors import ChatError
from chatroom.core.events import (
    EVERYONE,
    Audience,
    ChatEvent,
    Event,
    GroupSealed,
    Members,
    Notice,
    Sealed,
)
from chatroom.core.memory import InMemoryBans, InMemoryMembers, LocalFanOut
from chatroom.core.ports import MemberRecord, Recipient
from chatroom.core.room import Room
from chatroom.e2e.directory import InMemoryKeyDirectory
from chatroom.e2e.keys import E2EError, KeyBundle
from chatroom.names import skeleton
from chatroom.stores.redis.codec import (
    CodecError,
    decode_audience,
    decode_event,
    decode_record,
    dumps,
    encode_audience,
    encode_event,
    encode_record,
    loads,
)

# Entries the stream keeps (approximately): what a node may miss while it
# is away from Redis and still catch up on.
STREAM_LENGTH = 100_000
# Appends waiting for Redis while it is unreachable.
OUTBOX_LIMIT = 10_000
# Entries read per XREAD, and how long one blocks (ms).
READ_COUNT = 1000
READ_BLOCK_MS = 1000
# Guest numbers: each node hands out the numbers of one lane (n * lanes + lane).
GUEST_LANES = 100
UNREACHABLE = "the room's shared store is unreachable: try again in a moment"
# A remote member's idle time is refreshed at most this often (seconds).
TOUCH_INTERVAL = 5.0

# How long (s) at most this node's chat waits for its stream entry to come
# back before its members get it anyway.
HOLD_LIMIT = 1.0
# Every entry has the fields n, the node that wrote it (read first, so a
# node skips its own without decoding them), then (in what a node appends
# itself, not in its scripts') t, its number among that node's appends,
# and last d, the entry as JSON.
# KEYS[1] the name's skeleton key, [2] the members hash, [3] the stream;
# ARGV[1] the id, [2] the record, [3] the entry, [4] the stream length,
# [5] the node.
CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  local record = redis.call('HGET', KEYS[2], owner)
  if record then return record end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'n', ARGV[5], 'd', ARGV[3])
return false
"""
# KEYS[1] the new skeleton, [2] the old, [3] members, [4] the stream.
RENAME = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  local record = redis.call('HGET', KEYS[3], owner)
  if record then return record end
end
if KEYS[1] ~= KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'n', ARGV[5], 'd', ARGV[3])
return false
"""
# KEYS[1] the skeleton, [2] members, [3] the stream; ARGV[1] the id,
# [2] the entry, [3] the length, [4] the node.
REMOVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'n', ARGV[4], 'd', ARGV[2])
return false
"""
# KEYS[1] a hash, [2] the stream; ARGV[1] field, [2] value ('' deletes),
# [3] the entry, [4] the length, [5] '1': only if the field exists, [6] the node.
CHANGE = """
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
elseif ARGV[5] ~= '1' or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'n', ARGV[6], 'd', ARGV[3])
return false
"""


class Commands(Protocol):
    """
    Where a L{SharedRoom} sends Redis commands (a L{chatroom.stores.redis.link.Link},
    or a fake in tests).
    """

    @property
    def connected(self) -> bool: ...

    def execute(self, *args: Any) -> Deferred[Any]: ...


class SharedRoom:
    """
    This node's side of a room shared through Redis: the replica, the
    stream, the heartbeat. Its L{members}, L{fanout}, L{bans} and L{keys}
    implement the core's ports.

    @ivar node: This node's name.
    @ivar room: The room, once L{attach}ed.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        writer: Commands,
        reader: Commands,
        node: str,
        node_timeout: float = 15.0,
        prefix: str = "chatroom:",
        boot: str | None = None,
    ) -> None:
        self.clock = clock
        self.writer = writer
        self.reader = reader
        self.node = node
        self.node_timeout = node_timeout
        self.prefix = prefix
        self.boot = boot if boot is not None else os.urandom(4).hex()
        self.stream = prefix + "events"
        self.members_key = prefix + "members"
        self.state_key = prefix + "state"
        self.keys_key = prefix + "keys"
        self.room: Room | None = None
        self.members = SharedMembers(self)
        self.fanout = SharedFanOut(self)
        self.bans = SharedBans(self)
        self.keys = SharedKeys(self)
        self.node_of: dict[str, str] = {}
        self.shadowed: dict[str, MemberRecord] = {}
        self.last_id = "0-0"
        self.epoch: str | None = None
        self._outbox: deque[tuple[Any, ...]] = deque()
        self._batch: list[dict[str, Any]] = []
        self._flush_call: IDelayedCall | None = None
        # The number (t) of this node's next XADD.
        self.appends = 0
        self._lost = 0
        self._reading = False
        self._running = False
        self._since_up = 0.0
        self._timer: IDelayedCall | None = None
        self._synced = False
        self._loading = False
        # What the room's observers (the history) heard here and no stream
        # entry carries yet; what they hear from another node, while they do.
        self._observed: Event | None = None
        self._remote: Event | None = None

    # Keys

    def name_key(self, name: str) -> str:
        return f"{self.prefix}name:{skeleton(name)}"

    def heartbeat_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    # Wiring

    def attach(self, room: Room) -> None:
        """
        Serve C{room} (reaping a dead node's members makes them leave it),
        and pass what its observers hear on to the other nodes' observers,
        so that every node's history holds the whole room.
        """
        self.room = room
        room.observe(self._observe)
        room.add_message_ids(self.fanout.message_id)

    # What the observers hear, room-wide

    def _observe(self, event: Event) -> None:
        if event is self._remote:
            return
        self._note_observed()
        self._observed = event
        # Said with the event's own entry, or on its own at the end of the turn.
        self._flush_soon()

    def observed(self, event: Event) -> bool:
        """
        Whether the room's observers heard C{event} here and its stream
        entry is to say so (it is then said).
        """
        if event is self._observed:
            self._observed = None
            return True
        return False

    def _note_observed(self) -> None:
        # Heard and never published through the stream (a fact for the
        # observers alone, or an event only this node's members got): an
        # entry of its own.
        if self._observed is not None:
            event, self._observed = self._observed, None
            self.append("obs", e=encode_event(event))

    def _tell_observers(self, event: Event) -> None:
        if self.room is None:
            return
        self._remote = event
        try:
            self.room.note(event)
        finally:
            self._remote = None

    def start(self) -> Deferred[None]:
        """
        Once Redis is reachable, load the shared state and start reading
        the stream and beating.

        @return: Fires once the state is loaded.
        """
        self._running = True
        self._ready: Deferred[None] = Deferred()
        if self.writer.connected:
            self._first_load()
        return self._ready

    def _first_load(self) -> None:
        self._loading = True
        d = Deferred.fromCoroutine(self._load())
        d.addCallback(lambda _: self._begin())

        def failed(failure: Failure) -> None:
            self._loading = False
            self.log.error("loading the room from Redis failed: {error}", error=failure.getErrorMessage())

        d.addErrback(failed)

    def _begin(self) -> None:
        self._since_up = self.clock.seconds()
        self._synced = True
        self.log.info("node {node} joined the shared room", node=self.node)
        self._tick()
        self._read_next()
        self._ready.callback(None)

    def stop(self) -> Deferred[Any]:
        self._running = False
        self.fanout.stop()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        return self.writer.execute("DEL", self.heartbeat_key(self.node)).addErrback(lambda _: None)

    async def _load(self) -> None:
        epoch = await self.writer.execute("GET", self.prefix + "epoch")
        if epoch is None:
            await self.writer.execute("SET", self.prefix + "epoch", os.urandom(8).hex(), "NX")
            epoch = await self.writer.execute("GET", self.prefix + "epoch")
        self.epoch = epoch
        # The position first: what changes after the snapshot is read again.
        last = await self.writer.execute("XREVRANGE", self.stream, "+", "-", "COUNT", "1")
        self.last_id = last[0][0] if last else "0-0"
        await self._heartbeat()
        records = await self.writer.execute("HGETALL", self.members_key)
        for _, text in _pairs(records):
            try:
                self._apply_join(decode_record(loads(text)), loads(text).get("node", "?"))
            except CodecError as e:
                self.log.warn("skipped a broken member record: {error}", error=e)
        state = await self.writer.execute("HGET", self.state_key, "bans")
        if state is not None:
            self.bans.replace(loads(state))
        keys = await self.writer.execute("HGETALL", self.keys_key)
        for member_id, text in _pairs(keys):
            self.keys.apply_register(member_id, text)

    # Appending

    def append(self, kind: str, **fields: Any) -> None:
        """
        Append one entry of C{kind} to the stream (via the outbox while
        Redis is unreachable). The entries of one reactor turn go out as
        one stream entry: under load that is one XADD, and one entry for
        every other node to read, for many events.
        """
        self.add({"k": kind, **fields})

    def add(self, item: dict[str, Any]) -> None:
        """
        L{append} the entry C{item} (its kind under C{k}).
        """
        if not self.writer.connected:
            self._xadd(self._text(item))
            return
        self._batch.append(item)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Send the entries appended since the last flush.
        """
        self._note_observed()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        batch, self._batch = self._batch, []
        if len(batch) == 1:
            self._xadd(self._text(batch[0]))
        elif batch and self.writer.connected:
            self._xadd(self.entry("batch", b=batch))
        else:
            for item in batch:
                self._xadd(self._text(item))

    def _xadd(self, entry: str) -> None:
        number, self.appends = self.appends, self.appends + 1
        self.send(
            "XADD", self.stream, "MAXLEN", "~", STREAM_LENGTH, "*", "n", self.node, "t", number, "d", entry
        )

    @property
    def relaying(self) -> bool:
        """
        Whether this node's chat may wait for the stream: the stream is
        read and written.
        """
        return self._synced and self._running and self.writer.connected and self.reader.connected

    def entry(self, kind: str, **fields: Any) -> str:
        return self._text({"k": kind, **fields})

    def _text(self, item: dict[str, Any]) -> str:
        # An entry as the stream carries it: the node that wrote it, then the item.
        return dumps({"n": self.node, **item})

    def send(self, *command: Any) -> None:
        """
        Send C{command}, in order with the others; queued while Redis is
        unreachable, and counted as lost past L{OUTBOX_LIMIT}.
        """
        if self._batch and command[0] != "XADD":
            self.flush()
        if self.writer.connected and not self._outbox:
            self.writer.execute(*command).addErrback(self._send_failed, command)
            return
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self._lost += 1
        self._outbox.append(command)

    def _send_failed(self, failure: Failure, command: tuple[Any, ...]) -> None:
        if failure.check(ConnectionError):
            # Lost on the way: sent again (maybe twice) once Redis is back.
            self._outbox.append(command)
            return
        self.log.failure("Redis refused {command}", failure, command=command[0])

    def script(self, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        if self._batch:
            self.flush()
        return self.writer.execute("EVAL", script, len(keys), *keys, *args)

    # Reading

    def _read_next(self) -> None:
        if not self._running or self._reading:
            return
        if not self.reader.connected:
            return
        self._reading = True
        d = self.reader.execute(
            "XREAD", "COUNT", READ_COUNT, "BLOCK", READ_BLOCK_MS, "STREAMS", self.stream, self.last_id
        )
        d.addCallbacks(self._read, self._read_failed)

    def _read(self, reply: Any) -> None:
        self._reading = False
        node = self.node
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self.last_id = entry_id
                if fields[1] != node:
                    self.receive(fields[-1])
                elif fields[2] == "t":
                    self.fanout.release(int(fields[3]))
        self._read_next()

    def _read_failed(self, failure: Failure) -> None:
        self._reading = False
        self.fanout.release()
        if failure.check(ConnectionError):
            # The reader's on_up starts reading again.
            return
        self.log.error("reading the stream failed: {error}", error=failure.getErrorMessage())
        self.clock.callLater(1.0, self._read_next)

    def receive(self, text: str) -> None:
        """
        Act on one stream entry of another node.
        """
        try:
            data = loads(text)
            items = data["b"] if data.get("k") == "batch" else [data]
        except (CodecError, KeyError, TypeError, AttributeError) as e:
            self.log.warn("skipped a bad stream entry: {error}", error=e)
            return
        for item in items:
            try:
                self._dispatch(item)
            except (CodecError, KeyError, TypeError, ValueError) as e:
                self.log.warn("skipped a bad stream entry: {error}", error=e)

    def _dispatch(self, data: dict[str, Any]) -> None:
        kind = data["k"]
        if kind == "ev":
            event = decode_event(data["e"])
            audience = decode_audience(data["a"])
            if data.get("o"):
                # Before it goes out, as where it happened (its stored id).
                self._tell_observers(event)
            self.fanout.local.publish(event, audience)
        elif kind == "obs":
            self._tell_observers(decode_event(data["e"]))
        elif kind == "join":
            self._apply_join(decode_record(data["r"]), data["n"])
        elif kind == "ren":
            self._apply_rename(data["id"], data["name"])
        elif kind == "upd":
            new = decode_record(data["r"])
            record = self.members.replica.get(new.id) or self.shadowed.get(new.id)
            if record is not None:
                record.is_admin = new.is_admin
                record.last_active = max(record.last_active, new.last_active)
        elif kind == "left":
            self._apply_left(data["id"])
        elif kind == "disc":
            self.fanout.local.disconnect(data["id"])
        elif kind == "bans":
            self.bans.replace(data["bans"])
        elif kind == "key":
            self.keys.apply_register(data["id"], data["b"])
        elif kind == "unkey":
            self.keys.replica.drop(data["id"])
        else:
            raise ValueError(f"unknown entry kind {kind!r}")

    def _apply_join(self, record: MemberRecord, node: str) -> None:
        known = self.members.replica.get(record.id)
        if known is not None:
            known.is_admin = record.is_admin
            if known.name != record.name:
                self.members.replica.rename(known, record.name)
            return
        self.node_of[record.id] = node
        if record.id in self.shadowed:
            return
        clash = self.members.replica.clash(record.name)
        if clash is not None and self.node_of.get(clash.id) == self.node:
            # Ours was claimed in Redis after this entry: the entry is older,
            # and a rename or departure of that member follows it.
            self.shadowed[record.id] = record
            return
        if clash is not None:
            self.shadow(clash)
        self.members.replica.claim(record)

    def shadow(self, record: MemberRecord) -> None:
        """
        Set aside C{record}, whose name Redis has given to another member
        since: its rename (or departure) is still on its way in the stream.
        """
        self.members.replica.remove(record)
        self.shadowed[record.id] = record

    def _apply_rename(self, member_id: str, name: str) -> None:
        record = self.members.replica.get(member_id)
        if record is not None:
            clash = self.members.replica.clash(name, record)
            if clash is not None:
                self.shadow(clash)
            self.members.replica.rename(record, name)
            return
        record = self.shadowed.get(member_id)
        if record is not None:
            record.name = name
            if self.members.replica.clash(name) is None:
                del self.shadowed[member_id]
                self.members.replica.claim(record)

    def _apply_left(self, member_id: str) -> None:
        self.shadowed.pop(member_id, None)
        record = self.members.replica.get(member_id)
        if record is not None:
            self.members.replica.remove(record)
        self.keys.replica.drop(member_id)
        self.node_of.pop(member_id, None)
        # Ours, removed by another node (a kick, a ban): its connection ends.
        self.fanout.local.disconnect(member_id)

    # Heartbeat, dead nodes and reconnection

    def _tick(self) -> None:
        if not self._running:
            return
        self._timer = self.clock.callLater(self.node_timeout / 5, self._tick)
        if not self.writer.connected:
            return
        Deferred.fromCoroutine(self._beat_and_reap()).addErrback(
            lambda f: self.log.debug("heartbeat: {error}", error=f.getErrorMessage())
        )

    async def _heartbeat(self) -> None:
        ttl = max(1, int(self.node_timeout * 2 / 3 * 1000))
        await self.writer.execute("SET", self.heartbeat_key(self.node), self.boot, "PX", ttl)

    async def _beat_and_reap(self) -> None:
        await self._heartbeat()
        now = self.clock.seconds()
        # Just back on Redis: the other nodes get a moment to beat again.
        if now - self._since_up < self.node_timeout:
            return
        for node in sorted(set(self.node_of.values()) - {self.node}):
            alive = await self.writer.execute("EXISTS", self.heartbeat_key(node))
            if int(alive):
                continue
            lock = await self.writer.execute(
                "SET", f"{self.prefix}reap:{node}", self.node, "NX", "PX", int(self.node_timeout * 1000)
            )
            if lock is not None:
                self.reap(node)

    def reap(self, node: str) -> None:
        """
        Node C{node} is dead: its members leave the room.
        """
        for member_id in [i for i in self.shadowed if self.node_of.get(i) == node]:
            self._apply_left(member_id)
        gone = [r for r in self.members.replica if self.node_of.get(r.id) == node]
        self.log.warn("node {node} is gone: {count} members leave", node=node, count=len(gone))
        for record in gone:
            if self.room is not None:
                self.room.leave(record, f"connection lost (server {node} is gone)")
            else:
                self.members.remove(record)

    def writer_up(self) -> None:
        """
        The writer's connection is (again) usable.
        """
        if not self._synced:
            if self._running and not self._loading:
                self._first_load()
            return
        self._since_up = self.clock.seconds()
        Deferred.fromCoroutine(self._resync()).addErrback(
            lambda f: self.log.failure("resynchronising with Redis failed", f)
        )

    def writer_down(self) -> None:
        self.fanout.release()
        if self._synced and self._running:
            self.log.error("lost the connection to Redis: serving this node's clients, reconnecting")

    def reader_up(self) -> None:
        self._read_next()

    async def _resync(self) -> None:
        epoch = await self.writer.execute("GET", self.prefix + "epoch")
        if epoch != self.epoch:
            self.log.error("Redis lost the room's state (restarted empty): writing this node's part again")
            if epoch is None:
                await self.writer.execute("SET", self.prefix + "epoch", os.urandom(8).hex(), "NX")
                epoch = await self.writer.execute("GET", self.prefix + "epoch")
            self.epoch = epoch
            self.last_id = "0-0"
            lost_remote = True
        else:
            lost_remote = False
        outbox, self._outbox = self._outbox, deque()
        lost, self._lost = self._lost, 0
        for command in outbox:
            self.send(*command)
        await self._heartbeat()
        # Our members again (idempotent), so a Redis that lost them has them.
        for record in list(self.members.replica):
            if self.node_of.get(record.id) == self.node:
                entry = self.entry("join", r=encode_record(record))
                clash = await self.script(
                    CLAIM,
                    [self.name_key(record.name), self.members_key, self.stream],
                    [record.id, self._stored(record), entry, STREAM_LENGTH, self.node],
                )
                if clash is not None:
                    self.log.error("{name} is taken on another node too", name=record.name)
        if lost_remote:
            self.bans.write()
            for member_id, bundle in self.keys.replica.items():
                if self.node_of.get(member_id) == self.node:
                    self.send("HSET", self.keys_key, member_id, bundle.encode())
        self.log.info(
            "reconnected to Redis: {sent} queued entries sent, {lost} lost", sent=len(outbox), lost=lost
        )
        if lost or lost_remote:
            text = (
                f"note: {lost} events from this server could not reach the other servers"
                if lost
                else "note: the shared store restarted: messages from other servers may be missing"
            )
            self.fanout.local.publish(Notice(self.clock.seconds(), text), EVERYONE)
        self._read_next()

    def _stored(self, record: MemberRecord) -> str:
        return dumps({**encode_record(record), "node": self.node})

    def local_ids(self) -> list[str]:
        return [i for i, node in self.node_of.items() if node == self.node]

    def drained(self) -> Deferred[None]:
        """
        Fires once what this node sent Redis is acknowledged (at once if
        Redis is unreachable: then it is reported as lost).
        """
        self.flush()
        if self._outbox:
            self.log.error("{count} entries never reached Redis", count=len(self._outbox))
        if not self.writer.connected:
            return succeed(None)
        return self.writer.execute("PING").addBoth(lambda _: None)

    def leave_local(self, reason: str) -> None:
        """
        This node shuts down: its members leave the room (their names are
        freed, the other nodes are told); the others are no longer served.
        """
        room = self.room
        if room is None:
            return
        for record in list(room.members):
            if self.node_of.get(record.id) == self.node:
                room.leave(record, reason, disconnect=True)
        self.flush()
        self.fanout.closing = True
        self.members.closing = True


def _pairs(flat: Any) -> Iterator[tuple[Any, Any]]:
    # HGETALL and stream fields come flat (txredisapi may make a dict).
    if isinstance(flat, dict):
        yield from flat.items()
        return
    items = list(flat or [])
    yield from zip(items[::2], items[1::2], strict=True)


class SharedMembers:
    """
    The L{chatroom.core.ports.MemberDirectory} of a shared room: reads from
    the replica, claims and renames through Redis.
    """

    def __init__(self, shared: SharedRoom) -> None:
        self.shared = shared
        self.replica = InMemoryMembers()
        self.closing = False
        self._ids = 0
        self._guests = 0
        self._touched: dict[str, float] = {}

    def new_id(self) -> str:
        self._ids += 1
        return f"{self.shared.node}.{self.shared.boot}.{self._ids}"

    def next_guest_number(self) -> int:
        # Each node counts guests in a lane of its own (its name picks it),
        # so two nodes do not hand out the same guestN at once: an event
        # about one node's guest1 could otherwise reach the other's new one.
        self._guests += 1
        return self._guests * GUEST_LANES + zlib.crc32(self.shared.node.encode()) % GUEST_LANES

    def _unreachable(self, failure: Failure | None = None) -> Deferred[MemberRecord | None]:
        if failure is not None:
            failure.trap(ConnectionError)
        return fail(ChatError(UNREACHABLE))

    def claim(self, record: MemberRecord) -> Deferred[MemberRecord | None]:
        shared = self.shared
        if not shared.writer.connected:
            return self._unreachable()
        local = self.replica.clash(record.name)
        if local is not None:
            return succeed(local)
        entry = shared.entry("join", r=encode_record(record))
        d = shared.script(
            CLAIM,
            [shared.name_key(record.name), shared.members_key, shared.stream],
            [record.id, shared._stored(record), entry, STREAM_LENGTH, shared.node],
        )

        def claimed(other: str | None) -> MemberRecord | None:
            if other is not None:
                return decode_record(loads(other))
            clash = self.replica.clash(record.name)
            if clash is not None:
                shared.shadow(clash)
            self.replica.claim(record)
            shared.node_of[record.id] = shared.node
            return None

        return d.addCallbacks(claimed, self._unreachable)

    def rename(self, record: MemberRecord, new_name: str) -> Deferred[MemberRecord | None]:
        shared = self.shared
        if not shared.writer.connected:
            return self._unreachable()
        local = self.replica.clash(new_name, record)
        if local is not None:
            return succeed(local)
        old_name = record.name
        entry = shared.entry("ren", id=record.id, name=new_name)
        stored = dumps({**encode_record(record), "name": new_name, "node": shared.node})
        d = shared.script(
            RENAME,
            [shared.name_key(new_name), shared.name_key(old_name), shared.members_key, shared.stream],
            [record.id, stored, entry, STREAM_LENGTH, shared.node],
        )

        def renamed(other: str | None) -> MemberRecord | None:
            if other is not None:
                return decode_record(loads(other))
            if record in self.replica and record.name == old_name:
                clash = self.replica.clash(new_name, record)
                if clash is not None:
                    shared.shadow(clash)
                self.replica.rename(record, new_name)
            return None

        return d.addCallbacks(renamed, self._unreachable)

    def remove(self, record: MemberRecord) -> None:
        if record not in self.replica:
            return
        self.replica.remove(record)
        shared = self.shared
        shared.node_of.pop(record.id, None)
        self._touched.pop(record.id, None)
        if self.closing:
            return
        shared.send(
            "EVAL",
            REMOVE,
            3,
            shared.name_key(record.name),
            shared.members_key,
            shared.stream,
            record.id,
            shared.entry("left", id=record.id),
            STREAM_LENGTH,
            shared.node,
        )

    def set_admin(self, record: MemberRecord, admin: bool) -> None:
        record.is_admin = admin
        self._changed(record)

    def _changed(self, record: MemberRecord) -> None:
        shared = self.shared
        node = shared.node_of.get(record.id, shared.node)
        stored = dumps({**encode_record(record), "node": node})
        shared.send(
            "EVAL",
            CHANGE,
            2,
            shared.members_key,
            shared.stream,
            record.id,
            stored,
            shared.entry("upd", r=encode_record(record)),
            STREAM_LENGTH,
            "1",
            shared.node,
        )

    def touch(self, record: MemberRecord, now: float) -> None:
        record.last_active = now
        # Other nodes' /whois idle times are right to within TOUCH_INTERVAL.
        if now - self._touched.get(record.id, 0.0) >= TOUCH_INTERVAL:
            self._touched[record.id] = now
            self._changed(record)

    def find(self, name: str) -> MemberRecord | None:
        return self.replica.find(name)

    def clash(self, name: str, ignore: MemberRecord | None = None) -> MemberRecord | None:
        return self.replica.clash(name, ignore)

    def get(self, member_id: str) -> MemberRecord | None:
        return self.replica.get(member_id)

    def __contains__(self, record: object) -> bool:
        return record in self.replica

    def __iter__(self) -> Iterator[MemberRecord]:
        return iter(self.replica)

    def __len__(self) -> int:
        return len(self.replica)


# The chat a node holds for its stream entry (see SharedFanOut).
_HELD = (ChatEvent, Sealed, GroupSealed)


class SharedFanOut:
    """
    The L{chatroom.core.ports.FanOut} of a shared room: this node's sessions
    at once, the other nodes through the stream.

    While members of other nodes are in the room, this node's chat reaches
    its own members when its stream entry is read back (or after
    L{HOLD_LIMIT}): so every node hands out the room's chat in the
    stream's order, and a member gets what every node said in a turn in
    one write instead of one for its own node's chat and one for the
    others'. Every other event first hands out the chat held before it.
    """

    def __init__(self, shared: SharedRoom) -> None:
        self.shared = shared
        self.local = LocalFanOut(shared.members.replica)
        self.closing = False
        self._local_ids: set[str] = set()
        # (the number of the XADD that carries it, event, audience, the
        # message id it was stored under)
        self._held: deque[tuple[int, Event, Audience, int | None]] = deque()
        self._expiry: IDelayedCall | None = None
        # The held event going out now, and its message id.
        self._releasing: tuple[Event | None, int | None] = (None, None)

    def subscribe(self, member_id: str, recipient: Recipient) -> None:
        # What it was said before the member came is in its replay, if anywhere.
        self.release()
        self._local_ids.add(member_id)
        self.local.subscribe(member_id, recipient)

    def unsubscribe(self, member_id: str) -> None:
        self._local_ids.discard(member_id)
        self.local.unsubscribe(member_id)

    def publish(self, event: Event, audience: Audience) -> None:
        shared = self.shared
        if self.closing:
            self.release()
            self.local.publish(event, audience)
            return
        observed = shared.observed(event)
        local = isinstance(audience, Members) and all(i in self._local_ids for i in audience.ids)
        if (
            not local
            and isinstance(event, _HELD)
            and len(shared.members.replica) > len(self._local_ids)
            and shared.relaying
        ):
            self._hold(shared.appends, event, audience)
        else:
            self.release()
            self.local.publish(event, audience)
        if local:
            if observed:
                shared.append("obs", e=encode_event(event))
            return
        item = {"k": "ev", "e": encode_event(event), "a": encode_audience(audience)}
        if observed:
            item["o"] = 1
        shared.add(item)

    def _hold(self, number: int, event: Event, audience: Audience) -> None:
        # Its id now, while the room can tell it: the room stored it just before.
        room = self.shared.room
        self._held.append((number, event, audience, room.message_id(event) if room is not None else None))
        if self._expiry is None:
            self._expiry = self.shared.clock.callLater(HOLD_LIMIT, self._expire, number)

    def _expire(self, number: int) -> None:
        # Once a HOLD_LIMIT, whatever was held a whole one goes out.
        self._expiry = None
        held = self._held
        if held and held[0][0] <= number:
            self.shared.log.warn(
                "this node's chat did not come back from Redis within {limit} s: delivered directly",
                limit=HOLD_LIMIT,
            )
            self.release(number)
        if held:
            self._expiry = self.shared.clock.callLater(HOLD_LIMIT, self._expire, held[-1][0])

    def release(self, number: int | None = None) -> None:
        """
        Hand this node's members the chat held for the XADDs up to
        C{number} (all of it if L{None}).
        """
        held = self._held
        publish = self.local.publish
        try:
            while held and (number is None or held[0][0] <= number):
                _, event, audience, id_ = held.popleft()
                self._releasing = (event, id_)
                publish(event, audience)
        finally:
            self._releasing = (None, None)

    def message_id(self, event: Event) -> int | None:
        """
        The message id of the held C{event} going out now.
        """
        releasing, id_ = self._releasing
        return id_ if releasing is event else None

    def stop(self) -> None:
        self.release()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def disconnect(self, member_id: str) -> None:
        if member_id in self._local_ids:
            self.release()
            self._local_ids.discard(member_id)
            self.local.disconnect(member_id)
        elif not self.closing:
            self.shared.append("disc", id=member_id)


class SharedBans(InMemoryBans):
    """
    The L{chatroom.core.ports.BanStore} of a shared room: the list lives in
    Redis (one document), every node keeps a copy, as the in-memory store
    keeps it; only saving differs.
    """

    def __init__(self, shared: SharedRoom) -> None:
        super().__init__()
        self.shared = shared

    def replace(self, document: Any) -> None:
        try:
            self.bans = BanList.from_json(document)
        except ValueError as e:
            self.shared.log.error("the shared ban list is broken, keeping ours: {error}", error=e)

    def save(self, now: float) -> Deferred[None]:
        connected = self.shared.writer.connected
        self.write(now)
        if not connected:
            return fail(OSError("Redis is unreachable; the change goes out when it is back"))
        return succeed(None)

    def write(self, now: float | None = None) -> None:
        shared = self.shared
        document = self.bans.to_json(shared.clock.seconds() if now is None else now)
        shared.send(
            "EVAL",
            CHANGE,
            2,
            shared.state_key,
            shared.stream,
            "bans",
            dumps(document),
            shared.entry("bans", bans=document),
            STREAM_LENGTH,
            "0",
            shared.node,
        )


class SharedKeys:
    """
    The E2E key directory (the port in L{chatroom.features.e2e}) of a shared
    room. Challenges stay on the node: a member asks for one and answers it
    on its own connection.
    """

    def __init__(self, shared: SharedRoom) -> None:
        self.shared = shared
        # The room's key bundles, as the daemon keeps them in one process.
        self.replica = InMemoryKeyDirectory()

    def apply_register(self, member_id: str, text: str) -> None:
        try:
            self.replica.register(member_id, KeyBundle.decode(text))
        except (E2EError, ChatError) as e:
            self.shared.log.warn("skipped a key bundle of {id}: {error}", id=member_id, error=str(e))

    def register(self, member_id: str, bundle: KeyBundle) -> None:
        self.replica.register(member_id, bundle)
        shared = self.shared
        text = bundle.encode()
        shared.send(
            "EVAL",
            CHANGE,
            2,
            shared.keys_key,
            shared.stream,
            member_id,
            text,
            shared.entry("key", id=member_id, b=text),
            STREAM_LENGTH,
            "0",
            shared.node,
        )

    def drop(self, member_id: str) -> bool:
        had = self.replica.drop(member_id)
        if had:
            shared = self.shared
            shared.send(
                "EVAL",
                CHANGE,
                2,
                shared.keys_key,
                shared.stream,
                member_id,
                "",
                shared.entry("unkey", id=member_id),
                STREAM_LENGTH,
                "0",
                shared.node,
            )
        return had

    def get(self, member_id: str) -> KeyBundle | None:
        return self.replica.get(member_id)

    def holder(self, session_id: bytes) -> str | None:
        return self.replica.holder(session_id)

    def items(self) -> list[tuple[str, KeyBundle]]:
        return self.replica.items()

    def set_challenge(self, member_id: str, challenge: bytes) -> None:
        self.replica.set_challenge(member_id, challenge)

    def take_challenge(self, member_id: str) -> bytes | None:
        return self.replica.take_challenge(member_id)
