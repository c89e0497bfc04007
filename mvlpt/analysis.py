"""Tables and statistics of the transfer study, computed from the per-run result JSON files.

Everything here is pure pandas/numpy/scipy/scikit-learn on data already on disk: no model, no task
data. The functions are used by the ``mvlpt collect`` / ``mvlpt correlate`` verbs, the Snakemake
rules of ``workflow/rules/analysis.smk`` and the notebooks.

Conventions
-----------
* Metric values are kept in the units of the result files (fractions in [0, 1]); figures show
  percentage points.
* A *pair* is ``(method, source, target)``. The diagonal (``source == target``) is the target's
  single-task baseline.
* Gain of a pair = target test metric minus the target's baseline. When the baseline exists for the
  same seed the gain is paired per seed (``value[seed] - baseline[seed]``) and then averaged;
  otherwise the baseline's mean over seeds is used. ``gain_rel`` = ``gain / baseline_mean``.
* Matrices are ``source`` (rows) x ``target`` (columns).
* Similarities are given as a long table ``task_a, task_b, measure, value``. Measures listed in
  :data:`DISTANCE_MEASURES` are distances; correlations use them *negated*, so that for every measure
  a positive correlation means "more similar pairs gain more".
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import MvlptError

log = logging.getLogger(__name__)

RUN_COLUMNS = ("method", "source", "target", "seed", "metric", "value")
EXTRA_COLUMNS = (
    "mode", "shots", "val", "best_epoch", "epochs", "wall_time_s", "device", "model", "pretrained",
    "config_hash", "n_train", "n_val", "n_test",
)
MATRIX_STATS = ("mean", "std", "gain", "gain_rel")
DISTANCE_MEASURES = frozenset({"visual_frechet"})
MEASURE_ORDER = ("visual_cosine", "visual_frechet", "label_match", "label_cosine")


def measure_order(names: Iterable[str]) -> list[str]:
    """The known similarity measures in their canonical order, then any others sorted."""
    names = list(dict.fromkeys(names))
    return [m for m in MEASURE_ORDER if m in names] + sorted(m for m in names if m not in MEASURE_ORDER)
DEFAULT_MODEL_MEASURES = ("visual_cosine", "label_match")

_DIR_RE = re.compile(r"^(?P<source>.+?)__(?P<target>.+)$")
_FILE_RE = re.compile(r"^seed(?P<seed>-?\d+)\.json$")


# --------------------------------------------------------------------------------------------------
# Reading the result files
# --------------------------------------------------------------------------------------------------
def find_result_files(
    root: str | os.PathLike,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Path]:
    """Result files under ``root`` laid out as ``{method}/{source}__{target}/seed{seed}.json``.

    ``methods``/``tasks``/``seeds`` restrict the selection (both source and target must be in
    ``tasks``). Other files and folders under ``root`` (tables, figures, ...) are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise MvlptError(f"results folder {root} does not exist; run the study first or pass the right --results-dir.")
    tasks_set = set(tasks) if tasks is not None else None
    seeds_set = {int(s) for s in seeds} if seeds is not None else None
    method_dirs = [root / m for m in methods] if methods is not None else sorted(p for p in root.iterdir() if p.is_dir())
    out: list[Path] = []
    for mdir in method_dirs:
        if not mdir.is_dir():
            continue
        for pdir in sorted(mdir.iterdir()):
            m = _DIR_RE.match(pdir.name)
            if not m or not pdir.is_dir():
                continue
            if tasks_set is not None and (m["source"] not in tasks_set or m["target"] not in tasks_set):
                continue
            for f in sorted(pdir.iterdir()):
                fm = _FILE_RE.match(f.name)
                if not fm or (seeds_set is not None and int(fm["seed"]) not in seeds_set):
                    continue
                out.append(f)
    return out


def read_result_file(path: str | os.PathLike) -> dict:
    """One result JSON as a dict, checked against the place it was found at."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MvlptError(f"result file {path} cannot be read ({e}); delete it and rerun its training job.") from None
    if not isinstance(rec, dict) or "format" not in rec:
        raise MvlptError(f"result file {path} is not an mvlpt result (no 'format' field); delete it and rerun its training job.")
    if rec["format"] != 1:
        raise MvlptError(
            f"result file {path} has format {rec['format']!r}, this mvlpt reads format 1; delete it and rerun its "
            f"training job, or use the mvlpt version that wrote it."
        )
    missing = [k for k in ("method", "source", "target", "seed", "metric", "test") if k not in rec]
    if missing:
        raise MvlptError(f"result file {path} is not an mvlpt result (missing {', '.join(missing)}); delete it and rerun its training job.")
    dm, fm = _DIR_RE.match(path.parent.name), _FILE_RE.match(path.name)
    if dm and fm:
        where = (path.parent.parent.name, dm["source"], dm["target"], int(fm["seed"]))
        got = (rec["method"], rec["source"], rec["target"], int(rec["seed"]))
        if where != got:
            raise MvlptError(
                f"result file {path} holds method/source/target/seed {got} but its path says {where}; "
                f"move or delete the misplaced file."
            )
    return rec


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
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(RUN_COLUMNS) + list(EXTRA_COLUMNS))
    df["seed"] = df["seed"].astype("int64")
    df["value"] = df["value"].astype("float64")
    for k in ("val", "wall_time_s"):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("float64")
    for k in ("shots", "best_epoch", "epochs", "n_train", "n_val", "n_test"):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("Int64")
    for k in ("mode", "device", "model", "pretrained", "config_hash"):
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
) -> pd.DataFrame:
    """Read every result file under ``root`` (see :func:`find_result_files`) into :func:`runs_table`."""
    files = find_result_files(root, methods, tasks, seeds)
    return runs_table(read_result_file(f) for f in files)


def expected_missing(runs: pd.DataFrame, methods: Sequence[str], tasks: Sequence[str], seeds: Sequence[int]) -> list[tuple]:
    """(method, source, target, seed) combinations of the full study that have no result."""
    have = set(zip(runs["method"], runs["source"], runs["target"], runs["seed"]))
    return [
        (m, s, t, int(k)) for m in methods for s in tasks for t in tasks for k in seeds if (m, s, t, int(k)) not in have
    ]


# --------------------------------------------------------------------------------------------------
# Pair table, matrices, best source, per-source gain
# --------------------------------------------------------------------------------------------------
def pair_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, source, target): seed statistics of the target metric and the gain.

    Columns: method, source, target, metric, n_seeds, mean, std, baseline_mean, baseline_std,
    gain, gain_std, gain_rel, is_baseline. ``std`` columns use ddof=1 (NaN for a single seed).
    """
    cols = ["method", "source", "target", "metric", "n_seeds", "mean", "std", "baseline_mean", "baseline_std",
            "gain", "gain_std", "gain_rel", "is_baseline"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    base = runs.loc[runs["source"] == runs["target"], ["method", "target", "seed", "value"]]
    base = base.rename(columns={"value": "baseline"})
    base_stats = (
        base.groupby(["method", "target"])["baseline"].agg(baseline_mean="mean", baseline_std="std").reset_index()
    )
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
        raise MvlptError(f"unknown statistic {stat!r}; choose one of {', '.join(MATRIX_STATS)}.")
    sub = pairs[pairs["method"] == method]
    if sub.empty:
        known = ", ".join(sorted(pairs["method"].unique())) or "none"
        raise MvlptError(f"no results for method {method!r} (methods with results: {known}).")
    order = task_order(sub, tasks)
    m = sub.pivot(index="source", columns="target", values=stat).reindex(index=order, columns=order)
    m.index.name, m.columns.name = "source", "target"
    return m.astype("float64")


def best_source(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (method, target): the off-diagonal source with the largest mean gain."""
    off = pairs[~pairs["is_baseline"] & pairs["gain"].notna()]
    cols = ["method", "target", "best_source", "gain", "gain_rel", "mean", "baseline_mean", "n_sources", "n_positive"]
    if off.empty:
        return pd.DataFrame(columns=cols)
    idx = off.groupby(["method", "target"])["gain"].idxmax()
    best = off.loc[idx, ["method", "target", "source", "gain", "gain_rel", "mean", "baseline_mean"]]
    best = best.rename(columns={"source": "best_source"})
    counts = off.groupby(["method", "target"])["gain"].agg(n_sources="count", n_positive=lambda s: int((s > 0).sum()))
    best = best.merge(counts.reset_index(), on=["method", "target"])
    return best[cols].sort_values(["method", "target"]).reset_index(drop=True)


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
# Writing tables
# --------------------------------------------------------------------------------------------------
def write_table(df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False, formats=("csv", "parquet")) -> list[Path]:
    """Write ``df`` as ``<stem>.csv`` and ``<stem>.parquet`` (atomically); ``path``'s suffix is ignored."""
    from .io import atomic_path

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
        except Exception as e:
            raise _unreadable_table(path, e) from None
    m.index = m.index.astype(str)
    m.columns = m.columns.astype(str)
    return m.astype("float64")


def write_collected(runs: pd.DataFrame, out_dir: str | os.PathLike, methods: Sequence[str] | None = None,
                    tasks: Sequence[str] | None = None) -> list[Path]:
    """Write every table of the study under ``out_dir`` (layout in docs/figures.md)."""
    out_dir = Path(out_dir)
    pairs = pair_table(runs)
    written = []
    written += write_table(runs, out_dir / "runs")
    written += write_table(pairs, out_dir / "pairs")
    written += write_table(best_source(pairs), out_dir / "best_source")
    written += write_table(source_gain(pairs), out_dir / "source_gain")
    written += write_table(target_gain(pairs), out_dir / "target_gain")
    methods = list(methods) if methods is not None else sorted(pairs["method"].unique())
    order = task_order(pairs, tasks)
    for m in methods:
        for stat in MATRIX_STATS:
            if (pairs["method"] == m).any():
                mat = matrix(pairs, m, stat, order)
            else:  # keep the promised outputs even when a method has no results yet
                mat = pd.DataFrame(np.nan, index=pd.Index(order, name="source"), columns=pd.Index(order, name="target"))
            written += write_table(mat, out_dir / "matrices" / f"{m}_{stat}", index=True)
    return written


# --------------------------------------------------------------------------------------------------
# Similarities and correlations
# --------------------------------------------------------------------------------------------------
def similarity_long(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate long similarity tables (task_a, task_b, measure, value), checking the columns."""
    parts = []
    for t in tables:
        missing = {"task_a", "task_b", "measure", "value"} - set(t.columns)
        if missing:
            raise MvlptError(f"a similarity table lacks the column(s) {', '.join(sorted(missing))}; recreate it with `mvlpt similarity`.")
        parts.append(t[["task_a", "task_b", "measure", "value"]])
    if not parts:
        return pd.DataFrame(columns=["task_a", "task_b", "measure", "value"])
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


def oriented(measure: str, values):
    """Similarity orientation: distances are negated so that larger always means more similar."""
    return -np.asarray(values, dtype=float) if measure in DISTANCE_MEASURES else np.asarray(values, dtype=float)


def _rowwise_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-300, (x * y).sum(-1) / np.where(den > 1e-300, den, 1.0), np.nan)


def _bootstrap_ci(x, y, kind: str, n_boot: int, rng: np.random.Generator, level: float):
    from scipy.stats import rankdata

    if n_boot <= 0:
        return np.nan, np.nan
    n = len(x)
    idx = rng.integers(0, n, size=(n_boot, n))
    xs, ys = x[idx], y[idx]
    if kind == "spearman":
        xs, ys = rankdata(xs, axis=1), rankdata(ys, axis=1)
    r = _rowwise_corr(xs, ys)
    r = r[np.isfinite(r)]
    if len(r) < max(10, n_boot // 10):
        return np.nan, np.nan
    a = (1 - level) / 2
    return float(np.quantile(r, a)), float(np.quantile(r, 1 - a))


def _corr(x, y, kind: str):
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(x, y) if kind == "pearson" else stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def within_target_spearman(df: pd.DataFrame, x_col: str, y_col: str = "gain", *, n_perm: int = 2000,
                           n_boot: int = 2000, rng: np.random.Generator | None = None, level: float = 0.95) -> dict:
    """Spearman of ``y`` with ``x`` inside each target (over its sources), averaged over targets.

    This controls for how hard a target is (its baseline and its overall gain level). p-value: the
    sources are permuted within every target (``n_perm`` times) and the mean rho recomputed; CI:
    bootstrap over targets.
    """
    from scipy.stats import rankdata

    rng = rng or np.random.default_rng(0)
    rhos, perm_rhos = [], []
    for _, g in df.groupby("target"):
        g = g[[x_col, y_col]].dropna()
        if len(g) < 3:
            continue
        x, y = rankdata(g[x_col].to_numpy()), rankdata(g[y_col].to_numpy())
        rho = _rowwise_corr(x[None], y[None])[0]
        if not np.isfinite(rho):
            continue
        rhos.append(rho)
        if n_perm > 0:
            perm = rng.permuted(np.broadcast_to(y, (n_perm, len(y))), axis=1)
            perm_rhos.append(_rowwise_corr(np.broadcast_to(x, perm.shape), perm))
    out = {"estimate": np.nan, "p_value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": len(rhos)}
    if not rhos:
        return out
    rhos_a = np.asarray(rhos)
    est = float(rhos_a.mean())
    out["estimate"] = est
    if n_perm > 0:
        null = np.nanmean(np.vstack(perm_rhos), axis=0)
        out["p_value"] = float((1 + np.sum(np.abs(null) >= abs(est) - 1e-12)) / (n_perm + 1))
    if n_boot > 0 and len(rhos_a) >= 2:
        boots = rhos_a[rng.integers(0, len(rhos_a), size=(n_boot, len(rhos_a)))].mean(axis=1)
        a = (1 - level) / 2
        out["ci_low"], out["ci_high"] = float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))
    return out


def linear_model(df: pd.DataFrame, x_cols: Sequence[str], y_col: str = "gain", *, n_boot: int = 2000,
                 rng: np.random.Generator | None = None, level: float = 0.95) -> dict:
    """OLS (scikit-learn) of ``y`` on the z-scored ``x_cols``.

    Returns R^2, adjusted R^2 with the F-test p-value, and per predictor the standardised
    coefficient (gain units per SD of the similarity) with its OLS t-test p-value and a bootstrap CI
    over pairs, plus the coefficient in raw similarity units.
    """
    from scipy import stats
    from sklearn.linear_model import LinearRegression

    rng = rng or np.random.default_rng(0)
    d = df[list(x_cols) + [y_col]].dropna()
    n, k = len(d), len(x_cols)
    res = {"n": n, "r2": np.nan, "r2_adj": np.nan, "f_p_value": np.nan, "intercept": np.nan, "coef": {}}
    if n < k + 2:
        return res
    X = d[list(x_cols)].to_numpy(float)
    y = d[y_col].to_numpy(float)
    mu, sd = X.mean(0), X.std(0, ddof=0)
    if np.any(sd <= 0):
        return res
    Z = (X - mu) / sd
    lm = LinearRegression().fit(Z, y)
    pred = lm.predict(Z)
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else np.nan
    dof = n - k - 1
    res.update(r2=r2, intercept=float(lm.intercept_))
    if dof > 0 and np.isfinite(r2):
        res["r2_adj"] = 1 - (1 - r2) * (n - 1) / dof
        F = (r2 / k) / max((1 - r2) / dof, 1e-300)
        res["f_p_value"] = float(stats.f.sf(F, k, dof))
    # OLS standard errors of the standardised coefficients
    A = np.column_stack([np.ones(n), Z])
    sigma2 = ss_res / dof if dof > 0 else np.nan
    try:
        cov = sigma2 * np.linalg.inv(A.T @ A)
        se = np.sqrt(np.clip(np.diag(cov)[1:], 0, None))
    except np.linalg.LinAlgError:
        se = np.full(k, np.nan)
    # bootstrap over pairs (batched normal equations; degenerate resamples dropped)
    boot = np.full((max(n_boot, 0), k), np.nan)
    if n_boot > 0:
        idx = rng.integers(0, n, size=(n_boot, n))
        Ab, yb = A[idx], y[idx]
        xtx = np.einsum("bni,bnj->bij", Ab, Ab)
        xty = np.einsum("bni,bn->bi", Ab, yb)
        ok = np.linalg.cond(xtx) < 1e10
        if ok.any():
            boot[ok] = np.linalg.solve(xtx[ok], xty[ok][..., None])[..., 0][:, 1:]
    a = (1 - level) / 2
    for j, col in enumerate(x_cols):
        t = lm.coef_[j] / se[j] if se[j] > 0 else np.nan
        bj = boot[:, j][np.isfinite(boot[:, j])] if n_boot > 0 else np.array([])
        res["coef"][col] = {
            "std": float(lm.coef_[j]),
            "raw": float(lm.coef_[j] / sd[j]),
            "p_value": float(2 * stats.t.sf(abs(t), dof)) if np.isfinite(t) and dof > 0 else np.nan,
            "ci_low": float(np.quantile(bj, a)) if len(bj) >= 10 else np.nan,
            "ci_high": float(np.quantile(bj, 1 - a)) if len(bj) >= 10 else np.nan,
        }
    return res


CORRELATION_COLUMNS = ("method", "analysis", "similarity", "estimate", "ci_low", "ci_high", "p_value", "n", "note")


def correlate(
    pairs: pd.DataFrame,
    similarities: pd.DataFrame,
    *,
    measures: Sequence[str] | None = None,
    model_measures: Sequence[str] | None = DEFAULT_MODEL_MEASURES,
    methods: Sequence[str] | None = None,
    y: str = "gain",
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """All correlations of the gain with the task similarities, per method, over off-diagonal pairs.

    One long table (:data:`CORRELATION_COLUMNS`), ``analysis`` is one of

    * ``pearson`` / ``spearman``: over all off-diagonal pairs, scipy p-value, percentile bootstrap CI
      (pairs resampled; pairs share tasks, so the CI is optimistic: read it as a guide);
    * ``within_target_spearman``: :func:`within_target_spearman` (``n`` = number of targets);
    * ``linear_model_r2``, ``linear_model_r2_adj``, ``linear_model_intercept``,
      ``linear_model_coef`` (standardised, one row per predictor, p-value from the OLS t-test),
      ``linear_model_coef_raw``: :func:`linear_model` of gain on ``model_measures``.

    Distances (:data:`DISTANCE_MEASURES`) are negated first (``note`` says so): a positive estimate
    always means "more similar pairs gain more".
    """
    data = pairs_with_similarity(pairs, similarities)
    available = [c for c in data.columns if c not in ("method", "source", "target", "gain", "gain_rel")]
    measures = list(measures) if measures is not None else measure_order(available)
    unknown = [m for m in measures if m not in available]
    if unknown:
        raise MvlptError(
            f"no similarity values for {', '.join(unknown)} (have: {', '.join(available) or 'none'}); "
            f"pass the matching similarity tables."
        )
    for m in measures:
        data[m] = oriented(m, data[m])
    methods = list(methods) if methods is not None else sorted(data["method"].unique())
    rng = np.random.default_rng(seed)
    rows = []

    def note_for(m):
        return "negated distance (positive = more similar pairs gain more)" if m in DISTANCE_MEASURES else ""

    for method in methods:
        d = data[data["method"] == method]
        for m in measures:
            dd = d[[m, y, "target"]].dropna()
            x, yy = dd[m].to_numpy(float), dd[y].to_numpy(float)
            for kind in ("pearson", "spearman"):
                if len(dd) >= 3 and np.ptp(x) > 0 and np.ptp(yy) > 0:
                    est, p = _corr(x, yy, kind)
                    lo, hi = _bootstrap_ci(x, yy, kind, n_boot, rng, level)
                else:
                    est = p = lo = hi = np.nan
                rows.append((method, kind, m, est, lo, hi, p, len(dd), note_for(m)))
            wt = within_target_spearman(dd, m, y, n_perm=n_perm, n_boot=n_boot, rng=rng, level=level)
            rows.append((method, "within_target_spearman", m, wt["estimate"], wt["ci_low"], wt["ci_high"],
                         wt["p_value"], wt["n"], ("; ".join(filter(None, [note_for(m), "mean over targets"])))))
        if model_measures:
            mm = [m for m in model_measures if m in measures]
            if len(mm) == len(model_measures):
                lm = linear_model(d, mm, y, n_boot=n_boot, rng=rng, level=level)
                name = "+".join(mm)
                zs = "z-scored predictors" + ("; distances negated" if any(m in DISTANCE_MEASURES for m in mm) else "")
                rows.append((method, "linear_model_r2", name, lm["r2"], np.nan, np.nan, lm["f_p_value"], lm["n"], "F-test p-value"))
                rows.append((method, "linear_model_r2_adj", name, lm["r2_adj"], np.nan, np.nan, np.nan, lm["n"], ""))
                rows.append((method, "linear_model_intercept", name, lm["intercept"], np.nan, np.nan, np.nan, lm["n"], zs))
                for m in mm:
                    c = lm["coef"].get(m, {})
                    rows.append((method, "linear_model_coef", m, c.get("std", np.nan), c.get("ci_low", np.nan),
                                 c.get("ci_high", np.nan), c.get("p_value", np.nan), lm["n"],
                                 zs + "; gain per SD of similarity; t-test p-value; bootstrap CI"))
                    rows.append((method, "linear_model_coef_raw", m, c.get("raw", np.nan), np.nan, np.nan,
                                 c.get("p_value", np.nan), lm["n"], "gain per unit of (oriented) similarity"))
    out = pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))
    out["n"] = out["n"].astype("int64")
    return out


# --------------------------------------------------------------------------------------------------
# Fabricated studies (tests, notebook checks, demos of the analysis without training)
# --------------------------------------------------------------------------------------------------
def write_fake_study(
    root: str | os.PathLike,
    tasks: Sequence[str] = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"),
    methods: Sequence[str] = ("coop", "vpt"),
    seeds: Sequence[int] = (1, 2, 3),
    *,
    slopes: dict[str, float] | None = None,
    noise: float = 0.01,
    seed: int = 0,
) -> dict:
    """Write a fabricated study (result JSONs and similarity tables) with a planted relationship.

    gain(method, s, t) = slopes[method] * (visual_cosine(s, t) - mean) + noise, baselines in
    [0.4, 0.8]. Writes ``root/{method}/{s}__{t}/seed{k}.json`` and ``root/similarity/{measure}.csv``
    (+ parquet) for the four measures, and returns ``{"similarity": long table, "slopes": ...}``.
    Only for tests and demos: the numbers mean nothing.
    """
    from .io import write_json

    root = Path(root)
    rng = np.random.default_rng(seed)
    n = len(tasks)
    slopes = dict(slopes or {m: 0.3 * (1 if i % 2 == 0 else -1) for i, m in enumerate(methods)})
    emb = rng.normal(size=(n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    vis = np.clip(emb @ emb.T, -1, 1)
    lab_raw = rng.uniform(0.2, 0.9, size=(n, n))
    lab = (lab_raw + lab_raw.T) / 2
    np.fill_diagonal(lab, 1.0)
    frechet = np.clip(2 - 2 * vis + rng.uniform(0, 0.1, size=(n, n)), 0, None)
    frechet = (frechet + frechet.T) / 2
    np.fill_diagonal(frechet, 0.0)
    lc = rng.uniform(0.5, 0.95, size=(n, n))
    labcos = (lc + lc.T) / 2
    np.fill_diagonal(labcos, 1.0)
    sims = []
    for name, m in (("visual_cosine", vis), ("visual_frechet", frechet), ("label_match", lab), ("label_cosine", labcos)):
        long = pd.DataFrame(
            [(a, b, name, float(m[i, j])) for i, a in enumerate(tasks) for j, b in enumerate(tasks)],
            columns=["task_a", "task_b", "measure", "value"],
        )
        write_table(long, root / "similarity" / name)
        sims.append(long)
    off_mean = vis[~np.eye(n, dtype=bool)].mean()
    base = rng.uniform(0.4, 0.8, size=n)
    for method in methods:
        for i, s in enumerate(tasks):
            for j, t in enumerate(tasks):
                for k in seeds:
                    if s == t:
                        value = base[j] + rng.normal(0, noise)
                    else:
                        value = base[j] + slopes[method] * (vis[i, j] - off_mean) + rng.normal(0, noise)
                    rec = {
                        "format": 1, "method": method, "source": s, "target": t,
                        "mode": "single" if s == t else "joint", "seed": int(k), "shots": 5, "metric": "accuracy",
                        "test": float(np.clip(value, 0, 1)), "val": float(np.clip(value + 0.02, 0, 1)),
                        "best_epoch": 3, "epochs": 5, "wall_time_s": 1.0, "device": "cpu", "model": "fake",
                        "pretrained": None, "mvlpt_version": "0", "config_hash": "fake", "n_train": 10,
                        "n_val": 5, "n_test": 20,
                    }
                    write_json(rec, root / method / f"{s}__{t}" / f"seed{k}.json")
    return {"similarity": pd.concat(sims, ignore_index=True), "slopes": slopes}
