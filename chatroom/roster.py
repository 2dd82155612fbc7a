"""
The member list as a client sees it, kept current from the server's lines:
one model for the window (chatroom.client) and for end-to-end encryption
(chatroom.e2e.client), so that both agree on who is in the room.
"""

from __future__ import annotations

import re

from chatroom.wire import Kind, ServerLine

ADMIN_MARK = "@"
_LIST_RANGE = re.compile(r"users (\d+)-(\d+) of (\d+)")


class Roster:
    """
    Who is in the room: filled by C{list} lines, updated by C{join},
    C{leave}, C{arrivals}, C{rename} and C{admin}; a C{welcome} (a new
    connection) empties it.

    A long list comes in chunks (C{users 1-100 of 250}, ...); the roster
    replaces its members when the last chunk arrives, and drops a list
    whose chunks do not add up (L{problem} says why). The E2E client
    encrypts to the members of the same model the window shows.
    """

    def __init__(self) -> None:
        # Case-folded name -> (name, is admin).
        self._members: dict[str, tuple[str, bool]] = {}
        self._incoming: dict[str, tuple[str, bool]] = {}
        # The next chunk's first number and the total, while a list comes in.
        self._expected: tuple[int, int] | None = None
        # Why the last member list line was refused, if one was.
        self.problem: str | None = None
        # Counts the lines applied (a cheap test for "may have changed").
        self.version = 0

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.casefold() in self._members

    @property
    def receiving(self) -> bool:
        """
        Whether a chunked list has begun and not yet ended.
        """
        return self._expected is not None

    def names(self) -> list[str]:
        """
        The members' names, without admin marks, in no particular order.
        """
        return [name for name, _ in self._members.values()]

    def entries(self) -> list[str]:
        """
        The members for display: admins first (marked C{@}), then by name.
        """
        ordered = sorted(self._members.values(), key=lambda m: (not m[1], m[0].casefold()))
        return [(ADMIN_MARK if admin else "") + name for name, admin in ordered]

    def clear(self) -> bool:
        """
        Forget every member (the connection is gone).

        @return: Whether there were any.
        """
        changed = bool(self._members)
        self.version += 1
        self._members.clear()
        return changed

    def apply(self, line: ServerLine) -> bool:
        """
        Update the roster from one server line.

        @return: Whether the members changed.
        """
        kind = line.kind
        self.version += 1
        if kind == Kind.WELCOME:
            return self.clear()
        if kind == Kind.LIST:
            return self._listed(line)
        if kind == Kind.JOIN:
            self._members[line.source.casefold()] = (line.source, False)
            return True
        if kind == Kind.LEAVE:
            return self._members.pop(line.source.casefold(), None) is not None
        if kind == Kind.ARRIVALS:
            # A summary: "-name" left, "+name" / "+@name" joined, in that order.
            for arg in line.args:
                name = arg[1:].removeprefix(ADMIN_MARK)
                if arg.startswith("-"):
                    self._members.pop(name.casefold(), None)
                elif arg.startswith("+"):
                    self._members[name.casefold()] = (name, arg[1:].startswith(ADMIN_MARK))
            return bool(line.args)
        if kind == Kind.ADMIN and line.args:
            key = line.args[0].casefold()
            if key not in self._members:
                return False
            self._members[key] = (self._members[key][0], line.fields.get("admin") == "yes")
            return True
        if kind == Kind.RENAME and line.args:
            old = self._members.pop(line.source.casefold(), None)
            admin = old[1] if old else False
            self._members[line.args[0].casefold()] = (line.args[0], admin)
            return True
        return False

    def _listed(self, line: ServerLine) -> bool:
        # The chunks must be exactly what the server's format says: the
        # first starts at 1, each goes on where the last ended with the
        # number of names its range says, the total stays the same, and the
        # list is taken only when its last chunk is in. Anything else is
        # dropped whole, so no name can slip in through a stray chunk.
        match = _LIST_RANGE.fullmatch(line.text)
        if match is None:
            return self._refuse("a member list line without its range")
        first, last, total = (int(n) for n in match.groups())
        if first == 1:
            self._incoming, self._expected = {}, (1, total)
        if self._expected != (first, total) or last < first or last > total:
            return self._refuse(f"a member list chunk out of order ({line.text})")
        if len(line.args) != last - first + 1:
            return self._refuse(f"a member list chunk with {len(line.args)} names for {line.text}")
        for arg in line.args:
            name = arg.removeprefix(ADMIN_MARK)
            self._incoming[name.casefold()] = (name, arg.startswith(ADMIN_MARK))
        self._expected = (last + 1, total)
        if last < total:
            return False
        incoming, self._incoming, self._expected = self._incoming, {}, None
        if len(incoming) != total:
            return self._refuse("a member list that names someone twice")
        changed = incoming != self._members
        self._members = incoming
        return changed

    def _refuse(self, problem: str) -> bool:
        self._incoming, self._expected = {}, None
        self.problem = problem
        return False
