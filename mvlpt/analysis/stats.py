"""Statistics of the study: how transfer gain goes with task similarity.

Correlations over the off-diagonal pairs (scipy's Pearson / Spearman), the within-target Spearman,
and a linear model of gain on similarities (scikit-learn's OLS). Resampling is scipy's: percentile
bootstrap confidence intervals (:func:`scipy.stats.bootstrap`, paired, vectorised) and permutation
p-values (:func:`scipy.stats.permutation_test`). A bootstrap CI is NaN when some resample leaves the
statistic undefined (e.g. every resampled pair has the same similarity), which only happens with a
handful of pairs. Resampling defaults: :data:`mvlpt.study.settings.ANALYSIS_DEFAULTS`.

Distances (:func:`mvlpt.study.vocabulary.is_distance`) are negated first, so that for every measure a positive
estimate means "more similar pairs gain more".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mvlpt.analysis.tables import oriented, pairs_with_similarity
from mvlpt.errors import MvlptError
from mvlpt.study import settings, vocabulary

DEFAULTS = settings.ANALYSIS_DEFAULTS
CORRELATION_COLUMNS = (
    "method",
    "analysis",
    "similarity",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "n",
    "note",
    "against",
    "role",
)
# what each analysis is: within-target statistics are the primary ones (a target's sources share its
# baseline and its difficulty, which a pooled statistic mixes with transfer)
ROLES = {"within_target_spearman": "primary"}


def pearson_along(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson correlation along ``axis`` (NaN where one side is constant), vectorised for resampling."""
    x = x - x.mean(axis=axis, keepdims=True)
    y = y - y.mean(axis=axis, keepdims=True)
    den = np.sqrt((x * x).sum(axis) * (y * y).sum(axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-300, (x * y).sum(axis) / np.where(den > 1e-300, den, 1.0), np.nan)


def spearman_along(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy.stats import rankdata

    return pearson_along(rankdata(x, axis=axis), rankdata(y, axis=axis), axis)


def bootstrap_ci(data: tuple, statistic, *, paired: bool, n_boot: int, rng: np.random.Generator, level: float):
    """Percentile bootstrap CI (low, high) of ``statistic`` (scipy); NaN if some resample is undefined."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about NaN resamples; the CI is NaN then
        ci = stats.bootstrap(
            data,
            statistic,
            paired=paired,
            vectorized=True,
            n_resamples=n_boot,
            confidence_level=level,
            method="percentile",
            random_state=rng,
        ).confidence_interval
    return ci.low, ci.high


def correlation_ci(x, y, kind: str, *, n_boot: int, rng: np.random.Generator, level: float) -> tuple[float, float]:
    """Percentile bootstrap CI of the ``kind`` ("pearson" / "spearman") correlation, pairs resampled."""
    if n_boot <= 0:
        return np.nan, np.nan
    lo, hi = bootstrap_ci(
        (x, y), pearson_along if kind == "pearson" else spearman_along, paired=True, n_boot=n_boot, rng=rng, level=level
    )
    return float(lo), float(hi)


def _corr(x, y, kind: str) -> tuple[float, float]:
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.pearsonr(x, y) if kind == "pearson" else stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def within_target_spearman(
    df: pd.DataFrame,
    x_col: str,
    y_col: str = "gain",
    *,
    n_perm: int = DEFAULTS["n_perm"],
    n_boot: int = DEFAULTS["n_boot"],
    rng: np.random.Generator | None = None,
    level: float = DEFAULTS["level"],
) -> dict:
    """Spearman of ``y`` with ``x`` inside each target (over its sources), averaged over targets.

    This controls for how hard a target is (its baseline and its overall gain level). p-value: a
    permutation test where the sources are permuted within every target (``n_perm`` times) and the
    mean rho recomputed; CI: bootstrap over targets.
    """
    from scipy import stats

    rng = rng or np.random.default_rng(DEFAULTS["seed"])
    xs, ys = [], []
    for _, g in df.groupby("target"):
        g = g[[x_col, y_col]].dropna()
        if len(g) < 3:
            continue
        x, y = stats.rankdata(g[x_col].to_numpy()), stats.rankdata(g[y_col].to_numpy())
        if np.isfinite(pearson_along(x, y)):
            xs.append(x)
            ys.append(y)
    out = {"estimate": np.nan, "p_value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": len(xs)}
    if not xs:
        return out
    rhos = np.array([pearson_along(x, y) for x, y in zip(xs, ys)])
    out["estimate"] = float(rhos.mean())
    if n_perm > 0:
        out["p_value"] = within_target_permutation_p(xs, ys, n_perm, rng)
    if n_boot > 0 and len(rhos) >= 2:
        lo, hi = bootstrap_ci((rhos,), np.mean, paired=False, n_boot=n_boot, rng=rng, level=level)
        out["ci_low"], out["ci_high"] = float(lo), float(hi)
    return out


def masked_spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman along ``axis`` over the positions where both are finite (ranks of those only); NaN where
    fewer than 3 remain or one side is constant. Vectorised over the other axes."""
    from scipy.stats import rankdata

    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    ok = np.isfinite(x) & np.isfinite(y)
    rx = rankdata(np.where(ok, x, np.nan), axis=axis, nan_policy="omit")
    ry = rankdata(np.where(ok, y, np.nan), axis=axis, nan_policy="omit")
    n = ok.sum(axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rx = np.where(ok, rx - np.nansum(np.where(ok, rx, 0), axis, keepdims=True) / n, 0.0)
        ry = np.where(ok, ry - np.nansum(np.where(ok, ry, 0), axis, keepdims=True) / n, 0.0)
        den = np.sqrt((rx * rx).sum(axis) * (ry * ry).sum(axis))
        rho = np.where(den > 1e-12, (rx * ry).sum(axis) / np.where(den > 1e-12, den, 1.0), np.nan)
    return np.where(np.squeeze(n, axis) >= 3, rho, np.nan)


def two_level_within_target_ci(
    x: np.ndarray, per_seed: np.ndarray, *, against: str = "gain", n_boot: int, rng: np.random.Generator, level: float
) -> tuple[float, float]:
    """Percentile CI of the mean within-target Spearman of ``x (sources, targets)`` with the gains, from the
    two-level bootstrap (targets, then seeds: :func:`mvlpt.analysis.gainstats.two_level_resamples`) of the per-seed
    gains ``(seeds, sources, targets)``; ``against="interaction"`` correlates with each resample's interaction."""
    from mvlpt.analysis.gainstats import additive_residual, two_level_resamples

    if n_boot <= 0:
        return np.nan, np.nan
    targets, mats = two_level_resamples(per_seed, n_boot, rng)
    if against == "interaction":
        mats = additive_residual(mats)
    xs = np.asarray(x, float)[:, targets]  # (sources, B, T)
    rho = masked_spearman(np.moveaxis(xs, 0, -1), np.moveaxis(mats, 1, -1), axis=-1)  # (B, T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(rho, axis=1)
    means = means[np.isfinite(means)]
    if len(means) < max(10, n_boot // 2):
        return np.nan, np.nan
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def within_target_permutation_p(xs: list[np.ndarray], ys: list[np.ndarray], n_perm: int, rng) -> float:
    """Two-sided p-value of the mean within-target rho, the ``y`` ranks permuted within every target.

    :func:`scipy.stats.permutation_test` has no strata, so it permutes the order of all rows
    (one sample, ``pairings``) and the statistic reads each target's rows in the order they appear:
    the order a uniform random permutation induces on each target is a uniform random permutation
    of that target, independent between targets, i.e. exactly the within-target permutation.
    """
    from scipy import stats

    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    stratum = np.repeat(np.arange(len(xs)), [len(x) for x in xs])
    starts = np.cumsum([0] + [len(x) for x in xs])

    def mean_rho(order, axis=-1):
        order = np.moveaxis(np.asarray(order), axis, -1).astype(np.intp)
        lead = order.shape[:-1]
        total = 0.0
        for t in range(len(xs)):
            own = order[stratum[order] == t].reshape(*lead, starts[t + 1] - starts[t])
            total = total + pearson_along(x_all[starts[t] : starts[t + 1]], y_all[own])
        return total / len(xs)

    res = stats.permutation_test(
        (np.arange(len(x_all)),),
        mean_rho,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=n_perm,
        alternative="two-sided",
        random_state=rng,
    )
    return float(res.pvalue)


def _ols_slopes(*columns, axis=-1):
    """Slopes of the OLS of the last column on the others (with intercept), vectorised over resamples;
    NaN for an ill-conditioned resample. Shape: (predictors, ...)."""
    *zs, y = (np.moveaxis(np.asarray(c, float), axis, -1) for c in columns)
    a = np.stack([np.ones_like(y), *zs], axis=-1)
    xtx = np.einsum("...ni,...nj->...ij", a, a)
    xty = np.einsum("...ni,...n->...i", a, y)
    xtx, xty = xtx.reshape(-1, *xtx.shape[-2:]), xty.reshape(-1, xty.shape[-1])
    coef = np.full(xty.shape, np.nan)
    ok = np.linalg.cond(xtx) < 1e10
    if ok.any():
        coef[ok] = np.linalg.solve(xtx[ok], xty[ok][..., None])[..., 0]
    return np.moveaxis(coef.reshape(*y.shape[:-1], -1)[..., 1:], -1, 0)


def linear_model(
    df: pd.DataFrame,
    x_cols: Sequence[str],
    y_col: str = "gain",
    *,
    n_boot: int = DEFAULTS["n_boot"],
    rng: np.random.Generator | None = None,
    level: float = DEFAULTS["level"],
) -> dict:
    """OLS (scikit-learn) of ``y`` on the z-scored ``x_cols``.

    Returns R^2, adjusted R^2 with the F-test p-value, and per predictor the standardised
    coefficient (gain units per SD of the similarity) with its OLS t-test p-value and a bootstrap CI
    over pairs, plus the coefficient in raw similarity units.
    """
    from scipy import stats
    from sklearn.linear_model import LinearRegression

    rng = rng or np.random.default_rng(DEFAULTS["seed"])
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
    if n_boot > 0:  # bootstrap over pairs
        ci_low, ci_high = bootstrap_ci((*Z.T, y), _ols_slopes, paired=True, n_boot=n_boot, rng=rng, level=level)
    else:
        ci_low = ci_high = np.full(k, np.nan)
    for j, col in enumerate(x_cols):
        t = lm.coef_[j] / se[j] if se[j] > 0 else np.nan
        res["coef"][col] = {
            "std": float(lm.coef_[j]),
            "raw": float(lm.coef_[j] / sd[j]),
            "p_value": float(2 * stats.t.sf(abs(t), dof)) if np.isfinite(t) and dof > 0 else np.nan,
            "ci_low": float(ci_low[j]),
            "ci_high": float(ci_high[j]),
        }
    return res


def correlate(
    pairs: pd.DataFrame,
    similarities: pd.DataFrame,
    *,
    measures: Sequence[str] | None = None,
    model_measures: Sequence[str] | None = tuple(DEFAULTS["model_measures"]),
    methods: Sequence[str] | None = None,
    y: str = "gain",
    n_boot: int = DEFAULTS["n_boot"],
    n_perm: int = DEFAULTS["n_perm"],
    seed: int = DEFAULTS["seed"],
    level: float = DEFAULTS["level"],
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """All correlations of the gain with the task similarities, per method, over off-diagonal pairs.

    One long table (:data:`CORRELATION_COLUMNS`), ``analysis`` is one of

    * ``pearson`` / ``spearman``: over all off-diagonal pairs, scipy p-value, percentile bootstrap CI
      (pairs resampled; pairs share tasks, so the CI is optimistic: read it as a guide);
    * ``within_target_spearman``: :func:`within_target_spearman` (``n`` = number of targets);
    * ``linear_model_r2``, ``linear_model_r2_adj``, ``linear_model_intercept``,
      ``linear_model_coef`` (standardised, one row per predictor, p-value from the OLS t-test),
      ``linear_model_coef_raw``: :func:`linear_model` of gain on ``model_measures``.

    Distances are negated first (``note`` says so): a positive estimate always means "more similar
    pairs gain more".

    Every analysis is computed against ``y`` (column ``against``) and, when the pairs table has it,
    against the gain's ``interaction`` too (the pair-specific part: :mod:`mvlpt.analysis.gainstats`). Column
    ``role``: the within-target Spearman is ``primary``, the pooled statistics ``secondary``. Given the
    per-seed ``runs``, the within-target CI comes from the two-level bootstrap (targets, then seeds),
    else from a bootstrap over targets (``note`` says which).
    """
    from mvlpt.study.domains import check_level

    check_level(level, "level")  # n_boot / n_perm 0: no interval / p-value, as documented (mvlpt.study.domains)
    ys = [y] + (["interaction"] if y == "gain" and "interaction" in pairs.columns else [])
    frames = [
        _correlate_one(
            pairs,
            similarities,
            measures=measures,
            model_measures=model_measures,
            methods=methods,
            y=yy,
            n_boot=n_boot,
            n_perm=n_perm,
            seed=seed,
            level=level,
            runs=runs,
        )
        for yy in ys
    ]
    return pd.concat(frames, ignore_index=True)


def _correlate_one(pairs, similarities, *, measures, model_measures, methods, y, n_boot, n_perm, seed, level, runs):
    from mvlpt.analysis.gainstats import seed_gains

    data = pairs_with_similarity(pairs, similarities)
    if y not in data.columns:
        data = data.merge(pairs[["method", "source", "target", y]], on=["method", "source", "target"], how="left")
    available = [c for c in data.columns if c not in ("method", "source", "target", "gain", "gain_rel", y)]
    measures = list(measures) if measures is not None else vocabulary.measure_order(available)
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
    rng_two_level = np.random.default_rng([seed, 2])  # its own stream: the pooled rows draw what they always drew
    rows = []

    def note_for(m):
        return "negated distance (positive = more similar pairs gain more)" if vocabulary.is_distance(m) else ""

    for method in methods:
        d = data[data["method"] == method]
        for m in measures:
            dd = d[[m, y, "target"]].dropna()
            x, yy = dd[m].to_numpy(float), dd[y].to_numpy(float)
            for kind in ("pearson", "spearman"):
                if len(dd) >= 3 and np.ptp(x) > 0 and np.ptp(yy) > 0:
                    est, p = _corr(x, yy, kind)
                    lo, hi = correlation_ci(x, yy, kind, n_boot=n_boot, rng=rng, level=level)
                else:
                    est = p = lo = hi = np.nan
                rows.append((method, kind, m, est, lo, hi, p, len(dd), note_for(m)))
            wt = within_target_spearman(dd, m, y, n_perm=n_perm, n_boot=n_boot, rng=rng, level=level)
            ci_note = "CI: bootstrap over targets"
            if runs is not None and y in ("gain", "interaction") and (runs["method"] == method).any():
                per_seed, order, _ = seed_gains(runs, method)
                x = (
                    d.pivot_table(index="source", columns="target", values=m, aggfunc="mean")
                    .reindex(index=order, columns=order)
                    .to_numpy(float)
                )
                wt["ci_low"], wt["ci_high"] = two_level_within_target_ci(
                    x, per_seed, against=y, n_boot=n_boot, rng=rng_two_level, level=level
                )
                ci_note = "CI: two-level bootstrap (targets, then seeds)"
            rows.append(
                (
                    method,
                    "within_target_spearman",
                    m,
                    wt["estimate"],
                    wt["ci_low"],
                    wt["ci_high"],
                    wt["p_value"],
                    wt["n"],
                    ("; ".join(filter(None, [note_for(m), "mean over targets", "p: permutation within targets", ci_note]))),
                )
            )
        if model_measures:
            mm = [m for m in model_measures if m in measures]
            if len(mm) == len(model_measures):
                lm = linear_model(d, mm, y, n_boot=n_boot, rng=rng, level=level)
                name = "+".join(mm)
                zs = "z-scored predictors" + ("; distances negated" if any(vocabulary.is_distance(m) for m in mm) else "")
                rows.append(
                    (method, "linear_model_r2", name, lm["r2"], np.nan, np.nan, lm["f_p_value"], lm["n"], "F-test p-value")
                )
                rows.append((method, "linear_model_r2_adj", name, lm["r2_adj"], np.nan, np.nan, np.nan, lm["n"], ""))
                rows.append((method, "linear_model_intercept", name, lm["intercept"], np.nan, np.nan, np.nan, lm["n"], zs))
                for m in mm:
                    c = lm["coef"].get(m, {})
                    rows.append(
                        (
                            method,
                            "linear_model_coef",
                            m,
                            c.get("std", np.nan),
                            c.get("ci_low", np.nan),
                            c.get("ci_high", np.nan),
                            c.get("p_value", np.nan),
                            lm["n"],
                            zs + "; gain per SD of similarity; t-test p-value; bootstrap CI",
                        )
                    )
                    rows.append(
                        (
                            method,
                            "linear_model_coef_raw",
                            m,
                            c.get("raw", np.nan),
                            np.nan,
                            np.nan,
                            c.get("p_value", np.nan),
                            lm["n"],
                            "gain per unit of (oriented) similarity",
                        )
                    )
    out = pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS[:-2]))
    out["n"] = out["n"].astype("int64")
    out["against"] = y
    out["role"] = out["analysis"].map(ROLES).fillna("secondary")
    return out
