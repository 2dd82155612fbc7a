"""
A private X server (Xvfb) for the GUI tests.
"""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.processes import stop_process

START_TIMEOUT = 20.0


@contextmanager
def xvfb(size: str = "1024x768x24") -> Iterator[str]:
    """
    Run C{Xvfb} on a free display until the block ends; yield the display (C{:N}).

    C{-displayfd} makes Xvfb pick a free display number and write it to a
    pipe once it accepts clients, so there is no guessing and no waiting
    on a timer.
    """
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], START_TIMEOUT)
        number = os.read(read_end, 64).decode().strip() if ready else ""
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_end)
        stop_process(process, timeout=10)
