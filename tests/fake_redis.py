"""
A Redis in the test process, for the shared-room store without a reactor:
the commands and the Lua scripts that L{chatroom.stores.redis.room} sends,
on plain dictionaries; XREAD answers at once when there are entries, else
when L{FakeRedis.pump} is called.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from chatroom.stores.redis import room as store


def _entry_key(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


class FakeRedis:
    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.stream: list[tuple[str, list[str]]] = []
        self.readers: list[tuple[str, Deferred[Any]]] = []
        self._seq = 0
        self._pumping = False
        # The nodes' clock: their appends go out at the end of a turn.
        self.clock: Clock | None = None

    def flush(self) -> None:
        """
        Lose everything, as a Redis restarted without persistence.
        """
        self.strings.clear()
        self.hashes.clear()
        self.stream.clear()
        # Its ids start again (a real one's follow its clock, which may be behind).
        self._seq = 0

    def pump(self) -> None:
        """
        Answer the blocked XREADs that have entries to read.
        """
        if self._pumping:
            return
        if self.clock is not None:
            self.clock.advance(0)
        self._pumping = True
        try:
            self._pump()
        finally:
            self._pumping = False

    def _pump(self) -> None:
        while any(self._after(last) for last, _ in self.readers):
            waiting, self.readers = self.readers, []
            for last, d in waiting:
                entries = self._after(last)
                if entries:
                    d.callback([["chatroom:events", entries]])
                else:
                    self.readers.append((last, d))

    def _after(self, last: str) -> list[tuple[str, list[str]]]:
        key = _entry_key(last)
        # Ids grow along the stream: the entries after C{last} are its tail.
        start = len(self.stream)
        while start > 0 and _entry_key(self.stream[start - 1][0]) > key:
            start -= 1
        return self.stream[start:]

    def _xadd(self, fields: list[str]) -> None:
        self._seq += 1
        self.stream.append((f"1-{self._seq}", fields))

    def execute(self, *args: Any) -> Any:
        name, rest = args[0], [str(a) for a in args[1:]]
        if name == "GET":
            return self.strings.get(rest[0])
        if name == "SET":
            key, value, *options = rest
            if "NX" in options and key in self.strings:
                return None
            self.strings[key] = value
            return "OK"
        if name == "DEL":
            return int(self.strings.pop(rest[0], None) is not None)
        if name == "EXISTS":
            return int(rest[0] in self.strings)
        if name == "HGETALL":
            flat: list[str] = []
            for field, value in self.hashes.get(rest[0], {}).items():
                flat += [field, value]
            return flat
        if name == "HGET":
            return self.hashes.get(rest[0], {}).get(rest[1])
        if name == "HSET":
            self.hashes.setdefault(rest[0], {})[rest[1]] = rest[2]
            return 1
        if name == "XADD":
            fields = rest[rest.index("*") + 1 :]
            assert fields[0] == "n" and fields[-2] == "d"
            self._xadd(fields)
            return f"1-{self._seq}"
        if name == "XREVRANGE":
            return [list(self.stream[-1])] if self.stream else []
        if name == "PING":
            return "PONG"
        if name == "EVAL":
            return self._eval(rest[0], int(rest[1]), rest[2 : 2 + int(rest[1])], rest[2 + int(rest[1]) :])
        raise AssertionError(f"unexpected command {args!r}")

    def _eval(self, script: str, count: int, keys: list[str], argv: list[str]) -> Any:
        if script in (store.CLAIM, store.RENAME):
            members = keys[1] if script == store.CLAIM else keys[2]
            owner = self.strings.get(keys[0])
            if owner is not None and owner != argv[0] and owner in self.hashes.get(members, {}):
                return self.hashes[members][owner]
            if script == store.RENAME and keys[0] != keys[1] and self.strings.get(keys[1]) == argv[0]:
                del self.strings[keys[1]]
            self.strings[keys[0]] = argv[0]
            self.hashes.setdefault(members, {})[argv[0]] = argv[1]
            self._xadd(["n", argv[4], "d", argv[2]])
            return None
        if script == store.REMOVE:
            if self.strings.get(keys[0]) == argv[0]:
                del self.strings[keys[0]]
            self.hashes.get(keys[1], {}).pop(argv[0], None)
            self._xadd(["n", argv[3], "d", argv[1]])
            return None
        if script == store.CHANGE:
            table = self.hashes.setdefault(keys[0], {})
            if argv[1] == "":
                table.pop(argv[0], None)
            elif argv[4] != "1" or argv[0] in table:
                table[argv[0]] = argv[1]
            self._xadd(["n", argv[5], "d", argv[2]])
            return None
        raise AssertionError("unknown script")


class FakeLink:
    """
    One connection to a L{FakeRedis}, which tests take down and up.
    """

    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.connected = True
        self.sent: list[tuple[Any, ...]] = []
        self.pending: list[Deferred[Any]] = []

    def down(self) -> None:
        """
        The connection is lost: blocked reads fail.
        """
        self.connected = False
        waiting, self.pending = self.pending, []
        self.redis.readers = [(last, d) for last, d in self.redis.readers if d not in waiting]
        for d in waiting:
            if not d.called:
                d.errback(ConnectionError("lost"))

    def execute(self, *args: Any) -> Deferred[Any]:
        if not self.connected:
            return fail(ConnectionError("not connected"))
        self.sent.append(args)
        if args[0] == "XREAD":
            last = str(args[-1])
            d: Deferred[Any] = Deferred()
            self.pending.append(d)
            self.redis.readers.append((last, d))
            self.redis.pump()
            return d
        return succeed(self.redis.execute(*args))
