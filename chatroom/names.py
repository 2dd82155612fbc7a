"""
Member name rules.

A name is 1 to 20 characters: ASCII letters, digits, C{_} and C{-},
starting with a letter. Names are unique without regard to case, and a name
may not be a look-alike of one already present: two names clash when their
L{skeleton}s are equal (case folded; C{0}/C{o}, C{1}/C{l}/C{i}, C{5}/C{s},
C{rn}/C{m}, C{vv}/C{w} treated as the same; C{_} and C{-} ignored).
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 20

_VALID = re.compile(rf"[A-Za-z][A-Za-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}")
_CONFUSABLE = str.maketrans({"0": "o", "1": "l", "i": "l", "5": "s", "_": None, "-": None})


def name_problem(name: str) -> str | None:
    """
    Why C{name} is not a valid member name, or L{None} if it is.
    """
    if len(name) > MAX_NAME_LENGTH:
        return f"a name has at most {MAX_NAME_LENGTH} characters"
    if not _VALID.fullmatch(name):
        return "a name starts with a letter and holds only letters a-z, digits, _ and -"
    return None


def skeleton(name: str) -> str:
    """
    The form of C{name} under which look-alike names are equal.
    """
    return name.casefold().translate(_CONFUSABLE).replace("rn", "m").replace("vv", "w")
