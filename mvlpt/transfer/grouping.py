"""Grouping strategies of the multitask study: which source tasks each target is trained with
(docs/multitask.md).

For each method ``m`` of the multitask study, strategy ``s`` (:data:`mvlpt.study.vocabulary.GROUPING_STRATEGIES`),
mode ``d`` (:data:`mvlpt.study.vocabulary.MULTITASK_MODES`) and target ``t`` of the configured tasks ``T``, the
*sources* ``sources(s, m, t)`` are (``k`` from the config, ``k >= 1``):

* ``all``: every task of ``T`` except ``t``;
* ``gain``: the ``k`` sources with the highest measured pairwise gain of method ``m`` on ``t``;
* ``similarity``: the ``k`` tasks most similar to ``t`` by the configured measure
  (:data:`mvlpt.study.vocabulary.MEASURES`; a distance is negated first, :meth:`mvlpt.study.vocabulary.Measure.oriented`,
  so the lowest distance comes first);
* ``predictor``: the ``k`` best by the configured transferability predictor's matrix (for a
  per-method predictor, :attr:`mvlpt.study.vocabulary.Predictor.per_method`, method ``m``'s matrix);
* ``random``: ``k`` sources drawn by a generator seeded from (config seed, target name) through
  :mod:`hashlib`: stable across processes and Python versions, different for each target, the same
  for every method (the control);
* ``fixed``: the given ``sources`` (config ``multitask.sources``), for every target; the targets are then
  the other tasks only (the paper's Table 1 setting: the 11 CoOp data sets as sources).

The target itself is never a source. Ties are broken by the config's task order; ``k`` at least the
number of other tasks gives all of them. The *training group* is the sources in mode ``init`` (one
prompt trained on their union initialises ``t``'s prompt, which is then fine-tuned on ``t``) and the
sources plus ``t`` in mode ``joint`` (``t`` trained together with them, best checkpoint per task); the
group's name is :func:`mvlpt.study.vocabulary.group_id` of the training group. SoftCPT (a method with
``multitask_only``) is trained once over all configured tasks: it has strategy ``all`` in mode
``joint`` only (one group, every task, one run serves every target); its other strategies and modes
are not offered and are left out of the table.

Orientation of the matrices read here (every one is ``source`` rows x ``target`` columns):

* pairwise gain, ``{tables}/matrices/{method}_gain.csv`` (:func:`mvlpt.analysis.tables.write_collected`,
  :func:`mvlpt.analysis.tables.matrix`): rows = source, columns = target, value = target metric minus the
  target's single-task baseline (a fraction), larger = better; NaN where a pair has no result;
* similarity, ``{results}/similarity/{measure}.csv`` (``mvlpt similarity``): a long table
  ``task_a, task_b, measure, value``; ``task_a`` is the source and ``task_b`` the target, as
  :func:`mvlpt.analysis.tables.pairs_with_similarity` joins them (the four measures are symmetric anyway);
  raw values, a distance (``visual_frechet``) is lower = more similar;
* predictor, ``{results}/predictors/{predictor}.csv`` or, per method,
  ``{results}/predictors/{method}/{predictor}.csv`` (:func:`mvlpt.transfer.predictors.write_predictor`): rows =
  source, columns = target, already oriented larger = more gain expected (a similarity predictor is
  its measure negated for a distance).

The groups table (:data:`GROUP_COLUMNS`) is written by :func:`write_groups` to
``{results}/multitask/groups.csv``: rows sorted, so the same inputs give a byte-identical file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mvlpt.analysis import tables
from mvlpt.errors import MvlptError
from mvlpt.study import layout, settings, vocabulary

GROUP_COLUMNS = ("method", "strategy", "mode", "target", "group", "tasks", "sources", "k")
RANKED = ("gain", "similarity", "predictor")  # strategies that rank the sources by a matrix
PAIRWISE_HINT = "run the pairwise study first: snakemake analysis"


def groups_path(results_dir: str | os.PathLike) -> Path:
    """``{results_dir}/multitask/groups.csv``."""
    return layout.MULTITASK_GROUPS.path(results_dir)


def offered(method: str, strategy: str, mode: str) -> bool:
    """Whether ``method`` has ``strategy`` in ``mode`` (:func:`mvlpt.study.vocabulary.multitask_runs`): every pair
    for the pairwise methods; for a multitask-only method (SoftCPT, trained once on all tasks) only
    strategy ``all`` in mode ``joint``."""
    return (mode, strategy) in vocabulary.multitask_runs(method, {"modes": [mode], "strategies": [strategy]})


def _check_names(strategies: Sequence[str], modes: Sequence[str]) -> None:
    for s in strategies:
        if s not in vocabulary.GROUPING_STRATEGIES:
            raise MvlptError(f"unknown grouping strategy {s!r}; choose from {', '.join(vocabulary.GROUPING_STRATEGIES)}.")
    for d in modes:
        if d not in vocabulary.MULTITASK_MODES:
            raise MvlptError(f"unknown multitask mode {d!r}; choose from {', '.join(vocabulary.MULTITASK_MODES)}.")


# --------------------------------------------------------------------------------------------------
# The strategies: a target's sources
# --------------------------------------------------------------------------------------------------
def top_k(scores: pd.Series, target: str, tasks: Sequence[str], k: int, what: str) -> list[str]:
    """The ``k`` tasks of ``tasks`` other than ``target`` with the largest ``scores`` (a Series indexed
    by source task), ties broken by the order of ``tasks``; returned in that order. A missing or NaN
    score is an error naming ``what`` the scores are."""
    others = [s for s in tasks if s != target]
    missing = [s for s in others if s not in scores.index or not np.isfinite(scores.get(s, np.nan))]
    if missing:
        raise MvlptError(f"{what} has no value for source {missing[0]} -> target {target}; {PAIRWISE_HINT}.")
    ranked = sorted(range(len(others)), key=lambda i: (-float(scores[others[i]]), i))
    chosen = set(ranked[:k])
    return [s for i, s in enumerate(others) if i in chosen]


def _column(matrix: pd.DataFrame, target: str, tasks: Sequence[str], what: str) -> pd.Series:
    """The ``target`` column of a source x target matrix; a task it lacks is one sentence."""
    lacking = [t for t in tasks if t not in matrix.index or t not in matrix.columns]
    if lacking:
        raise MvlptError(f"{what} lacks task {lacking[0]}; recompute it over the configured tasks ({PAIRWISE_HINT}).")
    return matrix[target]


def sources_all(target: str, tasks: Sequence[str]) -> list[str]:
    """Every task except ``target``, in the order of ``tasks``."""
    return [s for s in tasks if s != target]


def sources_gain(gain: pd.DataFrame, target: str, tasks: Sequence[str], k: int, method: str = "") -> list[str]:
    """The ``k`` sources with the largest measured gain on ``target`` (``gain``: source x target)."""
    what = f"the pairwise gain matrix of {method}" if method else "the pairwise gain matrix"
    return top_k(_column(gain, target, tasks, what), target, tasks, k, what)


def sources_similarity(similarity: pd.DataFrame, measure: str, target: str, tasks: Sequence[str], k: int) -> list[str]:
    """The ``k`` tasks most similar to ``target`` by ``measure`` (``similarity``: task_a = source rows x
    task_b = target columns, raw values; a distance is negated first, so the lowest comes first)."""
    m = vocabulary.measure(measure)
    what = f"the {measure} similarity matrix"
    return top_k(_column(similarity, target, tasks, what).map(m.oriented), target, tasks, k, what)


def sources_predictor(predicted: pd.DataFrame, predictor: str, target: str, tasks: Sequence[str], k: int) -> list[str]:
    """The ``k`` best sources for ``target`` by a predictor matrix (source x target, larger = better)."""
    what = f"the {predictor} predictor matrix"
    return top_k(_column(predicted, target, tasks, what), target, tasks, k, what)


def random_seed(seed: int, target: str) -> int:
    """The seed of ``target``'s random group: sha256 of ``"{seed}:{target}"`` (stable across processes)."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:{target}".encode()).digest()[:8], "little")


def sources_random(target: str, tasks: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` sources drawn without replacement from the tasks other than ``target`` (in the order of
    ``tasks``) by a generator seeded with :func:`random_seed`; returned in the order of ``tasks``."""
    others = sources_all(target, tasks)
    if k >= len(others):
        return others
    picked = set(np.random.default_rng(random_seed(seed, target)).choice(len(others), size=k, replace=False).tolist())
    return [s for i, s in enumerate(others) if i in picked]


# --------------------------------------------------------------------------------------------------
# The groups table
# --------------------------------------------------------------------------------------------------
def choose_groups(
    tasks: Sequence[str],
    methods: Sequence[str],
    strategies: Sequence[str] = tuple(settings.MULTITASK_DEFAULTS["strategies"]),
    modes: Sequence[str] = tuple(settings.MULTITASK_DEFAULTS["modes"]),
    *,
    k: int = settings.MULTITASK_DEFAULTS["k"],
    seed: int = settings.MULTITASK_DEFAULTS["seed"],
    gain: Mapping[str, pd.DataFrame] | None = None,
    similarity: pd.DataFrame | None = None,
    measure: str = settings.MULTITASK_DEFAULTS["similarity"],
    predicted: Mapping[str | None, pd.DataFrame] | None = None,
    predictor: str = settings.MULTITASK_DEFAULTS["predictor"],
    sources: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every (method, strategy, mode, target) the study trains, with its group (:data:`GROUP_COLUMNS`).

    ``gain``: method -> its pairwise gain matrix (needed for strategy ``gain``); ``similarity``: the
    ``measure``'s source x target matrix (strategy ``similarity``); ``predicted``: the ``predictor``'s
    matrix, keyed by method for a per-method predictor, else by ``None`` (strategy ``predictor``).
    ``tasks`` is the config's task order; ``tasks`` and ``sources`` are "+"-joined in that order.
    ``k`` is the number of sources (``k`` itself, or every other task when that is fewer, or for
    ``all``). Combinations a method does not offer (:func:`offered`) are left out. ``sources`` (strategy
    ``fixed``, and then the only one): every target's sources; the targets are the other tasks."""
    tasks = list(dict.fromkeys(tasks))
    fixed = [t for t in tasks if t in set(sources)] if sources else []
    if sources and (len(fixed) != len(set(sources)) or list(strategies) != ["fixed"]):
        raise MvlptError(
            f"strategy fixed takes its sources among the tasks and no other strategy beside it; got sources "
            f"{', '.join(sources)} and strategies {', '.join(strategies)}."
        )
    if "fixed" in strategies and not fixed:
        raise MvlptError("strategy fixed needs its source tasks (config `multitask.sources`, --sources).")
    targets = [t for t in tasks if t not in set(fixed)]
    if len(tasks) < 2:
        raise MvlptError(f"the multitask study needs at least two tasks, got {len(tasks)}.")
    if int(k) < 1:
        raise MvlptError(f"multitask k must be at least 1, got {k}.")
    _check_names(strategies, modes)
    for m in methods:
        vocabulary.method(m)
    if "similarity" in strategies:
        vocabulary.measure(measure)
    if "predictor" in strategies:
        vocabulary.predictor(predictor)
    rows = []
    for m in methods:
        for s in strategies:
            if not any(offered(m, s, d) for d in modes):
                continue
            for t in targets:
                sources = (
                    fixed
                    if s == "fixed"
                    else _sources(s, m, t, tasks, int(k), int(seed), gain, similarity, measure, predicted, predictor)
                )
                for d in modes:
                    if not offered(m, s, d):
                        continue
                    group = sources if d == "init" else [x for x in tasks if x in set(sources) | {t}]
                    rows.append((m, s, d, t, vocabulary.group_id(group), "+".join(group), "+".join(sources), len(sources)))
    out = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    out["k"] = out["k"].astype("int64")
    return out.sort_values(["method", "strategy", "mode", "target"], kind="stable").reset_index(drop=True)


def _sources(strategy, method, target, tasks, k, seed, gain, similarity, measure, predicted, predictor) -> list[str]:
    if strategy == "all" or vocabulary.method(method).multitask_only:
        return sources_all(target, tasks)
    if strategy == "random":
        return sources_random(target, tasks, k, seed)
    if strategy == "gain":
        if not gain or method not in gain:
            raise MvlptError(f"strategy gain needs the pairwise gain matrix of {method}; {PAIRWISE_HINT}.")
        return sources_gain(gain[method], target, tasks, k, method)
    if strategy == "similarity":
        if similarity is None:
            raise MvlptError(f"strategy similarity needs the {measure} similarity table; {PAIRWISE_HINT}.")
        return sources_similarity(similarity, measure, target, tasks, k)
    key = method if vocabulary.predictor(predictor).per_method else None
    if not predicted or key not in predicted:
        whose = f" of {method}" if key else ""
        raise MvlptError(f"strategy predictor needs the {predictor} predictor matrix{whose}; run `snakemake predictors` first.")
    return sources_predictor(predicted[key], predictor, target, tasks, k)


# --------------------------------------------------------------------------------------------------
# Input matrices and the groups file
# --------------------------------------------------------------------------------------------------
def read_gain_matrices(paths: Sequence[str | os.PathLike]) -> dict[str, pd.DataFrame]:
    """method -> its pairwise gain matrix, from the ``{method}_gain.csv`` (or ``.parquet``) files of
    ``mvlpt collect`` (``{tables}/matrices/``); the method is read from the file name."""
    out = {}
    for p in map(Path, paths):
        if not p.stem.endswith("_gain") or p.stem == "_gain":
            raise MvlptError(
                f"{p} is not named like a pairwise gain matrix ({{method}}_gain.csv); pass the "
                f"matrices/{{method}}_gain.csv files of `mvlpt collect`."
            )
        if not p.is_file():
            raise MvlptError(f"pairwise gain matrix {p} does not exist; {PAIRWISE_HINT}.")
        out[p.stem[: -len("_gain")]] = tables.read_matrix(p)
    return out


def read_similarity_matrix(path: str | os.PathLike, measure: str, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``measure``'s task_a (source) x task_b (target) matrix from a long similarity table, raw values."""
    from mvlpt.analysis.similarity import long_to_matrix

    vocabulary.measure(measure)
    path = Path(path)
    if not path.is_file():
        raise MvlptError(f"similarity table {path} does not exist; {PAIRWISE_HINT}.")
    long = tables.similarity_long([tables.read_table(path)])
    if not (long["measure"] == measure).any():
        have = ", ".join(sorted(long["measure"].unique())) or "none"
        raise MvlptError(f"similarity table {path} has no {measure} values (it holds {have}); pass the {measure} table.")
    m = long_to_matrix(long, measure)
    order = list(tasks) if tasks is not None else list(m.index)
    return m.reindex(index=[t for t in order if t in m.index], columns=[t for t in order if t in m.columns])


def read_predictor_matrices(paths: Sequence[str | os.PathLike], predictor: str) -> dict[str | None, pd.DataFrame]:
    """The matrices of ``predictor`` (:func:`mvlpt.transfer.predictors.write_predictor` files: the matrix and its
    ``.json``), keyed by the method the ``.json`` names for a per-method predictor, else by ``None``."""
    from mvlpt.transfer.predictors import read_predictor

    pred = vocabulary.predictor(predictor)
    out: dict[str | None, pd.DataFrame] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise MvlptError(f"predictor matrix {p} does not exist; run `snakemake predictors` first.")
        m, info = read_predictor(p)
        if info["predictor"] != pred.name:
            raise MvlptError(f"{p} is the matrix of predictor {info['predictor']}, not of {pred.name}; pass {pred.name}'s.")
        out[info.get("method") if pred.per_method else None] = m
    return out


def write_groups(groups: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the groups table as CSV, atomically; sorted rows and a fixed format, so unchanged inputs
    give a byte-identical file."""
    from mvlpt.io import atomic_path

    missing = [c for c in GROUP_COLUMNS if c not in groups.columns]
    if missing:
        raise MvlptError(f"the groups table lacks the column(s) {', '.join(missing)}; make it with choose_groups.")
    out = groups[list(GROUP_COLUMNS)].sort_values(["method", "strategy", "mode", "target"], kind="stable")
    path = Path(path)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    return path


def read_groups(path: str | os.PathLike) -> pd.DataFrame:
    """The groups table of :func:`write_groups`."""
    path = Path(path)
    if not path.is_file():
        raise MvlptError(f"groups table {path} does not exist; make it with `mvlpt multitask groups` (snakemake multitask).")
    df = tables.read_table(path)
    missing = [c for c in GROUP_COLUMNS if c not in df.columns]
    if missing:
        raise MvlptError(
            f"groups table {path} lacks the column(s) {', '.join(missing)}; remake it with `mvlpt multitask groups`."
        )
    df = df[list(GROUP_COLUMNS)].copy()
    for c in GROUP_COLUMNS:
        if c != "k":
            df[c] = df[c].fillna("").astype(str)
    k = pd.to_numeric(df["k"], errors="coerce")
    if k.isna().any() or (k != k.round()).any():
        raise MvlptError(f"groups table {path} has a k that is not a whole number; remake it with `mvlpt multitask groups`.")
    df["k"] = k.astype("int64")
    return check_groups(df, f"groups table {path}")


def check_groups(df: pd.DataFrame, where: str = "the groups table") -> pd.DataFrame:
    """``df`` if it is a consistent groups table (issue 24, class 3: an index must not contradict the
    records it points to, nor itself): one row per (method, strategy, mode, target); in each row the
    target and the sources are valid names, the target is not a source, ``tasks`` is the sources (mode
    init) or the sources and the target (joint), ``group`` is :func:`mvlpt.study.vocabulary.group_id` of ``tasks``
    and ``k`` the number of sources. Otherwise one sentence naming the first offending row."""
    from mvlpt.study.names import JOINED_MAX, name_problem

    key = ["method", "strategy", "mode", "target"]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise MvlptError(
            f"{where} has {int(dup.sum())} rows for the same (method, strategy, mode, target), e.g. "
            f"({r['method']}, {r['strategy']}, {r['mode']}, {r['target']}): a target would count more than "
            f"once; remake it with `mvlpt multitask groups`."
        )
    block_targets: dict[tuple, set] = {}
    for r in df.itertuples(index=False):
        block_targets.setdefault((r.method, r.strategy, r.mode), set()).add(r.target)
    for r in df.itertuples(index=False):
        row = f"{where}'s row ({r.method}, {r.strategy}, {r.mode}, {r.target})"
        problem = next(
            (
                f"its {c} {v!r} {p}"
                for c, v, mx in (("target", r.target, None), ("sources", r.sources, JOINED_MAX), ("tasks", r.tasks, JOINED_MAX))
                for p in [name_problem(v) if mx is None else name_problem(v, mx)]
                if p
            ),
            None,
        )
        if problem is None:
            sources, tasks = r.sources.split("+"), r.tasks.split("+")
            want = set(sources) | ({r.target} if r.mode == "joint" else set())
            if r.mode not in vocabulary.MULTITASK_MODES:
                problem = f"its mode {r.mode!r} is not one of {', '.join(vocabulary.MULTITASK_MODES)}"
            elif not _offered_quietly(r.method, r.strategy, r.mode):
                problem = f"method {r.method!r} has no strategy {r.strategy!r} in mode {r.mode!r}"
            elif r.strategy == "all" and set(sources) != block_targets[(r.method, r.strategy, r.mode)] - {r.target}:
                problem = f"its sources {r.sources!r} are not all the other targets of strategy all"
            elif r.strategy == "fixed" and set(sources) & block_targets[(r.method, r.strategy, r.mode)]:
                problem = f"its sources {r.sources!r} include a target of strategy fixed"
            elif r.target in sources or len(set(sources)) != len(sources) or "" in sources:
                problem = f"its sources {r.sources!r} repeat a task, hold an empty name or the target itself"
            elif set(tasks) != want or len(tasks) != len(want):
                problem = f"its tasks {r.tasks!r} are not its sources{' and target' if r.mode == 'joint' else ''}"
            elif r.group != vocabulary.group_id(tasks):
                problem = f"its group {r.group!r} is not the group of its tasks ({vocabulary.group_id(tasks)})"
            elif int(r.k) != len(sources):
                problem = f"its k = {r.k} is not its number of sources ({len(sources)})"
        if problem:
            raise MvlptError(f"{row} contradicts itself: {problem}; remake it with `mvlpt multitask groups`.")
    return df


def _offered_quietly(method: str, strategy: str, mode: str) -> bool:
    try:
        return offered(method, strategy, mode)
    except (MvlptError, KeyError):  # an unknown method
        return False
