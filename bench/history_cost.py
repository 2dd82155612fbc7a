"""
What storing the message history costs per message, in-process.

    .venv/bin/python bench/history_cost.py [--messages 100000] [--per-turn 50]

It appends messages to the SQLite history store in a temporary file, as
the history feature does for chat, ending a "turn" every C{--per-turn}
messages on a fake clock, and prints the CPU time per message: all of it
(writes run inline), and the share left on the reactor thread when the
writes run on the store's own thread. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from twisted.internet.defer import Deferred, maybeDeferred, succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402

from chatroom.core.events import HistoryKind  # noqa: E402
from chatroom.stores.sqlite import WRITE_INTERVAL, open_history  # noqa: E402


def run(
    directory: Path,
    name: str,
    runner: Callable[[Callable[[], Any]], Deferred[Any]],
    messages: int,
    per_turn: int,
) -> float:
    """
    Microseconds of this thread's CPU per message appended.
    """
    clock = Clock()
    clock.advance(1_800_000_000)
    store = open_history(directory / name, clock, runner, 10_000, 30 * 86400, 50)
    started = time.thread_time()
    for n in range(messages):
        store.append(
            clock.seconds(), HistoryKind.SAID, "sender3", f"message number {n} from the load generator"
        )
        if n % per_turn == 0:
            # One turn of a busy room: a few milliseconds.
            clock.advance(WRITE_INTERVAL / 10)
    store.flush(now=True)
    used = time.thread_time() - started
    store.close()
    return used / messages * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--per-turn", type=int, default=50, help="messages per reactor turn")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chatroom-history-") as tmp:
        directory = Path(tmp)
        inline = run(directory, "inline.sqlite3", maybeDeferred, args.messages, args.per_turn)
        pool = ThreadPool(1, 1, "history")
        pool.start()

        def in_thread(work: Callable[[], Any]) -> Deferred[Any]:
            # Taken as done at once: only the reactor thread's share counts
            # here (the pool runs the writes in order, as the daemon's does).
            pool.callInThread(work)
            return succeed(None)

        try:
            reactor_share = run(directory, "thread.sqlite3", in_thread, args.messages, args.per_turn)
        finally:
            pool.stop()
    print(f"{args.messages} messages, {args.per_turn} per turn, the newest 10,000 kept")
    print(f"all CPU per message (writes inline):        {inline:6.2f} us")
    print(f"reactor thread's CPU (writes on a thread):  {reactor_share:6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
