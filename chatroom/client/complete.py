"""
Tab completion of member names in the input line (no Tk).

Tab completes the word before the cursor to a member's name; pressed again
at once, it goes on to the next name that fits, and back to what was typed
after the last (a name that alone fits stays). A name that starts the line is followed by C{": "} (the
way to address someone), elsewhere by a space. A command (the first word
when it starts with C{/}) is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ADDRESS_SUFFIX = ": "


@dataclass(frozen=True)
class Completed:
    """
    The input line after a completion, and where its cursor goes.
    """

    text: str
    cursor: int


@dataclass
class _Cycle:
    # The line as typed, where the completed word starts and its typed part,
    # the names that fit and the one shown; and what the line became.
    before: str
    start: int
    typed_end: int
    candidates: list[str]
    index: int
    result: Completed


def _word_start(text: str, cursor: int) -> int:
    start = cursor
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return start


class NameCompleter:
    """
    Completes names, remembering the last completion so that Tab pressed
    again picks the next candidate.
    """

    def __init__(self) -> None:
        self._cycle: _Cycle | None = None

    def complete(self, text: str, cursor: int, names: Iterable[str]) -> Completed | None:
        """
        Complete the word that ends at C{cursor} in C{text}.

        @param names: The members' names, without admin marks.
        @return: The new line and cursor, or L{None} if no name fits.
        """
        cycle = self._cycle
        if cycle is not None and cycle.result == Completed(text, cursor):
            if len(cycle.candidates) == 1:
                # The only name that fits stays.
                return cycle.result
            cycle.index = (cycle.index + 1) % (len(cycle.candidates) + 1)
            if cycle.index == len(cycle.candidates):
                # After the last name, what was typed comes back.
                cycle.result = Completed(cycle.before, cycle.typed_end)
            else:
                cycle.result = self._insert(
                    cycle.before, cycle.start, cycle.typed_end, cycle.candidates[cycle.index]
                )
            return cycle.result
        self._cycle = None
        start = _word_start(text, cursor)
        word = text[start:cursor]
        if not word or (start == 0 and word.startswith("/")):
            return None
        folded = word.casefold()
        candidates = sorted(
            (name for name in set(names) if name.casefold().startswith(folded)),
            key=lambda n: (n.casefold(), n),
        )
        if not candidates:
            return None
        result = self._insert(text, start, cursor, candidates[0])
        self._cycle = _Cycle(text, start, cursor, candidates, 0, result)
        return result

    def _insert(self, text: str, start: int, end: int, name: str) -> Completed:
        rest = text[end:]
        separator = ADDRESS_SUFFIX if start == 0 else " "
        # Completing again inside a line must not double the separator.
        rest = rest.removeprefix(separator)
        head = text[:start] + name + separator
        return Completed(head + rest, len(head))
