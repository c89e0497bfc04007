"""Transferability predictors scored against the measured gains (docs/predictors.md).

:func:`score_predictors` compares every predictor matrix (oriented "larger = more gain expected") with each
method's measured gain matrix and its interaction over the off-diagonal pairs: Spearman over pairs, mean
within-target Spearman, top-1 / top-3 hit rate of the measured best source, NDCG@3 (:data:`SCORES`), each
with a two-level bootstrap interval over targets and seeds, a permutation p and its value under the null
predictors (:data:`NULL_PREDICTORS`: the sources' own quality and a random ranking);
:func:`predictor_order` ranks the predictors by their scores."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mvlpt.analysis import tables
from mvlpt.analysis.stats import spearman_along
from mvlpt.errors import MvlptError
from mvlpt.study import settings, vocabulary
from mvlpt.transfer import transferability

# (name, label, k): the scores of a predictor against one method's gains, in table order
SCORES: tuple[tuple[str, str, int], ...] = (
    ("spearman", "Spearman over pairs", 0),
    ("within_target_spearman", "mean within-target Spearman", 0),
    ("top1", "top-1 hit rate", 1),
    ("top3", "top-3 hit rate", 3),
    ("ndcg3", "NDCG@3", 3),
)
SCORE_COLUMNS = (
    "method",
    "predictor",
    "family",
    "against",
    "score",
    "estimate",
    "ci_low",
    "ci_high",
    "chance",
    "chance_low",
    "chance_high",
    "p_value",
    "q_value",
    "vs_quality",
    "vs_quality_low",
    "vs_quality_high",
    "useful",
    "n",
    "cost_s",
)


def _chance_ndcg(gain: np.ndarray, k: int) -> float:
    """Expected NDCG@k of a uniformly random ranking: each position holds the mean relevance."""
    rel = gain - gain.min()
    k = min(k, len(rel))
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(rel)[::-1][:k] @ disc
    return float(rel.mean() * disc.sum() / ideal) if ideal > 0 else float("nan")


def per_target(pred: np.ndarray, gain: np.ndarray) -> dict[str, np.ndarray]:
    """Per target (column): within-target Spearman, top-1 / top-3 hit, NDCG@3 and their chance values.

    ``pred`` and ``gain`` are source x target arrays, NaN where a pair does not count (the diagonal)."""
    out = {name: [] for name, _, _ in SCORES[1:]}
    chance = {name: [] for name, _, _ in SCORES[1:]}
    for j in range(gain.shape[1]):
        ok = np.isfinite(pred[:, j]) & np.isfinite(gain[:, j])
        p, g = pred[ok, j], gain[ok, j]
        n = len(g)
        out["within_target_spearman"].append(transferability.spearman(p, g) if n >= 3 else np.nan)
        chance["within_target_spearman"].append(0.0 if n >= 3 else np.nan)
        for name, k in (("top1", 1), ("top3", 3)):
            out[name].append(transferability.top_k_hit(p, g, k) if n >= 2 else np.nan)
            chance[name].append(min(k, n) / n if n >= 2 else np.nan)
        out["ndcg3"].append(transferability.ndcg_at_k(p, g, 3) if n >= 2 else np.nan)
        chance["ndcg3"].append(_chance_ndcg(g, 3) if n >= 2 else np.nan)
    return {k: np.asarray(v, float) for k, v in out.items()}, {k: np.asarray(v, float) for k, v in chance.items()}


def _pooled_spearman(pred: np.ndarray, gain: np.ndarray):
    """Statistic for :func:`scipy.stats.bootstrap` over targets: the Spearman over the pairs of the
    resampled targets (columns). Vectorised when every target has as many scored sources (a complete
    study), else one resample at a time."""
    ok = np.isfinite(pred) & np.isfinite(gain)
    counts = ok.sum(0)
    if len(set(counts.tolist())) == 1:
        p = np.stack([pred[ok[:, j], j] for j in range(pred.shape[1])])  # (targets, sources)
        g = np.stack([gain[ok[:, j], j] for j in range(gain.shape[1])])

        def statistic(idx, axis=-1):
            idx = np.asarray(idx)
            return spearman_along(p[idx].reshape(*idx.shape[:-1], -1), g[idx].reshape(*idx.shape[:-1], -1))
    else:

        def statistic(idx, axis=-1):
            idx = np.asarray(idx)
            flat = [
                transferability.spearman(pred[:, cols].ravel(), gain[:, cols].ravel()) for cols in idx.reshape(-1, idx.shape[-1])
            ]
            return np.asarray(flat).reshape(idx.shape[:-1])

    return statistic


def _ci(data: tuple, statistic, *, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    """Percentile bootstrap CI (scipy), as :mod:`mvlpt.analysis.stats` draws them; NaN if not computable."""
    from scipy import stats as S

    if n_boot <= 0 or len(data[0]) < 2:
        return np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate or NaN resamples: the CI says so by itself
        ci = S.bootstrap(
            data,
            statistic,
            vectorized=True,
            n_resamples=n_boot,
            confidence_level=level,
            method="percentile",
            random_state=np.random.default_rng(seed),
        ).confidence_interval
    return float(ci.low), float(ci.high)


NULL_PREDICTORS = ("source_quality", "random")
AGAINST = ("gain", "interaction")
_TIE = 1e-9  # measured values this close to the best tie with it


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def _tie_groups(p: np.ndarray) -> list[np.ndarray]:
    """The positions of ``p`` grouped by equal value, largest value first."""
    values = np.unique(p)[::-1]
    return [np.flatnonzero(p == v) for v in values]


def _topk_hit_tied(p: np.ndarray, best: np.ndarray, k: int) -> np.ndarray:
    """Top-k hit of a fixed predictor ``p`` (n,) on rows of measured-best masks ``best`` (N, n): the
    probability that some measured-best source (ties in the measured value are all best) is among the k
    sources ``p`` ranks highest, ties in ``p`` broken uniformly at random (exact; task order decides
    nothing)."""
    from scipy.special import comb

    none = np.ones(len(best))
    r = min(k, len(p))
    for group in _tie_groups(p):
        if r <= 0:
            break
        h = best[:, group].sum(1)
        m = len(group)
        if m <= r:
            none = none * (h == 0)
        else:
            none = none * comb(m - h, r) / comb(m, r)
        r -= m
    return 1.0 - none


def _ndcg_weights(p: np.ndarray, k: int) -> np.ndarray:
    """(n,) weights so that ``rel @ w`` is the expected DCG@k of the ranking by ``p``, ties broken at
    random: each position holds the mean relevance of the tie group that covers it."""
    disc = 1.0 / np.log2(np.arange(2, len(p) + 2))
    w = np.zeros(len(p))
    pos = 0
    for group in _tie_groups(p):
        span = np.arange(pos, pos + len(group))
        w[group] = disc[span[span < k]].sum() / len(group)
        pos += len(group)
    return w


def _ndcg_from(dcg: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    disc = 1.0 / np.log2(np.arange(2, min(k, rel.shape[1]) + 2))
    ideal = -np.sort(-rel, axis=1)[:, : len(disc)] @ disc
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), np.nan)


def column_scores(p: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
    """The per-target scores of one target's sources: ``p`` the predictor's values ``(n,)`` (fixed; ties
    allowed) or ``(N, n)`` (one draw per row, e.g. a random predictor; no ties), ``g`` the measured
    values ``(N, n)`` (one row per resample of the target's column). Returns ``(N,)`` arrays:
    ``within_target_spearman`` (average ranks; NaN with < 3 sources or a constant side), ``top1``,
    ``top3`` (a hit when some measured-best source, ties included, is among the predictor's k highest;
    predictor ties broken at random, in expectation), ``ndcg3`` (relevance = value - the column's
    smallest; predictor ties in expectation)."""
    from mvlpt.analysis.stats import pearson_along

    g = np.atleast_2d(np.asarray(g, float))
    n_rows, n = g.shape
    nan = np.full(n_rows, np.nan)
    if n < 2:
        return {"within_target_spearman": nan, "top1": nan, "top3": nan, "ndcg3": nan}
    ok = np.isfinite(g).all(1)
    gg = np.where(ok[:, None], g, 0.0)
    rg = _ranks(gg)
    best = gg >= gg.max(1, keepdims=True) - _TIE
    rel = gg - gg.min(1, keepdims=True)
    out = {}
    if np.ndim(p) == 1:
        rp = _ranks(np.asarray(p, float))
        out["within_target_spearman"] = pearson_along(np.broadcast_to(rp, rg.shape), rg) if n >= 3 else nan.copy()
        out["top1"] = _topk_hit_tied(p, best, 1)
        out["top3"] = _topk_hit_tied(p, best, 3)
        out["ndcg3"] = _ndcg_from(rel @ _ndcg_weights(p, 3), rel, 3)
    else:
        p = np.asarray(p, float)
        order = np.argsort(-p, axis=1, kind="stable")
        rows = np.arange(n_rows)[:, None]
        out["within_target_spearman"] = pearson_along(_ranks(p), rg) if n >= 3 else nan.copy()
        out["top1"] = best[rows, order[:, :1]].any(1).astype(float)
        out["top3"] = best[rows, order[:, :3]].any(1).astype(float)
        disc = 1.0 / np.log2(np.arange(2, min(3, n) + 2))
        out["ndcg3"] = _ndcg_from(rel[rows, order[:, : len(disc)]] @ disc, rel, 3)
    return {k: np.where(ok, np.asarray(v, float), np.nan) for k, v in out.items()}


def chance_scores(g: np.ndarray) -> dict[str, float]:
    """The expected per-target scores of a uniformly random ranking of one target's sources (values
    ``g`` (n,)), exactly: Spearman 0, top-k ``1 - C(n - h, k) / C(n, k)`` with ``h`` tied-best sources,
    NDCG@3 each position holding the mean relevance."""
    from scipy.special import comb

    g = np.asarray(g, float)
    n = len(g)
    if n < 2:
        return {"within_target_spearman": np.nan, "top1": np.nan, "top3": np.nan, "ndcg3": np.nan}
    h = int((g >= g.max() - _TIE).sum())
    return {
        "within_target_spearman": 0.0 if n >= 3 else np.nan,
        "top1": float(1 - comb(n - h, 1) / comb(n, 1)),
        "top3": float(1 - comb(n - h, min(3, n)) / comb(n, min(3, n))),
        "ndcg3": _chance_ndcg(g, 3),
    }


def _pooled_along(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Spearman over the finite cells of each ``(B, S, T)`` matrix pair: ``(B,)``."""
    from mvlpt.analysis.stats import pearson_along

    p = p.reshape(len(p), -1)
    g = g.reshape(len(g), -1)
    ok = np.isfinite(p) & np.isfinite(g)
    counts = ok.sum(1)
    out = np.full(len(p), np.nan)
    if len(set(counts.tolist())) == 1 and counts[0] >= 3:
        c = int(counts[0])
        out = pearson_along(_ranks(p[ok].reshape(-1, c)), _ranks(g[ok].reshape(-1, c)))
    else:
        for b in range(len(p)):
            if counts[b] >= 3:
                out[b] = pearson_along(_ranks(p[b, ok[b]]), _ranks(g[b, ok[b]]))
    return np.asarray(out, float)


def resampled_scores(pred: np.ndarray, targets: np.ndarray, mats: np.ndarray) -> dict[str, np.ndarray]:
    """Every score of a fixed predictor ``pred`` ``(S, T)`` (NaN where a pair does not count) on resampled
    matrices ``mats`` ``(B, S, T')`` whose column ``c`` is the original target ``targets[b, c]``: ``(B,)``
    per score (the mean over the resample's targets; ``spearman``: over its pairs). A random predictor is
    ``pred`` of shape ``(B, S, T')``, one draw per resample (its columns are the resample's own)."""
    random = pred.ndim == 3
    b, s, t = mats.shape
    per = {name: np.full((b, t), np.nan) for name, _, _ in SCORES[1:]}
    cols = np.swapaxes(mats, 1, 2)  # (B, T', S)
    if random:
        pcols = np.swapaxes(pred, 1, 2)
        pm = pred
    else:
        pm = np.swapaxes(pred[:, targets], 0, 1)  # (B, S, T')
    for j in np.unique(targets):
        sel = targets == j
        g = cols[sel]
        valid = np.isfinite(g).any(0) & (np.isfinite(pred[:, j]) if not random else True)
        if valid.sum() < 2:
            continue
        p = pcols[sel][:, valid] if random else pred[valid, j]
        for name, v in column_scores(p, g[:, valid]).items():
            per[name][sel] = v
    out = {"spearman": _pooled_along(np.where(np.isfinite(mats), pm, np.nan), mats)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, v in per.items():
            out[name] = np.nanmean(v, axis=1)
    return out


def _within_p(pred: np.ndarray, values: np.ndarray, n_perm: int, rng) -> float:
    """The target-stratified permutation p of the mean within-target Spearman
    (:func:`mvlpt.analysis.stats.within_target_permutation_p`): each target's sources permuted."""
    from mvlpt.analysis.stats import pearson_along, within_target_permutation_p

    xs, ys = [], []
    for j in range(values.shape[1]):
        ok = np.isfinite(pred[:, j]) & np.isfinite(values[:, j])
        if ok.sum() < 3:
            continue
        x, y = _ranks(pred[ok, j]), _ranks(values[ok, j])
        if np.isfinite(pearson_along(x, y)):
            xs.append(x)
            ys.append(y)
    if not xs or n_perm <= 0:
        return np.nan
    return within_target_permutation_p(xs, ys, n_perm, rng)


def bh_qvalues(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values of ``p``; NaN stays NaN and is not counted (:func:`mvlpt.analysis.gainstats.fdr`)."""
    from mvlpt.analysis.gainstats import fdr

    return fdr(p, "bh")


def _percentile(x: np.ndarray, level: float) -> tuple[float, float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return np.nan, np.nan
    a = (1 - level) / 2
    lo, hi = np.quantile(x, [a, 1 - a])
    return float(lo), float(hi)


def _aligned(m: pd.DataFrame, order: Sequence[str]) -> np.ndarray:
    a = m.reindex(index=order, columns=order).to_numpy(float).copy()
    np.fill_diagonal(a, np.nan)
    return a


def score_gains(
    gains: np.ndarray,
    tasks: Sequence[str],
    predictors: Mapping[str, pd.DataFrame],
    *,
    quality: pd.Series | None = None,
    against: Sequence[str] = AGAINST,
    n_boot: int = settings.ANALYSIS_DEFAULTS["n_boot"],
    n_perm: int = settings.ANALYSIS_DEFAULTS["n_perm"],
    seed: int = settings.ANALYSIS_DEFAULTS["seed"],
    level: float = settings.ANALYSIS_DEFAULTS["level"],
) -> list[dict]:
    """Every score of every predictor matrix against one method's per-seed gains ``(seeds, sources,
    targets)`` in ``tasks`` order (NaN on the diagonal), against the gain and its interaction:

    * the estimate on the seed-mean gain matrix (its interaction: :func:`mvlpt.analysis.gainstats.decompose`'s
      residual, the same fit as :func:`mvlpt.analysis.gainstats.additive_residual`);
    * the interval: percentiles over ``n_boot`` two-level resamples (:func:`mvlpt.analysis.gainstats.two_level_resamples`:
      targets, then seeds inside each target), one set shared by every predictor, so differences are paired;
    * ``p_value`` (``within_target_spearman`` only): the target-stratified permutation p (``n_perm``);
    * the nulls: ``source_quality`` (``quality``, the sources' own baselines, row-constant) and ``random``
      (estimate: the exact expectation of a random ranking; interval: a random ranking drawn per resample);
      ``chance``, ``chance_low``, ``chance_high`` on every row; ``vs_quality*``: the paired difference to
      ``source_quality`` and ``useful`` = its interval above 0.

    Returns rows without ``method``, ``family``, ``cost_s`` and ``q_value`` (:func:`score_predictors` adds them)."""
    from mvlpt.analysis.gainstats import additive_residual, two_level_resamples

    gains = np.asarray(gains, float)
    k, s, t = gains.shape
    mats_obs = _nanmean0(gains)[None]  # (1, S, T)
    obs_targets = np.arange(t)[None]
    rng = np.random.default_rng(seed)
    if n_boot > 0:
        targets, mats = two_level_resamples(gains, n_boot, rng)
    else:
        targets, mats = np.zeros((0, t), int), np.zeros((0, s, t))
    preds = {name: _aligned(m, tasks) for name, m in predictors.items()}
    if quality is not None:
        q = quality.reindex(tasks).to_numpy(float)
        preds["source_quality"] = _aligned(pd.DataFrame(np.repeat(q[:, None], t, 1), index=tasks, columns=tasks), tasks)
    rows = []
    for what in against:
        if what == "gain":
            obs, res = mats_obs, mats
        elif what == "interaction":
            obs, res = additive_residual(mats_obs), additive_residual(mats) if n_boot > 0 else mats
        else:
            raise MvlptError(f"unknown 'against' {what!r}; use {' or '.join(AGAINST)}.")
        # the random ranking: exact expectation on the observed matrix, interval from one draw per resample
        chance_cols = [chance_scores(obs[0][np.isfinite(obs[0][:, j]), j]) for j in range(t)]
        chance = {"spearman": 0.0}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for name, _, _ in SCORES[1:]:
                chance[name] = float(np.nanmean([c[name] for c in chance_cols]))
        draws = resampled_scores(np.random.default_rng([seed, 1]).random(res.shape), targets, res) if n_boot > 0 else {}
        chance_ci = {name: _percentile(draws[name], level) if n_boot > 0 else (np.nan, np.nan) for name, _, _ in SCORES}
        point = {name: resampled_scores(p, obs_targets, obs) for name, p in preds.items()}
        boot = {name: resampled_scores(p, targets, res) for name, p in preds.items()} if n_boot > 0 else {}
        values = obs[0]
        for name, p in preds.items():
            pval = _within_p(p, values, n_perm, np.random.default_rng([seed, 2]))
            for score, _, _ in SCORES:
                est = float(point[name][score][0])
                lo, hi = _percentile(boot[name][score], level) if n_boot > 0 else (np.nan, np.nan)
                row = {
                    "predictor": name,
                    "against": what,
                    "score": score,
                    "estimate": est,
                    "ci_low": lo,
                    "ci_high": hi,
                    "chance": chance[score],
                    "chance_low": chance_ci[score][0],
                    "chance_high": chance_ci[score][1],
                    "p_value": pval if score == "within_target_spearman" else np.nan,
                    "vs_quality": np.nan,
                    "vs_quality_low": np.nan,
                    "vs_quality_high": np.nan,
                    "useful": False,
                    "n": _n_of(score, p, values),
                }
                if "source_quality" in preds and name != "source_quality":
                    row["vs_quality"] = est - float(point["source_quality"][score][0])
                    if n_boot > 0:
                        lo, hi = _percentile(boot[name][score] - boot["source_quality"][score], level)
                        row["vs_quality_low"], row["vs_quality_high"] = lo, hi
                        row["useful"] = bool(np.isfinite(lo) and lo > 0)
                rows.append(row)
        # the random ranking's own rows
        for score, _, _ in SCORES:
            lo, hi = chance_ci[score]
            row = {
                "predictor": "random",
                "against": what,
                "score": score,
                "estimate": chance[score],
                "ci_low": lo,
                "ci_high": hi,
                "chance": chance[score],
                "chance_low": lo,
                "chance_high": hi,
                "p_value": np.nan,
                "vs_quality": np.nan,
                "vs_quality_low": np.nan,
                "vs_quality_high": np.nan,
                "useful": False,
                "n": _n_of(score, np.zeros((s, t)), values),
            }
            if "source_quality" in preds:
                row["vs_quality"] = chance[score] - float(point["source_quality"][score][0])
                if n_boot > 0:
                    lo, hi = _percentile(draws[score] - boot["source_quality"][score], level)
                    row["vs_quality_low"], row["vs_quality_high"] = lo, hi
                    row["useful"] = bool(np.isfinite(lo) and lo > 0)
            rows.append(row)
    return rows


def _nanmean0(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)


def _n_of(score: str, pred: np.ndarray, values: np.ndarray) -> int:
    ok = np.isfinite(pred) & np.isfinite(values)
    if score == "spearman":
        return int(ok.sum())
    need = 3 if score == "within_target_spearman" else 2
    return int((ok.sum(0) >= need).sum())


def score_matrix(
    pred: pd.DataFrame,
    gain: pd.DataFrame,
    *,
    n_boot: int = settings.ANALYSIS_DEFAULTS["n_boot"],
    seed: int = settings.ANALYSIS_DEFAULTS["seed"],
    level: float = settings.ANALYSIS_DEFAULTS["level"],
) -> list[dict]:
    """Every score of :data:`SCORES` of one predictor matrix against one gain matrix (both source x
    target; the diagonal is ignored), the gain taken as a single seed (so the interval is a bootstrap over
    targets only): rows of score, estimate, ci_low, ci_high, chance, n (and the columns of :func:`score_gains`)."""
    order = [t for t in gain.columns if t in set(pred.columns) and t in set(pred.index) and t in set(gain.index)]
    g = _aligned(gain, order)
    rows = score_gains(g[None], order, {"predictor": pred}, against=("gain",), n_boot=n_boot, n_perm=0, seed=seed, level=level)
    return [r for r in rows if r["predictor"] == "predictor"]


def _quality(pairs: pd.DataFrame, method: str) -> pd.Series:
    """The sources' own baseline (mean over seeds) of ``method``, from the pairs table."""
    base = pairs[(pairs["method"] == method) & (pairs["source"] == pairs["target"])]
    return base.set_index("source")["mean"].astype(float)


def score_predictors(
    pairs: pd.DataFrame | None,
    predictors: Mapping[str, tuple[pd.DataFrame, dict]],
    *,
    runs: pd.DataFrame | None = None,
    methods: Sequence[str] | None = None,
    against: Sequence[str] = AGAINST,
    n_boot: int = settings.ANALYSIS_DEFAULTS["n_boot"],
    n_perm: int = settings.ANALYSIS_DEFAULTS["n_perm"],
    seed: int = settings.ANALYSIS_DEFAULTS["seed"],
    level: float = settings.ANALYSIS_DEFAULTS["level"],
) -> pd.DataFrame:
    """The long table (:data:`SCORE_COLUMNS`) of every predictor's scores per method, against the gain and
    its interaction, with the null predictors ``source_quality`` and ``random`` (:func:`score_gains`).

    ``runs`` (the runs table, one row per run and seed) gives the per-seed gains of the two-level bootstrap;
    without it the pairs table's gains count as one seed (the interval is then over targets only).
    ``predictors``: name -> (source x target matrix, its info with ``seconds``), as :func:`read_predictor`
    returns them, or, for a per-method predictor (family ``prompt``), name -> {method: (matrix, info)}.
    ``cost_s`` is the predictor's compute time. ``q_value``: Benjamini-Hochberg over the table's
    ``p_value`` s of one (method, against, score), the ``random`` rows not counted."""
    from mvlpt.analysis.gainstats import seed_gains

    if runs is not None:
        if runs.empty:
            raise MvlptError("the runs table is empty; run the study and `mvlpt collect` first.")
        pairs = tables.pair_table(runs) if pairs is None else pairs
    if pairs is None or pairs.empty:
        raise MvlptError("the pairs table is empty; run the study and `mvlpt collect` first.")
    methods = vocabulary.method_order(methods if methods is not None else pairs["method"].unique())
    out = []
    for method in methods:
        gain = tables.matrix(pairs, method, "gain")
        order = list(gain.index)
        if runs is not None:
            gains, order, _ = seed_gains(runs, method, order)
        else:
            gains = _aligned(gain, order)[None]
        mats, info = {}, {}
        for name, given in predictors.items():
            if isinstance(given, Mapping):  # a per-method predictor: {method: (matrix, info)}
                if method not in given:
                    raise MvlptError(
                        f"predictor {name} has no matrix for method {method}; compute it from that method's prompts."
                    )
                given = given[method]
            m, meta = given
            common = set(m.index) & set(order)
            if len(common) < 3:
                raise MvlptError(
                    f"predictor {name} and the gains of {method} share {len(common)} task(s); "
                    f"score them on the same study (at least 3 tasks)."
                )
            mats[name] = m
            family = vocabulary.PREDICTORS[name].family if name in vocabulary.PREDICTORS else meta.get("family", "")
            info[name] = (family, float(meta["seconds"]))
        info["source_quality"] = info["random"] = ("null", 0.0)
        rows = score_gains(
            gains,
            order,
            mats,
            quality=_quality(pairs, method),
            against=against,
            n_boot=n_boot,
            n_perm=n_perm,
            seed=seed,
            level=level,
        )
        for r in rows:
            family, cost = info[r["predictor"]]
            out.append({"method": method, **r, "family": family, "cost_s": cost})
    table = pd.DataFrame(out)
    table["q_value"] = np.nan
    for _, idx in table[table["predictor"] != "random"].groupby(["method", "against", "score"]).groups.items():
        table.loc[idx, "q_value"] = bh_qvalues(table.loc[idx, "p_value"].to_numpy(float))
    table["n"] = table["n"].astype("int64")
    table["useful"] = table["useful"].astype(bool)
    return table[list(SCORE_COLUMNS)]


def predictor_order(scores: pd.DataFrame, by: str = "within_target_spearman") -> list[str]:
    """Predictors from best to worst by their mean ``by`` score (against the gain) over methods (ties:
    registry order), the null predictors last."""
    reg = list(vocabulary.PREDICTORS)
    sub = scores[scores["against"] == "gain"] if "against" in scores.columns else scores
    mean = sub[sub["score"] == by].groupby("predictor")["estimate"].mean()
    names = [n for n in dict.fromkeys(scores["predictor"]) if n not in NULL_PREDICTORS]
    ranked = sorted(
        names,
        key=lambda n: (
            -(mean.get(n, np.nan) if np.isfinite(mean.get(n, np.nan)) else -np.inf),
            reg.index(n) if n in reg else len(reg),
        ),
    )
    return ranked + [n for n in NULL_PREDICTORS if n in set(scores["predictor"])]
