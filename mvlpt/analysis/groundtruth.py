"""The designed world scored: does the study recover a transfer structure set by construction?

Two checks, both against :func:`mvlpt.tasks.designed.relatedness` (docs/groundtruth.md):

* :func:`recovery`: per method, the Spearman correlation between the designed relatedness of every
  off-diagonal ordered pair and its measured gain (``gain`` of the study's ``pairs`` table), the mean
  within-target Spearman, and the top-1 hit rate; a method *recovers* the structure when the pooled
  Spearman is at least :data:`THRESHOLD` (fixed before the study was run).
* :func:`zero_shot_scores` and :func:`predictor_hits`: transferability estimators
  (:mod:`mvlpt.transfer.transferability`) computed from the frozen model alone, no training, in two views of a
  source model: ``names`` (the source's class-name embeddings as a zero-shot classifier) and
  ``prototypes`` (the mean frozen embedding of each source class's few-shot images as a nearest-mean
  classifier); does the top-scored source of each target match the designed best one?

``mvlpt groundtruth --pairs results/groundtruth/tables/pairs.parquet`` prints the first table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mvlpt.errors import MvlptError
from mvlpt.tasks import designed

THRESHOLD = 0.6  # Spearman(designed relatedness, measured gain) per method; fixed before any run
VIEWS = ("names", "prototypes")
DECLARED_PREDICTOR = ("prototypes", "leep")  # the one expected to pick the designed best sources
_TIE = 1e-9


# --------------------------------------------------------------------------------------------------
# The design as a table
# --------------------------------------------------------------------------------------------------
def designed_pairs(tasks: Sequence[str] = designed.SUITE) -> pd.DataFrame:
    """Every off-diagonal ordered pair of ``tasks``: source, target, relatedness."""
    rows = [(s, t, designed.relatedness(s, t)) for t in tasks for s in tasks if s != t]
    return pd.DataFrame(rows, columns=["source", "target", "relatedness"])


def top_set(values: pd.Series) -> set:
    """The index labels whose value ties the maximum (within 1e-9)."""
    values = values.dropna()
    return set(values.index[values >= values.max() - _TIE]) if len(values) else set()


def designed_best(target: str, sources: Sequence[str]) -> set:
    """The sources of ``target`` with the largest designed relatedness; empty when none is related."""
    rel = pd.Series({s: designed.relatedness(s, target) for s in sources if s != target})
    return top_set(rel) if len(rel) and rel.max() > 0 else set()


# --------------------------------------------------------------------------------------------------
# Measured gains against the design
# --------------------------------------------------------------------------------------------------
def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """The study's pair table (``pairs.csv`` or ``pairs.parquet``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MvlptError(f"no pair table at {path}; run the study (config/groundtruth.yaml) first, or give --pairs.")
    from mvlpt.analysis.tables import read_table

    df = read_table(path)  # a damaged file is one sentence
    missing = {"method", "source", "target", "gain"} - set(df.columns)
    if missing:
        raise MvlptError(f"{path} is not a pair table of the study (no column {', '.join(sorted(missing))}).")
    return df


def read_runs(path: str | os.PathLike) -> pd.DataFrame:
    """The study's per-seed runs table (``runs.csv`` or ``runs.parquet``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MvlptError(f"no runs table at {path}; give the study's tables/runs.parquet.")
    from mvlpt.analysis.tables import read_table

    df = read_table(path)
    missing = {"method", "source", "target", "seed", "value"} - set(df.columns)
    if missing:
        raise MvlptError(f"{path} is not a runs table of the study (no column {', '.join(sorted(missing))}).")
    return df


def runs_beside(pairs_path: str | os.PathLike) -> pd.DataFrame | None:
    """The runs table in the folder of the pair table ``pairs_path`` (same format first), or None."""
    folder, name = os.path.split(os.fspath(pairs_path))
    ext = os.path.splitext(name)[1]
    for candidate in (f"runs{ext}", "runs.parquet", "runs.csv"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return read_runs(path)
    return None


def recovery(pairs: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Per method: designed relatedness vs measured gain over the off-diagonal pairs of the designed
    tasks in ``pairs``. Columns: method, n_pairs, spearman, p_value, within_target (mean Spearman
    over targets whose sources differ in relatedness), n_targets, top1_hits (targets whose measured
    best source is a designed best one), top1_targets, recovered (spearman >= threshold)."""
    off = pairs[(pairs["source"] != pairs["target"]) & pairs["gain"].notna()]
    off = off[off["source"].isin(designed.ALL_DESIGNS) & off["target"].isin(designed.ALL_DESIGNS)]
    if off.empty:
        raise MvlptError("the pair table has no gain of a pair of designed tasks (mvlpt tasks --source designed).")
    # the domain of a verdict (issue 24, class 4): every off-diagonal pair of the study's designed tasks
    tasks = sorted({t for col in ("source", "target") for t in pairs[col].astype(str)} & set(designed.ALL_DESIGNS))
    want = len(tasks) * (len(tasks) - 1)
    for method in pairs["method"].unique():
        have = len(off[off["method"] == method][["source", "target"]].drop_duplicates())
        if len(tasks) < 3 or have < want:
            raise MvlptError(
                f"method {method} has measured gains of {have} of the {want} off-diagonal pairs of the "
                f"{len(tasks)} designed tasks in the pair table; the recovery is scored on a complete study "
                f"of at least 3 tasks only: finish the study (config/groundtruth.yaml) first."
            )
    rows = []
    for method, sub in off.groupby("method", sort=False):
        rel = np.array([designed.relatedness(s, t) for s, t in zip(sub["source"], sub["target"])])
        gain = sub["gain"].to_numpy(float)
        rho, p = stats.spearmanr(rel, gain) if len(sub) >= 3 and np.ptp(rel) > 0 else (np.nan, np.nan)
        within, hits, n_top = [], 0, 0
        for target, g in sub.groupby("target", sort=False):
            r = np.array([designed.relatedness(s, target) for s in g["source"]])
            if len(g) >= 3 and np.ptp(r) > 0 and np.ptp(g["gain"]) > 0:
                within.append(stats.spearmanr(r, g["gain"]).statistic)
            best = designed_best(target, list(g["source"]))
            if best:
                n_top += 1
                hits += top_set(g.set_index("source")["gain"]) <= best
        rows.append(
            {
                "method": method,
                "n_pairs": len(sub),
                "spearman": float(rho),
                "p_value": float(p),
                "within_target": float(np.mean(within)) if within else np.nan,
                "n_targets": len(within),
                "top1_hits": int(hits),
                "top1_targets": n_top,
                "recovered": bool(rho >= threshold),
            }
        )
    return pd.DataFrame(rows)


def design_as_gains(pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` with every off-diagonal gain replaced by the designed relatedness of its pair (the
    baselines, diagonal rows, kept as measured: the ``source_quality`` null predictor reads them), so a
    predictor scored on it (``mvlpt predict score --against-design``) is scored against the design instead of
    the measured gains. Only pairs of one designed world's tasks; ``gain_se`` and ``interaction`` are dropped
    (the design has no noise; the scoring recomputes the interaction)."""
    tasks = sorted({t for col in ("source", "target") for t in pairs[col].astype(str)})
    designed.world_of(tasks)  # one designed world, or one sentence
    out = pairs.drop(columns=[c for c in ("gain_se", "interaction") if c in pairs.columns]).copy()
    off = out["source"] != out["target"]
    out.loc[off, "gain"] = [designed.relatedness(s, t) for s, t in zip(out.loc[off, "source"], out.loc[off, "target"])]
    return out


# --------------------------------------------------------------------------------------------------
# Transferability from the frozen model alone
# --------------------------------------------------------------------------------------------------
def _fewshot(task, seed: int, shots: int):
    """The few-shot (train + val) images of ``task`` for ``seed``, as the study samples them, with labels."""
    from mvlpt.tasks.fewshot import indices_of, make_split

    data = task.load("train")
    split = make_split(task, seed, shots, split_data=data)
    idx = indices_of(data, split["train"] + split["val"])
    return data, idx, np.asarray(data.labels)[idx]


def zero_shot_scores(
    tasks: Sequence[str] = designed.SUITE,
    *,
    seed: int = 1,
    shots: int = 8,
    model: str = "mvlpt-tiny",
    pretrained: str | None = "synthetic",
    device: str = "cpu",
) -> pd.DataFrame:
    """Every estimator of :data:`mvlpt.transfer.transferability.ESTIMATORS` (as published, in-sample, on the source's
    logits) and :data:`mvlpt.transfer.transferability.CROSSFIT_ESTIMATORS` (cross-fitted, fixed-size features) for every
    off-diagonal ordered pair and view. The target's few-shot images (seed ``seed``) are scored by the source
    model: its logits (CLIP's logit scale times cosine) feed LogME, H-score and GBC as features, their softmax
    LEEP and the EEP-feature estimators, their argmax NCE (:data:`mvlpt.transfer.transferability.ESTIMATOR_VIEWS`).
    Columns: view, estimator, source, target, score (larger = predicted better)."""
    import torch

    from mvlpt.analysis.similarity import encode_task_labels
    from mvlpt.models.clip import load_clip
    from mvlpt.tasks import get_task
    from mvlpt.training.data import encode_split_images
    from mvlpt.transfer import transferability

    clip = load_clip(model, pretrained, device=device)
    scale = float(clip.model.logit_scale.exp())
    feats, labels, heads = {}, {}, {"names": {}, "prototypes": {}}
    for name in tasks:
        task = get_task(name)
        data, idx, y = _fewshot(task, seed, shots)
        f = encode_split_images(clip, data, idx).numpy().astype(np.float64)
        feats[name], labels[name] = f, y
        heads["names"][name] = encode_task_labels(clip, task, "task").features.astype(np.float64)
        proto = np.stack([f[y == c].mean(0) for c in range(task.num_classes)])
        heads["prototypes"][name] = proto / np.linalg.norm(proto, axis=1, keepdims=True)
    rows = []
    for view in VIEWS:
        for target in tasks:
            for source in tasks:
                if source == target:
                    continue
                logits = scale * feats[target] @ heads[view][source].T
                probs = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
                y = labels[target]
                views = {"probabilities": probs, "predictions": probs.argmax(1), "logits": logits}
                for est, fn in {**transferability.ESTIMATORS, **transferability.CROSSFIT_ESTIMATORS}.items():
                    score = fn(views[transferability.ESTIMATOR_VIEWS[est]], y)
                    rows.append((view, est, source, target, float(score)))
    return pd.DataFrame(rows, columns=["view", "estimator", "source", "target", "score"])


def predictor_hits(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (view, estimator): on how many targets with a designed best source the estimator's top
    sources (ties included) are all designed best ones, and its Spearman with the designed relatedness,
    over all pairs and within targets (mean). Columns: view, estimator, hits, targets,
    spearman_design, within_target_design."""
    rows = []
    for (view, est), sub in scores.groupby(["view", "estimator"], sort=False):
        hits = n = 0
        within = []
        for target, g in sub.groupby("target", sort=False):
            r = [designed.relatedness(s, target) for s in g["source"]]
            if np.ptp(r) > 0 and np.ptp(g["score"]) > 0:
                within.append(stats.spearmanr(r, g["score"]).statistic)
            best = designed_best(target, list(g["source"]))
            if best:
                n += 1
                hits += top_set(g.set_index("source")["score"]) <= best
        rel = [designed.relatedness(s, t) for s, t in zip(sub["source"], sub["target"])]
        rho = stats.spearmanr(rel, sub["score"]).statistic if np.ptp(sub["score"]) > 0 else np.nan
        rows.append(
            {
                "view": view,
                "estimator": est,
                "hits": int(hits),
                "targets": n,
                "spearman_design": float(rho),
                "within_target_design": float(np.mean(within)) if within else np.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# The second world's primary statistic, its interval, and its power before the run
# --------------------------------------------------------------------------------------------------
def within_target_mean(gain: pd.DataFrame) -> tuple[float, int]:
    """Mean over targets (columns of ``gain``: sources x targets, NaN diagonal) of the Spearman correlation
    between the designed relatedness of the target's sources and their gains; targets whose sources
    do not differ in relatedness, or whose gains are all equal, are left out. Returns (mean, targets)."""
    rhos = []
    for t in gain.columns:
        g = gain[t].drop(index=t, errors="ignore").dropna()
        r = np.array([designed.relatedness(s, t) for s in g.index])
        if len(g) >= 3 and np.ptp(r) > 0 and np.ptp(g.to_numpy(float)) > 0:
            rhos.append(stats.spearmanr(r, g.to_numpy(float)).statistic)
    return (float(np.mean(rhos)) if rhos else np.nan), len(rhos)


def primary(
    pairs: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    threshold: float = THRESHOLD,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The second world's primary statistic per method (docs/groundtruth.md, pre-registered): the mean
    within-target Spearman between designed relatedness and measured gain over every off-diagonal
    pair; and, on the interaction term of the gain decomposition (``interaction``: source and target
    effects removed), the pooled Spearman with the design.

    The ``level`` interval comes from the per-seed gains in ``runs`` (the study's ``runs`` table): the
    two-level bootstrap of :func:`mvlpt.analysis.gainstats.two_level_resamples` (targets with replacement,
    then each drawn target's seeds with replacement, all its sources keeping the same seeds), the same
    resampling as the predictor table's intervals, ``n_boot`` draws; it is centred on the data's own
    statistic. Without ``runs`` there is no interval (NaN): a parametric redraw of the cells from their
    standard errors adds the noise a second time to gains that already carry it, which breaks the design's
    ties again and biases the draws low (the first report of the second world used it; docs/groundtruth.md).

    Columns: method, within_target, ci_low, ci_high, interval (what the interval resamples), n_targets,
    spearman_interaction, met (within_target >= threshold)."""
    from mvlpt.study.domains import check_level

    check_level(level)
    recovery(pairs)  # the domain: a complete study of designed tasks, or one sentence
    off = pairs[(pairs["source"] != pairs["target"]) & pairs["gain"].notna()]
    rng = np.random.default_rng(seed)
    rows = []
    for method, sub in off.groupby("method", sort=False):
        gain = sub.pivot_table(index="source", columns="target", values="gain")
        est, n = within_target_mean(gain)
        lo = hi = np.nan
        interval = "none (no per-seed runs given)"
        if runs is not None and (runs["method"] == method).any():
            draws = _seed_target_draws(runs, method, list(gain.columns), n_boot, rng)
            lo, hi = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2])
            interval = f"targets, then seeds ({n_boot} two-level resamples)"
        inter = np.nan
        if "interaction" in sub.columns and sub["interaction"].notna().sum() >= 3:
            rel = [designed.relatedness(s, t) for s, t in zip(sub["source"], sub["target"])]
            inter = float(stats.spearmanr(rel, sub["interaction"]).statistic)
        rows.append(
            {
                "method": method,
                "within_target": est,
                "ci_low": float(lo),
                "ci_high": float(hi),
                "interval": interval,
                "n_targets": n,
                "spearman_interaction": inter,
                "met": bool(est >= threshold),
            }
        )
    return pd.DataFrame(rows)


def _seed_target_draws(runs: pd.DataFrame, method: str, tasks: list[str], n_boot: int, rng) -> np.ndarray:
    """``n_boot`` two-level resamples (targets, then seeds) of the mean within-target Spearman between the
    designed relatedness and the gains of ``method``: the statistic of :func:`within_target_mean` on each
    resample, vectorised (ranks with ties averaged, then Pearson); a drawn target whose sources' gains or
    relatedness do not vary is left out of that draw's mean, as in :func:`within_target_mean`."""
    from mvlpt.analysis.gainstats import seed_gains, two_level_resamples

    per_seed, order, _ = seed_gains(runs, method, tasks)
    targets, mats = two_level_resamples(per_seed, n_boot, rng)  # (B, T), (B, S, T)
    rel = np.array([[designed.relatedness(s, t) if s != t else np.nan for t in order] for s in order])
    r = rel[:, targets]  # (S, B, T): each drawn column's designed relatedness
    g = np.moveaxis(mats, 0, 1)  # (S, B, T)
    ok = np.isfinite(r) & np.isfinite(g)
    # every drawn column has the same off-diagonal sources (the diagonal is the one NaN of a column)
    rr = stats.rankdata(np.where(ok, r, np.inf), axis=0)
    gr = stats.rankdata(np.where(ok, g, np.inf), axis=0)
    rr, gr = np.where(ok, rr, np.nan), np.where(ok, gr, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rc = rr - np.nanmean(rr, axis=0)
        gc = gr - np.nanmean(gr, axis=0)
        rho = np.nansum(rc * gc, axis=0) / np.sqrt(np.nansum(rc**2, axis=0) * np.nansum(gc**2, axis=0))
    n_ok = ok.sum(axis=0)
    valid = (n_ok >= 3) & (np.nanstd(np.where(ok, r, np.nan), axis=0) > 0) & (np.nanstd(np.where(ok, g, np.nan), axis=0) > 0)
    rho = np.where(valid, rho, np.nan)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(np.isfinite(rho), rho, np.nan), axis=1)


def simulate_power(
    tasks: Sequence[str],
    effect: dict[float, float],
    sigma_seed: float,
    sigma_test: dict[str, float] | float,
    seeds: int,
    *,
    threshold: float = THRESHOLD,
    n_sim: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """The probability that the primary statistic (:func:`within_target_mean` over every off-diagonal
    pair of ``tasks``) reaches ``threshold`` if the design is right: each cell's true gain is
    ``effect[relatedness]`` (a designed level -> gain, fractions), each seed's gain adds a normal
    ``sigma_seed`` and the cell's test set a normal ``sigma_test`` (per target, or one value), the cell's
    gain is the mean over ``seeds`` seeds, all independent. Returns (power, median statistic)."""
    tasks = list(tasks)
    rel = np.array([[designed.relatedness(s, t) if s != t else np.nan for t in tasks] for s in tasks])
    levels = {round(float(v), 9) for v in rel[np.isfinite(rel)]}
    missing = levels - {round(float(k), 9) for k in effect}
    if missing:
        raise MvlptError(f"no effect given for the designed level(s) {', '.join(map(str, sorted(missing)))}.")
    mean = np.vectorize(
        lambda v: np.nan if np.isnan(v) else {round(float(k), 9): e for k, e in effect.items()}[round(float(v), 9)]
    )(rel)
    st = np.array([sigma_test[t] if isinstance(sigma_test, dict) else sigma_test for t in tasks])[None, :]
    sd = np.sqrt(sigma_seed**2 / seeds + st**2)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_sim):
        g = pd.DataFrame(mean + rng.standard_normal(mean.shape) * sd, index=tasks, columns=tasks)
        values.append(within_target_mean(g)[0])
    values = np.asarray(values)
    return float(np.mean(values >= threshold)), float(np.median(values))
