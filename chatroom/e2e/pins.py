"""
Trust on first use: which identity key belongs to which name.

The first key seen for a name is pinned to it. Pins are keyed by the name's
look-alike skeleton (L{chatroom.names.skeleton}), so C{Al1ce} with a new key
is a key change for C{alice}, not a new contact. A pin is I{verified} once
the user compared safety numbers out of band and said so.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path

from chatroom.e2e.keys import E2EError, check_private_mode, write_private
from chatroom.names import skeleton

# Enough for every contact a person has; past it the oldest unverified pin goes.
MAX_PINS = 10_000


class PinCheck(enum.Enum):
    """
    How a name and key compare with the pins.
    """

    NEW = "new"
    SAME = "same"
    CHANGED = "changed"


@dataclass
class Pin:
    """
    One name's pinned identity key.
    """

    name: str
    key: bytes
    verified: bool = False


class PinStore:
    """
    The pins of one user, in memory and, given a path, in a JSON file only
    its owner can read.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._pins: dict[str, Pin] = {}
        if path is not None and path.exists():
            check_private_mode(path)
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))["pins"]
                for entry in entries:
                    pin = Pin(str(entry["name"]), bytes.fromhex(entry["key"]), bool(entry["verified"]))
                    self._pins[skeleton(pin.name)] = pin
            except (ValueError, KeyError, TypeError) as e:
                raise E2EError(f"{path} is not a pin file: {e}") from e

    def get(self, name: str) -> Pin | None:
        return self._pins.get(skeleton(name))

    def check(self, name: str, key: bytes) -> PinCheck:
        """
        Compare C{key} with the key pinned for C{name}, changing nothing.
        """
        pin = self.get(name)
        if pin is None:
            return PinCheck.NEW
        return PinCheck.SAME if pin.key == key else PinCheck.CHANGED

    def pin(self, name: str, key: bytes) -> None:
        """
        Pin C{key} to C{name} (after a key change: the user trusts the new
        key), unverified.
        """
        self._pins.pop(skeleton(name), None)
        if len(self._pins) >= MAX_PINS:
            oldest = next((k for k, p in self._pins.items() if not p.verified), next(iter(self._pins)))
            del self._pins[oldest]
        self._pins[skeleton(name)] = Pin(name, key)
        self.save()

    def mark_verified(self, name: str) -> None:
        pin = self.get(name)
        if pin is not None:
            pin.verified = True
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        entries = [{"name": p.name, "key": p.key.hex(), "verified": p.verified} for p in self._pins.values()]
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.path, json.dumps({"version": 1, "pins": entries}, indent=1).encode("utf-8"))
