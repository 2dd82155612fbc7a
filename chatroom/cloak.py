"""
Address cloaks: what members see instead of each other's IP address.

A cloak is a keyed hash of the address (HMAC-SHA256, as ergo cloaks IPs),
shown as C{cloak-1a2b3c4d.chatroom}. It is stable: the same address always
gets the same cloak, across reconnections and restarts, so members can tell
that two visits came from one place, and an admin can match a cloak with an
address; without the key nobody can go from a cloak back to the address
(IPv4 has only 2**32 addresses: an unkeyed hash would be a lookup table).

The unit is the one connections are counted by (L{address_key}): an IPv4
address itself (an IPv4-mapped IPv6 address counts as IPv4), the /64 of an
IPv6 address, since one host usually owns a whole /64 and its privacy
addresses change inside it. The port is never part of a cloak.

The key is 32 random bytes in C{cloak.key} under the state directory, made
on the first start (mode 0600) and read on every start after.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from chatroom.limits import address_key

KEY_FILE = "cloak.key"
KEY_BYTES = 32
# 32 bits of the hash: enough that two addresses of one room practically
# never share a cloak, short enough to read.
CLOAK_HEX_DIGITS = 8
CLOAK_SUFFIX = ".chatroom"


class Cloaker:
    """
    Makes the cloak of an address with one secret key.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a cloak key has at least 16 bytes")
        self._key = key

    def __call__(self, host: str) -> str:
        """
        The cloak of C{host} (an IP address; anything else is hashed as it is).
        """
        digest = hmac.new(self._key, address_key(host).encode(), hashlib.sha256).hexdigest()
        return f"cloak-{digest[:CLOAK_HEX_DIGITS]}{CLOAK_SUFFIX}"


def load_or_create_key(directory: Path) -> bytes:
    """
    The cloak key kept in C{directory}, made (mode 0600) if there is none.

    @raise ValueError: If the key file is unreadable or too short.
    """
    path = directory / KEY_FILE
    try:
        # O_EXCL: two daemons starting at once never overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise ValueError(f"cannot create the cloak key {path}: {e.strerror}") from e
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
    try:
        key = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the cloak key {path}: {e.strerror}") from e
    if len(key) < KEY_BYTES:
        raise ValueError(
            f"the cloak key {path} is too short ({len(key)} of {KEY_BYTES} bytes):"
            " remove it to make a new one (every cloak changes)"
        )
    return key
