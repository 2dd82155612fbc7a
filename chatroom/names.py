"""
Member name rules.

A name is 1 to 20 characters: ASCII letters, digits, C{_} and C{-},
starting with a letter. Names are unique without regard to case, and a name
may not be a look-alike of one already present: two names clash when their
L{skeleton}s are equal (case folded; C{0}/C{o}, C{1}/C{l}/C{i}, C{5}/C{s},
C{8}/C{b}, C{9}/C{g}/C{q}, C{rn}/C{nn}/C{m}, C{vv}/C{w}, C{cl}/C{d} treated as
the same; C{_} and C{-} ignored).
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 20

_VALID = re.compile(rf"[A-Za-z][A-Za-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}")

# The skeleton spells every look-alike in its most decomposed form: each
# character that looks like a sequence becomes that sequence (m -> nn,
# w -> vv, d -> cl) and each single look-alike becomes one representative.
# Rewriting one character at a time can neither overlap nor depend on the
# order of the rewrites, so the result is the same however the look-alikes
# were mixed (avw, awv and avvv all become avvv). No character a rewrite
# produces is rewritten again, so a skeleton is its own skeleton.
_CONFUSABLE = str.maketrans(
    {
        "0": "o",
        "1": "l",
        "i": "l",
        "5": "s",
        "8": "b",
        "9": "q",
        "g": "q",
        "m": "nn",
        "w": "vv",
        "d": "cl",
        "_": None,
        "-": None,
    }
)
# r before n looks like n (rn and nn both look like m). After the
# translation above, each r of a run before an n becomes n: rrn -> nnn.
_R_BEFORE_N = re.compile(r"r+(?=n)")

# Pairs that must look alike to the skeleton: each side may replace the
# other anywhere in a name (the tests rewrite with them).
LOOK_ALIKES: tuple[tuple[str, str], ...] = (
    ("0", "o"),
    ("1", "l"),
    ("i", "l"),
    ("5", "s"),
    ("8", "b"),
    ("9", "q"),
    ("g", "q"),
    ("rn", "m"),
    ("nn", "m"),
    ("vv", "w"),
    ("cl", "d"),
    ("_", ""),
    ("-", ""),
)


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
    The form of C{name} under which look-alike names are equal: replacing
    one side of a L{LOOK_ALIKES} pair by the other anywhere in C{name},
    or changing case, keeps it, and C{skeleton(skeleton(name)) ==
    skeleton(name)}.
    """
    folded = name.casefold().translate(_CONFUSABLE)
    return _R_BEFORE_N.sub(lambda match: "n" * len(match.group()), folded)
