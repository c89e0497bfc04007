"""The budgeted, adaptive study's arithmetic (issue 26; docs/budget.md): how many pairs a budget buys, in how
many rounds, and the files that record each round's choice.

A *pair* is what one training job of the configured mode trains: an unordered pair {a, b} in joint mode
(one run writes both directions, a__b and b__a), an ordered (source, target) otherwise. The config's
``budget`` section (mvlpt/study/config.schema.yaml) states the budget and the round size each as a
fraction of the study's pairs (a decimal in (0, 1]: ``0.33``) or as a number of pairs (a whole number:
``60``). Round 0 chooses ``initial`` pairs before any result is known (by default every task twice as a
source and twice as a target: :func:`initial_size`); every later round chooses ``round_size`` more from the
completion of the gains measured so far, until the budget is spent.

Each round's file lists its choice ranked, best first, and always ``initial`` or ``round_size`` pairs
(fewer only when fewer are left untrained); a round that would overrun the budget trains only the
first of them (:attr:`BudgetPlan.sizes`). So a round's file does not depend on the total budget: a rerun
with a larger budget keeps every round file and every finished job, and trains more of the last round
and the rounds after it.

Cheap on purpose (no numpy, no pandas): the workflow reads the plan at every start and the round files
while it plans the DAG.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

from mvlpt.errors import MvlptError

# The budgeted study's vocabulary, stated once here (mvlpt.study imports neither numpy nor pandas, so the command
# line is built without them); the modules of mvlpt.transfer that implement each name import it from here.
RULES = ("uncertainty", "improvement", "random")  # mvlpt.transfer.selection
LEVEL = 0.9  # mvlpt.transfer.completion: the default level of a completed interval
SYNTHETIC_KINDS = ("effects", "lowrank", "noise")  # mvlpt.transfer.planted
REPLAY_BUDGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # mvlpt.transfer.replay
REPLAY_MODELS = {"effects": {"rank": 0, "side": False}, "completion": {"rank": None, "side": True}}  # replay

ROUND_COLUMNS = ("round", "rank", "source", "target")
MIN_TASKS = 3  # a completion needs at least two sources per target
MIN_CELLS = 2  # measured cells the completion needs (mvlpt.transfer.completion.complete)
BASELINE = "baseline"  # side information: the baselines (a per-task series); else a measure's or a predictor's name


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """A budgeted study's shape: ``total`` pairs in the full study, ``pairs`` at the budget, chosen in
    rounds of ``chosen`` pairs each (round 0 first) of which the first ``sizes`` are trained."""

    tasks: int
    symmetric: bool  # joint mode: a pair is unordered and one run serves both directions
    total: int
    pairs: int
    chosen: tuple[int, ...]  # pairs each round's file lists (initial, round_size, ...), ranked
    sizes: tuple[int, ...]  # pairs each round trains (the last may take only the first of its list)
    rule: str
    seed: int
    side: tuple[str, ...] = ("baseline",)  # side information of the completion (BASELINE, measures, predictors)

    @property
    def rounds(self) -> int:
        return len(self.sizes)

    @property
    def cells(self) -> int:
        """Off-diagonal cells the budget measures (a joint pair measures two)."""
        return self.pairs * (2 if self.symmetric else 1)

    @property
    def share(self) -> float:
        """The budget as a share of the full study's pairs."""
        return self.pairs / self.total if self.total else 0.0

    def unit(self) -> str:
        return "unordered pairs" if self.symmetric else "ordered pairs"


def pair_count(n_tasks: int, mode: str) -> int:
    """Off-diagonal pairs of the full study, as its training jobs count them (joint: unordered)."""
    ordered = n_tasks * (n_tasks - 1)
    return ordered // 2 if mode == "joint" else ordered


def is_fraction(value) -> bool:
    """Whether a budget value is a fraction (a decimal) rather than a number of pairs (a whole number)."""
    return isinstance(value, float)


def as_pairs(value, total: int) -> int:
    """A budget value as a number of pairs: a fraction of ``total`` (rounded half up, at least 1), or the
    number itself."""
    if is_fraction(value):
        return max(1, math.floor(value * total + 0.5))
    return int(value)


def initial_size(value, n_tasks: int, mode: str) -> int:
    """Round 0's pairs: ``budget.initial`` (a fraction or a number), or by default enough that every task is
    measured twice as a source and twice as a target: one cyclic shift of the tasks in joint mode (n
    unordered pairs), two otherwise (2n ordered pairs), so that the completion's source and target effects
    are identified from round 0 on (mvlpt.transfer.selection.initial_pairs builds it so). Never more than
    the study's pairs."""
    total = pair_count(n_tasks, mode)
    if value is None:
        return min(n_tasks if mode == "joint" else 2 * n_tasks, total)
    return min(as_pairs(value, total), total)


def value_problem(key: str, value, total: int | None = None) -> str | None:
    """What is wrong with budget value ``key`` (a fraction in (0, 1] or a whole number of pairs >= 1, at
    most ``total``), one clause; None: nothing."""
    if value is None and key == "initial":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return f"budget.{key} must be a fraction of the pairs in (0, 1] (e.g. 0.33) or a whole number of pairs (e.g. 60), got {value!r}"
    if is_fraction(value) and value > 1:
        whole = f" (write {int(value)} for that many pairs)" if value == int(value) else ""
        return f"budget.{key} is {value!r}, a decimal above 1: give a fraction of the pairs in (0, 1] or a whole number of pairs{whole}"
    if total is not None and not is_fraction(value) and value > total:
        return f"budget.{key} is {value} pairs, more than the study's {total}"
    return None


def budget_problems(cfg: dict) -> list[str]:
    """What is wrong with ``cfg``'s ``budget`` section for a budgeted run, one clause each, without a final
    period (empty: nothing). ``cfg`` has passed the config schema (types and the rule's name)."""
    from mvlpt.study import settings

    section = {**settings.section_defaults("budget"), **(cfg.get("budget") or {})}
    tasks = cfg.get("tasks") or []
    mode = cfg.get("mode", settings.DEFAULTS["mode"])
    if len(tasks) < MIN_TASKS:
        return [
            f"the budgeted study needs at least {MIN_TASKS} tasks (the config has {len(tasks)}): the completion "
            f"predicts a cell from the other sources and targets"
        ]
    total = pair_count(len(tasks), mode)
    out = [p for key in ("pairs", "round_size", "initial") if (p := value_problem(key, section[key], total))]
    out += side_problems(section["side"], cfg)
    if not out:  # the first round the completion reads: at least two measured cells
        budget, first = as_pairs(section["pairs"], total), initial_size(section["initial"], len(tasks), mode)
        cells = min(budget, first) * (2 if mode == "joint" else 1)
        if cells < MIN_CELLS:
            key = "pairs" if budget <= first else "initial"
            out.append(
                f"budget.{key} gives round 0 {cells} measured cell, and the completion needs at least {MIN_CELLS}: "
                f"raise it to 2 pairs or more"
            )
    return out


def side_problems(side, cfg: dict) -> list[str]:
    """What is wrong with ``budget.side``: each name the baselines, a similarity measure, or a predictor the
    study computes (``predictors.names``)."""
    from mvlpt.study import vocabulary

    out = []
    unknown = [s for s in side if s != BASELINE and s not in vocabulary.MEASURES and s not in vocabulary.PREDICTORS]
    if unknown:
        out.append(
            f"unknown side information {', '.join(map(str, unknown))} in `budget.side`; give {BASELINE}, similarity measures "
            f"({', '.join(vocabulary.MEASURES)}) or transferability predictors (docs/predictors.md)"
        )
    computed = (cfg.get("predictors") or {}).get("names")
    missing = [
        s
        for s in side
        if s in vocabulary.PREDICTORS and s not in vocabulary.MEASURES and computed is not None and s not in computed
    ]
    if missing:
        out.append(
            f"`budget.side` reads predictor(s) {', '.join(missing)}, which the study does not compute; add them to "
            f"`predictors.names` or drop them"
        )
    return out


def plan(cfg: dict) -> BudgetPlan:
    """The budgeted study of ``cfg`` (a config with the schema's defaults filled in, or its ``budget``
    section missing: the defaults); one sentence if the section cannot run."""
    from mvlpt.study import settings

    found = budget_problems(cfg)
    if found:
        raise MvlptError(f"invalid config: {'; '.join(found)}.")
    section = {**settings.section_defaults("budget"), **(cfg.get("budget") or {})}
    n = len(cfg["tasks"])
    mode = cfg.get("mode", settings.DEFAULTS["mode"])
    total = pair_count(n, mode)
    budget = min(as_pairs(section["pairs"], total), total)
    step = min(as_pairs(section["round_size"], total), total)
    first = initial_size(section["initial"], n, mode)
    chosen, sizes, left, picked = [], [], budget, 0
    while left > 0:
        k = min(first if not chosen else step, total - picked)  # a round lists at most what is left untrained
        chosen.append(k)
        sizes.append(min(k, left))
        picked += k
        left -= sizes[-1]
    return BudgetPlan(
        n,
        mode == "joint",
        total,
        budget,
        tuple(chosen),
        tuple(sizes),
        section["rule"],
        int(section["seed"]),
        tuple(section["side"]),
    )


def plan_message(p: BudgetPlan, methods: Sequence[str], seeds: int, stack_seeds: bool) -> str:
    """The budgeted study in one line: what `snakemake budgeted` says first, since Snakemake's job table
    lists a round's training jobs only once its checkpoint has chosen them."""
    copies = 1 if stack_seeds else seeds
    jobs = len(methods) * copies * (p.tasks + p.pairs)
    return (
        f"budgeted study: {p.pairs} of {p.total} {p.unit()} ({100 * p.share:.0f} %) per method in {p.rounds} round(s) "
        f"of {', '.join(map(str, p.sizes))} (rule {p.rule}), plus the {p.tasks} baselines: {jobs} training jobs for "
        f"{', '.join(methods)}; each round's pairs show in the DAG once the round before has run; GPU-hours: mvlpt preflight."
    )


# --------------------------------------------------------------------------------------------------
# Round files: round, rank, source, target (joint: source before target in the config's task order)
# --------------------------------------------------------------------------------------------------
def write_round(pairs: Sequence[tuple[str, str]], r: int, path: str | os.PathLike) -> Path:
    """Write round ``r``'s ranked ``pairs`` to ``path`` (CSV, atomically)."""
    from mvlpt.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ROUND_COLUMNS)
        for rank, (s, t) in enumerate(pairs):
            w.writerow((r, rank, s, t))
    return path


def read_round(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The ranked (source, target) pairs of a round file; one sentence if it is not one."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as e:
        raise MvlptError(f"cannot read the budget round file {path} ({e.strerror or e}).") from None
    if not rows or tuple(rows[0]) != ROUND_COLUMNS or any(len(r) != len(ROUND_COLUMNS) for r in rows[1:]):
        raise MvlptError(
            f"{path} is not a budget round file (columns {', '.join(ROUND_COLUMNS)}); delete it and rerun `snakemake budgeted`."
        )
    return [(s, t) for _, _, s, t in rows[1:]]


def cells_of(pairs: Sequence[tuple[str, str]], symmetric: bool) -> list[tuple[str, str]]:
    """The (source, target) cells a list of pairs measures: both directions of a joint pair."""
    out = []
    for s, t in pairs:
        out.append((s, t))
        if symmetric:
            out.append((t, s))
    return out
