"""
Start the real daemon, C{twistd -n chatroom}, as a subprocess for end-to-end tests.

The daemon runs this checkout's source (the repository root goes on
C{PYTHONPATH}, so C{twisted/plugins/} here is found) on 127.0.0.1 with
port 0, in a temporary directory that holds its certificates and state.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from chatroom.wire import ServerLine, parse_line
from tests.processes import stop_process

REPO = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(rb"chatroom listening on 127\.0\.0\.1:(\d+) \((\w+)\)")
START_TIMEOUT = 30.0


@dataclass
class Daemon:
    """
    A running daemon: its port, its CA file and what it has logged so far.
    """

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    output: bytearray = field(default_factory=bytearray)
    reader: threading.Thread | None = None
    clients: list[LineClient] = field(default_factory=list)
    # Every listener's port by transport kind, as the daemon logs them.
    ports: dict[str, int] = field(default_factory=dict)
    listening: threading.Condition = field(default_factory=threading.Condition)

    def port_of(self, kind: str, timeout: float = START_TIMEOUT) -> int:
        """
        The port of the daemon's C{kind} listener, once it has logged it.
        """
        with self.listening:
            if not self.listening.wait_for(lambda: kind in self.ports, timeout):
                raise AssertionError(f"the daemon never listened with {kind}")
        return self.ports[kind]

    @property
    def ca_path(self) -> Path:
        return self.directory / "certs" / "ca.pem"

    def connect(self, timeout: float = 10.0) -> LineClient:
        """
        Open a verified TLS connection as a new client.
        """
        client = LineClient.open("127.0.0.1", self.port, self.ca_path, timeout)
        self.clients.append(client)
        return client

    def wait_for_log(self, text: str, client: LineClient, rounds: int = 200) -> None:
        """
        Wait until the daemon has logged C{text}, using round trips of
        C{/help me} through C{client} as the clock, never sleeps.
        """
        for _ in range(rounds):
            if text.encode() in self.output:
                return
            client.send("/help me")
            client.read_until(lambda raw: b" help * :" in raw)
        raise AssertionError(f"the daemon never logged {text!r}")

    def stop(self) -> int:
        """
        Close the clients, stop the daemon with SIGTERM and return its exit
        code; L{output} then holds everything it wrote.
        """
        for client in self.clients:
            client.close()
        code = stop_process(self.process)
        if self.reader is not None:
            self.reader.join(timeout=15)
        return code


def daemon_env() -> dict[str, str]:
    """
    The environment that makes C{twistd} load this checkout's chatroom.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def daemon_command(*args: str) -> list[str]:
    """
    The command line that runs the daemon on 127.0.0.1, any free port.
    """
    return [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "--pidfile=",
        "-n",
        "chatroom",
        "--port",
        "0",
        "--interface",
        "127.0.0.1",
        *args,
    ]


@contextmanager
def running_daemon(directory: Path, *args: str) -> Iterator[Daemon]:
    """
    Run the daemon in C{directory} until the block ends.
    """
    process = subprocess.Popen(
        daemon_command(*args),
        cwd=directory,
        env=daemon_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = bytearray()
    found = threading.Event()
    port_holder: list[int] = []
    ports: dict[str, int] = {}
    listening = threading.Condition()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.extend(line)
            match = _LISTENING.search(line)
            if match:
                with listening:
                    ports.setdefault(match.group(2).decode(), int(match.group(1)))
                    listening.notify_all()
            if match and match.group(2) == b"line" and not port_holder:
                port_holder.append(int(match.group(1)))
                found.set()
        found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    found.wait(START_TIMEOUT)
    if not port_holder:
        process.kill()
        process.wait(timeout=15)
        raise RuntimeError("the daemon did not start:\n" + output.decode(errors="replace"))
    daemon = Daemon(process, port_holder[0], directory, output, reader, ports=ports, listening=listening)
    try:
        yield daemon
    finally:
        daemon.stop()
        reader.join(timeout=15)


class LineClient:
    """
    A blocking TLS line client for tests, with a deadline on every read.
    """

    def __init__(self, sock: ssl.SSLSocket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._buffer = b""

    @classmethod
    def open(cls, host: str, port: int, ca_path: Path, timeout: float = 10.0) -> LineClient:
        context = ssl.create_default_context(cafile=str(ca_path))
        raw = socket.create_connection((host, port), timeout=timeout)
        sock = context.wrap_socket(raw, server_hostname="localhost")
        return cls(sock, timeout)

    def send(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.sock.sendall(data + b"\n")

    def read_line(self) -> bytes:
        """
        The next line, without its ending.

        @raise TimeoutError: If none comes before the deadline.
        @raise ConnectionError: If the server closes the connection.
        """
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no line from the server in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.rstrip(b"\r")

    def read_until(self, predicate: object) -> list[bytes]:
        """
        Read lines until one satisfies C{predicate}; return all read.
        """
        assert callable(predicate)
        lines: list[bytes] = []
        while True:
            line = self.read_line()
            lines.append(line)
            if predicate(line):
                return lines

    def read_kind(self, kind: str, *args: str) -> list[ServerLine]:
        """
        Read lines up to and including the next one of C{kind} whose
        arguments start with C{args}; return all read, parsed.
        """
        return [parse_line(raw) for raw in self.read_until(kind_is(kind, *args))]

    def join_as(self, name: str) -> LineClient:
        """
        Wait until this new client has joined, then take C{name}.
        """
        self.read_kind("list")
        self.send(f"/nick {name}")
        self.read_kind("rename", name)
        return self

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()


def kind_is(kind: str, *args: str) -> Callable[[bytes], bool]:
    """
    A predicate for L{LineClient.read_until}: a line of C{kind} whose
    arguments start with C{args}.
    """

    def check(raw: bytes) -> bool:
        line = parse_line(raw)
        return line.kind == kind and line.args[: len(args)] == args

    return check
