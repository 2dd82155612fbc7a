"""
What one delivery costs the daemon, in instructions: bench/delivery.py's
room, counted by valgrind's cachegrind instead of timed. On a shared
machine CPU times move by 10-30% from run to run; instruction counts move
by well under 1%, so two trees (or two transports) compare in one run.

    .venv/bin/python bench/instructions.py [--members 100] [--only line,irc,line+history,irc+history]
                                           [--nodes 2 | --redis]

Each setup runs twice under cachegrind, with C{--messages} 40 and 840;
the difference is what 800 messages cost, setup and start-up aside. It
prints instructions per delivery (one message to one member). Needs
valgrind (Debian's package; .ci/bootstrap --test installs it). Like
bench/delivery.py it imports C{chatroom} from C{PYTHONPATH} if set.

With C{--redis} each setup runs as one node and as two sharing one room
through the in-process Redis (bench/delivery.py's C{--shared} and
C{--nodes 2}: bench/fanout.py's redis1 and redis2, without the kernel,
the clients and the time the processes share a core), and it prints the
ratio bench/fanout.py prints for them: deliveries per instruction, two
nodes against one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

DELIVERY = Path(__file__).resolve().parent / "delivery.py"
FEW, MANY = 40, 840
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions(setup: str, members: int, messages: int, nodes: int = 1, shared: bool = False) -> int:
    """
    The instructions one run of C{setup} with C{messages} takes, start-up included.
    """
    run = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            str(DELIVERY),
            "--once",
            "--only",
            setup,
            "--members",
            str(members),
            "--messages",
            str(messages),
            "--nodes",
            str(nodes),
            *(["--shared"] if shared else []),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    match = _REFS.search(run.stderr)
    if run.returncode != 0 or match is None:
        raise SystemExit(f"{setup}: valgrind failed:\n{run.stdout}{run.stderr}")
    return int(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--only", default="line,irc,line+history,irc+history")
    parser.add_argument(
        "--nodes", type=int, default=1, help="bench/delivery.py's --nodes: that many rooms sharing one"
    )
    parser.add_argument(
        "--redis", action="store_true", help="one node and two through the in-process Redis, and their ratio"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    deliveries = (MANY - FEW) * args.members

    def per_delivery(setup: str, nodes: int, shared: bool = False) -> float:
        many = instructions(setup, args.members, MANY, nodes, shared)
        return (many - instructions(setup, args.members, FEW, nodes, shared)) / deliveries

    for setup in args.only.split(","):
        if args.redis:
            one, two = per_delivery(setup, 1, shared=True), per_delivery(setup, 2)
            print(
                f"{setup}: {one:.0f} instructions per delivery on one node, {two:.0f} on two"
                f" ({args.members} members); two nodes / one node: deliveries per instruction"
                f" x{one / two:.2f}",
                flush=True,
            )
            continue
        figure = f"{per_delivery(setup, args.nodes):.0f} instructions per delivery ({args.members} members)"
        print(f"{setup}: {figure}", flush=True)


if __name__ == "__main__":
    main()
