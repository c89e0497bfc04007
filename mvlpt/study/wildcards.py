"""Wildcard constraints of the workflow's rules (regexes over the names of a study), and the shell
quoting of their commands' arguments.

They keep ``{source}__{target}`` and friends unambiguous: a constraint that matches only the
configured names makes Snakemake find exactly one job per file. Kept here, not in the rule files,
so they are tested as functions (tests/study/test_layout.py). Imports neither torch nor numpy.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

GROUP_RE = r"g[0-9a-f]{10}"  # a group's name, mvlpt.study.vocabulary.group_id
NEVER = "(?!)"  # matches nothing


def alternation(names: Iterable) -> str:
    """Regex matching exactly one of ``names``."""
    return "|".join(re.escape(str(n)) for n in names)


def joint_pair_constraints(tasks: Sequence[str]) -> dict[str, str]:
    """Wildcard constraints for rule train_joint, whose outputs are ``.../{a}__{b}/...`` and ``.../{b}__{a}/...``.

    They match only when ``a`` comes before ``b`` in ``tasks``, whichever of the two files is asked for,
    so every unordered pair has exactly one job (and one argument order: the config's). A name in
    first position is pinned by a look-ahead at the name after it (``a`` needs a later name, ``b`` an
    earlier one); in second position, where the name ends the folder, it needs nothing more. The
    regexes grow as n^2 / 2 names; look-ahead only keeps them short, which matters because Snakemake
    embeds them in the output patterns it re-scans for every job.
    """
    tasks = list(tasks)
    if len(tasks) < 2:
        return {"a": NEVER, "b": NEVER}  # no joint job
    second = f"(?:{alternation(tasks)})(?=/)"
    a_alts, b_alts = [second], [second]
    for i, name in enumerate(tasks):
        x = re.escape(name)
        later, earlier = tasks[i + 1 :], tasks[:i]
        if later:  # a first: a__b with b later
            a_alts.append(f"{x}(?=__(?:{alternation(later)})/)")
        if earlier:  # b first: b__a with a earlier
            b_alts.append(f"{x}(?=__(?:{alternation(earlier)})/)")
    return {"a": "|".join(a_alts), "b": "|".join(b_alts)}


def off_diagonal_target(tasks: Iterable[str]) -> str:
    """Constraint for ``target`` in ``.../{source}__{target}/...``: any task except the source."""
    return "|".join(f"(?<!/{re.escape(t)}__){re.escape(t)}" for t in tasks)


def q(values: Iterable) -> str:
    """Shell-quoted, space-separated."""
    return " ".join(shlex.quote(str(v)) for v in values)


def pair_args(flag: str, items: Iterable[tuple[str, str]]) -> str:
    """``flag task=path`` for every (task, path), shell-quoted: mvlpt train's --split/--output/... options."""
    return " ".join(f"{flag} {shlex.quote(f'{task}={path}')}" for task, path in items)
