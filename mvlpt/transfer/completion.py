"""The completion model: a method's whole source x target gain matrix from the cells measured so far,
with a calibrated interval for every cell (issue 26; docs/budget.md).

The model of a cell's measured gain::

    gain[s, t] = mu + a[s] + b[t] + u[s] . v[t] + beta . x[s, t] + e[s, t] + noise[s, t]

* ``a``, ``b``: the source and target effects (what a source gives, what a target takes, on average);
* ``u[s] . v[t]``: a low-rank interaction (rank 0 to ``max_rank``, chosen by cross-validation on the
  measured cells; rank 0 is the effects-only model);
* ``beta . x[s, t]``: the side information, a linear term in features of the pair (a task x task
  similarity or predictor matrix gives the pair's entry; a per-task series such as the baselines gives
  the source's and the target's value);
* ``e``: what the model does not explain, a variance ``s2`` estimated from the fit;
* ``noise``: the measurement noise, whose standard error each measured cell brings (``gain_se``).

It is fitted as a Bayesian bilinear model by alternating weighted ridge regressions (row parameters
``(a[s], u[s])`` given the columns, column parameters ``(b[t], v[t])`` given the rows, then ``mu`` and
``beta``), each cell weighted by ``1 / (s2 + gain_se**2)``, the prior variances of the effects and of the
factors estimated from the fit (empirical Bayes, EM-style). Every step is a small batched linear solve
(numpy), so a 20 x 20 matrix completes in a fraction of a second.

The predictive variance of a cell is the parameters' posterior variance (each alternating block's
Gaussian posterior), plus ``s2``, plus the measurement noise of a new measurement (the mean squared
``gain_se`` of the target's measured cells, shrunk towards all cells': :func:`new_noise`). Because the alternating posterior ignores the blocks' covariance and the rank
is chosen on the same data, that variance is then **calibrated** on the measured cells: the
standardized residuals of a K-fold cross-validation give, conformal-style, the factor by which every
predictive standard deviation is scaled so that the held-out cells are covered at ``level``. On a
matrix without structure the model finds no effects, ``s2`` takes the whole variance, and the
intervals are as wide as the data.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats as scistats

from mvlpt.errors import MvlptError
from mvlpt.study.budget import LEVEL

LEVEL = LEVEL
MAX_RANK = 2
FOLDS = 5
SWEEPS = 60
WARMUP = 5
TOL = 1e-3  # convergence: no prediction moves by more than this (standardized units), nor s2 relatively
# floors in standardized units (the measured gains scaled to variance 1): a prior or residual variance
# is never 0, so a solve stays well posed when a fold's cells happen to agree
VAR_FLOOR = 1e-4
S2_FLOOR = 1e-3
MU_PRIOR_VAR = 100.0  # the grand mean: nearly flat
BETA_PRIOR_VAR = 0.1  # the side coefficients' starting prior variance (standardized units; then estimated)
NOISE_PRIOR_CELLS = 2.0  # a target's expected measurement noise: its cells' mean, shrunk as if 2 more cells had the overall mean
RANK_TOLERANCE = 1.02  # a higher rank must lower the cross-validated error by more than 2 % to be taken
COMPLETED_COLUMNS = ("source", "target", "gain", "sd", "lo", "hi", "measured")


@dataclasses.dataclass
class Fit:
    """One fitted model, in standardized units: the posterior mean of every cell (n x n), the variance
    of that mean, and the residual variance ``s2`` the model leaves unexplained."""

    mean: np.ndarray
    var_mean: np.ndarray
    s2: float
    rank: int


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def _check_tasks(tasks) -> list[str]:
    tasks = [str(t) for t in tasks]
    if len(tasks) < 2:
        raise MvlptError(f"the completion needs at least 2 tasks, got {len(tasks)}.")
    if len(set(tasks)) != len(tasks):
        dup = sorted({t for t in tasks if tasks.count(t) > 1})
        raise MvlptError(f"the task list names {', '.join(dup)} more than once.")
    return tasks


def _measured_cells(measured: pd.DataFrame, tasks: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, gains, standard errors) of the measured off-diagonal cells, checked."""
    missing = {"source", "target", "gain"} - set(measured.columns)
    if missing:
        raise MvlptError(
            f"the measured cells lack the column(s) {', '.join(sorted(missing))} (need source, target, gain, gain_se)."
        )
    df = measured.loc[measured["gain"].notna()]
    pos = {t: k for k, t in enumerate(tasks)}
    src, tgt = df["source"].astype(str), df["target"].astype(str)
    unknown = sorted((set(src) | set(tgt)) - set(pos))
    if unknown:
        raise MvlptError(f"measured cells name task(s) not in the task list: {', '.join(unknown[:5])}.")
    if (src.to_numpy() == tgt.to_numpy()).any():
        raise MvlptError("the measured cells include a diagonal cell (source == target): a baseline is not a gain cell.")
    i = src.map(pos).to_numpy(dtype=int)
    j = tgt.map(pos).to_numpy(dtype=int)
    if len(set(zip(i.tolist(), j.tolist()))) != len(i):
        raise MvlptError("the measured cells name a (source, target) pair more than once: average its seeds first.")
    y = df["gain"].to_numpy(dtype=float)
    if not np.isfinite(y).all():
        raise MvlptError("a measured gain is infinite.")
    se = df["gain_se"].to_numpy(dtype=float) if "gain_se" in df.columns else np.full(len(y), np.nan)
    se = np.where(np.isfinite(se) & (se >= 0), se, np.nan)
    if np.isnan(se).all():
        se = np.zeros(len(y))  # no standard errors given: the residual variance carries all the noise
    else:
        se = np.where(np.isnan(se), np.nanmedian(se), se)
    return i, j, y, se


def side_features(side: dict | None, tasks: list[str]) -> tuple[np.ndarray, list[str]]:
    """The pair features of ``side`` as an (n, n, f) array, each standardized over the off-diagonal
    cells (a missing entry is the feature's mean, 0), and their names. A task x task DataFrame (rows
    sources, columns targets) gives one feature; a per-task Series gives two (``name:source``,
    ``name:target``). Constant features are dropped."""
    n = len(tasks)
    off = ~np.eye(n, dtype=bool)
    feats, names = [], []
    for name, value in (side or {}).items():
        if isinstance(value, pd.DataFrame) and list(value.index) == tasks and list(value.columns) == tasks:
            grids = [(name, value.to_numpy(dtype=float))]  # already in the task order (a replay aligns them once)
        elif isinstance(value, pd.DataFrame):
            m = value.copy()
            m.index, m.columns = m.index.astype(str), m.columns.astype(str)
            absent = sorted(set(tasks) - set(m.index) | set(tasks) - set(m.columns))
            if len(absent) == n:
                raise MvlptError(f"side information {name!r} names none of the tasks.")
            grids = [(name, m.reindex(index=tasks, columns=tasks).to_numpy(dtype=float))]
        elif isinstance(value, pd.Series):
            s = value.copy()
            s.index = s.index.astype(str)
            v = s.reindex(tasks).to_numpy(dtype=float)
            grids = [(f"{name}:source", np.repeat(v[:, None], n, axis=1)), (f"{name}:target", np.repeat(v[None, :], n, axis=0))]
        else:
            raise MvlptError(
                f"side information {name!r} must be a task x task DataFrame or a per-task Series, not {type(value).__name__}."
            )
        for label, grid in grids:
            vals = grid[off & np.isfinite(grid)]
            if vals.size < 2 or np.std(vals) < 1e-12:
                continue
            z = (grid - vals.mean()) / vals.std()
            feats.append(np.where(np.isfinite(z), z, 0.0))
            names.append(label)
    if not feats:
        return np.zeros((n, n, 0)), []
    return np.stack(feats, axis=-1), names


# --------------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------------


def _block_solve(groups: np.ndarray, n: int, design: np.ndarray, target: np.ndarray, w: np.ndarray, prior_prec: np.ndarray):
    """Weighted ridge per group (a row's or a column's cells), in K independent fits at once.

    ``design`` (K, m, p), ``target`` and ``w`` (K, m; weight 0 leaves a cell out of a fit), ``prior_prec``
    (K, p). Returns the posterior means (K, n, p) and covariances (K, n, p, p)."""
    k, m, p = design.shape
    onehot = np.zeros((n, m))
    onehot[groups, np.arange(m)] = 1.0
    wd = design * w[..., None]
    outer = (wd[..., :, None] * design[..., None, :]).transpose(1, 0, 2, 3).reshape(m, -1)
    prec = (onehot @ outer).reshape(n, k, p, p).transpose(1, 0, 2, 3)
    prec += prior_prec[:, None, :, None] * np.eye(p)
    rhs = (onehot @ (wd * target[..., None]).transpose(1, 0, 2).reshape(m, -1)).reshape(n, k, p).transpose(1, 0, 2)
    cov = np.linalg.inv(prec)
    return (cov @ rhs[..., None])[..., 0], cov


def _quad(cov: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``z' cov z`` over the last axes (cov (..., p, p), z (..., p))."""
    return np.sum((cov @ z[..., None])[..., 0] * z, axis=-1)


def _start_factors(n: int, i: np.ndarray, j: np.ndarray, y: np.ndarray, keep: np.ndarray, rank: int, rng: np.random.Generator):
    """Starting factors (K, n, rank): the leading singular vectors of the residual of a quick additive
    fit (the unmeasured cells 0, the measured ones scaled up by the share missing), plus a little noise.
    A small random start would let the factors' prior variance shrink to its floor before they grow."""
    k = keep.shape[0]
    if not rank:
        return np.zeros((k, n, 0)), np.zeros((k, n, 0))
    us, vs = [], []
    for f in range(k):
        ii, jj, yy = i[keep[f]], j[keep[f]], y[keep[f]]
        mu = float(np.mean(yy)) if yy.size else 0.0
        a = np.bincount(ii, weights=yy - mu, minlength=n) / (np.bincount(ii, minlength=n) + 1.0)
        b = np.bincount(jj, weights=yy - mu - a[ii], minlength=n) / (np.bincount(jj, minlength=n) + 1.0)
        grid = np.zeros((n, n))
        grid[ii, jj] = (yy - mu - a[ii] - b[jj]) * (n * (n - 1) / max(yy.size, 1))
        left, sing, right = np.linalg.svd(grid)
        root = np.sqrt(sing[:rank])
        us.append(left[:, :rank] * root)
        vs.append(right[:rank].T * root)
    jitter = rng.normal(scale=0.01, size=(2, k, n, rank))
    return np.stack(us) + jitter[0], np.stack(vs) + jitter[1]


def fit(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    y: np.ndarray,
    se: np.ndarray,
    features: np.ndarray,
    rank: int,
    rng: np.random.Generator,
    keep: np.ndarray | None = None,
) -> Fit:
    """Fit the model to the cells ``(i, j)`` with gains ``y`` and standard errors ``se`` (standardized
    units) and predict every cell of the n x n matrix.

    ``keep`` (K, m) booleans runs K fits at once, fit k on the cells ``keep[k]`` (the folds of a
    cross-validation); the Fit's arrays then have a leading axis K. Without it, one fit on every cell."""
    single = keep is None
    keep = np.ones((1, len(y)), dtype=bool) if single else np.asarray(keep, dtype=bool)
    k, m, f = keep.shape[0], len(y), features.shape[-1]
    x = features[i, j] if f else np.zeros((m, 0))
    cnt = keep.sum(axis=1).astype(float)  # cells per fit
    yk = np.where(keep, y, 0.0)
    mu = yk.sum(axis=1) / np.maximum(cnt, 1.0)
    a, b = np.zeros((k, n)), np.zeros((k, n))
    u, v = _start_factors(n, i, j, y, keep, rank, rng)
    beta = np.zeros((k, f))
    ta2, tb2 = np.full(k, 0.25), np.full(k, 0.25)
    tu2 = np.maximum(np.mean(np.concatenate([u, v], axis=1) ** 2, axis=(1, 2)), VAR_FLOOR) if rank else np.ones(k)
    var_y = np.array([np.var(y[keep[g]]) if cnt[g] > 1 else 1.0 for g in range(k)])
    s2 = np.maximum(var_y / 2, S2_FLOOR)
    se2 = se**2
    ones = np.ones((k, m, 1))
    xk = np.broadcast_to(x, (k, m, f))
    tbeta2 = np.full(k, BETA_PRIOR_VAR)
    last, last_s2 = None, s2
    for sweep in range(SWEEPS):
        w = np.where(keep, 1.0 / (s2[:, None] + se2[None, :]), 0.0)
        side = (xk @ beta[..., None])[..., 0] if f else np.zeros((k, m))
        # rows: (a[s], u[s]) given the columns
        zr = np.concatenate([ones, v[:, j]], axis=2)
        theta, cov_row = _block_solve(
            i, n, zr, y - mu[:, None] - b[:, j] - side, w, np.column_stack([1 / ta2, np.repeat((1 / tu2)[:, None], rank, axis=1)])
        )
        a, u = theta[..., 0], theta[..., 1:]
        # columns: (b[t], v[t]) given the rows
        zc = np.concatenate([ones, u[:, i]], axis=2)
        theta, cov_col = _block_solve(
            j, n, zc, y - mu[:, None] - a[:, i] - side, w, np.column_stack([1 / tb2, np.repeat((1 / tu2)[:, None], rank, axis=1)])
        )
        b, v = theta[..., 0], theta[..., 1:]
        # the grand mean and the side coefficients
        zb = np.concatenate([ones, xk], axis=2)
        inter = np.sum(u[:, i] * v[:, j], axis=2)
        side_prior = np.column_stack([np.full(k, 1 / MU_PRIOR_VAR), np.repeat((1 / tbeta2)[:, None], f, axis=1)])
        theta, cov = _block_solve(np.zeros(m, dtype=int), 1, zb, y - a[:, i] - b[:, j] - inter, w, side_prior)
        mu, beta, cov_beta = theta[:, 0, 0], theta[:, 0, 1:], cov[:, 0]
        # empirical Bayes: the prior variances from the posterior moments, the residual variance from the residuals
        ta2 = np.maximum(np.mean(a**2 + cov_row[..., 0, 0], axis=1), VAR_FLOOR)
        tb2 = np.maximum(np.mean(b**2 + cov_col[..., 0, 0], axis=1), VAR_FLOOR)
        if rank and sweep >= WARMUP:  # the factors settle before their prior follows them (else it collapses them)
            fac_r = u**2 + np.diagonal(cov_row, axis1=2, axis2=3)[..., 1:]
            fac_c = v**2 + np.diagonal(cov_col, axis1=2, axis2=3)[..., 1:]
            tu2 = np.maximum((fac_r.sum(axis=(1, 2)) + fac_c.sum(axis=(1, 2))) / (2 * n * rank), VAR_FLOOR)
        if f and sweep >= WARMUP:  # one prior variance for the side coefficients: useless features shrink together
            tbeta2 = np.maximum(np.mean(beta**2 + np.diagonal(cov_beta, axis1=1, axis2=2)[:, 1:], axis=1), VAR_FLOOR)
        side = (xk @ beta[..., None])[..., 0] if f else np.zeros((k, m))
        resid = np.where(keep, y - (mu[:, None] + a[:, i] + b[:, j] + np.sum(u[:, i] * v[:, j], axis=2) + side), 0.0)
        # the effective number of parameters: the cells' leverages in the three blocks
        zr = np.concatenate([ones, v[:, j]], axis=2)
        zc = np.concatenate([ones, u[:, i]], axis=2)
        lev = w * (_quad(cov_row[:, i], zr) + _quad(cov_col[:, j], zc) + _quad(cov_beta[:, None], zb))
        dof = np.minimum(lev.sum(axis=1), np.maximum(cnt - 1.0, 0.0))
        mean_se2 = (keep * se2).sum(axis=1) / np.maximum(cnt, 1.0)
        s2 = np.maximum((resid**2).sum(axis=1) / np.maximum(cnt - dof, 1.0) - mean_se2, S2_FLOOR)
        # converged when no cell's prediction and not the residual variance move any more (the parameters
        # themselves may drift along directions the cells do not determine, e.g. collinear side features)
        mean = mu[:, None, None] + a[:, :, None] + b[:, None, :] + u @ np.swapaxes(v, 1, 2)
        if f:
            mean = mean + np.einsum("stf,kf->kst", features, beta)
        if last is not None and np.max(np.abs(mean - last)) < TOL and np.max(np.abs(s2 - last_s2) / s2) < TOL:
            break
        last, last_s2 = mean, s2
    # the variance of the mean: each block's posterior, the other blocks held at their means
    zt = np.concatenate([np.ones((k, n, 1)), v], axis=2)  # per target t: (1, v[t])
    zs = np.concatenate([np.ones((k, n, 1)), u], axis=2)  # per source s: (1, u[s])
    var = _quad(cov_row[:, :, None], zt[:, None, :]) + _quad(cov_col[:, None, :], zs[:, :, None])
    xb = np.concatenate([np.ones((n, n, 1)), features], axis=-1)
    var = var + _quad(cov_beta[:, None, None], xb[None])
    if single:
        return Fit(mean=mean[0], var_mean=var[0], s2=float(s2[0]), rank=rank)
    return Fit(mean=mean, var_mean=var, s2=s2, rank=rank)


def _folds(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(m)
    fold = np.empty(m, dtype=int)
    fold[order] = np.arange(m) % k
    return fold


CALIBRATIONS = ("conformal", "quantile", "variance")


def calibration_factor(z: np.ndarray, level: float, method: str = "conformal") -> float:
    """The factor that scales the predictive standard deviations so that held-out cells with
    standardized residuals ``z`` are covered at ``level``:

    * ``conformal``: the split-conformal quantile of |z| (rank ceil((m + 1) level); the largest |z|
      when there are too few cells for that rank) over the normal quantile: at least ``level``
      coverage for exchangeable cells, conservative for few cells;
    * ``quantile``: the empirical ``level`` quantile of |z| (interpolated) over the normal quantile;
    * ``variance``: the root mean square of z (the normal intervals' scale if the residuals are normal)."""
    z = np.abs(z[np.isfinite(z)])
    if not z.size:
        return 1.0
    zq = scistats.norm.ppf(0.5 + level / 2)
    if method == "variance":
        return float(np.sqrt(np.mean(z**2)))
    if method == "quantile":
        return float(np.quantile(z, level) / zq)
    if method != "conformal":
        raise MvlptError(f"unknown calibration {method!r}: choose one of {', '.join(CALIBRATIONS)}.")
    z = np.sort(z)
    k = math.ceil((z.size + 1) * level)
    return float(z[min(k, z.size) - 1] / zq)


def new_noise(n: int, j: np.ndarray, se: np.ndarray) -> np.ndarray:
    """The measurement variance to expect of a new cell of each target: the mean squared ``se`` of the
    target's measured cells, shrunk towards that of all cells (as if :data:`NOISE_PRIOR_CELLS` cells of
    the overall mean were added). A target's test set and seeds make its cells' noise alike."""
    total = float(np.mean(se**2)) if se.size else 0.0
    return (np.bincount(j, weights=se**2, minlength=n) + NOISE_PRIOR_CELLS * total) / (
        np.bincount(j, minlength=n) + NOISE_PRIOR_CELLS
    )


def cross_validate(
    n: int, i, j, y, se, features, rank: int, fold: np.ndarray, rng: np.random.Generator
) -> tuple[float, np.ndarray]:
    """The held-out mean squared error and the held-out standardized residuals (z: the residual over
    the predictive standard deviation of a new cell, :func:`new_noise` from the training cells) of a
    cross-validation over the measured cells, ``fold`` giving each cell's fold (the folds' fits run at once)."""
    k = int(fold.max()) + 1
    keep = fold[None, :] != np.arange(k)[:, None]
    ft = fit(n, i, j, y, se, features, rank, rng, keep=keep)
    pred = ft.mean[fold, i, j]
    noise = np.stack([new_noise(n, j[fold != g], se[fold != g]) for g in range(k)])
    sd = np.sqrt(ft.var_mean[fold, i, j] + ft.s2[fold] + noise[fold, j])
    resid = y - pred
    return float(np.mean(resid**2)), resid / sd


def complete(
    measured: pd.DataFrame,
    tasks: list[str],
    *,
    side: dict[str, pd.DataFrame] | None = None,
    level: float = LEVEL,
    seed: int = 0,
    rank: int | None = None,
    max_rank: int = MAX_RANK,
    folds: int = FOLDS,
    calibration: str = "conformal",
) -> pd.DataFrame:
    """Complete a method's gain matrix from its measured cells.

    ``measured``: one row per measured off-diagonal cell, columns ``source``, ``target``, ``gain``,
    ``gain_se`` (seeds averaged, ``gain_se`` its standard error; NaN where unknown). Returns one row per
    off-diagonal (source, target) of ``tasks``: ``gain`` (the measured value, or the prediction),
    ``sd`` (a measured cell's ``gain_se``; an unmeasured cell's calibrated predictive standard deviation
    of its measurement), ``lo``, ``hi`` (the normal interval at ``level``) and ``measured``.

    ``rank``: the interaction's rank (0 = effects only); None chooses it among 0..``max_rank`` by
    ``folds``-fold cross-validation. ``side``: task x task DataFrames or per-task Series (see
    :func:`side_features`). ``DataFrame.attrs`` of the result records the rank, the calibration factor
    and the residual standard deviation."""
    tasks = _check_tasks(tasks)
    if not 0 < level < 1:
        raise MvlptError(f"the interval level must lie between 0 and 1, got {level}.")
    n = len(tasks)
    i, j, y, se = _measured_cells(measured, tasks)
    m = len(y)
    if m < 2:
        raise MvlptError(f"the completion needs at least 2 measured cells, got {m}: measure the initial design first.")
    rng = np.random.default_rng(seed)
    center = float(np.mean(y))
    scale = float(np.std(y, ddof=1))
    if not scale > 1e-12:
        scale = float(np.sqrt(np.mean(se**2))) or 1.0
    ys, ses = (y - center) / scale, se / scale
    features, feature_names = side_features(side, tasks)

    # the model by cross-validation: with or without the side information (at rank 0), then the rank
    # among those the cells can identify (a rank-r interaction has r (n_rows + n_cols - r) parameters)
    no_side = features[..., :0]
    rows, cols = len(set(i.tolist())), len(set(j.tolist()))
    cv: dict[tuple[int, bool], tuple[float, np.ndarray]] = {}
    fold = _folds(m, min(folds, m), rng) if m >= 3 else None
    first = 0 if rank is None else int(rank)
    if fold is not None:
        cv[(first, False)] = cross_validate(n, i, j, ys, ses, no_side, first, fold, rng)
        if feature_names:
            cv[(first, True)] = cross_validate(n, i, j, ys, ses, features, first, fold, rng)
    use_side = bool(feature_names) and (fold is None or cv[(first, True)][0] < cv[(first, False)][0])
    chosen = first
    if rank is None and fold is not None:
        free = m - (rows + cols - 1) - (len(feature_names) if use_side else 0)
        for r in range(1, max_rank + 1):
            if r * (rows + cols - r) <= free:
                cv[(r, use_side)] = cross_validate(n, i, j, ys, ses, features if use_side else no_side, r, fold, rng)
        tried = sorted(r for r, side_on in cv if side_on == use_side)
        best = min(cv[(r, use_side)][0] for r in tried)
        chosen = min(r for r in tried if cv[(r, use_side)][0] <= best * RANK_TOLERANCE)
    factor = calibration_factor(cv[(chosen, use_side)][1], level, calibration) if cv else 1.0
    if not use_side:
        features, feature_names = no_side, []

    final = fit(n, i, j, ys, ses, features, chosen, rng)
    sd = factor * np.sqrt(final.var_mean + final.s2 + new_noise(n, j, ses)[None, :])
    gain = center + scale * final.mean
    sd = scale * sd
    is_measured = np.zeros((n, n), dtype=bool)
    is_measured[i, j] = True
    gain[i, j] = y
    se_full = np.full((n, n), np.nan)
    se_full[i, j] = se
    sd = np.where(is_measured, se_full, sd)
    zq = scistats.norm.ppf(0.5 + level / 2)
    ss, tt = np.nonzero(~np.eye(n, dtype=bool))
    out = pd.DataFrame(
        {
            "source": [tasks[s] for s in ss],
            "target": [tasks[t] for t in tt],
            "gain": gain[ss, tt],
            "sd": sd[ss, tt],
            "lo": gain[ss, tt] - zq * sd[ss, tt],
            "hi": gain[ss, tt] + zq * sd[ss, tt],
            "measured": is_measured[ss, tt],
        },
        columns=list(COMPLETED_COLUMNS),
    )
    out.attrs = {
        "rank": int(chosen),
        "calibration": float(factor),
        "residual_sd": float(scale * math.sqrt(final.s2)),
        "level": float(level),
        "side": feature_names,
        "n_measured": int(m),
    }
    return out


# --------------------------------------------------------------------------------------------------
# The best source per target
# --------------------------------------------------------------------------------------------------


def best_sources(completed: pd.DataFrame, *, draws: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per target: ``best_source`` (the highest gain, measured or predicted), ``gain`` its gain,
    ``probability`` that it is the best (the share of ``draws`` joint draws of the target's cells, each
    from its normal predictive distribution N(gain, sd), independent, in which it has the highest gain),
    ``top3`` (the three highest gains' sources, best first) and ``n_sources``."""
    missing = {"source", "target", "gain", "sd"} - set(completed.columns)
    if missing:
        raise MvlptError(f"the completed matrix lacks the column(s) {', '.join(sorted(missing))}.")
    rng = np.random.default_rng(seed)
    rows = []
    for target, g in completed.groupby("target", sort=True):
        g = g.sort_values(["gain", "source"], ascending=[False, True], kind="mergesort")
        mean = g["gain"].to_numpy(dtype=float)
        sd = np.nan_to_num(g["sd"].to_numpy(dtype=float), nan=0.0)
        sample = mean[None, :] + sd[None, :] * rng.standard_normal((draws, len(g)))
        wins = np.bincount(np.argmax(sample, axis=1), minlength=len(g))
        rows.append(
            {
                "target": target,
                "best_source": g["source"].iloc[0],
                "gain": float(mean[0]),
                "probability": float(wins[0] / draws),
                "top3": list(g["source"].iloc[:3]),
                "n_sources": len(g),
            }
        )
    return pd.DataFrame(rows, columns=["target", "best_source", "gain", "probability", "top3", "n_sources"])
