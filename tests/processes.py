"""
Ending the real processes tests start (the daemon, redis-server, Xvfb, IRC clients).
"""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """
    Ask C{process} to end (SIGTERM) and wait for it; kill it if it has not
    ended within C{timeout} seconds.

    @return: Its exit code.
    """
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=timeout)
