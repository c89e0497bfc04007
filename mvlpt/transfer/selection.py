"""The selection rules of a budgeted study: which pairs to train next (issue 26; docs/budget.md).

* :func:`initial_pairs`: round 0, nothing measured yet. A balanced design: the tasks in a random order
  (``seed``), then whole cyclic shifts ``(order[i], order[i + d])`` for d = 1, 2, ...: every shift puts
  each task once as a source and once as a target, and two shifts already connect every source with
  every target through the measured cells, so the source and target effects are identified from the
  first round (a remainder of a shift is drawn at random).
* :func:`next_pairs`: a later round, from the completed matrix (:func:`mvlpt.transfer.completion.complete`):

  - ``uncertainty``: the unmeasured cells with the widest predictive distribution (largest ``sd``);
  - ``improvement``: the expected improvement of the per-target best-source choice: for cell (s, t),
    ``E[max(X - best, 0)]`` with ``X ~ N(gain, sd)`` the cell's predictive distribution and ``best`` the
    highest gain among the target's other sources (measured or predicted);
  - ``random``: uniformly among the unmeasured cells (the control).

  A round's picks are greedy with a diversity discount: a cell's score is divided by
  ``1 + (picks so far that share its source or target)``, so that one round does not spend itself on one
  row or one column whose cells the model would learn about together.

``symmetric=True`` is the joint mode: one training serves both directions, a pick is an unordered pair
``(a, b)`` with ``a < b``, its score the sum of its unmeasured directions' scores (for ``uncertainty``
the root of the summed variances), and it counts as measured once either direction is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scistats

from mvlpt.errors import MvlptError
from mvlpt.study.budget import RULES

RULES = RULES


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise MvlptError(f"unknown selection rule {rule!r}: choose one of {', '.join(RULES)}.")


def initial_pairs(tasks: list[str], k: int, *, symmetric: bool, seed: int) -> list[tuple[str, str]]:
    """Round 0 (nothing measured): ``k`` pairs in which every task appears as source and as target as
    evenly as ``k`` allows (whole cyclic shifts of a random task order, then part of the next). Ordered
    pairs ``(source, target)``; with ``symmetric`` unordered pairs ``(a, b)``, ``a < b``."""
    tasks = [str(t) for t in tasks]
    if len(set(tasks)) != len(tasks):
        raise MvlptError("the task list names a task more than once.")
    n = len(tasks)
    if k <= 0 or n < 2:
        return []
    rng = np.random.default_rng(seed)
    order = [tasks[p] for p in rng.permutation(n)]
    shifts = range(1, n // 2 + 1) if symmetric else range(1, n)
    picked: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for d in shifts:
        ring = []
        for p in range(n):
            a, b = order[p], order[(p + d) % n]
            pair = tuple(sorted((a, b))) if symmetric else (a, b)
            if pair not in seen:
                seen.add(pair)
                ring.append(pair)
        room = k - len(picked)
        if len(ring) <= room:
            picked += ring
        else:
            picked += [ring[p] for p in sorted(rng.choice(len(ring), size=room, replace=False))]
        if len(picked) >= k:
            break
    return picked


def _expected_improvement(mean: np.ndarray, sd: np.ndarray, best: np.ndarray) -> np.ndarray:
    sd = np.maximum(sd, 1e-12)
    z = (mean - best) / sd
    return (mean - best) * scistats.norm.cdf(z) + sd * scistats.norm.pdf(z)


def cell_scores(completed: pd.DataFrame, rule: str, rng: np.random.Generator) -> pd.Series:
    """The rule's score of every unmeasured cell of ``completed`` (indexed by (source, target))."""
    _check_rule(rule)
    missing = {"source", "target", "gain", "sd", "measured"} - set(completed.columns)
    if missing:
        raise MvlptError(f"the completed matrix lacks the column(s) {', '.join(sorted(missing))}.")
    df = completed.assign(source=completed["source"].astype(str), target=completed["target"].astype(str))
    df = df[df["source"] != df["target"]]
    open_ = df[~df["measured"].astype(bool)]
    if rule == "random":
        score = rng.random(len(open_))
    elif rule == "uncertainty":
        score = open_["sd"].to_numpy(dtype=float)
    else:
        # the incumbent of each cell: the best gain among its target's other sources (the target's best,
        # or its second best for the cell that is the best)
        ranked = df.sort_values(["target", "gain"], ascending=[True, False], kind="mergesort")
        first = ranked.groupby("target").nth(0).set_index("target")
        second = ranked.groupby("target").nth(1).set_index("target")["gain"]
        top_gain = open_["target"].map(first["gain"]).to_numpy(dtype=float)
        runner_up = open_["target"].map(second).to_numpy(dtype=float)
        is_top = open_["source"].to_numpy() == open_["target"].map(first["source"]).to_numpy()
        best = np.where(is_top, np.nan_to_num(runner_up, nan=-np.inf), top_gain)
        score = _expected_improvement(open_["gain"].to_numpy(dtype=float), open_["sd"].to_numpy(dtype=float), best)
    return pd.Series(np.nan_to_num(score, nan=0.0), index=pd.MultiIndex.from_arrays([open_["source"], open_["target"]]))


def next_pairs(completed: pd.DataFrame, k: int, rule: str, *, symmetric: bool, seed: int) -> list[tuple[str, str]]:
    """The ``k`` unmeasured pairs the rule picks (fewer when fewer are left), best first. With
    ``symmetric`` (joint mode) each pick is an unordered pair ``(a, b)``, ``a < b``, that has no measured
    direction yet."""
    _check_rule(rule)
    rng = np.random.default_rng(seed)
    scores = cell_scores(completed, rule, rng)
    if k <= 0 or scores.empty:
        return []
    if symmetric:
        measured = completed.loc[completed["measured"].astype(bool), ["source", "target"]].astype(str)
        done = {tuple(sorted(p)) for p in zip(measured["source"], measured["target"])}
        table: dict[tuple[str, str], list[float]] = {}
        for (s, t), v in scores.items():
            pair = tuple(sorted((s, t)))
            if pair not in done:
                table.setdefault(pair, []).append(float(v))
        if rule == "uncertainty":
            cand = {p: float(np.sqrt(np.sum(np.square(v)))) for p, v in table.items()}
        elif rule == "random":
            cand = {p: float(v[0]) for p, v in table.items()}
        else:
            cand = {p: float(np.sum(v)) for p, v in table.items()}
    else:
        cand = {(s, t): float(v) for (s, t), v in scores.items()}
    pairs = list(cand)
    base = np.array([cand[p] for p in pairs])
    tie = rng.random(len(pairs))  # ties (equal scores) are broken at random, reproducibly
    picks_src: dict[str, int] = {}
    picks_tgt: dict[str, int] = {}
    left = np.ones(len(pairs), dtype=bool)
    chosen: list[tuple[str, str]] = []
    while left.any() and len(chosen) < k:
        if rule == "random":
            discount = np.ones(len(pairs))
        elif symmetric:  # an unordered pair's tasks are both sources and targets
            load = {x: picks_src.get(x, 0) + picks_tgt.get(x, 0) for x in set(picks_src) | set(picks_tgt)}
            discount = np.array([1.0 + load.get(a, 0) + load.get(b, 0) for a, b in pairs])
        else:
            discount = np.array([1.0 + picks_src.get(s, 0) + picks_tgt.get(t, 0) for s, t in pairs])
        adj = np.where(left, base / discount, -np.inf)
        top = np.flatnonzero(adj == adj.max())
        p = top[np.argmax(tie[top])]
        left[p] = False
        a, b = pairs[p]
        chosen.append((a, b))
        picks_src[a] = picks_src.get(a, 0) + 1
        picks_tgt[b] = picks_tgt.get(b, 0) + 1
    return chosen
