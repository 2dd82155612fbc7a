"""
One window per identity key: a lock file beside the key (and the pins).

Two windows under one identity key look like one member to everybody else
(one fingerprint, no key notices between them), and both would write the
same pin file, one undoing the other's changes. So a client holds a lock on
C{identity.pem.lock} and C{pins.json.lock} while it runs, and a second
client that finds either taken says so and does not start. The lock is the
system's (C{flock}): it goes with the process however it ends, so a lock
file left behind by a crash is no obstacle.
"""

from __future__ import annotations

import os
from pathlib import Path

from chatroom.e2e.keys import E2EError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, as before
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


class InUseError(E2EError):
    """
    Another client holds the lock.

    @ivar pid: The process that holds it, if it said.
    """

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class FileLock:
    """
    An exclusive lock on C{FILE.lock} beside C{FILE}, held until L{release}
    or the process ends; the lock file holds the holder's pid.
    """

    def __init__(self, path: Path) -> None:
        """
        @param path: The file to guard (the lock file goes beside it).
        """
        self.path = path
        self.lock_path = path.with_name(path.name + LOCK_SUFFIX)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """
        Take the lock.

        @raise InUseError: If another client (or another lock in this one) has it.
        @raise OSError: If the lock file cannot be made.
        """
        if fcntl is None or self._fd is not None:
            return
        self.lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise InUseError(f"{self.path} is in use by another chatroom-client", pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        """
        Let the lock go (closing the file does); the lock file stays.
        """
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def lock_e2e_files(identity: Path, pins: Path) -> list[FileLock]:
    """
    Lock the identity key and the pin file for this client.

    @return: The locks, held; release them (or exit) to let go.
    @raise E2EError: If another client uses either file, saying what to do.
    """
    held: list[FileLock] = []
    try:
        for path, what in ((identity, "identity key"), (pins, "pin file")):
            lock = FileLock(path)
            try:
                lock.acquire()
            except InUseError as e:
                by = f" (process {e.pid})" if e.pid is not None else ""
                raise E2EError(
                    f"the {what} {path} is in use by another chatroom-client window{by}."
                    " Two windows under one key look like one person to everyone else."
                    " Give this window a key of its own: --identity FILE --pins FILE"
                ) from e
            except OSError as e:
                raise E2EError(f"cannot lock the {what} {path}: {e.strerror}") from e
            held.append(lock)
    except BaseException:
        for lock in held:
            lock.release()
        raise
    return held
