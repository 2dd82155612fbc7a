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


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """
    The real daemon, C{twistd -n chatroom}, on 127.0.0.1 in C{tmp_path}.
    """
    with running_daemon(tmp_path) as d:
        yield d
