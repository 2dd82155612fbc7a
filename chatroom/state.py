"""
Small JSON files under C{--state}, written atomically.

L{write_json} writes a temporary file in the same directory, flushes and
fsyncs it, renames it over the old file and fsyncs the directory: a crash
at any moment leaves either the whole old file or the whole new one. The
writes are small and synchronous; callers keep them off hot paths.

A process killed between creating the temporary file and the rename
(C{kill -9}, a power cut) leaves the temporary file behind;
L{clean_temporary_files} removes those at start, before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

# The temporary files of write_json, and nothing else: mkstemp's names are
# prefix + 8 characters of [a-z0-9_] + suffix (see _temporary_file).
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


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


def _temporary_file(path: Path) -> tuple[int, str]:
    # Created with mode 0600, beside path: ".<name>.<8 random characters>.tmp".
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX, dir=path.parent)


def is_temporary_file(name: str) -> bool:
    """
    Whether a file called C{name} is one of L{write_json}'s temporary files.
    """
    return _TEMPORARY.fullmatch(name) is not None


def clean_temporary_files(directory: Path) -> list[Path]:
    """
    Remove the temporary files that L{write_json} left in C{directory} when
    its process died before renaming them: regular files named as it names
    them (C{.<name>.<8 characters>.tmp}), in C{directory} itself only, and
    nothing else. Call it at start, before anything writes there.

    @return: The files removed, in name order; none if C{directory} does
        not exist.
    @raise StateError: If C{directory} cannot be listed or a file cannot
        be removed.
    """
    try:
        names = sorted(entry.name for entry in os.scandir(directory) if entry.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise StateError(f"cannot list the state directory {directory}: {e.strerror}") from e
    removed = []
    for name in filter(is_temporary_file, names):
        path = directory / name
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StateError(f"cannot remove the temporary file {path}: {e.strerror}") from e
        removed.append(path)
    return removed


def write_json(path: Path, value: Any) -> None:
    """
    Replace C{path} with C{value} as JSON, atomically and durably.

    @raise OSError: If it cannot be written; C{path} is then unchanged.
    """
    data = json.dumps(value, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    fd, temporary = _temporary_file(path)
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
