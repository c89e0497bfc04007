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

from .errors import MvlptError


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
        return pd.DataFrame(np.where(self.interaction.notna(), add, np.nan), index=self.interaction.index,
                            columns=self.interaction.columns)


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
    p = 1 + (len(src) - 1) + (len(tgt) - 1)
    if n <= p:
        raise MvlptError(f"the gain matrix has {n} measured off-diagonal cells, too few to separate source and "
                         f"target effects ({p} parameters); measure more pairs.")
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
    a = np.append(coef[1:len(src)], -coef[1:len(src)].sum()) if len(src) > 1 else np.zeros(1)
    b = np.append(coef[len(src):], -coef[len(src):].sum()) if len(tgt) > 1 else np.zeros(1)
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
        "source": float((fa ** 2).sum()),
        "target": float((fb ** 2).sum()),
        "covariance": float(2 * (fa * fb).sum()) + float(2 * ((mean - y.mean()) * (fa + fb)).sum())
        + float(n * (mean - y.mean()) ** 2),
        "interaction": float((resid ** 2).sum()),
    }
    df = {"total": n - 1, "source": len(src) - 1, "target": len(tgt) - 1, "interaction": n - p}
    return Decomposition(mean=mean, source=source, target=target, interaction=interaction, ss=ss, df=df)


# --------------------------------------------------------------------------------------------------
# Per-seed gains and the two-level bootstrap (targets, then seeds)
# --------------------------------------------------------------------------------------------------
def seed_gains(runs: pd.DataFrame, method: str, tasks: list[str] | None = None) -> tuple[np.ndarray, list[str], list[int]]:
    """The gains of ``method`` seed by seed: ``(seeds, sources, targets)``, NaN on the diagonal and where
    a run is missing. A gain is paired with the baseline of its own seed, or with the baseline's mean
    over seeds where that seed has no baseline (as :func:`mvlpt.tables.pair_table`). Returns the array,
    the task order (``tasks`` or every task of the method's runs, natural order) and the seeds."""
    from .tables import task_order

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
