"""
Trust on first use: which identity key belongs to which name.

The first key seen for a member's name is pinned to it. Pins are keyed by
the name's look-alike skeleton (L{chatroom.names.skeleton}), so C{Al1ce}
with a new key is a key change for C{alice}, not a new contact. A pin is
I{verified} once the user compared safety numbers out of band and said so.

A pin is never dropped to make room: once L{MAX_PINS} names are pinned, a
new name is refused (the client says so) rather than an old pin forgotten,
so no one can erase a pin by making the client meet many names. The file is
a log, one JSON record a line, appended to for every change (so a pin costs
one short write) and rewritten only when old records outnumber live ones.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path

from chatroom.e2e.keys import E2EError, check_private_directory, check_private_mode, write_private
from chatroom.names import skeleton

# Enough for every contact a person has; past it new names are not pinned.
MAX_PINS = 10_000
FORMAT = "chatroom-pins/2"


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
    The pins of one user, in memory and, given a path, in a file only its
    owner can read.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._pins: dict[str, Pin] = {}
        self._records = 0
        if path is not None and path.exists():
            check_private_mode(path)
            self._load(path)

    def _load(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        try:
            if text.startswith("{\n") or text.startswith('{"version": 1'):
                # Version 1: one JSON document, rewritten for every pin.
                entries = json.loads(text)["pins"]
                rewrite = True
            else:
                lines = text.splitlines()
                if not lines or json.loads(lines[0]) != {"format": FORMAT}:
                    raise ValueError("no pin file header")
                entries = [json.loads(line) for line in lines[1:-1]]
                if len(lines) > 1:
                    # A torn last line (a crash mid-write) is ignored.
                    with contextlib.suppress(ValueError):
                        entries.append(json.loads(lines[-1]))
                rewrite = False
            for entry in entries:
                pin = Pin(str(entry["name"]), bytes.fromhex(entry["key"]), bool(entry["verified"]))
                self._pins[skeleton(pin.name)] = pin
                self._records += 1
        except (ValueError, KeyError, TypeError) as e:
            raise E2EError(f"{path} is not a pin file: {e}") from e
        if rewrite:
            self.save()

    def __len__(self) -> int:
        return len(self._pins)

    @property
    def full(self) -> bool:
        return len(self._pins) >= MAX_PINS

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

    def pin(self, name: str, key: bytes) -> bool:
        """
        Pin C{key} to C{name} (after a key change: the user trusts the new
        key), unverified.

        @return: Whether it was pinned: a new name is not once the store is
            L{full} (no pin is ever dropped to make room).
        """
        if skeleton(name) not in self._pins and self.full:
            return False
        pin = self._pins[skeleton(name)] = Pin(name, key)
        self._append(pin)
        return True

    def mark_verified(self, name: str, key: bytes) -> bool:
        """
        Mark C{name}'s pin verified, if it pins C{key} (the key whose safety
        number the user compared).

        @return: Whether it did.
        """
        pin = self.get(name)
        if pin is None or pin.key != key:
            return False
        pin.verified = True
        self._append(pin)
        return True

    def _append(self, pin: Pin) -> None:
        if self.path is None:
            return
        if not self.path.exists() or self._records > 2 * len(self._pins) + 100:
            self.save()
            return
        record = json.dumps({"name": pin.name, "key": pin.key.hex(), "verified": pin.verified})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(record + "\n")
        self._records += 1

    def save(self) -> None:
        """
        Rewrite the whole file, one record per pin.
        """
        if self.path is None:
            return
        records = [json.dumps({"format": FORMAT})] + [
            json.dumps({"name": p.name, "key": p.key.hex(), "verified": p.verified})
            for p in self._pins.values()
        ]
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_private_directory(self.path)
        write_private(self.path, ("\n".join(records) + "\n").encode("utf-8"))
        self._records = len(self._pins)
