"""
Admin password hashes: scrypt from the standard library.

A hash is one line that carries its own parameters and salt::

    scrypt$n=16384,r=8,p=1$<salt, base64>$<key, base64>

Make one with C{python -m chatroom.passwd > admin.hash} (it asks for the
password twice on a terminal, or reads one line from standard input), and
start the daemon with C{--admin-password-file admin.hash}. A password has
at least L{MIN_PASSWORD_LENGTH} characters.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chatroom.wire import has_control_characters, normalize_text

SCHEME = "scrypt"
# About 16 MiB and a few tens of milliseconds per check: slow for a guesser,
# fine for a daemon that also rate limits attempts.
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
# Bounds on parameters read from a file, so a bad file cannot make each
# check take gigabytes of memory.
MAX_N, MAX_R, MAX_P = 2**17, 16, 4
# The admin password guards kicks and bans over the network: long enough
# that guessing it through /oper (which the daemon rate limits) is hopeless,
# short enough to type. Counted in characters, after NFC normalisation.
MIN_PASSWORD_LENGTH = 12

_FORMAT = re.compile(r"scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


@dataclass(frozen=True)
class PasswordHash:
    """
    A parsed password hash.
    """

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        key = base64.b64encode(self.key).decode("ascii")
        return f"{SCHEME}$n={self.n},r={self.r},p={self.p}${salt}${key}"

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """
        @raise ValueError: If C{text} is not a hash this module made.
        """
        match = _FORMAT.fullmatch(text.strip())
        if match is None:
            raise ValueError("not a chatroom password hash: make one with python -m chatroom.passwd")
        n, r, p = (int(match.group(i)) for i in (1, 2, 3))
        if n < 2 or n & (n - 1) or n > MAX_N or not 1 <= r <= MAX_R or not 1 <= p <= MAX_P:
            raise ValueError(f"scrypt parameters out of range (n a power of 2 up to {MAX_N}, r, p)")
        try:
            salt, key = (base64.b64decode(match.group(i), validate=True) for i in (4, 5))
        except binascii.Error as e:
            raise ValueError("bad base64 in the password hash") from e
        if len(salt) < 8 or len(key) < 16:
            raise ValueError("the salt or the key of the password hash is too short")
        return cls(n, r, p, salt, key)

    def matches(self, password: str) -> bool:
        """
        Whether C{password} is the one hashed, compared in constant time.
        """
        key = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(key, self.key)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # NFC first: the daemon normalises every line it reads, so the same
    # typed password always gives the same key.
    return hashlib.scrypt(
        normalize_text(password).encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r * p + 2**20,
        dklen=length,
    )


def hash_password(password: str, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> PasswordHash:
    """
    Hash C{password} with a fresh random salt.
    """
    salt = os.urandom(SALT_BYTES)
    return PasswordHash(n, r, p, salt, _scrypt(password, salt, n, r, p, KEY_BYTES))


def password_problem(password: str) -> str | None:
    """
    Why C{password} could never be typed as C{/oper <password>}, or L{None}.
    """
    if not password:
        return "the password is empty"
    if (length := len(normalize_text(password))) < MIN_PASSWORD_LENGTH:
        return (
            f"the password is too short: {length} characters, at least {MIN_PASSWORD_LENGTH}"
            " are needed (a few words make a good one)"
        )
    if password != password.strip():
        return "the password starts or ends with a space, which /oper would drop"
    if has_control_characters(password):
        return "the password holds control characters, which the daemon refuses"
    return None


def read_hash_file(path: Path) -> PasswordHash:
    """
    The hash in file C{path}.

    @raise ValueError: If the file cannot be read or holds no valid hash.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the admin password file {path}: {e}") from e
    try:
        return PasswordHash.parse(text)
    except ValueError as e:
        raise ValueError(f"the admin password file {path}: {e}") from e


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The tool's command line: no arguments but C{--help}.
    """
    parser = argparse.ArgumentParser(
        prog="python -m chatroom.passwd",
        description="Print the hash of an admin password, for the daemon's --admin-password-file."
        " On a terminal it asks for the password twice; otherwise it reads one line from"
        " standard input.",
        epilog=f"The password needs at least {MIN_PASSWORD_LENGTH} characters, no control characters"
        " and no space at either end. Example: python -m chatroom.passwd > admin.hash",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Print the hash of a password read from the terminal or standard input.
    """
    parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Admin password: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    problem = password_problem(password)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
