"""The domains of the statistics' settings, in one place (issue 24, class 4).

Every command that takes ``--level``, ``--n-boot`` or ``--n-perm`` has them checked here, by
:func:`mvlpt.cli.main` before the command runs, and the config schema
(``mvlpt/study/config.schema.yaml``, :mod:`mvlpt.study.settings`, read by both the workflow and preflight) states the same
bounds:

* a confidence ``level`` is a finite number strictly between 0 and 1;
* a number of bootstrap resamples or of permutations is an integer of at least :data:`MIN_RESAMPLES`:
  fewer gives no interval or p-value worth the name, and 0 used to give blank cells silently.

The library functions keep ``n_boot=0`` / ``n_perm=0`` as the documented "no interval" / "no p-value"
of a caller that wants only the estimates; a command line cannot ask for that.
"""

from __future__ import annotations

import math

from mvlpt.errors import MvlptError

MIN_RESAMPLES = 10


def check_level(level, what: str = "--level") -> float:
    """``level`` if it is a confidence level strictly between 0 and 1; else one sentence."""
    if isinstance(level, bool) or not (isinstance(level, (int, float)) and math.isfinite(level) and 0 < level < 1):
        raise MvlptError(f"{what} must be a confidence level strictly between 0 and 1 (e.g. 0.95), got {level}.")
    return float(level)


def check_resamples(n, what: str = "--n-boot") -> int:
    """``n`` if it is a number of resamples of at least :data:`MIN_RESAMPLES`; else one sentence."""
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_RESAMPLES:
        raise MvlptError(
            f"{what} must be an integer of at least {MIN_RESAMPLES} (resamples of an interval or a p-value; e.g. 2000), got {n}."
        )
    return n


def check_statistics_args(args) -> None:
    """The ``level``, ``n_boot`` and ``n_perm`` a command was given, if it takes them."""
    if getattr(args, "level", None) is not None:
        check_level(args.level)
    for name in ("n_boot", "n_perm"):
        if getattr(args, name, None) is not None:
            check_resamples(getattr(args, name), "--" + name.replace("_", "-"))
