"""The rules for the names and seeds a study's files are keyed by, in one place.

A *name* (a task, a source ``a+b``, a method, a group id) becomes part of file paths
(``{method}/{source}__{target}/seed{seed}.json``), of comma-separated option lists and of table
cells, so it must be usable as all three: printable, without a path separator, ``..``, a comma,
whitespace other than a plain space, a control character, and at most :data:`NAME_MAX` bytes.
A *seed* is an integer in ``[0, SEED_LIMIT)``: what every random generator mvlpt uses (numpy's,
torch's) takes, and what a result file's name can hold.
"""

from __future__ import annotations

import unicodedata

from mvlpt.errors import MvlptError

NAME_MAX = 100  # bytes; a result path joins two names, and file names end at 255 bytes
SEED_LIMIT = 2**31
# a joined name (the source of a joint run, ``a+b+...``, all ELEVATER tasks but one: ~250 bytes) is
# limited only by what a record can hold; where it becomes a path, the file-name rule (mvlpt.io) applies
JOINED_MAX = 4096


def name_problem(value, max_bytes: int = NAME_MAX) -> str | None:
    """What is wrong with ``value`` as a name, as a clause (None: nothing); ``max_bytes``: a joined
    name (a joint source ``a+b+c``) may be longer than one name (:data:`JOINED_MAX`)."""
    if not isinstance(value, str) or not value:
        return "is empty" if value == "" else "is not text"
    if value.strip() != value:
        return "starts or ends with a space"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if value in (".", "..") or ".." in value:
        return "contains '..'"
    if "," in value:
        return "contains a comma (names are listed comma-separated)"
    if any(unicodedata.category(c).startswith("C") or (c.isspace() and c != " ") for c in value):
        return "contains a newline, tab or other control character"
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        return f"is longer than {max_bytes} bytes"
    return None


def check_name(value, what: str = "name", max_bytes: int = NAME_MAX):
    """``value`` if it is a valid name (see the module docstring); else one sentence naming it."""
    problem = name_problem(value, max_bytes)
    if problem:
        raise MvlptError(f"the {what} {value!r} {problem}; give a name of letters, digits, '-', '_', '.' or '+'.")
    return value


def seed_ok(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT


def check_seed(value, what: str = "seed"):
    """``value`` if it is a valid seed (an integer in [0, 2**31)); else one sentence."""
    if not seed_ok(value):
        raise MvlptError(f"the {what} {value!r} is not an integer from 0 to {SEED_LIMIT - 1}; give a seed in that range.")
    return value
