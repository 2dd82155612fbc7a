"""
Small JSON files under C{--state}, written atomically.

L{write_json} writes a temporary file in the same directory, flushes and
fsyncs it, renames it over the old file and fsyncs the directory: a crash
at any moment leaves either the whole old file or the whole new one. The
writes are small and synchronous; callers keep them off hot paths.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class StateError(Exception):
    """
    A state file cannot be read or does not hold what it should.
    """

    @classmethod
    def corrupt(cls, path: Path, why: object) -> StateError:
        return cls(f"the state file {path} is corrupt ({why}); fix it, or move it away to start afresh")


def read_json(path: Path) -> Any:
    """
    The JSON value in C{path}, or L{None} if there is no such file.

    @raise StateError: If the file is unreadable or not valid JSON.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(f"cannot read the state file {path}: {e.strerror}") from e
    try:
        return json.loads(data)
    except ValueError as e:
        raise StateError.corrupt(path, e) from e


def write_json(path: Path, value: Any) -> None:
    """
    Replace C{path} with C{value} as JSON, atomically and durably.

    @raise OSError: If it cannot be written; C{path} is then unchanged.
    """
    data = json.dumps(value, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    # The rename itself is durable only once the directory is on disk.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
