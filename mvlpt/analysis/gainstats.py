"""The statistics of a gain: what in a gain matrix is transfer, and what is noise.

* :func:`decompose`: a method's source x target gain matrix as ``mean + source effect + target effect +
  interaction`` (a two-way additive model fitted by least squares over the cells that exist; the
  diagonal, the baselines, is never a cell). The interaction is the pair-specific part: what a source
  does for a target beyond what it does on average and beyond what the target receives on average.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mvlpt.errors import MvlptError


@dataclasses.dataclass
class Decomposition:
    """``gain[s, t] = mean + source[s] + target[t] + interaction[s, t]`` over the measured cells.

    ``source`` and ``target`` are centred (mean 0 over the tasks that have cells); ``interaction`` is
    NaN where the gain is (the diagonal, missing cells). ``ss`` holds the sums of squares over the
    cells: ``total`` (about the mean), ``source``, ``target``, ``interaction`` and ``covariance``
    (twice the cross term of the two effects, which is not 0 when cells are missing, e.g. the
    diagonal); they add up to ``total``. ``df`` holds the degrees of freedom of each part."""

    mean: float
    source: pd.Series
    target: pd.Series
    interaction: pd.DataFrame
    ss: dict
    df: dict

    def shares(self) -> dict:
        """Each part's share of the total sum of squares (NaN when the cells do not vary)."""
        tot = self.ss["total"]
        return {k: (v / tot if tot > 0 else np.nan) for k, v in self.ss.items() if k != "total"}

    def fitted(self) -> pd.DataFrame:
        """The additive part ``mean + source + target`` on the measured cells (NaN elsewhere)."""
        add = self.mean + self.source.to_numpy()[:, None] + self.target.to_numpy()[None, :]
        return pd.DataFrame(
            np.where(self.interaction.notna(), add, np.nan), index=self.interaction.index, columns=self.interaction.columns
        )


def decompose(gain: pd.DataFrame) -> Decomposition:
    """Fit ``mean + source + target`` to the finite off-diagonal cells of ``gain`` (rows: sources,
    columns: targets) by least squares; the residual is the interaction.

    Needs at least one more cell than parameters (``1 + (sources - 1) + (targets - 1)``), else one
    sentence. The effects are identified by centring (sum to 0 over the tasks with cells)."""
    g = gain.astype("float64").copy()
    vals = g.to_numpy(copy=True)
    same = np.equal.outer(np.asarray(g.index, dtype=object), np.asarray(g.columns, dtype=object))
    vals[same] = np.nan  # the diagonal is a baseline, never a gain cell
    rows, cols = np.nonzero(np.isfinite(vals))
    src = sorted(set(rows))
    tgt = sorted(set(cols))
    n = len(rows)
    p = 1 + max(len(src) - 1, 0) + max(len(tgt) - 1, 0)
    if n <= p:
        raise MvlptError(
            f"the gain matrix has {n} measured off-diagonal cells, too few to separate source and "
            f"target effects ({p} parameters); measure more pairs."
        )
    y = vals[rows, cols]
    # sum-to-zero (deviation) coding: the last task's effect is minus the sum of the others
    si = {r: i for i, r in enumerate(src)}
    ti = {c: i for i, c in enumerate(tgt)}

    def coding(index, levels):
        x = np.zeros((n, max(levels - 1, 0)))
        for k, i in enumerate(index):
            if i < levels - 1:
                x[k, i] = 1.0
            elif levels > 1:
                x[k, :] = -1.0
        return x

    xs = coding([si[r] for r in rows], len(src))
    xt = coding([ti[c] for c in cols], len(tgt))
    design = np.column_stack([np.ones(n), xs, xt])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    mean = float(coef[0])
    a = np.append(coef[1 : len(src)], -coef[1 : len(src)].sum()) if len(src) > 1 else np.zeros(1)
    b = np.append(coef[len(src) :], -coef[len(src) :].sum()) if len(tgt) > 1 else np.zeros(1)
    source = pd.Series(np.nan, index=g.index, name="source_effect", dtype="float64")
    target = pd.Series(np.nan, index=g.columns, name="target_effect", dtype="float64")
    source.iloc[src] = a
    target.iloc[tgt] = b
    fa, fb = a[[si[r] for r in rows]], b[[ti[c] for c in cols]]
    resid = y - mean - fa - fb
    inter = np.full(vals.shape, np.nan)
    inter[rows, cols] = resid
    interaction = pd.DataFrame(inter, index=g.index, columns=g.columns)
    ss = {
        "total": float(((y - y.mean()) ** 2).sum()),
        "source": float((fa**2).sum()),
        "target": float((fb**2).sum()),
        "covariance": float(2 * (fa * fb).sum())
        + float(2 * ((mean - y.mean()) * (fa + fb)).sum())
        + float(n * (mean - y.mean()) ** 2),
        "interaction": float((resid**2).sum()),
    }
    df = {"total": n - 1, "source": len(src) - 1, "target": len(tgt) - 1, "interaction": n - p}
    return Decomposition(mean=mean, source=source, target=target, interaction=interaction, ss=ss, df=df)


# --------------------------------------------------------------------------------------------------
# Per-seed gains and the two-level bootstrap (targets, then seeds)
# --------------------------------------------------------------------------------------------------
def seed_gains(runs: pd.DataFrame, method: str, tasks: list[str] | None = None) -> tuple[np.ndarray, list[str], list[int]]:
    """The gains of ``method`` seed by seed: ``(seeds, sources, targets)``, NaN on the diagonal and where
    a run is missing. A gain is paired with the baseline of its own seed, or with the baseline's mean
    over seeds where that seed has no baseline (as :func:`mvlpt.analysis.tables.pair_table`). Returns the array,
    the task order (``tasks`` or every task of the method's runs, natural order) and the seeds."""
    from mvlpt.analysis.tables import task_order

    sub = runs[runs["method"] == method]
    if sub.empty:
        raise MvlptError(f"no results for method {method!r}.")
    order = task_order(sub, tasks)
    seeds = sorted(int(s) for s in sub["seed"].unique())
    pos = {t: i for i, t in enumerate(order)}
    kpos = {s: i for i, s in enumerate(seeds)}
    value = np.full((len(seeds), len(order), len(order)), np.nan)
    for s, t, k, v in sub[["source", "target", "seed", "value"]].itertuples(index=False):
        if s in pos and t in pos:
            value[kpos[int(k)], pos[s], pos[t]] = v
    diag = np.arange(len(order))
    base = value[:, diag, diag]  # (seeds, targets)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        base_mean = np.nanmean(base, axis=0)
    base = np.where(np.isfinite(base), base, base_mean[None, :])
    gains = value - base[:, None, :]
    gains[:, diag, diag] = np.nan
    return gains, order, seeds


class _quiet_nanmean:
    """``np.nanmean`` of an all-NaN slice is NaN, without its RuntimeWarning."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def two_level_resamples(gains: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap resamples of a gain matrix from its per-seed gains ``(seeds, sources, targets)``: the
    targets are drawn with replacement (the units a claim about "targets" generalises over), then, inside
    each drawn target, the seeds with replacement (its training noise, baseline included: all sources of
    one target keep the same seeds, so the shift a noisy baseline gives every gain into that target stays
    shared, as it is in the data). Returns ``targets (n_boot, T)``, the drawn target of each column,
    and ``matrices (n_boot, sources, T)``, the seed-mean gains of the drawn columns."""
    k, s, t = gains.shape
    targets = rng.integers(0, t, size=(n_boot, t))
    seeds = rng.integers(0, k, size=(n_boot, t, k))
    cols = gains[seeds, :, targets[:, :, None]]  # (n_boot, T, k, sources)
    with _quiet_nanmean():
        mats = np.nanmean(cols, axis=2)  # (n_boot, T, sources)
    return targets, np.swapaxes(mats, 1, 2)


def additive_residual(matrices: np.ndarray, iterations: int = 50) -> np.ndarray:
    """The interaction of each ``(..., sources, targets)`` matrix: its finite cells minus the least-squares
    fit of ``row effect + column effect`` (backfitting, vectorised over the leading axes; the same fit as
    :func:`decompose` on a single matrix). NaN where the matrix is."""
    m = np.asarray(matrices, dtype=np.float64)
    ok = np.isfinite(m)
    x = np.where(ok, m, 0.0)
    n_row = np.maximum(ok.sum(-1), 1)
    n_col = np.maximum(ok.sum(-2), 1)
    a = np.zeros(m.shape[:-1])
    b = np.zeros(m.shape[:-2] + m.shape[-1:])
    for _ in range(iterations):
        b = (np.where(ok, x - a[..., :, None], 0.0)).sum(-2) / n_col
        a = (np.where(ok, x - b[..., None, :], 0.0)).sum(-1) / n_row
    return np.where(ok, m - a[..., :, None] - b[..., None, :], np.nan)


# --------------------------------------------------------------------------------------------------
# Per-cell uncertainty: seeds and the test set's sampling error
# --------------------------------------------------------------------------------------------------
INTERVAL_KINDS = {
    "seeds+test": "seed variation (paired with the baseline) and the test set's sampling error (paired bootstrap)",
    "seeds": "seed variation only (the runs carry no test-set replicates)",
    "test": "the test set's sampling error only (one seed: the seed variation is unknown)",
    "none": "no interval (one seed and no test-set replicates)",
}


def replicate_gains(runs: pd.DataFrame, replicates: dict, method: str, order: list[str], seeds: list[int]) -> np.ndarray:
    """The seed-mean gains of ``method`` on each bootstrap replicate of the test set: ``(R, sources, targets)``.

    ``replicates[(method, source, target, seed)]`` is a run's metric on the shared resamples of its test
    set (:func:`mvlpt.training.metrics.bootstrap_record`). A cell's replicate gain pairs each seed's run with the
    baseline of the same seed (or the mean of the baseline's seeds, as :func:`seed_gains`) resample by
    resample, then averages over the cell's seeds. NaN for a cell with a run that has no replicates."""
    n = {len(v) for v in replicates.values()}
    if len(n) > 1:
        raise MvlptError(f"the runs' test-set replicates differ in number ({sorted(n)}); rerun the older jobs.")
    r = n.pop() if n else 0
    t_n = len(order)
    out = np.full((r, t_n, t_n), np.nan)
    if r == 0:
        return out
    sub = runs[runs["method"] == method]
    by_cell: dict = {}
    for s, t, k in sub[["source", "target", "seed"]].itertuples(index=False):
        by_cell.setdefault((s, t), []).append(int(k))
    for (s, t), ks in by_cell.items():
        if s == t or s not in order or t not in order:
            continue
        base_all = [replicates.get((method, t, t, k)) for k in seeds]
        base_all = [b for b in base_all if b is not None]
        if not base_all:
            continue
        base_mean = np.mean(base_all, axis=0)
        parts = []
        for k in ks:
            a = replicates.get((method, s, t, k))
            if a is None:
                parts = None
                break
            b = replicates.get((method, t, t, k))
            parts.append(a - (b if b is not None else base_mean))
        if parts:
            out[:, order.index(s), order.index(t)] = np.mean(parts, axis=0)
    return out


def cell_intervals(per_seed: np.ndarray, per_replicate: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """Estimate, standard errors, interval and two-sided p-value of every cell.

    ``per_seed (K, S, T)``: the statistic per seed on the fixed test set; ``per_replicate (R, S, T)``: its
    seed mean on each bootstrap resample of the test set. The two variances add: ``se^2 = var_seeds / K +
    var_test`` (the seed mean's training noise, and the test set's sampling error, which averaging over
    seeds never removes, since every seed is tested on the same images). The interval is Student's t with
    the Welch-Satterthwaite degrees of freedom of the two parts (``K - 1`` and ``R - 1``)."""
    from scipy import stats

    from mvlpt.study.domains import check_level

    check_level(level, "level")
    with _quiet_nanmean():
        est = np.nanmean(per_seed, axis=0)
        k = np.isfinite(per_seed).sum(0)
        var_s = np.where(k >= 2, np.nanvar(per_seed, axis=0, ddof=1) if len(per_seed) >= 2 else np.nan, np.nan) / np.maximum(k, 1)
        r = np.isfinite(per_replicate).sum(0)
        var_t = np.where(r >= 2, np.nanvar(per_replicate, axis=0, ddof=1) if len(per_replicate) >= 2 else np.nan, np.nan)
    has_s, has_t = np.isfinite(var_s), np.isfinite(var_t)
    var = np.where(has_s, var_s, 0.0) + np.where(has_t, var_t, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = var**2 / (
            np.where(has_s, var_s**2 / np.maximum(k - 1, 1), 0.0) + np.where(has_t, var_t**2 / np.maximum(r - 1, 1), 0.0)
        )
    ok = (has_s | has_t) & np.isfinite(est) & (var > 0)
    se = np.where(ok, np.sqrt(var), np.nan)
    dof = np.where(ok, dof, np.nan)
    tq = stats.t.ppf(0.5 + level / 2, np.where(ok, dof, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(ok, 2 * stats.t.sf(np.abs(est) / np.where(ok, se, 1.0), np.where(ok, dof, 1.0)), np.nan)
    kind = np.where(has_s & has_t, "seeds+test", np.where(has_s, "seeds", np.where(has_t, "test", "none")))
    kind = np.where(np.isfinite(est), kind, "")
    return {
        "estimate": est,
        "se": se,
        "se_seed": np.sqrt(var_s),
        "se_test": np.sqrt(var_t),
        "df": dof,
        "ci_low": est - tq * se,
        "ci_high": est + tq * se,
        "p": p,
        "n_seeds": k,
        "interval": kind,
    }


def fdr(p, method: str = "bh") -> np.ndarray:
    """Benjamini-Hochberg (``bh``) or Benjamini-Yekutieli (``by``) q-values of the finite ``p``
    (:func:`scipy.stats.false_discovery_control`); NaN stays NaN."""
    from scipy import stats

    if method not in FDR_METHODS:
        raise MvlptError(f"unknown FDR method {method!r}; choose one of {', '.join(FDR_METHODS)}.")
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method=method)
    return q


FDR_METHODS = ("bh", "by")


def cell_table(
    runs: pd.DataFrame, replicates: dict, *, level: float = 0.95, fdr_method: str = "bh", tasks: list[str] | None = None
) -> pd.DataFrame:
    """Per (method, source, target) off-diagonal cell: the gain's interval and test (:func:`cell_intervals`),
    its q-value over the cells of the method (:func:`fdr`), and the same for the cell's interaction
    (:func:`decompose` of the seed-mean gains; per seed and per test replicate for its interval).

    Columns: ``gain_se, gain_se_seed, gain_se_test, gain_df, gain_ci_low, gain_ci_high, gain_p, gain_q,
    gain_significant`` (q < 1 - level), ``interval`` (what the interval holds: :data:`INTERVAL_KINDS`),
    ``source_effect, target_effect, interaction, interaction_se, interaction_ci_low, interaction_ci_high,
    interaction_p, interaction_q``."""
    alpha = 1 - level
    frames = []
    for method in sorted(runs["method"].unique()):
        per_seed, order, seeds = seed_gains(runs, method, tasks)
        per_rep = replicate_gains(runs, replicates, method, order, seeds)
        g = cell_intervals(per_seed, per_rep, level)
        mean = pd.DataFrame(g["estimate"], index=order, columns=order)
        try:
            dec = decompose(mean)
            inter_seed = additive_residual(per_seed)
            inter_rep = additive_residual(per_rep) if len(per_rep) else per_rep
            i = cell_intervals(inter_seed, inter_rep, level)
            i["estimate"] = dec.interaction.to_numpy()  # the fit of the seed mean (not the mean of per-seed fits)
            i = {**i, **_t_interval(i["estimate"], i["se"], i["df"], level)}
            src, tgt = dec.source.to_numpy(), dec.target.to_numpy()
        except MvlptError:  # too few cells to separate the effects
            i = {k: np.full(mean.shape, np.nan) for k in ("estimate", "se", "ci_low", "ci_high", "p")}
            src = tgt = np.full(len(order), np.nan)
        rows, cols = np.nonzero(np.isfinite(g["estimate"]))
        df = pd.DataFrame(
            {
                "method": method,
                "source": [order[r] for r in rows],
                "target": [order[c] for c in cols],
                "gain_se": g["se"][rows, cols],
                "gain_se_seed": g["se_seed"][rows, cols],
                "gain_se_test": g["se_test"][rows, cols],
                "gain_df": g["df"][rows, cols],
                "gain_ci_low": g["ci_low"][rows, cols],
                "gain_ci_high": g["ci_high"][rows, cols],
                "gain_p": g["p"][rows, cols],
                "interval": g["interval"][rows, cols],
                "source_effect": src[rows],
                "target_effect": tgt[cols],
                "interaction": i["estimate"][rows, cols],
                "interaction_se": i["se"][rows, cols],
                "interaction_ci_low": i["ci_low"][rows, cols],
                "interaction_ci_high": i["ci_high"][rows, cols],
                "interaction_p": i["p"][rows, cols],
            }
        )
        df["gain_q"] = fdr(df["gain_p"], fdr_method)
        df["gain_significant"] = df["gain_q"] < alpha
        df["interaction_q"] = fdr(df["interaction_p"], fdr_method)
        frames.append(df)
    cols = CELL_COLUMNS
    if not frames:
        return pd.DataFrame(columns=list(cols))
    return pd.concat(frames, ignore_index=True)[list(cols)]


CELL_COLUMNS = (
    "method",
    "source",
    "target",
    "gain_se",
    "gain_se_seed",
    "gain_se_test",
    "gain_df",
    "gain_ci_low",
    "gain_ci_high",
    "gain_p",
    "gain_q",
    "gain_significant",
    "interval",
    "source_effect",
    "target_effect",
    "interaction",
    "interaction_se",
    "interaction_ci_low",
    "interaction_ci_high",
    "interaction_p",
    "interaction_q",
)


def _t_interval(est, se, dof, level):
    from scipy import stats

    ok = np.isfinite(est) & np.isfinite(se) & (se > 0) & np.isfinite(dof)
    tq = stats.t.ppf(0.5 + level / 2, np.where(ok, dof, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(ok, 2 * stats.t.sf(np.abs(est) / np.where(ok, se, 1.0), np.where(ok, dof, 1.0)), np.nan)
    return {"ci_low": np.where(ok, est - tq * se, np.nan), "ci_high": np.where(ok, est + tq * se, np.nan), "p": p}


# --------------------------------------------------------------------------------------------------
# Power: the smallest gain a study resolves, and the seeds a given gain needs
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Noise:
    """A method's noise, per cell: ``sigma_seed``, the standard deviation of one seed's gain (training
    noise, its baseline's included), and ``sigma_test_unit``, the test set's standard error of a gain times
    the square root of the test set's size (so ``sigma_test_unit / sqrt(n_test)`` for a test set of
    ``n_test`` images). Medians over a study's off-diagonal cells."""

    method: str
    sigma_seed: float
    sigma_test_unit: float
    n_cells: int
    source: str


# Measured on the designed world (config/groundtruth.yaml: mvlpt-tiny, 8 shots, 3 seeds, 10 epochs; 600
# test images per target; `mvlpt power --tables results/groundtruth/tables`, docs/statistics.md): what a
# study without results of its own plans with. A user's own results
# (`mvlpt power --tables DIR`, `mvlpt preflight --noise-from DIR`) replace them.
SHIPPED_NOISE = {
    m: Noise(m, s, u, 30, "designed world (mvlpt-tiny, 8 shots, 3 seeds), measured 2026-12-06")
    for m, s, u in (("coop", 0.0349, 0.285), ("vpt", 0.0182, 0.264), ("upt", 0.0512, 0.293))
}


def noise_from(pairs: pd.DataFrame, runs: pd.DataFrame) -> dict[str, Noise]:
    """Each method's :class:`Noise` from a collected study (its ``pairs`` with the cell statistics, its ``runs``)."""
    if "gain_se_seed" not in pairs.columns:
        raise MvlptError("the pairs table has no per-cell standard errors; recollect it with this mvlpt (`mvlpt collect`).")
    n_test = runs.groupby(["method", "target"])["n_test"].max().astype("float64")
    out = {}
    off = pairs[~pairs["is_baseline"]]
    for m, d in off.groupby("method"):
        n = n_test.reindex(pd.MultiIndex.from_arrays([d["method"], d["target"]])).to_numpy(float)
        seed_sd = (d["gain_se_seed"] * np.sqrt(d["n_seeds"])).to_numpy(float)
        unit = d["gain_se_test"].to_numpy(float) * np.sqrt(n)
        if not np.isfinite(seed_sd).any() and not np.isfinite(unit).any():
            continue
        out[m] = Noise(
            m,
            float(np.nanmedian(seed_sd)) if np.isfinite(seed_sd).any() else np.nan,
            float(np.nanmedian(unit)) if np.isfinite(unit).any() else np.nan,
            len(d),
            "this study's results",
        )
    return out


def _power_parts(noise: Noise, seeds: int, n_test: float) -> tuple[float, float, float]:
    v_s = noise.sigma_seed**2 / seeds if np.isfinite(noise.sigma_seed) else 0.0
    v_t = noise.sigma_test_unit**2 / n_test if np.isfinite(noise.sigma_test_unit) else 0.0
    r = _replicates()
    den = (v_s**2 / (seeds - 1) if seeds > 1 else np.inf if v_s > 0 else 0.0) + v_t**2 / (r - 1)
    dof = (v_s + v_t) ** 2 / den if den > 0 else np.inf
    return v_s, v_t, dof


def _replicates() -> int:
    from mvlpt.training.metrics import TEST_BOOTSTRAP

    return int(TEST_BOOTSTRAP["n"])


def min_detectable_gain(noise: Noise, seeds: int, n_test: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true gain that a cell with ``seeds`` seeds and ``n_test`` test images detects with
    probability ``power`` in the two-sided t test at level ``alpha`` (the test of :func:`cell_intervals`):
    ``(t_{1-alpha/2} + t_power) * se``, with its Welch-Satterthwaite degrees of freedom. One seed has no
    seed variance to test with: infinite."""
    from scipy import stats

    from mvlpt.study.domains import check_level

    check_level(1 - alpha, "1 - alpha")
    check_level(power, "power")
    if seeds < 2:
        return np.inf
    v_s, v_t, dof = _power_parts(noise, seeds, n_test)
    return float((stats.t.ppf(1 - alpha / 2, dof) + stats.t.ppf(power, dof)) * np.sqrt(v_s + v_t))


def seeds_needed(
    noise: Noise, gain: float, n_test: float, *, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 100
) -> int | None:
    """The fewest seeds (2..``max_seeds``) with which ``gain`` is detectable (:func:`min_detectable_gain`);
    None when no number of seeds suffices: the test set's own error (which seeds never average out) is
    too large for it, and only a larger test set helps."""
    for k in range(2, max_seeds + 1):
        if min_detectable_gain(noise, k, n_test, alpha=alpha, power=power) <= gain:
            return k
    return None


def power_table(
    noises: dict[str, Noise], seeds: int, n_test: float, *, gains=(0.01, 0.02, 0.05), alpha: float = 0.05, power: float = 0.8
) -> pd.DataFrame:
    """Per method: the noise, the smallest detectable gain at ``seeds`` seeds and ``n_test`` test images, the
    limit with infinitely many seeds, and the seeds each of ``gains`` needs (NaN: none suffices)."""
    from scipy import stats

    rows = []
    for m, nz in noises.items():
        row = {
            "method": m,
            "seeds": seeds,
            "n_test": n_test,
            "sigma_seed": nz.sigma_seed,
            "sigma_test": nz.sigma_test_unit / np.sqrt(n_test),
            "alpha": alpha,
            "power": power,
            "min_detectable_gain": min_detectable_gain(nz, seeds, n_test, alpha=alpha, power=power),
            "min_detectable_gain_any_seeds": float(
                (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * nz.sigma_test_unit / np.sqrt(n_test)
            ),
            "noise_from": nz.source,
        }
        for g in gains:
            k = seeds_needed(nz, g, n_test, alpha=alpha, power=power)
            row[f"seeds_for_{round(g * 100, 2):g}pp"] = np.nan if k is None else k
        rows.append(row)
    return pd.DataFrame(rows)
