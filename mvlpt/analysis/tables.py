"""The study's tables, computed from the result files, and their files (CSV + parquet).

Pure pandas on data already on disk: no model, no task data. Used by ``mvlpt collect``, the
Snakemake rules of ``workflow/rules/analysis.smk``, :mod:`mvlpt.analysis.figures` and the notebooks.

Conventions
-----------
* Metric values are kept in the units of the result files (fractions in [0, 1]); figures show
  percentage points.
* A *pair* (or cell) is ``(method, source, target)``. The diagonal (``source == target``) is the
  target's single-task baseline.
* Gain of a pair = target test metric minus the target's baseline. When the baseline exists for the
  same seed the gain is paired per seed (``value[seed] - baseline[seed]``) and then averaged;
  otherwise the baseline's mean over seeds is used. ``gain_rel`` = ``gain / baseline_mean``.
  Seeds are averaged, and gains taken, only within one setting (:func:`mvlpt.study.results.check_settings`), and
  results of two protocols are never read together (:func:`mvlpt.study.results.check_protocols`).
* Matrices are ``source`` (rows) x ``target`` (columns).
* Similarities are given as a long table ``task_a, task_b, measure, value``; :func:`oriented` turns
  distances (:func:`mvlpt.study.vocabulary.is_distance`) around so that larger always means more similar.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mvlpt.errors import MvlptError
from mvlpt.study import layout, results, settings, vocabulary

log = logging.getLogger(__name__)

RUN_COLUMNS = ("method", "source", "target", "seed", "metric", "value")
EXTRA_COLUMNS = (
    "mode",
    "shots",
    "val",
    "best_epoch",
    "epochs",
    "wall_time_s",
    "device",
    "model",
    "pretrained",
    "config_hash",
    "n_train",
    "n_val",
    "n_test",
    "select",
    "val_loss",
    "protocol",  # mvlpt.study.protocol's name (older records: corrected); one per table (results.check_protocols)
)
SIMILARITY_COLUMNS = ("task_a", "task_b", "measure", "value")


# --------------------------------------------------------------------------------------------------
# Runs: one row per result file
# --------------------------------------------------------------------------------------------------
def runs_table(records: Iterable[dict]) -> pd.DataFrame:
    """Tidy table, one row per run and target: method, source, target, seed, metric, value, extras."""
    rows = []
    for rec in records:
        row = {
            "method": str(rec["method"]),
            "source": str(rec["source"]),
            "target": str(rec["target"]),
            "seed": int(rec["seed"]),
            "metric": str(rec["metric"]),
            "value": float(rec["test"]) if rec["test"] is not None else np.nan,
        }
        for k in EXTRA_COLUMNS:
            row[k] = rec.get(k)
        row["protocol"] = results.protocol_of(rec)
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(RUN_COLUMNS) + list(EXTRA_COLUMNS))
    df["seed"] = df["seed"].astype("int64")
    df["value"] = df["value"].astype("float64")
    for k in ("val", "wall_time_s", "val_loss"):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("float64")
    for k in ("shots", "best_epoch", "epochs", "n_train", "n_val", "n_test"):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("Int64")
    for k in ("mode", "device", "model", "pretrained", "config_hash", "select", "protocol"):
        df[k] = df[k].astype("string")
    dup = df.duplicated(["method", "source", "target", "seed"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise MvlptError(
            f"{int(dup.sum())} results are duplicated, e.g. {first.method} {first.source}->{first.target} seed "
            f"{first.seed}; keep one result file per run."
        )
    return df.sort_values(["method", "target", "source", "seed"], kind="stable").reset_index(drop=True)


def load_results(
    root: str | os.PathLike,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    *,
    allow_mixed_settings: bool = False,
) -> pd.DataFrame:
    """Read and validate every selected result file under ``root`` (:func:`mvlpt.study.results.read_results`)
    into :func:`runs_table`; a cell whose seeds, or whose baseline, come from another setting is
    refused unless ``allow_mixed_settings`` (:func:`mvlpt.study.results.check_settings`)."""
    return load_study(root, methods, tasks, seeds, allow_mixed_settings=allow_mixed_settings)[0]


def load_study(
    root: str | os.PathLike,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    *,
    allow_mixed_settings: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """:func:`load_results` and the runs' test-set replicates (:func:`replicates_of`)."""
    found = results.read_results(root, methods, tasks, seeds)
    results.check_protocols(found)  # never two protocols in one table, mixed settings allowed or not
    results.check_settings(found, allow_mixed=allow_mixed_settings)
    results.check_splits(found)  # a gain pairs a run with the baseline of the same split
    records = [rec for _, rec in found]
    return runs_table(records), replicates_of(records)


def replicates_of(records: Iterable[dict]) -> dict:
    """``{(method, source, target, seed): array}``: each run's test metric on the shared bootstrap resamples
    of its test set (the result's ``test_bootstrap``; runs without it are left out). The runs of one target
    must have been tested on one test set with one set of resamples, else one sentence: their gains
    would not be paired."""
    out, seen = {}, {}
    for rec in records:
        boot = rec.get("test_bootstrap")
        if not boot:
            continue
        key = (str(rec["method"]), str(rec["target"]))
        stamp = (boot["test_set"], boot["n"], boot.get("seed"))
        first = seen.setdefault(key, (stamp, rec))
        if first[0] != stamp:
            other = first[1]
            raise MvlptError(
                f"results of {key[0]} on target {key[1]} were tested on different test sets or resamples "
                f"({other['source']} seed {other['seed']}: {first[0][0]}, {rec['source']} seed {rec['seed']}: {stamp[0]}); "
                f"rerun the older jobs with one version of the task data."
            )
        out[(key[0], str(rec["source"]), key[1], int(rec["seed"]))] = np.array(
            [np.nan if v is None else float(v) for v in boot["values"]], dtype=np.float64
        )
    return out


def study_shots(runs: pd.DataFrame | None) -> int | None:
    """The shot count of the runs (or any table with a ``shots`` column) of one study; None where there is no
    table, no run records one, or they mix several
    (which :func:`mvlpt.study.results.check_settings` refuses unless mixed settings are allowed). A study over
    several shot counts keeps each below its own ``shots{N}`` folder (docs/shots.md)."""
    if runs is None or "shots" not in runs.columns:
        return None
    found = {int(s) for s in runs["shots"].dropna()}
    return found.pop() if len(found) == 1 else None


def with_shots(df: pd.DataFrame, shots: int | None) -> pd.DataFrame:
    """``df`` with a ``shots`` column (the study's shot count, :func:`study_shots`) after ``method`` (first
    when it has none); a table that has one keeps it. Every table of a study carries its shots, so tables of
    several shot counts stack (``mvlpt shots table``)."""
    if "shots" in df.columns:
        return df
    out = df.copy()
    at = list(out.columns).index("method") + 1 if "method" in out.columns else 0
    out.insert(at, "shots", pd.array([shots] * len(out), dtype="Int64"))
    return out


def expected_missing(runs: pd.DataFrame, methods: Sequence[str], tasks: Sequence[str], seeds: Sequence[int]) -> list[tuple]:
    """(method, source, target, seed) combinations of the full study that have no result."""
    have = set(zip(runs["method"], runs["source"], runs["target"], runs["seed"]))
    return [(m, s, t, int(k)) for m in methods for s in tasks for t in tasks for k in seeds if (m, s, t, int(k)) not in have]


# --------------------------------------------------------------------------------------------------
# Pair table, matrices, best source, per-source gain
# --------------------------------------------------------------------------------------------------
def pair_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, source, target): seed statistics of the target metric and the gain.

    Columns: method, source, target, metric, n_seeds, mean, std, baseline_mean, baseline_std,
    gain, gain_std, gain_rel, is_baseline. ``std`` columns use ddof=1 (NaN for a single seed).
    """
    cols = [
        "method",
        "source",
        "target",
        "metric",
        "n_seeds",
        "mean",
        "std",
        "baseline_mean",
        "baseline_std",
        "gain",
        "gain_std",
        "gain_rel",
        "is_baseline",
    ]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    base = runs.loc[runs["source"] == runs["target"], ["method", "target", "seed", "value"]]
    base = base.rename(columns={"value": "baseline"})
    base_stats = base.groupby(["method", "target"])["baseline"].agg(baseline_mean="mean", baseline_std="std").reset_index()
    df = runs.merge(base, on=["method", "target", "seed"], how="left").merge(base_stats, on=["method", "target"], how="left")
    df["baseline"] = df["baseline"].fillna(df["baseline_mean"])
    df["gain_seed"] = df["value"] - df["baseline"]
    g = df.groupby(["method", "source", "target"], sort=False)
    out = g.agg(
        metric=("metric", "first"),
        n_seeds=("value", "count"),
        mean=("value", "mean"),
        std=("value", "std"),
        baseline_mean=("baseline_mean", "first"),
        baseline_std=("baseline_std", "first"),
        gain=("gain_seed", "mean"),
        gain_std=("gain_seed", "std"),
    ).reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["gain_rel"] = np.where(out["baseline_mean"] > 0, out["gain"] / out["baseline_mean"], np.nan)
    out["is_baseline"] = out["source"] == out["target"]
    no_base = out.loc[out["baseline_mean"].isna(), ["method", "target"]].drop_duplicates()
    for m, t in no_base.itertuples(index=False):
        log.warning("method %s, target %s: no baseline result (%s__%s); its gains are NaN", m, t, t, t)
    out["n_seeds"] = out["n_seeds"].astype("int64")
    return out[cols].sort_values(["method", "target", "source"], kind="stable").reset_index(drop=True)


def task_order(df: pd.DataFrame, tasks: Sequence[str] | None = None) -> list[str]:
    """``tasks`` if given, else every task seen as source or target, in natural order (task-2 < task-10)."""
    if tasks is not None:
        return list(tasks)
    return natural_sorted(set(df["source"]) | set(df["target"]))


def natural_sorted(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda s: [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", str(s))])


def matrix(pairs: pd.DataFrame, method: str, stat: str = "gain", tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """N x N matrix of ``stat`` for ``method``: rows = source, columns = target (NaN where no result)."""
    if stat not in pairs.columns:
        raise MvlptError(f"unknown statistic {stat!r}; choose one of {', '.join(vocabulary.MATRIX_STATS)}.")
    sub = pairs[pairs["method"] == method]
    if sub.empty:
        known = ", ".join(sorted(pairs["method"].unique())) or "none"
        raise MvlptError(f"no results for method {method!r} (methods with results: {known}).")
    order = task_order(sub, tasks)
    m = sub.pivot(index="source", columns="target", values=stat).reindex(index=order, columns=order)
    m.index.name, m.columns.name = "source", "target"
    return m.astype("float64")


def best_source(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, target): the off-diagonal source with the largest mean gain. Ties (gains within
    :data:`TIE_ATOL`) do not depend on the order of the rows (issue 24, class 4): ``n_best`` counts the
    sources tied at the top, ``tied_sources`` lists them (comma-separated, natural order; a name holds
    no comma) and ``best_source`` is the first of them in natural order, so a tie is reported, not
    decided by the task order."""
    off = pairs[~pairs["is_baseline"] & pairs["gain"].notna()]
    cols = [
        "method",
        "target",
        "best_source",
        "gain",
        "gain_rel",
        "mean",
        "baseline_mean",
        "n_sources",
        "n_positive",
        "n_best",
        "tied_sources",
    ]
    if off.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for _, g in off.groupby(["method", "target"], sort=False):
        top = g[g["gain"] >= g["gain"].max() - TIE_ATOL]
        tied = natural_sorted(top["source"].astype(str).unique())
        r = top[top["source"] == tied[0]].iloc[0]
        rows.append(
            {
                **{c: r[c] for c in ("method", "target", "gain", "gain_rel", "mean", "baseline_mean")},
                "best_source": tied[0],
                "n_sources": int(g["gain"].count()),
                "n_positive": int((g["gain"] > 0).sum()),
                "n_best": len(tied),
                "tied_sources": ",".join(tied) if len(tied) > 1 else "",
            }
        )
    best = pd.DataFrame(rows)
    return best[cols].sort_values(["method", "target"]).reset_index(drop=True)


TIE_ATOL = 1e-12  # gains (fractions) this close are tied: float noise of a mean, not a measured difference


def _side_gain(pairs: pd.DataFrame, by: str) -> pd.DataFrame:
    off = pairs[~pairs["is_baseline"] & pairs["gain"].notna()]
    cols = ["method", by, "mean_gain", "median_gain", "std_gain", "mean_gain_rel", "n", "n_positive"]
    if off.empty:
        return pd.DataFrame(columns=cols)
    out = off.groupby(["method", by]).agg(
        mean_gain=("gain", "mean"),
        median_gain=("gain", "median"),
        std_gain=("gain", "std"),
        mean_gain_rel=("gain_rel", "mean"),
        n=("gain", "count"),
        n_positive=("gain", lambda s: int((s > 0).sum())),
    )
    return out.reset_index()[cols].sort_values(["method", "mean_gain"], ascending=[True, False]).reset_index(drop=True)


def source_gain(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, source): the gain it brings, averaged over the other targets."""
    return _side_gain(pairs, "source")


def target_gain(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, target): the gain it receives, averaged over the other sources."""
    return _side_gain(pairs, "target")


# --------------------------------------------------------------------------------------------------
# Checkpoint selection
# --------------------------------------------------------------------------------------------------
SELECTION_COLUMNS = ("method", "target", "select", "n_runs", "first_epoch_share", "median_epoch", "epochs", "n_val")


def selection_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, target, select): which epochs the runs report (train option ``select``).

    ``n_runs`` results (every source and seed), ``first_epoch_share`` the share whose reported epoch is
    the first (``best_epoch == 1``: prompts barely trained, a sign of validation ties or of a validation
    set too small to tell epochs apart), ``median_epoch`` the median reported epoch, ``epochs`` the
    largest epoch count among them and ``n_val`` the target's validation size (images) per run, the
    median over the runs (the runs of a target share it unless a class falls short of ``shots``).
    Results written before the option existed count as ``best``.
    """
    cols = list(SELECTION_COLUMNS)
    if runs.empty:
        return pd.DataFrame(columns=cols)
    df = runs.copy()
    select = df["select"] if "select" in df.columns else pd.Series(pd.NA, index=df.index)
    df["select"] = select.astype("string").fillna("best")
    epoch = pd.to_numeric(df["best_epoch"], errors="coerce").astype("float64")
    df["first"] = (epoch == 1).astype("float64").where(epoch.notna())
    df["epoch"] = epoch
    df["epochs_"] = pd.to_numeric(df["epochs"], errors="coerce").astype("float64")
    df["n_val_"] = pd.to_numeric(df["n_val"], errors="coerce").astype("float64")
    out = (
        df.groupby(["method", "target", "select"], sort=False)
        .agg(
            n_runs=("value", "size"),
            first_epoch_share=("first", "mean"),
            median_epoch=("epoch", "median"),
            epochs=("epochs_", "max"),
            n_val=("n_val_", "median"),
        )
        .reset_index()
    )
    out["n_runs"] = out["n_runs"].astype("int64")
    out["epochs"] = out["epochs"].round().astype("Int64")
    out["select"] = out["select"].astype("string")
    return out[cols].sort_values(["method", "target", "select"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Table files
# --------------------------------------------------------------------------------------------------
def write_table(df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False, formats=("csv", "parquet")) -> list[Path]:
    """Write ``df`` as ``<stem>.csv`` and ``<stem>.parquet`` (atomically); ``path``'s suffix is ignored."""
    from mvlpt.io import atomic_path

    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".csv", ".parquet") else path
    written = []
    for fmt in formats:
        dest = stem.with_name(stem.name + "." + fmt)
        with atomic_path(dest) as tmp:
            if fmt == "csv":
                df.to_csv(tmp, index=index)
            else:
                df.to_parquet(tmp, index=index)
        written.append(dest)
    return written


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (CSV or parquet, by suffix)."""
    path = Path(path)
    if not path.exists():
        raise MvlptError(f"table {path} does not exist; run the step that makes it first (e.g. `mvlpt collect`).")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as e:  # pyarrow, pandas and OS errors of a damaged or foreign file
        raise _unreadable_table(path, e) from None


def _unreadable_table(path: Path, e: Exception) -> MvlptError:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return MvlptError(f"table {path} cannot be read ({reason}); delete it and rerun the step that makes it.")


def read_matrix(path: str | os.PathLike) -> pd.DataFrame:
    """Read an N x N matrix written with ``write_table(..., index=True)``."""
    path = Path(path)
    if path.suffix == ".parquet":
        m = read_table(path)
    else:
        if not path.exists():
            raise MvlptError(f"table {path} does not exist; run `mvlpt collect` first.")
        try:
            m = pd.read_csv(path, index_col=0)
            header = pd.read_csv(path, header=None, nrows=1, dtype=str).iloc[0, 1:]  # as written: pandas renames a.1
        except Exception as e:
            raise _unreadable_table(path, e) from None
        if header.duplicated().any():
            raise MvlptError(
                f"matrix {path} names the column {header[header.duplicated()].iloc[0]!r} twice; delete it "
                f"and rerun the step that makes it."
            )
    m.index = m.index.astype(str)
    m.columns = m.columns.astype(str)
    return check_matrix(m, path)


def check_matrix(m: pd.DataFrame, path) -> pd.DataFrame:
    """The domain of a matrix file (issue 24, class 4), else one sentence: at least one row and column,
    unique row and column names, and numbers that are finite or missing (NaN: a pair not measured);
    an infinite value or a text cell has no meaning in a gain, q-value or predictor matrix."""

    def bad(problem: str):
        raise MvlptError(f"matrix {path} {problem}; delete it and rerun the step that makes it.")

    if m.shape[0] == 0 or m.shape[1] == 0:
        bad(f"is empty ({m.shape[0]} rows, {m.shape[1]} columns)")
    for what, labels in (("row", m.index), ("column", m.columns)):
        if labels.duplicated().any():
            bad(f"names the {what} {labels[labels.duplicated()][0]!r} twice")
    try:
        m = m.astype("float64")
    except (TypeError, ValueError) as e:
        bad(f"holds a cell that is not a number ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})")
    if np.isinf(m.to_numpy()).any():
        bad("holds an infinite value")
    return m


def with_cell_statistics(
    pairs: pd.DataFrame,
    runs: pd.DataFrame,
    replicates: dict | None,
    *,
    level: float = settings.ANALYSIS_DEFAULTS["level"],
    fdr: str = settings.ANALYSIS_DEFAULTS["fdr"],
    tasks: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``pairs`` with every off-diagonal cell's interval, test and interaction (:func:`mvlpt.analysis.gainstats.cell_table`)
    as columns after its own (NaN on the diagonal)."""
    from mvlpt.analysis.gainstats import CELL_COLUMNS, cell_table

    if pairs.empty:
        return pairs.reindex(columns=list(pairs.columns) + list(CELL_COLUMNS[3:]))
    cells = cell_table(runs, replicates or {}, level=level, fdr_method=fdr, tasks=list(tasks) if tasks else None)
    out = pairs.merge(cells, on=["method", "source", "target"], how="left")
    out["gain_significant"] = out["gain_significant"].astype("boolean")
    out["interval"] = out["interval"].astype("string")
    return out


def gain_summary(pairs: pd.DataFrame, level: float = settings.ANALYSIS_DEFAULTS["level"]) -> pd.DataFrame:
    """Per method: how many off-diagonal gains are distinguishable from noise, and how large the noise is.

    ``share_positive`` counts every gain > 0 (noise included); ``share_significant_positive`` /
    ``..._negative`` only those whose q-value is below ``1 - level``; the median standard errors say how
    much of a gain's uncertainty is seeds and how much the test set."""
    cols = [
        "method",
        "n_cells",
        "mean_gain",
        "share_positive",
        "share_significant_positive",
        "share_significant_negative",
        "share_interaction_significant",
        "median_se",
        "median_se_seed",
        "median_se_test",
        "interaction_rms",
        "interaction_noise_rms",
        "interval",
    ]
    off = pairs[~pairs["is_baseline"] & pairs["gain"].notna()] if "gain_q" in pairs.columns else pairs.iloc[0:0]
    rows = []
    alpha = 1 - level
    for m, d in off.groupby("method", sort=True):
        sig = d["gain_q"] < alpha
        rows.append(
            {
                "method": m,
                "n_cells": len(d),
                "mean_gain": d["gain"].mean(),
                "share_positive": float((d["gain"] > 0).mean()),
                "share_significant_positive": float((sig & (d["gain"] > 0)).mean()),
                "share_significant_negative": float((sig & (d["gain"] < 0)).mean()),
                "share_interaction_significant": float((d["interaction_q"] < alpha).mean()),
                "median_se": d["gain_se"].median(),
                "median_se_seed": d["gain_se_seed"].median(),
                "median_se_test": d["gain_se_test"].median(),
                "interaction_rms": float(np.sqrt(np.nanmean(d["interaction"] ** 2)))
                if d["interaction"].notna().any()
                else np.nan,
                "interaction_noise_rms": float(np.sqrt(np.nanmean(d["interaction_se"] ** 2)))
                if d["interaction_se"].notna().any()
                else np.nan,
                "interval": ", ".join(sorted(set(d["interval"].dropna().astype(str)))),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def decomposition_table(pairs: pd.DataFrame, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Per method, the sums of squares of the gain matrix's parts (:func:`mvlpt.analysis.gainstats.decompose`):
    ``method, part, ss, df, share`` with part source, target, covariance, interaction (and total)."""
    from mvlpt.analysis.gainstats import decompose

    rows = []
    for m in sorted(pairs["method"].unique()) if not pairs.empty else []:
        try:
            d = decompose(matrix(pairs, m, "gain", tasks))
        except MvlptError as e:
            log.warning("method %s: no decomposition (%s)", m, e)
            continue
        shares = d.shares()
        for part in ("source", "target", "covariance", "interaction"):
            rows.append((m, part, d.ss[part], d.df.get(part, np.nan), shares[part]))
        rows.append((m, "total", d.ss["total"], d.df["total"], 1.0 if d.ss["total"] > 0 else np.nan))
    out = pd.DataFrame(rows, columns=["method", "part", "ss", "df", "share"])
    out["df"] = out["df"].astype("float64")
    return out


def write_collected(
    runs: pd.DataFrame,
    out_dir: str | os.PathLike,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    replicates: dict | None = None,
    *,
    level: float = settings.ANALYSIS_DEFAULTS["level"],
    fdr: str = settings.ANALYSIS_DEFAULTS["fdr"],
    reference: pd.DataFrame | None = None,
    reference_replicates: dict | None = None,
) -> list[Path]:
    """Write every table of the study under ``out_dir`` (layout in docs/figures.md). Given the ``reference``
    table (:func:`mvlpt.analysis.reference.load_reference`, possibly empty), the pairs get its columns and
    ``reference`` and ``baselines`` tables are written too."""
    out_dir = Path(out_dir)
    shots = study_shots(runs)  # every table carries the study's shot count (docs/shots.md)
    pairs = with_cell_statistics(pair_table(runs), runs, replicates, level=level, fdr=fdr, tasks=tasks)
    written = []
    if reference is not None:  # the reference rows (zero-shot, linear probe): their own tables, columns of pairs
        from mvlpt.analysis.reference import baselines_table, with_reference

        written += write_table(reference, layout.TABLE.path(out_dir, "reference", "csv"))
        written += write_table(
            with_shots(
                baselines_table(
                    pairs, reference, runs=runs, replicates=replicates, reference_reps=reference_replicates, level=level
                ),
                shots,
            ),
            layout.TABLE.path(out_dir, "baselines", "csv"),
        )
        pairs = with_reference(pairs, reference)
    written += write_table(runs, layout.TABLE.path(out_dir, "runs", "csv"))
    written += write_table(with_shots(pairs, shots), layout.TABLE.path(out_dir, "pairs", "csv"))
    derived = {
        "best_source": best_source(pairs),
        "source_gain": source_gain(pairs),
        "target_gain": target_gain(pairs),
        "gain_summary": gain_summary(pairs, level),
        "decomposition": decomposition_table(pairs, tasks),
        "selection": selection_table(runs),
    }
    for name, df in derived.items():
        written += write_table(with_shots(df, shots), layout.TABLE.path(out_dir, name, "csv"))
    methods = list(methods) if methods is not None else sorted(pairs["method"].unique())
    order = task_order(pairs, tasks)
    for m in methods:
        for stat in vocabulary.MATRIX_STATS:
            if (pairs["method"] == m).any():
                mat = matrix(pairs, m, stat, order)
            else:  # keep the promised outputs even when a method has no results yet
                mat = pd.DataFrame(np.nan, index=pd.Index(order, name="source"), columns=pd.Index(order, name="target"))
            written += write_table(mat, layout.MATRIX.path(out_dir, m, stat, "csv"), index=True)
    return written


# --------------------------------------------------------------------------------------------------
# Across shot counts (a study whose config lists several, docs/shots.md)
# --------------------------------------------------------------------------------------------------
SHOTS_COLUMNS = (
    "shots",
    "method",
    "n_targets",
    "baseline_mean",
    "zeroshot_mean",
    "linear_probe_mean",
    "n_cells",
    "mean_gain",
    "share_significant_positive",
    "share_significant_negative",
    "median_se",
)


def shots_table(studies: dict[int, str | os.PathLike]) -> pd.DataFrame:
    """One row per shot count and method (:data:`SHOTS_COLUMNS`): over the study's targets the mean
    single-task baseline, zero-shot and linear probe (its ``baselines`` table), and the off-diagonal gains'
    mean, shares distinguishable from noise and median standard error (its ``gain_summary``). ``studies``:
    shot count -> the tables folder of that count's study (``{results}/shots{N}/tables``). Fractions, as
    the tables they come from."""
    rows = []
    for shots, folder in sorted(studies.items()):
        summary = read_table(layout.TABLE.path(folder, "gain_summary", "parquet"))
        base = read_table(layout.TABLE.path(folder, "baselines", "parquet"))
        for df, name in ((summary, "gain_summary"), (base, "baselines")):
            found = {int(v) for v in df["shots"].dropna()} if "shots" in df.columns else set()
            if found and found != {int(shots)}:
                raise MvlptError(
                    f"{layout.TABLE.path(folder, name, 'parquet')} holds shots {', '.join(map(str, sorted(found)))}, "
                    f"not {shots}; point --study {shots}=... at that shot count's tables."
                )
        for m in vocabulary.method_order(set(summary["method"]) | set(base["method"])):
            b = base[base["method"] == m]
            g = summary[summary["method"] == m]
            first = g.iloc[0] if len(g) else None
            rows.append(
                {
                    "shots": int(shots),
                    "method": m,
                    "n_targets": int(b["target"].nunique()),
                    "baseline_mean": b["baseline_mean"].mean(),
                    "zeroshot_mean": b["zeroshot"].mean() if "zeroshot" in b else np.nan,
                    "linear_probe_mean": b["linear_probe"].mean() if "linear_probe" in b else np.nan,
                    "n_cells": int(first["n_cells"]) if first is not None else 0,
                    **{
                        k: float(first[k]) if first is not None else np.nan
                        for k in ("mean_gain", "share_significant_positive", "share_significant_negative", "median_se")
                    },
                }
            )
    out = pd.DataFrame(rows, columns=list(SHOTS_COLUMNS))
    for k in ("shots", "n_targets", "n_cells"):
        out[k] = out[k].astype("int64")
    return out


# --------------------------------------------------------------------------------------------------
# Similarity tables (long: task_a, task_b, measure, value), joined with the pairs
# --------------------------------------------------------------------------------------------------
def similarity_files(similarity_dir: str | os.PathLike) -> list[Path]:
    """The similarity tables that exist in ``similarity_dir`` (parquet, else CSV), in the measures' order."""
    d = Path(similarity_dir)
    files = [
        next((p for p in (layout.SIMILARITY.path(d, m, ext) for ext in ("parquet", "csv")) if p.exists()), None)
        for m in vocabulary.MEASURES
    ]
    return [p for p in files if p is not None]


def read_similarities(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The long similarity tables at ``paths``, concatenated (:func:`similarity_long`)."""
    return similarity_long(read_table(p) for p in paths)


def similarity_long(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate long similarity tables (task_a, task_b, measure, value), checking the columns."""
    parts = []
    for t in tables:
        missing = set(SIMILARITY_COLUMNS) - set(t.columns)
        if missing:
            raise MvlptError(
                f"a similarity table lacks the column(s) {', '.join(sorted(missing))}; recreate it with `mvlpt similarity`."
            )
        parts.append(t[list(SIMILARITY_COLUMNS)])
    if not parts:
        return pd.DataFrame(columns=list(SIMILARITY_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    return out.drop_duplicates(["task_a", "task_b", "measure"], keep="last").reset_index(drop=True)


def pairs_with_similarity(pairs: pd.DataFrame, similarities: pd.DataFrame) -> pd.DataFrame:
    """Off-diagonal pairs with their gain and one column per similarity measure (raw values)."""
    off = pairs.loc[~pairs["is_baseline"], ["method", "source", "target", "gain", "gain_rel"]]
    if similarities.empty:
        return off.reset_index(drop=True)
    wide = similarities.pivot_table(index=["task_a", "task_b"], columns="measure", values="value", aggfunc="mean")
    wide.columns.name = None
    wide = wide.reset_index().rename(columns={"task_a": "source", "task_b": "target"})
    return off.merge(wide, on=["source", "target"], how="left").reset_index(drop=True)


def oriented(measure: str, values) -> np.ndarray:
    """Similarity orientation: distances are negated so that larger always means more similar."""
    values = np.asarray(values, dtype=float)
    return -values if vocabulary.is_distance(measure) else values
