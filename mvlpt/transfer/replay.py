"""The replay of a budgeted study on a fully measured one, with no training (issue 26; docs/budget.md).

A full study's pair table is the hidden truth. A replay starts from nothing, trains (reveals) the
pairs that :mod:`mvlpt.transfer.selection` picks round by round, completes the matrix with
:mod:`mvlpt.transfer.completion` after every round, and at each budget (a share of the trainable pairs)
scores the completed matrix against the full study:

* ``spearman``: Spearman's rho over every off-diagonal cell (measured ones at their value, the rest
  predicted) against the full study's gains; ``spearman_hidden`` over the unmeasured cells only;
* ``within_target``: the mean over targets of the Spearman's rho across its sources;
* ``top1``, ``top3``: the share of targets whose best source in the full study is the predicted best
  source, or among the predicted three best (ties in the full study: any of the tied sources counts);
* ``regret``: the mean over targets of the gain lost by training from the predicted best source
  instead of the true best (in the gains' units: fractions);
* ``coverage``, ``width``: the share of unmeasured cells whose full-study gain lies inside the
  completed interval, and the intervals' mean width;
* ``p_best``: the mean probability the completion gives its best-source choice (compare with ``top1``).

Budgets count trainings: ordered pairs, or with ``symmetric`` (joint runs) unordered pairs, each
revealing both directions. Every (model, rule, repetition) is one trajectory: an initial balanced
design up to the first budget, then rounds of ``round_size`` pairs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scistats

from mvlpt.errors import MvlptError
from mvlpt.study.budget import REPLAY_BUDGETS, REPLAY_MODELS
from mvlpt.transfer import completion, selection

BUDGETS = REPLAY_BUDGETS
# the completion models a replay compares: the effects only (the simpler alternative) and the full model
MODELS = REPLAY_MODELS
METRICS = ("spearman", "spearman_hidden", "within_target", "top1", "top3", "regret", "coverage", "width", "p_best")
ROUND_SHARE = 0.05  # default round: 5 % of the trainable pairs
TIE = 1e-12
PAIR_COLUMNS = ("source", "target", "gain", "gain_se")


# --------------------------------------------------------------------------------------------------
# The measured study
# --------------------------------------------------------------------------------------------------


def read_pairs(path: str | Path) -> pd.DataFrame:
    """A study's pair table (``tables/pairs.parquet`` or ``.csv``): its off-diagonal cells with a gain."""
    from mvlpt.analysis import tables

    path = Path(path)
    if not path.exists():
        raise MvlptError(f"no pair table at {path}: give a study's tables/pairs.parquet (or .csv), made by `mvlpt collect`.")
    return off_diagonal(tables.read_table(path), str(path))


def off_diagonal(pairs: pd.DataFrame, where: str = "the pair table") -> pd.DataFrame:
    missing = {"method", "source", "target", "gain"} - set(pairs.columns)
    if missing:
        raise MvlptError(f"{where} lacks the column(s) {', '.join(sorted(missing))}; is it a study's tables/pairs table?")
    df = pairs.copy()
    df["source"], df["target"] = df["source"].astype(str), df["target"].astype(str)
    df = df[(df["source"] != df["target"]) & df["gain"].notna()]
    if "gain_se" not in df.columns:
        df["gain_se"] = np.nan
    if df.empty:
        raise MvlptError(f"{where} has no off-diagonal cell with a gain.")
    return df.reset_index(drop=True)


def side_information(results_dir: str | Path, method: str, pairs: pd.DataFrame | None = None) -> dict:
    """What a budgeted study knows before it trains a pair: the task similarities (``similarity/``),
    the frozen-model predictors (``predictors/*``) and the method's prompt predictors
    (``predictors/<method>/*``; they need only the baselines' prompts), each a task x task matrix, and
    the targets' baselines (``baseline_mean`` of ``pairs``) as a per-task series. Whatever is not on
    disk is left out."""
    from mvlpt.analysis import tables
    from mvlpt.study import layout

    results_dir = Path(results_dir)
    side: dict = {}
    sims = tables.read_similarities(tables.similarity_files(layout.SIMILARITY_DIR.path(results_dir)))
    for measure, g in sims.groupby("measure"):
        m = g.pivot_table(index="task_a", columns="task_b", values="value", aggfunc="mean")
        side[f"similarity:{measure}"] = pd.DataFrame(tables.oriented(measure, m.to_numpy()), index=m.index, columns=m.columns)
    pred_dir = layout.PREDICTORS_DIR.path(results_dir)
    for folder, label in ((pred_dir, "predictor"), (pred_dir / method, f"predictor:{method}")):
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            side[f"{label}:{path.stem}"] = tables.read_matrix(path)
    if pairs is not None and "baseline_mean" in pairs.columns:
        base = pairs.groupby("target")["baseline_mean"].first().dropna()
        if len(base):
            side["baseline"] = base
    return side


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------


def _rho(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan
    return float(scistats.spearmanr(a, b)[0])


def score(completed: pd.DataFrame, truth: pd.DataFrame, *, draws: int = 500, seed: int = 0) -> dict:
    """The completed matrix against the full study (``truth``: source, target, gain), see the module."""
    df = completed.merge(truth[["source", "target", "gain"]].rename(columns={"gain": "truth"}), on=["source", "target"])
    hidden = df[~df["measured"]]
    within, top1, top3, regret = [], [], [], []
    for _, g in df.groupby("target"):
        within.append(_rho(g["gain"], g["truth"]))
        order = g.sort_values(["gain", "source"], ascending=[False, True], kind="mergesort")
        best_true = set(g.loc[g["truth"] >= g["truth"].max() - TIE, "source"])
        top1.append(order["source"].iloc[0] in best_true)
        top3.append(bool(best_true & set(order["source"].iloc[:3])))
        regret.append(float(g["truth"].max() - order["truth"].iloc[0]))
    best = completion.best_sources(completed, draws=draws, seed=seed)
    inside = (hidden["truth"] >= hidden["lo"]) & (hidden["truth"] <= hidden["hi"])
    return {
        "spearman": _rho(df["gain"], df["truth"]),
        "spearman_hidden": _rho(hidden["gain"], hidden["truth"]),
        "within_target": float(np.nanmean(within)) if np.isfinite(within).any() else np.nan,
        "top1": float(np.mean(top1)),
        "top3": float(np.mean(top3)),
        "regret": float(np.mean(regret)),
        "coverage": float(inside.mean()) if len(hidden) else np.nan,
        "width": float((hidden["hi"] - hidden["lo"]).mean()) if len(hidden) else np.nan,
        "p_best": float(best["probability"].mean()),
    }


# --------------------------------------------------------------------------------------------------
# One trajectory
# --------------------------------------------------------------------------------------------------


def budget_counts(n_units: int, budgets: Sequence[float]) -> list[tuple[float, int]]:
    """(budget, trainings) for each budget: at least 2 trainings, at most all, each count once."""
    out, seen = [], set()
    for b in sorted(budgets):
        if not 0 < b <= 1:
            raise MvlptError(f"a budget is a share of the pairs in (0, 1], got {b}.")
        c = min(max(2, round(b * n_units)), n_units)
        if c not in seen:
            seen.add(c)
            out.append((float(b), c))
    return out


def _measured_frame(truth: pd.DataFrame, cells: set) -> pd.DataFrame:
    keys = pd.MultiIndex.from_arrays([truth["source"], truth["target"]])
    return truth.loc[keys.isin(list(cells)), list(PAIR_COLUMNS)]


def trajectory(
    truth: pd.DataFrame,
    tasks: list[str],
    *,
    rule: str,
    model: str,
    budgets: Sequence[float] = BUDGETS,
    round_size: int | None = None,
    symmetric: bool = False,
    side: dict | None = None,
    level: float = completion.LEVEL,
    seed: int = 0,
) -> list[dict]:
    """Replay one budgeted study on ``truth`` (one method's off-diagonal cells: source, target, gain,
    gain_se): one row of scores per budget."""
    if model not in MODELS:
        raise MvlptError(f"unknown completion model {model!r}: choose one of {', '.join(MODELS)}.")
    spec = MODELS[model]
    available = set(zip(truth["source"], truth["target"]))
    units = {tuple(sorted(c)) for c in available} if symmetric else available
    n_units = len(units)
    if round_size is not None and round_size < 1:
        raise MvlptError(f"a round trains at least one pair, got a round size of {round_size}.")
    round_size = round_size or max(1, math.ceil(ROUND_SHARE * n_units))
    counts = budget_counts(n_units, budgets)
    trained: set = set()
    cells: set = set()

    def train(picks):
        for a, b in picks:
            trained.add((a, b))
            cells.update({(a, b), (b, a)} & available if symmetric else {(a, b)} & available)

    def fill(completed):  # a cell the study lacks can be neither picked nor scored
        return completed[[c in available for c in zip(completed["source"], completed["target"])]]

    cache: dict = {}

    def complete():  # the completion of what is measured now (a round's pick and a budget's score share it)
        key = frozenset(cells)
        if key not in cache:
            start = time.perf_counter()
            done = _measured_frame(truth, cells)
            out = completion.complete(done, tasks, side=_side(spec, side), level=level, seed=seed, rank=spec["rank"])
            cache.clear()
            cache[key] = (out, time.perf_counter() - start)
        return cache[key]

    rows = []
    train([p for p in selection.initial_pairs(tasks, counts[0][1], symmetric=symmetric, seed=seed) if p in units])
    rnd = 0
    for budget, count in counts:
        while len(trained) < count:
            rnd += 1
            # the control needs no completion to pick
            completed = _placeholder(truth, cells) if rule == "random" else fill(complete()[0])
            picks = selection.next_pairs(
                completed, min(round_size, count - len(trained)), rule, symmetric=symmetric, seed=seed * 1000 + rnd
            )
            if not picks:
                break
            train(picks)
        completed, seconds = complete()
        row = {"budget": budget, "trained": len(trained), "measured": len(cells), "cells": len(available)}
        row.update(score(fill(completed), truth, seed=seed))
        row.update({"rank": completed.attrs["rank"], "calibration": completed.attrs["calibration"], "seconds": seconds})
        rows.append(row)
    return rows


def _side(spec: dict, side: dict | None) -> dict | None:
    return side if spec["side"] and side else None


def _placeholder(truth: pd.DataFrame, cells: set) -> pd.DataFrame:
    """A completed-matrix frame with only the measured flags (what the random rule reads)."""
    out = truth[["source", "target"]].copy()
    out["gain"], out["sd"] = 0.0, 1.0
    out["measured"] = [c in cells for c in zip(out["source"], out["target"])]
    return out


# --------------------------------------------------------------------------------------------------
# A whole replay
# --------------------------------------------------------------------------------------------------


def replay(
    pairs: pd.DataFrame,
    *,
    methods: Sequence[str] | None = None,
    rules: Sequence[str] = selection.RULES,
    models: Sequence[str] = tuple(MODELS),
    budgets: Sequence[float] = BUDGETS,
    reps: int = 5,
    round_size: int | None = None,
    symmetric: bool = False,
    side: dict | None = None,
    level: float = completion.LEVEL,
    seed: int = 0,
    progress=None,
) -> pd.DataFrame:
    """Every (method, model, rule, repetition) trajectory of a replay on ``pairs`` (a study's
    off-diagonal cells, :func:`off_diagonal`): one row per budget. ``side``: per method, the side
    information of :func:`side_information` (None: none)."""
    pairs = off_diagonal(pairs)
    for r in rules:
        if r not in selection.RULES:
            raise MvlptError(f"unknown selection rule {r!r}: choose one of {', '.join(selection.RULES)}.")
    all_methods = list(dict.fromkeys(pairs["method"]))
    methods = list(methods) if methods else all_methods
    unknown = sorted(set(methods) - set(all_methods))
    if unknown:
        raise MvlptError(f"the pair table has no method {', '.join(unknown)} (it has {', '.join(all_methods)}).")
    if reps < 1:
        raise MvlptError(f"a replay needs at least one repetition, got {reps}.")
    rows = []
    for method in methods:
        truth = pairs[pairs["method"] == method].reset_index(drop=True)
        tasks = sorted(set(truth["source"]) | set(truth["target"]))
        method_side = _aligned((side or {}).get(method), tasks)
        for model in models:
            for rule in rules:
                for rep in range(reps):
                    for row in trajectory(
                        truth,
                        tasks,
                        rule=rule,
                        model=model,
                        budgets=budgets,
                        round_size=round_size,
                        symmetric=symmetric,
                        side=method_side,
                        level=level,
                        seed=seed + rep,
                    ):
                        rows.append({"method": method, "model": model, "rule": rule, "rep": rep, **row})
                    if progress:
                        progress(method, model, rule, rep)
    return pd.DataFrame(rows)


def _aligned(side: dict | None, tasks: list[str]) -> dict | None:
    """The side matrices in the task order, once (the completion then skips its reindexing)."""
    if not side:
        return side
    out = {}
    for name, value in side.items():
        if isinstance(value, pd.DataFrame):
            value = value.set_axis(value.index.astype(str), axis=0).set_axis(value.columns.astype(str), axis=1)
            value = value.reindex(index=tasks, columns=tasks)
        out[name] = value
    return out


def summary(reps: pd.DataFrame) -> pd.DataFrame:
    """Per (method, model, rule, budget): every metric's mean and standard deviation over repetitions."""
    keys = [k for k in ("study", "method", "model", "rule", "budget") if k in reps.columns]
    agg = reps.groupby(keys, sort=False)[["trained", *METRICS, "rank", "calibration", "seconds"]]
    mean = agg.mean()
    sd = agg.std(ddof=1)[list(METRICS)].add_suffix("_sd")
    out = mean.join(sd).reset_index()
    out.insert(len(keys), "reps", reps.groupby(keys, sort=False).size().to_numpy())
    return out


def targets(table: pd.DataFrame, *, level: float = completion.LEVEL, share: float = 1 / 3) -> pd.DataFrame:
    """The issue's targets at the largest budget <= ``share``: Spearman >= 0.9, top-3 recall >= 0.8,
    coverage within 5 points of ``level`` (per method, model and rule of a :func:`summary`)."""
    at = table[table["budget"] <= share + 1e-9]
    if at.empty:
        return at
    at = at[at["budget"] == at["budget"].max()].copy()
    at["spearman_ok"] = at["spearman"] >= 0.9
    at["top3_ok"] = at["top3"] >= 0.8
    at["coverage_ok"] = (at["coverage"] - level).abs() <= 0.05
    return at
