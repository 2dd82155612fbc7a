"""
Shared pytest fixtures. The helpers they build on are in C{tests/helpers.py}
(the room on a fake clock, clients on StringTransports) and
C{tests/daemon.py} (the real daemon and blocking TLS line clients).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, running_daemon
from tests.redis_server import RedisServer, running_redis


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """
    The real daemon, C{twistd -n chatroom}, on 127.0.0.1 in C{tmp_path}.
    """
    with running_daemon(tmp_path) as d:
        yield d


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """
    A real redis-server on 127.0.0.1, any free port, in C{tmp_path}/redis.
    """
    with running_redis(tmp_path / "redis") as server:
        yield server
