"""
The input line's history, walked with Up and Down as in a shell.
"""

from __future__ import annotations

from collections import deque

MAX_HISTORY = 500


class History:
    """
    The lines sent, newest last, at most C{limit} of them.

    Up steps back from the line being typed, Down forward again; stepping
    past the newest entry gives back what was being typed before.
    """

    def __init__(self, limit: int = MAX_HISTORY) -> None:
        self._lines: deque[str] = deque(maxlen=limit)
        # Steps back from the draft: 0 is the draft itself.
        self._position = 0
        self._draft = ""

    def add(self, line: str) -> None:
        """
        Remember a sent line (not twice in a row) and return to a new draft.
        """
        if not self._lines or self._lines[-1] != line:
            self._lines.append(line)
        self._position = 0
        self._draft = ""

    def back(self, current: str) -> str:
        """
        The previous entry, with C{current} the text now in the input line.
        """
        if self._position == 0:
            self._draft = current
        if self._position < len(self._lines):
            self._position += 1
        return self._entry()

    def forward(self) -> str:
        """
        The next entry, or the draft after the newest.
        """
        if self._position > 0:
            self._position -= 1
        return self._entry()

    def _entry(self) -> str:
        return self._lines[-self._position] if self._position else self._draft
