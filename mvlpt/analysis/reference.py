"""Reference rows: what the frozen model gives without any prompt learning (docs/protocol.md, "Reference rows").

* **zero-shot** (:func:`zeroshot`): CLIP's prompt ensembling. Per class, the L2-normalised text
  embeddings of the task's templates (``task.templates``, as the anchors use them) are averaged and
  re-normalised; the test logits are ``logit_scale * image_features @ W.T``; the task's metric.
  It does not depend on a seed: one record per task.
* **linear probe** (:func:`linear_probe`): scikit-learn's ``LogisticRegression`` (lbfgs, multinomial
  for a multiclass task; one-vs-rest binary ones for a multi-label task) on the frozen, L2-normalised
  image features of the few-shot split's *train* images; its inverse regularisation ``C`` is chosen
  on the split's *validation* images by the task's metric over :data:`C_GRID` (ties: the smaller C,
  i.e. the stronger regularisation), then the probe fitted on train (``fit_on="train"``, the data the
  prompt baseline trains on; ``"train+val"`` refits on both, as ELEVATER does) is scored on the test
  set. One record per task and few-shot seed.

Both read the frozen image features from the cache the trainer uses (:func:`mvlpt.training.features.image_features`,
same names), so a study encodes every image once. Each record carries ``test_bootstrap``
(:func:`mvlpt.training.metrics.bootstrap_record`), paired replicate by replicate with every training result
on the same test set.

Records live under ``{results_dir}/reference/`` (:func:`reference_path`): ``zeroshot/{task}.json`` and
``linear_probe/{task}/seed{seed}.json``. The table functions here (:func:`reference_table`,
:func:`with_reference`, :func:`baselines_table`) are pure pandas and import no model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mvlpt import __version__
from mvlpt.errors import MvlptError
from mvlpt.io import content_hash, write_json
from mvlpt.study import layout

log = logging.getLogger(__name__)

KINDS = ("zeroshot", "linear_probe")
REFERENCE_FORMAT = 1
# the linear probe's inverse regularisation strengths: 1e-3 .. 1e3, half a decade apart (13 values)
C_GRID = tuple(float(c) for c in np.logspace(-3, 3, 13))
FIT_ON = ("train", "train+val")
MAX_ITER = 1000
LOW_SCORE = -1e9  # the score of a class the probe never saw (a few-shot split without it): ranked last


# --------------------------------------------------------------------------------------------------
# Places
# --------------------------------------------------------------------------------------------------
def reference_dir(results_dir: str | os.PathLike) -> Path:
    return layout.REFERENCE_DIR.path(results_dir)


def reference_path(results_dir: str | os.PathLike, kind: str, task: str, seed: int | None = None) -> Path:
    """``{results_dir}/reference/zeroshot/{task}.json`` or ``.../linear_probe/{task}/seed{seed}.json``."""
    check_kind(kind)
    if kind == "zeroshot":
        return layout.REFERENCE_ZEROSHOT.path(reference_dir(results_dir), task)
    if seed is None:
        raise MvlptError("a linear probe's record needs the few-shot seed.")
    return layout.REFERENCE_PROBE.path(reference_dir(results_dir), task, int(seed))


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise MvlptError(f"unknown reference kind {kind!r}; use one of {', '.join(KINDS)}.")
    return kind


# --------------------------------------------------------------------------------------------------
# Zero-shot
# --------------------------------------------------------------------------------------------------
TEXT_BATCH = 512  # texts per pass of the text tower (caltech-101: 102 classes x 34 templates)


def zeroshot_classifier(clip, task) -> np.ndarray:
    """(classes, D) float64: per class the mean of the L2-normalised text embeddings of the task's
    templates, re-normalised (CLIP's prompt ensembling, as :func:`mvlpt.analysis.similarity.encode_task_labels`
    with ``templates="task"``, in batches of :data:`TEXT_BATCH` texts)."""
    import torch

    tmpl = tuple(task.templates)
    texts = [t.format(c) for c in task.classnames for t in tmpl]
    feats = torch.cat([clip.encode_texts(texts[i : i + TEXT_BATCH]).cpu() for i in range(0, len(texts), TEXT_BATCH)])
    w = feats.numpy().astype(np.float64).reshape(len(task.classnames), len(tmpl), -1).mean(axis=1)
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def logit_scale(clip) -> float:
    return float(clip.model.logit_scale.exp())


def zeroshot_scores(clip, task, feats) -> np.ndarray:
    """Zero-shot logits of L2-normalised image features ``feats`` (N, D): ``logit_scale * feats @ W.T``."""
    return logit_scale(clip) * np.asarray(feats, dtype=np.float64) @ zeroshot_classifier(clip, task).T


def _test_set(clip, task, data_dir, cache_dir, workers, write):
    from mvlpt.training.data import labels_of
    from mvlpt.training.features import image_features

    test = task.load("test", data_dir)
    feats = image_features(clip, task.name, test, None, "test", cache_dir, workers=workers, write=write)
    return feats.numpy().astype(np.float64), labels_of(test)


def _base_record(kind: str, clip, task) -> dict:
    return {
        "format": REFERENCE_FORMAT,
        "kind": kind,
        "task": task.name,
        "metric": task.metric,
        "model": clip.name,
        "pretrained": clip.pretrained,
        "mvlpt_version": __version__,
    }


def zeroshot(clip, task, *, data_dir=None, cache_dir=None, workers: int = 0, write_cache: bool = False) -> dict:
    """The zero-shot record of ``task`` (see the module docstring)."""
    from mvlpt.training.metrics import bootstrap_record, compute_metric

    t0 = time.time()
    feats, y = _test_set(clip, task, data_dir, cache_dir, workers, write_cache)
    scores = zeroshot_scores(clip, task, feats)
    return {
        **_base_record("zeroshot", clip, task),
        "seed": None,
        "shots": None,
        "test": compute_metric(task.metric, scores, y),
        "val": None,
        "C": None,
        "n_templates": len(task.templates),
        "templates": list(task.templates),
        "logit_scale": logit_scale(clip),
        "n_train": 0,
        "n_val": 0,
        "n_test": int(len(y)),
        "split_hash": None,
        "test_bootstrap": bootstrap_record(task.metric, scores, y),
        "device": clip.device,
        "wall_time_s": round(time.time() - t0, 3),
    }


# --------------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------------
def fit_probe(feats, labels, C: float, multilabel: bool = False):
    """A logistic regression on ``feats``: multinomial (lbfgs) over the classes present in ``labels``,
    or for multi-hot ``labels`` one binary one per class (one-vs-rest)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, y = np.asarray(feats, dtype=np.float64), np.asarray(labels)
    clf = LogisticRegression(C=float(C), solver="lbfgs", max_iter=MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # one-vs-rest: a label without a positive or negative example
        if multilabel:
            from sklearn.multiclass import OneVsRestClassifier

            return OneVsRestClassifier(clf).fit(x, y.astype(np.int64))
        if len(np.unique(y)) < 2:
            raise MvlptError("the few-shot train images hold a single class, so a linear probe cannot be fitted.")
        return clf.fit(x, y.astype(np.int64))


def probe_scores(model, feats, num_classes: int, multilabel: bool = False) -> np.ndarray:
    """(N, num_classes) scores: the probe's logits (per-class decision values for a multi-label task,
    log-probabilities for a multiclass one); a class the probe never saw gets :data:`LOW_SCORE`."""
    x = np.asarray(feats, dtype=np.float64)
    if multilabel:
        return np.asarray(model.decision_function(x), dtype=np.float64).reshape(len(x), num_classes)
    out = np.full((len(x), num_classes), LOW_SCORE)
    out[:, model.classes_.astype(np.int64)] = model.predict_log_proba(x)
    return out


def choose_C(
    train_f, train_y, val_f, val_y, metric: str, num_classes: int, multilabel: bool = False, grid: Sequence[float] = C_GRID
) -> tuple[float, float, dict]:
    """(C, its validation metric, {C: validation metric}) over ``grid``: the best validation metric;
    ties go to the smallest C (the strongest regularisation). A NaN metric never wins."""
    from mvlpt.training.metrics import compute_metric

    sweep = {}
    for c in sorted(float(c) for c in grid):
        model = fit_probe(train_f, train_y, c, multilabel)
        sweep[c] = compute_metric(metric, probe_scores(model, val_f, num_classes, multilabel), val_y)
    finite = {c: v for c, v in sweep.items() if np.isfinite(v)}
    if not finite:
        raise MvlptError(f"the linear probe's validation {metric} is undefined for every C (too few validation images).")
    best = max(finite.values())
    c = min(c for c, v in finite.items() if v == best)
    return c, best, sweep


def _split_features(clip, task, split, train_data, cache_dir, workers, write):
    from mvlpt.tasks.fewshot import indices_of
    from mvlpt.training.data import labels_of
    from mvlpt.training.features import image_features

    out = {}
    for part in ("train", "val"):  # the trainer's cache names (mvlpt.study.layout.FEATURES): features encoded once
        idx = indices_of(train_data, split[part])
        name = layout.features_name(split["shots"], split["seed"], part)
        f = image_features(clip, task.name, train_data, idx, name, cache_dir, workers=workers, write=write)
        out[part] = (f.numpy().astype(np.float64), labels_of(train_data, idx))
    return out


def linear_probe(
    clip,
    task,
    split: dict,
    *,
    data_dir=None,
    cache_dir=None,
    workers: int = 0,
    write_cache: bool = False,
    grid: Sequence[float] = C_GRID,
    fit_on: str = "train",
) -> dict:
    """The linear-probe record of ``task`` on the few-shot ``split`` (a split file's content)."""
    from mvlpt.training.metrics import bootstrap_record, compute_metric

    if fit_on not in FIT_ON:
        raise MvlptError(f"unknown linear-probe fit {fit_on!r}; use one of {', '.join(FIT_ON)}.")
    if not grid:
        raise MvlptError("the linear probe needs at least one C to try.")
    if any(not (math.isfinite(c) and c > 0) for c in grid):
        raise MvlptError(f"every C of the linear probe must be a positive number, got {', '.join(map(str, grid))}.")
    t0 = time.time()
    train_data = task.load("train", data_dir)
    parts = _split_features(clip, task, split, train_data, cache_dir, workers, write_cache)
    (tf, ty), (vf, vy) = parts["train"], parts["val"]
    if len(vy) == 0:
        raise MvlptError(f"few-shot split of {task.name} (seed {split['seed']}) has no validation images to choose C on.")
    c, val, sweep = choose_C(tf, ty, vf, vy, task.metric, task.num_classes, task.multilabel, grid)
    if fit_on == "train+val":
        fx, fy = np.concatenate([tf, vf]), np.concatenate([ty, vy])
    else:
        fx, fy = tf, ty
    model = fit_probe(fx, fy, c, task.multilabel)
    test_f, test_y = _test_set(clip, task, data_dir, cache_dir, workers, write_cache)
    scores = probe_scores(model, test_f, task.num_classes, task.multilabel)
    return {
        **_base_record("linear_probe", clip, task),
        "seed": int(split["seed"]),
        "shots": int(split["shots"]),
        "test": compute_metric(task.metric, scores, test_y),
        "val": val,
        "C": c,
        "fit_on": fit_on,
        "head": "one_vs_rest" if task.multilabel else "multinomial",
        "val_by_C": {f"{k:g}": (None if not np.isfinite(v) else v) for k, v in sweep.items()},
        "n_templates": None,
        "n_train": int(len(ty)),
        "n_val": int(len(vy)),
        "n_test": int(len(test_y)),
        "split_hash": content_hash({"train": split["train"], "val": split["val"]}),
        "test_bootstrap": bootstrap_record(task.metric, scores, test_y),
        "device": clip.device,
        "wall_time_s": round(time.time() - t0, 3),
    }


# --------------------------------------------------------------------------------------------------
# Record files
# --------------------------------------------------------------------------------------------------
def record_problem(rec) -> str | None:
    """What is wrong with a reference record, as a clause (None: nothing)."""
    if not isinstance(rec, dict) or rec.get("format") != REFERENCE_FORMAT:
        return f"is not an mvlpt reference record (format {REFERENCE_FORMAT})"
    if rec.get("kind") not in KINDS:
        return f"has the unknown kind {rec.get('kind')!r}"
    for key in ("task", "metric"):
        if not isinstance(rec.get(key), str):
            return f"has no {key}"
    test = rec.get("test")
    if not isinstance(test, (int, float)) or isinstance(test, bool) or not (0.0 <= test <= 1.0):
        return f"has test {test!r}, not a fraction in [0, 1]"
    seed = rec.get("seed")
    if rec["kind"] == "linear_probe" and (not isinstance(seed, int) or isinstance(seed, bool)):
        return f"has seed {seed!r}, not an integer"
    return None


def write_reference(rec: dict, path: str | os.PathLike) -> None:
    """Write one reference record, atomically, after checking it."""
    problem = record_problem(rec)
    if problem:
        raise MvlptError(f"reference record {problem}.")
    write_json(rec, path)


def read_reference(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise MvlptError(f"reference file {path} does not exist.") from None
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, a number too long
        raise MvlptError(
            f"reference file {path} cannot be read ({str(e)[:200]}); delete it and rerun its reference job."
        ) from None
    problem = record_problem(rec)
    if problem:
        raise MvlptError(f"reference file {path} {problem}; delete it and rerun its reference job.")
    return rec


def find_references(
    root: str | os.PathLike, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[Path]:
    """The reference files under ``root`` (a reference folder) for ``tasks`` and (linear probes) ``seeds``."""
    root = Path(root)
    if not root.is_dir():
        return []
    tasks_set = set(tasks) if tasks is not None else None
    seeds_set = {int(s) for s in seeds} if seeds is not None else None
    out = []
    for path in sorted(root.glob("zeroshot/*.json")):
        if tasks_set is None or path.stem in tasks_set:
            out.append(path)
    for path in sorted(root.glob("linear_probe/*/seed*.json")):
        seed = path.stem[len("seed") :]
        if not seed.lstrip("-").isdigit():
            continue
        if (tasks_set is None or path.parent.name in tasks_set) and (seeds_set is None or int(seed) in seeds_set):
            out.append(path)
    return out


def read_references(
    root: str | os.PathLike, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[dict]:
    return [read_reference(p) for p in find_references(root, tasks, seeds)]


def reference_replicates(records: Iterable[dict]) -> dict:
    """``{(kind, task, seed): array}`` (seed None for zero-shot): each reference's test metric on the shared
    bootstrap resamples of its task's test set (``test_bootstrap``; NaN where a resample left it undefined),
    paired resample by resample with the training results' replicates of the same test set
    (:func:`mvlpt.analysis.tables.replicates_of`, whose ``test_set`` stamp is the same)."""
    out = {}
    for rec in records:
        boot = rec.get("test_bootstrap")
        if boot:
            values = np.array([np.nan if v is None else v for v in boot["values"]], dtype=np.float64)
            out[(rec["kind"], rec["task"], rec.get("seed"))] = values
    return out


# --------------------------------------------------------------------------------------------------
# Tables (pure pandas)
# --------------------------------------------------------------------------------------------------
# reference.csv: the runs table's first columns (method = the reference's kind, source = target = the
# task, seed -1 for the seed-independent zero-shot) and the reference's own fields
REFERENCE_COLUMNS = (
    "method",
    "source",
    "target",
    "seed",
    "metric",
    "value",
    "val",
    "C",
    "fit_on",
    "n_templates",
    "shots",
    "n_train",
    "n_val",
    "n_test",
    "model",
    "pretrained",
    "split_hash",
    "mvlpt_version",
)
PAIR_COLUMNS = ("zeroshot", "linear_probe", "baseline_below_zeroshot")
BASELINE_COLUMNS = (
    "method",
    "target",
    "metric",
    "n_seeds",
    "baseline_mean",
    "baseline_std",
    "zeroshot",
    "linear_probe",
    "linear_probe_std",
    "linear_probe_seeds",
    "baseline_minus_zeroshot",
    "baseline_minus_linear_probe",
    "baseline_below_zeroshot",
)
# the interval of baseline - zero-shot (mvlpt.analysis.gainstats.cell_intervals: the baseline's seeds, and the test set's
# resamples paired with zero-shot's), and the flag where the whole interval lies below 0
INTERVAL_COLUMNS = (
    "baseline_minus_zeroshot_se",
    "baseline_minus_zeroshot_ci_low",
    "baseline_minus_zeroshot_ci_high",
    "baseline_minus_zeroshot_p",
    "baseline_minus_zeroshot_interval",
    "baseline_below_zeroshot_significant",
)
ZEROSHOT_SEED = -1  # the zero-shot row's seed in reference.csv (it has none)


def reference_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per reference record, shaped like the runs table (see :data:`REFERENCE_COLUMNS`)."""
    rows = []
    for rec in records:
        rows.append(
            {
                "method": rec["kind"],
                "source": rec["task"],
                "target": rec["task"],
                "seed": ZEROSHOT_SEED if rec.get("seed") is None else int(rec["seed"]),
                "metric": rec["metric"],
                "value": float(rec["test"]),
                **{k: rec.get(k) for k in REFERENCE_COLUMNS[6:]},
            }
        )
    df = pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))
    df["seed"] = df["seed"].astype("int64")
    for k in ("value", "val", "C"):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("float64")
    for k in ("n_templates", "shots", "n_train", "n_val", "n_test"):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("Int64")
    for k in ("method", "source", "target", "metric", "fit_on", "model", "pretrained", "split_hash", "mvlpt_version"):
        df[k] = df[k].astype("string")
    dup = df.duplicated(["method", "target", "seed"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise MvlptError(f"the {first.method} reference of {first.target} (seed {first.seed}) is there twice; keep one file.")
    return df.sort_values(["target", "method", "seed"], kind="stable").reset_index(drop=True)


def load_reference(
    root: str | os.PathLike, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> pd.DataFrame:
    """The reference table of the records under ``root`` (empty, with its columns, when there are none)."""
    return reference_table(read_references(root, tasks, seeds))


def per_target(reference: pd.DataFrame) -> pd.DataFrame:
    """Per target: zero-shot, linear probe (mean over seeds), its std and seed count."""
    cols = ["target", "zeroshot", "linear_probe", "linear_probe_std", "linear_probe_seeds"]
    if reference is None or reference.empty:
        return pd.DataFrame(columns=cols).astype(
            {
                "target": "object",
                "zeroshot": "float64",
                "linear_probe": "float64",
                "linear_probe_std": "float64",
                "linear_probe_seeds": "int64",
            }
        )
    zs = reference[reference["method"] == "zeroshot"].groupby("target")["value"].mean().rename("zeroshot")
    lp = (
        reference[reference["method"] == "linear_probe"]
        .groupby("target")["value"]
        .agg(linear_probe="mean", linear_probe_std="std", linear_probe_seeds="count")
    )
    out = pd.concat([zs, lp], axis=1).reset_index().rename(columns={"index": "target"})
    out["target"] = out["target"].astype(str)
    out["linear_probe_seeds"] = out["linear_probe_seeds"].fillna(0).astype("int64")
    return out[cols]


def below(baseline: pd.Series, zeroshot: pd.Series) -> pd.Series:
    """``baseline < zeroshot`` row by row, as a nullable boolean: NA where either is missing."""
    b = pd.to_numeric(baseline, errors="coerce").to_numpy(dtype="float64")
    z = pd.to_numeric(zeroshot, errors="coerce").to_numpy(dtype="float64")
    flag = pd.array(b < z, dtype="boolean")
    flag[np.isnan(b) | np.isnan(z)] = pd.NA
    return pd.Series(flag, index=baseline.index, name="baseline_below_zeroshot")


def with_reference(pairs: pd.DataFrame, reference: pd.DataFrame | None) -> pd.DataFrame:
    """``pairs`` with, on every row of a target, that target's ``zeroshot`` and ``linear_probe`` (mean over
    seeds) and ``baseline_below_zeroshot`` (the row's method's baseline mean < zero-shot; NA without either).
    Every existing column and row stays as it was."""
    ref = per_target(reference)[["target", "zeroshot", "linear_probe"]]
    out = pairs.merge(ref, on="target", how="left") if not pairs.empty else pairs.assign(zeroshot=np.nan, linear_probe=np.nan)
    out["zeroshot"] = out["zeroshot"].astype("float64")
    out["linear_probe"] = out["linear_probe"].astype("float64")
    out["baseline_below_zeroshot"] = below(out["baseline_mean"], out["zeroshot"])
    return out


def baselines_table(
    pairs: pd.DataFrame,
    reference: pd.DataFrame | None,
    *,
    runs: pd.DataFrame | None = None,
    replicates: dict | None = None,
    reference_reps: dict | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per method x target: the prompt baseline's mean (and std, seeds), zero-shot, linear probe, the
    baseline minus each, and the flag ``baseline_below_zeroshot``. Given the ``runs`` table (and the runs'
    and references' test-set replicates, :func:`mvlpt.analysis.tables.replicates_of`, :func:`reference_replicates`),
    also the interval of baseline - zero-shot at ``level`` (:data:`INTERVAL_COLUMNS`): its seeds' spread
    and the test set's sampling error, paired resample by resample, as the cells' gains are
    (:func:`mvlpt.analysis.gainstats.cell_intervals`); ``baseline_below_zeroshot_significant`` where the interval's
    upper end is below 0."""
    base = pairs[pairs["is_baseline"]] if not pairs.empty else pairs
    if base.empty:
        return pd.DataFrame(columns=list(BASELINE_COLUMNS) + list(INTERVAL_COLUMNS))
    out = base[["method", "target", "metric", "n_seeds", "mean", "std"]].rename(
        columns={"mean": "baseline_mean", "std": "baseline_std"}
    )
    out = out.merge(per_target(reference), on="target", how="left")
    for k in ("zeroshot", "linear_probe", "linear_probe_std"):
        out[k] = out[k].astype("float64")
    out["linear_probe_seeds"] = out["linear_probe_seeds"].fillna(0).astype("int64")
    out["baseline_minus_zeroshot"] = out["baseline_mean"] - out["zeroshot"]
    out["baseline_minus_linear_probe"] = out["baseline_mean"] - out["linear_probe"]
    out["baseline_below_zeroshot"] = below(out["baseline_mean"], out["zeroshot"])
    out = out.reset_index(drop=True)
    out = pd.concat([out, _zeroshot_intervals(out, runs, replicates, reference_reps, level)], axis=1)
    cols = list(BASELINE_COLUMNS) + list(INTERVAL_COLUMNS)
    return out[cols].sort_values(["method", "target"], kind="stable").reset_index(drop=True)


def _zeroshot_intervals(out: pd.DataFrame, runs, replicates, reference_reps, level: float) -> pd.DataFrame:
    """:data:`INTERVAL_COLUMNS` for the rows of ``out`` (NaN / NA where there is no zero-shot or no runs)."""
    from mvlpt.analysis.gainstats import cell_intervals

    rows = []
    for method, target, zs in out[["method", "target", "zeroshot"]].itertuples(index=False):
        row = {c: np.nan for c in INTERVAL_COLUMNS[:4]}
        row.update(baseline_minus_zeroshot_interval=pd.NA, baseline_below_zeroshot_significant=pd.NA)
        sub = (
            None
            if runs is None or not np.isfinite(zs)
            else runs[(runs["method"] == method) & (runs["source"] == target) & (runs["target"] == target)]
        )
        if sub is not None and len(sub):
            per_seed = (sub["value"].to_numpy(float) - zs).reshape(-1, 1, 1)
            z = (reference_reps or {}).get(("zeroshot", target, None))
            reps = [(replicates or {}).get((method, target, target, int(k))) for k in sub["seed"]]
            per_rep = np.full((1, 1, 1), np.nan)
            if z is not None and reps and all(r is not None and len(r) == len(z) for r in reps):
                per_rep = (np.mean(reps, axis=0) - z).reshape(-1, 1, 1)
            iv = cell_intervals(per_seed, per_rep, level)
            row.update(
                baseline_minus_zeroshot_se=float(iv["se"][0, 0]),
                baseline_minus_zeroshot_ci_low=float(iv["ci_low"][0, 0]),
                baseline_minus_zeroshot_ci_high=float(iv["ci_high"][0, 0]),
                baseline_minus_zeroshot_p=float(iv["p"][0, 0]),
                baseline_minus_zeroshot_interval=str(iv["interval"][0, 0]),
            )
            hi = row["baseline_minus_zeroshot_ci_high"]
            row["baseline_below_zeroshot_significant"] = bool(hi < 0) if np.isfinite(hi) else pd.NA
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS), index=out.index)
    for c in INTERVAL_COLUMNS[:4]:
        df[c] = df[c].astype("float64")
    df["baseline_minus_zeroshot_interval"] = df["baseline_minus_zeroshot_interval"].astype("string")
    df["baseline_below_zeroshot_significant"] = df["baseline_below_zeroshot_significant"].astype("boolean")
    return df


def settings_problems(runs: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    """Clauses, one per reference row made with another model or weights than the runs of its target (a
    linear probe also: other shots)."""
    if runs.empty or reference.empty:
        return []
    problems = []
    first = runs.groupby("target").first()
    for row in reference.itertuples(index=False):
        if row.target not in first.index:
            continue
        run = first.loc[row.target]
        fields = ["model", "pretrained"] + (["shots"] if row.method == "linear_probe" else [])
        diff = [
            f"{f} {getattr(row, f)!r} vs {run[f]!r}"
            for f in fields
            if str(getattr(row, f)) != str(run[f]) and not (pd.isna(getattr(row, f)) and pd.isna(run[f]))
        ]
        if diff:
            seed = "" if row.seed == ZEROSHOT_SEED else f" seed {row.seed}"
            problems.append(
                f"the {row.method} reference of {row.target}{seed} was made with another setting than "
                f"its prompt runs ({', '.join(diff)})"
            )
    return problems


def flagged_sentence(baselines: pd.DataFrame) -> str:
    """One line for logs and the report: which baselines end below zero-shot."""
    if baselines.empty or baselines["zeroshot"].isna().all():
        return "no zero-shot reference: baseline_below_zeroshot is NA"
    flag = baselines["baseline_below_zeroshot"].fillna(False).astype(bool)
    known = int(baselines["baseline_below_zeroshot"].notna().sum())
    if not flag.any():
        return f"no prompt baseline ends below zero-shot ({known} method x target baselines compared)"
    worst = baselines[flag].sort_values("baseline_minus_zeroshot").iloc[0]
    sig = ""
    if (
        "baseline_below_zeroshot_significant" in baselines.columns
        and baselines["baseline_below_zeroshot_significant"].notna().any()
    ):
        sig = f"; {int(baselines['baseline_below_zeroshot_significant'].fillna(False).astype(bool).sum())} with their whole interval below"
    return (
        f"{int(flag.sum())} of {known} prompt baselines end below zero-shot (worst: {worst.method} on {worst.target}, "
        f"{100 * worst.baseline_minus_zeroshot:+.1f} points{sig})"
    )
