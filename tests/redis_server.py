"""
A real C{redis-server} for tests, on 127.0.0.1 with a free port and its
own directory; started and stopped by the tests themselves.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.processes import stop_process

START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """
    One redis-server process; L{kill} and L{start} again keep its port.
    """

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    # With TLS only: the directory holding ca.pem, server.pem, server-key.pem.
    certs: Path | None = None

    @property
    def url(self) -> str:
        if self.certs is not None:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed (.ci/bootstrap --test installs it)"
        listen = ["--port", str(self.port)]
        if self.certs is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            listen += ["--tls-cert-file", str(self.certs / "server.pem")]
            listen += ["--tls-key-file", str(self.certs / "server-key.pem")]
            listen += ["--tls-ca-cert-file", str(self.certs / "ca.pem")]
        command = [binary, "--bind", "127.0.0.1", *listen, "--dir", str(self.directory)]
        command += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.ping() if self.certs is None else self.accepts():
                return
            assert self.process.poll() is None, "redis-server exited at start"
            # Polling a process that is starting: nothing to wait on but time.
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer in time")

    def accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """
        One command through redis-cli-free RESP, its raw reply.
        """
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"".join(parts))
            return sock.recv(65536)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@contextmanager
def running_redis(directory: Path, certs: Path | None = None) -> Iterator[RedisServer]:
    """
    A redis-server in C{directory} until the block ends; with C{certs},
    over TLS only.
    """
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory, free_port(), certs=certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
