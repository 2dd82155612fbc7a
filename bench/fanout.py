"""
Fan-out benchmark: chatroom side by side with ngircd and Twisted's IRC server.
chatroom runs twice: with its line protocol (chatroom) and with its IRC
listener (chatroom-irc, over TLS like ngircd), under the same load.

    .venv/bin/python bench/fanout.py [--scenarios s1,s2,idle1000,idle5000]
                                     [--servers chatroom,chatroom-irc,ngircd,words] [--smoke]
                                     [--chatroom-args '--history 0 --no-tls-fast-path']
    .venv/bin/python bench/fanout.py --scenarios s1,s2 --servers redis1,redis2 [--unpinned] [--rounds 5]

The second form is the multi-process mode: chatroom with --redis as one
process, then as two processes on one port (--reuse-port), with the clients
spread over them by the kernel; about half the deliveries cross nodes. All
the servers' processes share one core unless --unpinned lets the kernel
spread them (and the load generator) over every core.

For every scenario and server it starts the server (on 127.0.0.1, with a
fresh throwaway CA and certificate, pinned to one core), runs the compiled
load generator (bench/loadgen.c, pinned to the other core) against it, and
prints every server's figures, then the ratios of chatroom to the others.
With --rounds N the servers run N times, taking turns, and the ratios'
medians follow: on a shared machine the speed drifts over minutes, and
servers measured side by side, again and again, compare better than one
run of each. Nothing here asserts a speed: the figures are for people to
read.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pwd
import re
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from chatroom.tls import create_local_ca  # noqa: E402

START_TIMEOUT = 30.0
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    senders: int = 0
    window: int = 0
    rate: float = 0.0
    duration: float = 0.0
    # More arguments for the chatroom daemon (--chatroom-args).
    daemon_args: tuple[str, ...] = ()
    # With --spread: node i of redis1/redis2 on core node_cores[i] alone.
    node_cores: tuple[int, ...] = ()

    @property
    def idle(self) -> bool:
        return self.senders == 0

    def describe(self) -> str:
        if self.idle:
            return f"{self.clients} idle TLS clients, memory only"
        load = f"closed loop W={self.window}" if self.window else f"{self.rate:g} messages/s in total"
        extra = f"; chatroom {' '.join(self.daemon_args)}" if self.daemon_args else ""
        return f"{self.clients} clients, {self.senders} senders, {load}, {self.duration:g} s{extra}"


SCENARIOS = {
    "s1": Scenario("s1", 100, senders=10, window=32, duration=20),
    "s2": Scenario("s2", 1000, senders=10, rate=50, duration=20),
    "idle1000": Scenario("idle1000", 1000),
    "idle5000": Scenario("idle5000", 5000),
}
# Small enough for CI: the whole run takes a few seconds per server.
SMOKE = {
    "s1": Scenario("s1", 10, senders=2, window=4, duration=1),
    "s2": Scenario("s2", 20, senders=2, rate=20, duration=1),
    "idle1000": Scenario("idle1000", 20),
}


@dataclass
class Running:
    """
    A started server: its process and the TLS port it listens on.
    """

    process: subprocess.Popen[bytes]
    port: int
    proto: str
    # More processes of the same server (nodes sharing one room), and
    # helpers (redis-server) whose CPU is counted apart.
    others: tuple[subprocess.Popen[bytes], ...] = ()
    helpers: tuple[subprocess.Popen[bytes], ...] = ()

    @property
    def processes(self) -> tuple[subprocess.Popen[bytes], ...]:
        return (self.process, *self.others)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(check: Callable[[], int | None], process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not start; its log:\n{log.read_text(errors='replace')}")


def port_open(port: int) -> Callable[[], int | None]:
    def check() -> int | None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return None
        return port

    return check


def pinned(cpu: int | None) -> Callable[[], None]:
    """
    A preexec function: pin the child to C{cpu} (like taskset) and raise its
    open-file limit to the hard limit, for thousands of connections.
    """

    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


def start_chatroom(
    work: Path,
    certs: Path,
    cpu: int | None,
    scenario: Scenario,
    extra: tuple[str, ...] = (),
    port: int = 0,
    irc: bool = False,
) -> Running:
    log = work / "chatroom.log"
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    command += ["--pidfile=", "-n", "chatroom", "--port", str(port), "--interface", "127.0.0.1", *extra]
    if irc:
        # The load generator joins #bench, as on the IRC servers.
        command += ["--listen", "irc:ssl:0:interface=127.0.0.1", "--irc-channel", "#bench"]
    command += ["--cert", str(certs / "server.pem"), "--key", str(certs / "server-key.pem")]
    command += ["--state", str(work / "state")]
    # Flood control off, as for ngircd (MaxPenaltyTime = 0): lines, bytes and
    # answers; the other limits stay.
    command += ["--flood-rate", "0", "--byte-rate", "0", "--address-byte-rate", "0", "--answer-rate", "0"]
    # The history is on, as by default, unless the arguments say otherwise.
    command += list(scenario.daemon_args)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(cpu)
        )
    pattern = re.compile(r"chatroom listening on 127\.0\.0\.1:(\d+)")

    def check() -> int | None:
        match = pattern.search(log.read_text(errors="replace"))
        return int(match.group(1)) if match else None

    return Running(process, wait_for(check, process, log), "irc" if irc else "chat")


def start_chatroom_irc(work: Path, certs: Path, cpu: int | None, scenario: Scenario) -> Running:
    return start_chatroom(work, certs, cpu, scenario, irc=True)


def start_redis(work: Path, cpu: int | None) -> tuple[subprocess.Popen[bytes], int]:
    """
    A redis-server without persistence for the nodes of a shared room.
    """
    port = free_port()
    log = work / "redis.log"
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(work), "--save", ""]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(cpu))
    wait_for(port_open(port), process, log)
    return process, port


def start_nodes(count: int) -> Callable[[Path, Path, int | None, Scenario], Running]:
    """
    C{count} chatroom processes sharing one room through Redis and one
    port (SO_REUSEPORT: the kernel spreads the clients over them).
    """

    def start(work: Path, certs: Path, cpu: int | None, scenario: Scenario) -> Running:
        redis, redis_port = start_redis(work, cpu)
        port = free_port()
        started: list[Running] = []
        try:
            for index in range(count):
                node = work / f"node{index}"
                node.mkdir()
                flags = ("--redis", f"redis://127.0.0.1:{redis_port}/0", "--node-name", f"n{index}")
                cores = scenario.node_cores
                core = cores[index % len(cores)] if cores else cpu
                started.append(start_chatroom(node, certs, core, scenario, (*flags, "--reuse-port"), port))
        except BaseException:
            for running_node in started:
                running_node.process.kill()
            redis.kill()
            raise
        first, *rest = started
        return Running(first.process, port, "chat", tuple(r.process for r in rest), (redis,))

    return start


NGIRCD_CONF = """\
[Global]
    Name = bench.localhost
    Info = chatroom benchmark reference
    Listen = 127.0.0.1
    Ports = {plain_port}
    PidFile = {work}/ngircd.pid
    MotdPhrase = benchmark
    Password = bench
{user}
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxPenaltyTime = 0
    PingTimeout = 600
    PongTimeout = 600
    IdleTimeout = 0
[Options]
    DNS = no
    Ident = no
    PAM = no
[SSL]
    CertFile = {certs}/server.pem
    KeyFile = {certs}/server-key.pem
    Ports = {tls_port}
"""


def start_ngircd(work: Path, certs: Path, cpu: int | None, scenario: Scenario) -> Running:
    binary = shutil.which("ngircd") or "/usr/sbin/ngircd"
    user = ""
    if os.geteuid() == 0:
        # ngircd refuses to run as root without an account to drop to.
        nobody = pwd.getpwnam("nobody")
        user = f"    ServerUID = {nobody.pw_uid}\n    ServerGID = {nobody.pw_gid}"
        for path in (work, certs, *certs.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
    tls_port = free_port()
    conf = work / "ngircd.conf"
    conf.write_text(
        NGIRCD_CONF.format(plain_port=free_port(), tls_port=tls_port, work=work, certs=certs, user=user)
    )
    log = work / "ngircd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-n", "-f", str(conf)], stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(cpu)
        )
    return Running(process, wait_for(port_open(tls_port), process, log), "irc")


def start_words(work: Path, certs: Path, cpu: int | None, scenario: Scenario) -> Running:
    port = free_port()
    env = dict(
        os.environ,
        BENCH_PORT=str(port),
        BENCH_CERT=str(certs / "server.pem"),
        BENCH_KEY=str(certs / "server-key.pem"),
        BENCH_USERS=str(scenario.clients),
    )
    log = work / "words.log"
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    command += ["--pidfile=", "-n", "-y", str(HERE / "words.tac")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(cpu)
        )
    return Running(process, wait_for(port_open(port), process, log), "irc")


SERVERS: dict[str, Callable[[Path, Path, int | None, Scenario], Running]] = {
    "chatroom": start_chatroom,
    "chatroom-irc": start_chatroom_irc,
    "ngircd": start_ngircd,
    "words": start_words,
    # One room through Redis: one node, and two nodes on one port.
    "redis1": start_nodes(1),
    "redis2": start_nodes(2),
}
DEFAULT_SERVERS = "chatroom,chatroom-irc,ngircd,words"


@contextmanager
def running(
    name: str,
    work: Path,
    certs: Path,
    cpu: int | None,
    scenario: Scenario,
) -> Iterator[Running]:
    server = SERVERS[name](work, certs, cpu, scenario)
    try:
        yield server
    finally:
        for process in (*server.processes, *server.helpers):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS


def switches(pid: int) -> int:
    # Context switches so far, voluntary and not, of every thread.
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        total += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", status.read_text()))
    return total


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def build_loadgen(work: Path) -> Path:
    binary = work / "loadgen"
    compiler = os.environ.get("CC", "cc")
    subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(HERE / "loadgen.c"), "-lssl", "-lcrypto"], check=True
    )
    return binary


def read_line(stream: IO[str], process: subprocess.Popen[str], prefix: str) -> str:
    """
    The next line from the load generator that starts with C{prefix}.
    """
    for line in stream:
        if line.startswith(prefix):
            return line
    process.wait(timeout=15)
    raise RuntimeError(f"the load generator stopped (exit {process.returncode}) before {prefix!r}")


def parse_figures(line: str) -> dict[str, float]:
    """
    The C{key=value} figures of one line from the load generator.
    """
    return {key: float(value) for key, value in (pair.split("=") for pair in line.split()[1:])}


def measure(
    loadgen: Path, server: Running, ca: Path, scenario: Scenario, cpu: int | None, profile: Path | None = None
) -> dict[str, float]:
    """
    Run one scenario against one started server; return its figures.
    """
    pid = server.process.pid
    time.sleep(0.5)  # let the server settle before its baseline memory
    figures: dict[str, float] = {"rss_base_kb": rss_bytes(pid) / 1024}
    command = [str(loadgen), "--port", str(server.port), "--ca", str(ca), "--proto", server.proto]
    command += ["--clients", str(scenario.clients)]
    if scenario.idle:
        command += ["--idle"]
    else:
        command += ["--senders", str(scenario.senders), "--duration", str(scenario.duration)]
        command += ["--window", str(scenario.window)] if scenario.window else ["--rate", str(scenario.rate)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpu)
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        ready = read_line(process.stdout, process, "ready")
        figures.update(parse_figures(ready))
        time.sleep(1.0)  # let join announcements drain before measuring memory
        figures["rss_idle_kb"] = rss_bytes(pid) / 1024
        figures["rss_per_conn_kb"] = (figures["rss_idle_kb"] - figures["rss_base_kb"]) / scenario.clients
        profiler = None
        if profile is not None and not scenario.idle:
            # Sampled from the load generator's core; a flame graph for the window.
            spy = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw"]
            profiler = subprocess.Popen(
                [*spy, "--duration", str(int(scenario.duration)), "--output", str(profile)],
                stdout=subprocess.DEVNULL,
                preexec_fn=pinned(cpu),
            )
        pids = [p.pid for p in server.processes]
        helpers = [p.pid for p in server.helpers]
        cpu_before = sum(map(cpu_seconds, pids))
        switches_before = sum(map(switches, pids))
        helpers_before = sum(map(cpu_seconds, helpers))
        started = time.monotonic()
        process.stdin.write("go\n")
        process.stdin.flush()
        if scenario.idle:
            process.wait(timeout=30)
            return figures
        read_line(process.stdout, process, "stop")
        elapsed = time.monotonic() - started
        figures["server_cpu"] = (sum(map(cpu_seconds, pids)) - cpu_before) / elapsed
        switched = sum(map(switches, pids)) - switches_before
        if helpers:
            figures["redis_cpu"] = (sum(map(cpu_seconds, helpers)) - helpers_before) / elapsed
        figures["rss_load_kb"] = rss_bytes(pid) / 1024
        figures.update(parse_figures(read_line(process.stdout, process, "result")))
        if figures["deliveries"]:
            figures["us_per_delivery"] = figures["server_cpu"] * elapsed * 1e6 / figures["deliveries"]
            figures["switches_per_k"] = switched * 1000 / figures["deliveries"]
            if figures.get("reads"):
                # About one TLS record a read: how many lines one server write carries.
                figures["lines_per_read"] = figures["deliveries"] / figures["reads"]
            if figures["server_cpu"]:
                # Zero in a tiny run: CPU time is counted in clock ticks.
                figures["deliveries_per_cpu_s"] = figures["deliveries"] / (figures["server_cpu"] * elapsed)
        process.wait(timeout=30)
        if profiler is not None:
            profiler.wait(timeout=60)
        return figures
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)


COLUMNS = [
    ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("max ms", "max_ms", "{:.2f}"),
    ("lost", "lost", "{:.0f}"),
    ("reord", "reordered", "{:.0f}"),
    ("dup", "duplicated", "{:.0f}"),
    ("srv CPU", "server_cpu", "{:.0%}"),
    ("redis CPU", "redis_cpu", "{:.0%}"),
    ("deliv/CPU-s", "deliveries_per_cpu_s", "{:,.0f}"),
    ("us/deliv", "us_per_delivery", "{:.2f}"),
    ("cs/1k deliv", "switches_per_k", "{:.1f}"),
    ("lines/read", "lines_per_read", "{:.1f}"),
    ("gen CPU", "loadgen_cpu", "{:.0%}"),
    ("connect s", "connect_s", "{:.2f}"),
    ("reconnects", "retries", "{:.0f}"),
    ("RSS idle MB", "rss_idle_kb", "{:.1f}"),
    ("KB/conn", "rss_per_conn_kb", "{:.1f}"),
    ("RSS load MB", "rss_load_kb", "{:.1f}"),
]
IDLE_COLUMNS = ["connect_s", "retries", "rss_idle_kb", "rss_per_conn_kb"]
RATIOS = ["deliveries_per_s", "us_per_delivery", "p99_ms", "rss_per_conn_kb"]
LEGEND = """\
deliveries/s: messages received by clients other than the sender, per second of sending;
p50/p99/max: send to receive, per delivery; lost/reord/dup: must be 0;
srv CPU: the server's CPU (100% = one core; all its processes); redis CPU: redis-server's, apart;
deliv/CPU-s: deliveries per second of server CPU; us/deliv: server CPU microseconds per delivery;
redis1/redis2: chatroom with --redis, one process, and two on one port (--reuse-port);
cs/1k deliv: context switches of the server's processes and threads per 1000 deliveries;
lines/read: deliveries per read of the load generator (about one TLS record: one server write);
gen CPU: the load generator's own CPU (near 100% would make it the bottleneck);
connect s: TLS connect and join of all clients; reconnects: connections the server reset while
busy and the load generator made again; KB/conn: RSS added per idle connection."""


def show(scenario: Scenario, results: dict[str, dict[str, float]]) -> dict[str, float]:
    """
    Print C{results} and their ratios; return the ratios, by what they compare.
    """
    columns = [c for c in COLUMNS if not scenario.idle or c[1] in IDLE_COLUMNS]
    print(f"\n== {scenario.name}: {scenario.describe()}")
    header = f"{'server':<13}" + "".join(f"{title:>13}" for title, _, _ in columns)
    print(header)
    for server, figures in results.items():
        cells = []
        for _, key, fmt in columns:
            value = figures.get(key)
            if value is not None and key.endswith("_kb") and key != "rss_per_conn_kb":
                value /= 1024
            cells.append(fmt.format(value) if value is not None else "-")
        print(f"{server:<13}" + "".join(f"{cell:>13}" for cell in cells))
    ratios = compare(results)
    for line in ratio_lines(ratios):
        print(line)
    return ratios


def compare(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """
    The ratios of one run: two nodes to one, and chatroom to each reference.
    """
    ratios: dict[str, float] = {}
    one, two = results.get("redis1"), results.get("redis2")
    if one and two:
        for key in ("deliveries_per_cpu_s", "p99_ms"):
            if one.get(key) and two.get(key):
                ratios[f"redis2/redis1 {key}"] = two[key] / one[key]
    for name in ("chatroom", "chatroom-irc"):
        ours = results.get(name)
        if ours is None:
            continue
        for other, figures in results.items():
            if other.startswith(("chatroom", "redis")):
                continue
            for key in RATIOS:
                if key in ours and figures.get(key):
                    ratios[f"{name}/{other} {key}"] = ours[key] / figures[key]
    return ratios


def ratio_lines(ratios: dict[str, float], every: dict[str, list[float]] | None = None) -> list[str]:
    """
    The ratios as lines; with C{every}, as medians, each run's figure after.
    """

    def cell(key: str) -> str:
        if key not in ratios:
            return "-"
        runs = f" ({' '.join(f'{v:.2f}' for v in every[key])})" if every else ""
        return f"x{ratios[key]:.2f}{runs}"

    lines = []
    if any(key.startswith("redis2/") for key in ratios):
        lines.append(
            "two nodes / one node: deliveries per server CPU-second"
            f" {cell('redis2/redis1 deliveries_per_cpu_s')} (target >= 0.85),"
            f" p99 {cell('redis2/redis1 p99_ms')} (target < 2)"
        )
    pairs = dict.fromkeys(key.split(" ")[0] for key in ratios if not key.startswith("redis2/"))
    for pair in pairs:
        parts = [f"{key} {cell(f'{pair} {key}')}" for key in RATIOS if f"{pair} {key}" in ratios]
        lines.append(f"{pair.replace('/', ' / ')}: " + ", ".join(parts))
    return lines


def cpus() -> tuple[int | None, int | None]:
    """
    One core for the server and another for the load generator, when there are two.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        return available[0], available[1]
    return None, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenarios", default="s1,s2,idle1000,idle5000", help="comma-separated, of: " + ", ".join(SCENARIOS)
    )
    parser.add_argument(
        "--servers", default=DEFAULT_SERVERS, help="comma-separated, of: " + ", ".join(SERVERS)
    )
    parser.add_argument("--duration", type=float, help="override every load scenario's duration, seconds")
    parser.add_argument(
        "--profile", type=Path, help="directory for py-spy profiles of chatroom (py-spy must be on PATH)"
    )
    parser.add_argument(
        "--chatroom-args",
        default="",
        help="more arguments for the chatroom daemon, one string, e.g. '--history 0' (history off)"
        " or --chatroom-args=--no-tls-fast-path (Twisted's public TLS path)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny scenarios, for CI: checks it runs, not speed"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the servers this many times, taking turns; print the medians",
    )
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="pin nothing: the kernel spreads the servers and the load generator over the cores"
        " (for redis2, whose nodes then need not share one core)",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="redis1/redis2: each node pinned to a core of its own (node i to core i), redis-server"
        " and the load generator unpinned: as where every process has its core",
    )
    args = parser.parse_args(argv)
    table = SMOKE if args.smoke else SCENARIOS
    names = [n for n in args.scenarios.split(",") if n in table]
    servers = args.servers.split(",")
    unknown = [s for s in servers if s not in SERVERS] + [
        n for n in args.scenarios.split(",") if n not in SCENARIOS
    ]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    server_cpu, loadgen_cpu = (None, None) if args.unpinned or args.spread else cpus()
    node_cores = tuple(sorted(os.sched_getaffinity(0))) if args.spread else ()
    if node_cores:
        print(f"each node on a core of its own ({', '.join(map(str, node_cores))}); 127.0.0.1 only")
    elif server_cpu is None:
        print("nothing pinned: the kernel places the servers and the load generator; 127.0.0.1 only")
    else:
        # A shared room's nodes and its redis-server too: two nodes get the one core one node has.
        print(
            f"every server process on core {server_cpu}, the load generator on core {loadgen_cpu};"
            " 127.0.0.1 only"
        )
    print(LEGEND)
    failed = False
    with tempfile.TemporaryDirectory(prefix="chatroom-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        certs = root / "certs"
        create_local_ca(certs, datetime.datetime.now(datetime.UTC))
        loadgen = build_loadgen(root)
        for name in names:
            scenario = table[name]
            if args.duration and not scenario.idle:
                scenario = replace(scenario, duration=args.duration)
            if node_cores:
                scenario = replace(scenario, node_cores=node_cores)
            if args.chatroom_args:
                scenario = replace(scenario, daemon_args=tuple(shlex.split(args.chatroom_args)))
            every: dict[str, list[float]] = {}
            for round_ in range(max(1, args.rounds)):
                results: dict[str, dict[str, float]] = {}
                for server in servers:
                    work = root / f"{name}-{server}-{round_}"
                    work.mkdir()
                    try:
                        with running(server, work, certs, server_cpu, scenario) as started:
                            profile = None
                            if args.profile is not None and server.startswith("chatroom"):
                                args.profile.mkdir(parents=True, exist_ok=True)
                                suffix = f"-{round_}" if args.rounds > 1 else ""
                                profile = (args.profile / f"{name}-{server}{suffix}.txt").resolve()
                            results[server] = measure(
                                loadgen, started, certs / "ca.pem", scenario, loadgen_cpu, profile
                            )
                    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                        print(f"{server} failed in {name}: {e}", file=sys.stderr)
                        for log in work.glob("*.log"):
                            lines = log.read_text(errors="replace").splitlines()
                            tail = lines[-15:]
                            print(f"the end of {log.name}:", *tail, sep="\n    ", file=sys.stderr)
                        failed = True
                for key, value in show(scenario, results).items():
                    every.setdefault(key, []).append(value)
                for figures in results.values():
                    if any(figures.get(key) for key in ("lost", "reordered", "duplicated")):
                        failed = True
            if args.rounds > 1 and every:
                print(f"\n== {name}: medians of {args.rounds} rounds (each round's figure in brackets)")
                medians = {key: statistics.median(values) for key, values in every.items()}
                for line in ratio_lines(medians, every):
                    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
