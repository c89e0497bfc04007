"""The budgeted study's rounds (issue 26; docs/budget.md): what the earlier rounds measured, the pairs the
next round trains, and what the completion says after every round.

A round's choice is a file (:func:`mvlpt.study.budget.write_round`); the gains it measured are read from the
result files of the study (the same files, in the same places, as the full study's), never from anything
else on disk: a cell of a pair no round chose is not measured here even when its result file exists (a
full study run into the same folder). The completion (:func:`mvlpt.transfer.completion.complete`) gets the
measured cells with their standard errors over seeds and the baselines as side information; the choice
is :mod:`mvlpt.transfer.selection`'s.

Used by ``mvlpt budget select`` (the checkpoint of each round) and ``mvlpt budget complete`` (the
outputs: the completed matrix with intervals, the best source per target, the progress by round).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mvlpt.errors import MvlptError
from mvlpt.study import budget, layout, results

CERTAIN = 0.9  # a target's best source counts as certain when its probability of being the best reaches this
PROGRESS_COLUMNS = (
    "round",
    "pairs",
    "cells",
    "share",
    "mean_width",
    "median_width",
    "certain",
    "agree_final",
    "rank",
)


# --------------------------------------------------------------------------------------------------
# What the rounds measured
# --------------------------------------------------------------------------------------------------
def order_pair(a: str, b: str, tasks: Sequence[str]) -> tuple[str, str]:
    """A joint pair in the config's task order (the order train_joint's job has)."""
    pos = {t: i for i, t in enumerate(tasks)}
    return (a, b) if pos[a] < pos[b] else (b, a)


def chosen_pairs(round_files: Sequence[str | os.PathLike], sizes: Sequence[int] | None = None) -> list[tuple[int, str, str]]:
    """(round, source, target) of the pairs trained in the rounds of ``round_files`` (round 0 first): the
    first ``sizes[r]`` of each round's ranked list (None: all of it)."""
    out = []
    for r, path in enumerate(round_files):
        pairs = budget.read_round(path)
        take = len(pairs) if sizes is None else int(sizes[r])
        out.extend((r, s, t) for s, t in pairs[:take])
    return out


def measured_gains(
    results_dir: str | os.PathLike,
    method: str,
    tasks: Sequence[str],
    seeds: Sequence[int],
    cells: Sequence[tuple[str, str]],
) -> tuple[pd.DataFrame, pd.Series]:
    """The measured cells (source, target, gain, gain_se, n_seeds) of ``cells`` and the baselines (per
    target, the mean over seeds), from the result files the study's layout puts them in; one sentence if
    one is missing or the files mix settings (:func:`mvlpt.study.results.check_settings`)."""
    from mvlpt.analysis import tables

    wanted = [(t, t) for t in tasks] + [c for c in dict.fromkeys(cells) if c[0] != c[1]]
    found = []
    for s, t in wanted:
        for seed in seeds:
            path = layout.RESULT.path(results_dir, method, s, t, seed)
            if not path.is_file():
                what = "the baseline" if s == t else f"the pair {s} -> {t}, which a budget round chose,"
                raise MvlptError(f"{what} of {method} has no result {path}; run `snakemake budgeted` to train it.")
            found.append((path, results.read_result(path)))
    results.check_settings(found)
    pairs = tables.pair_table(tables.runs_table(rec for _, rec in found))
    base = pairs[pairs["is_baseline"]].set_index("target")["baseline_mean"].reindex(list(tasks))
    off = pairs[~pairs["is_baseline"]].copy()
    with np.errstate(invalid="ignore"):
        off["gain_se"] = off["gain_std"] / np.sqrt(off["n_seeds"])
    cols = ["source", "target", "gain", "gain_se", "n_seeds"]
    return off[cols].reset_index(drop=True), base.rename("baseline")


def parse_side(specs: Sequence[str]) -> list[tuple[str, str | None]]:
    """``--side`` values as (name, file): ``baseline`` alone, a similarity measure or a predictor as
    ``NAME=FILE`` (its similarity table, its predictor matrix); one sentence if one is neither."""
    from mvlpt.study import vocabulary

    out = []
    for spec in specs:
        name, eq, path = str(spec).partition("=")
        if name == budget.BASELINE and not eq:
            out.append((name, None))
        elif name in vocabulary.MEASURES or name in vocabulary.PREDICTORS:
            if not path:
                raise MvlptError(f"side information {name} needs its file: --side {name}=FILE.")
            out.append((name, path))
        else:
            raise MvlptError(
                f"unknown side information {spec!r}; give {budget.BASELINE}, or MEASURE=FILE or PREDICTOR=FILE "
                f"(measures: {', '.join(vocabulary.MEASURES)})."
            )
    return out


def read_side(specs: Sequence[tuple[str, str | None]], tasks: Sequence[str], baselines: pd.Series) -> dict:
    """The completion's side information (:func:`mvlpt.transfer.completion.side_features`): the baselines as a
    per-task series, a measure's similarity matrix, a predictor's matrix (a name that is both a measure and a
    predictor is read as the measure's similarity table)."""
    from mvlpt.study import vocabulary
    from mvlpt.transfer import grouping, predictors

    side = {}
    for name, path in specs:
        if name == budget.BASELINE:
            if baselines.notna().all():
                side[name] = baselines
        elif name in vocabulary.MEASURES:
            side[f"similarity:{name}"] = grouping.read_similarity_matrix(path, name, tasks)
        else:
            m, info = predictors.read_predictor(path)
            if info["predictor"] != name:
                raise MvlptError(f"{path} is the matrix of predictor {info['predictor']}, not of {name}; pass {name}'s.")
            side[f"predictor:{name}"] = m
    return side


def completed_matrix(measured: pd.DataFrame, side: dict, tasks: Sequence[str], *, level: float, seed: int) -> pd.DataFrame:
    """The completion of one method's gain matrix from ``measured`` (:func:`mvlpt.transfer.completion.complete`)
    with the side information ``side`` (:func:`read_side`)."""
    from mvlpt.transfer import completion

    return completion.complete(measured, list(tasks), side=side or None, level=level, seed=seed)


# --------------------------------------------------------------------------------------------------
# The next round
# --------------------------------------------------------------------------------------------------
def choose(
    r: int,
    k: int,
    tasks: Sequence[str],
    *,
    symmetric: bool,
    rule: str,
    seed: int,
    completed: pd.DataFrame | None = None,
) -> list[tuple[str, str]]:
    """Round ``r``'s ``k`` pairs, ranked: round 0 the initial design (:func:`mvlpt.transfer.selection.initial_pairs`),
    a later one by ``rule`` from ``completed`` (:func:`mvlpt.transfer.selection.next_pairs`). Joint pairs
    come in the config's task order. The seed of a round is ``seed + r``."""
    from mvlpt.transfer import selection

    if rule not in selection.RULES:
        raise MvlptError(f"unknown selection rule {rule!r}; choose one of {', '.join(selection.RULES)}.")
    if r == 0:
        pairs = selection.initial_pairs(list(tasks), k, symmetric=symmetric, seed=seed)
    else:
        if completed is None:
            raise MvlptError(f"round {r} is chosen from the completion of the rounds before it; give their round files.")
        pairs = selection.next_pairs(completed, k, rule, symmetric=symmetric, seed=seed + r)
    pairs = [(str(a), str(b)) for a, b in pairs]
    if symmetric:
        pairs = [order_pair(a, b, tasks) for a, b in pairs]
    known = set(tasks)
    bad = [p for p in pairs if p[0] not in known or p[1] not in known or p[0] == p[1]]
    if bad or len(set(pairs)) != len(pairs):
        raise MvlptError(
            f"the selection returned pairs that are not distinct off-diagonal pairs of the study's tasks: {bad or pairs}."
        )
    return pairs


def select_round(
    results_dir: str | os.PathLike,
    method: str,
    tasks: Sequence[str],
    seeds: Sequence[int],
    r: int,
    k: int,
    earlier: Sequence[str | os.PathLike],
    *,
    symmetric: bool,
    rule: str,
    seed: int,
    level: float,
    side: Sequence[tuple[str, str | None]] = ((budget.BASELINE, None),),
) -> list[tuple[str, str]]:
    """Round ``r``'s pairs for ``method``: the completion of what the ``earlier`` rounds' files (rounds 0
    .. r-1, every pair of each: only the last round of a budget trains part of its list) measured decides,
    with the side information ``side`` (:func:`parse_side`)."""
    if len(earlier) != r:
        raise MvlptError(f"round {r} needs the files of the {r} round(s) before it, got {len(earlier)}.")
    completed = None
    if r > 0:
        cells = budget.cells_of([(s, t) for _, s, t in chosen_pairs(earlier)], symmetric)
        measured, base = measured_gains(results_dir, method, tasks, seeds, cells)
        completed = completed_matrix(measured, read_side(side, tasks, base), tasks, level=level, seed=seed)
        left = int((~completed["measured"]).sum()) // (2 if symmetric else 1)
        k = min(k, left)
    return choose(r, k, tasks, symmetric=symmetric, rule=rule, seed=seed, completed=completed) if k > 0 else []


# --------------------------------------------------------------------------------------------------
# The outputs: completed matrix, best source per target, progress by round
# --------------------------------------------------------------------------------------------------
def complete_rounds(
    results_dir: str | os.PathLike,
    method: str,
    tasks: Sequence[str],
    seeds: Sequence[int],
    round_files: Sequence[str | os.PathLike],
    sizes: Sequence[int],
    *,
    symmetric: bool,
    level: float,
    seed: int,
    draws: int = 2000,
    certain: float = CERTAIN,
    side: Sequence[tuple[str, str | None]] = ((budget.BASELINE, None),),
) -> dict[str, pd.DataFrame]:
    """The completion after every round of ``round_files`` (each training its first ``sizes[r]`` pairs):
    ``completed`` (the last round's matrix: source, target, gain, sd, lo, hi, measured, round: the round
    that measured the cell), ``best_source`` (per target, the last round's) and ``progress`` (one row per
    round, :data:`PROGRESS_COLUMNS`: pairs and cells trained so far, their share of the study's pairs, the
    mean and median interval width of the cells not measured, the share of targets whose best source has
    probability >= ``certain``, the share whose best source is the last round's, the completion's rank)."""
    if len(round_files) != len(sizes):
        raise MvlptError(f"{len(round_files)} round files for {len(sizes)} round sizes; give one size per round.")
    chosen = chosen_pairs(round_files, sizes)
    n = len(tasks)
    total = n * (n - 1) // (2 if symmetric else 1)
    measured_all, base = measured_gains(
        results_dir, method, tasks, seeds, budget.cells_of([(s, t) for _, s, t in chosen], symmetric)
    )
    measured_in = {}
    for r, s, t in chosen:
        for cell in budget.cells_of([(s, t)], symmetric):
            measured_in.setdefault(cell, r)
    key = list(zip(measured_all["source"], measured_all["target"]))
    measured_all["round"] = [measured_in[c] for c in key]
    side_info = read_side(side, tasks, base)
    per_round = []
    for r in range(len(round_files)):
        m = measured_all[measured_all["round"] <= r].drop(columns="round")
        done = completed_matrix(m, side_info, tasks, level=level, seed=seed)
        best = completion_best(done, draws=draws, seed=seed)
        per_round.append((r, m, done, best))
    final_best = per_round[-1][3].set_index("target")["best_source"]
    rows = []
    for r, m, done, best in per_round:
        open_cells = done[~done["measured"]]
        width = (open_cells["hi"] - open_cells["lo"]).to_numpy(float)
        pairs = sum(1 for rr, _, _ in chosen if rr <= r)
        rows.append(
            {
                "round": r,
                "pairs": pairs,
                "cells": len(m),
                "share": pairs / total,
                "mean_width": float(np.mean(width)) if width.size else 0.0,
                "median_width": float(np.median(width)) if width.size else 0.0,
                "certain": float((best["probability"] >= certain).mean()),
                "agree_final": float((best.set_index("target")["best_source"] == final_best.reindex(best["target"])).mean()),
                "rank": int(done.attrs.get("rank", -1)),
            }
        )
    completed = per_round[-1][2].copy()
    completed["round"] = [measured_in.get((s, t)) for s, t in zip(completed["source"], completed["target"])]
    completed["round"] = completed["round"].astype("Int64")
    best = per_round[-1][3].copy()
    best["top3"] = [",".join(map(str, x)) for x in best["top3"]]
    return {"completed": completed, "best_source": best, "progress": pd.DataFrame(rows, columns=list(PROGRESS_COLUMNS))}


def completion_best(completed: pd.DataFrame, *, draws: int, seed: int) -> pd.DataFrame:
    from mvlpt.transfer import completion

    return completion.best_sources(completed, draws=draws, seed=seed)


def write_outputs(
    out: dict[str, pd.DataFrame],
    budget_dir: str | os.PathLike,
    method: str,
    tasks: Sequence[str],
    level: float,
    certain: float = CERTAIN,
) -> list[Path]:
    """The tables (CSV + parquet) and figures (PNG + PDF) of one method's budgeted study under ``budget_dir``
    (:data:`mvlpt.study.layout.BUDGET_TABLE`, :data:`~mvlpt.study.layout.BUDGET_FIGURE`)."""
    from mvlpt.analysis import plots, tables
    from mvlpt.io import write_together

    written = []
    with write_together():
        for name in ("completed", "best_source", "progress"):
            written += tables.write_table(out[name], layout.BUDGET_TABLE.path(budget_dir, method, name, "csv"))
        fig = plots.completed_heatmap(out["completed"], method, list(tasks), level=level)
        written += plots.save_figure(fig, layout.BUDGET_FIGURE.path(budget_dir, method, "completed", "png"))
        fig = plots.budget_progress(out["progress"], method, certain)
        written += plots.save_figure(fig, layout.BUDGET_FIGURE.path(budget_dir, method, "progress", "png"))
    return written
