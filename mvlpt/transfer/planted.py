"""Synthetic gain matrices with a known structure, for the tests and the replay of a budgeted study
(issue 26; docs/budget.md).

``planted_pairs(kind, n_tasks)`` draws a study's pair table (one row per off-diagonal cell, with the
columns of ``tables/pairs.parquet`` the replay reads) whose gains are a planted matrix plus measurement
noise of a known standard error:

* ``effects``: ``mu + a[s] + b[t]`` (sources that help, targets that take), no pair-specific part;
* ``lowrank``: the effects plus a rank-2 interaction ``u[s] . v[t]`` (families of tasks that help each
  other more than their effects say);
* ``noise``: no structure at all: every gain is measurement noise around 0, as its ``gain_se`` says.

The scales are those of the measured studies (fractions, as the result files hold them): effects with
a standard deviation of 4 points each, an interaction of 3 points, measurement errors of about 1.5
points (about 5 for ``noise``), each cell's error drawn around that value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mvlpt.errors import MvlptError
from mvlpt.study.budget import SYNTHETIC_KINDS

KINDS = SYNTHETIC_KINDS
EFFECT_SD = 0.04
INTERACTION_SD = 0.03
INTERACTION_RANK = 2
MEAN = 0.01
SE = 0.015
NOISE_SE = 0.05
SIDE_QUALITY = 0.7  # correlation of the synthetic side information with the planted interaction


def task_names(n_tasks: int) -> list[str]:
    return [f"t{k:02d}" for k in range(n_tasks)]


def planted_matrix(kind: str, n_tasks: int, *, seed: int = 0) -> pd.DataFrame:
    """The noiseless planted source x target matrix (diagonal NaN)."""
    if kind not in KINDS:
        raise MvlptError(f"unknown synthetic matrix {kind!r}: choose one of {', '.join(KINDS)}.")
    if n_tasks < 3:
        raise MvlptError(f"a synthetic matrix needs at least 3 tasks, got {n_tasks}.")
    rng = np.random.default_rng(seed)
    n = n_tasks
    if kind == "noise":
        m = np.zeros((n, n))
    else:
        m = MEAN + rng.normal(0, EFFECT_SD, n)[:, None] + rng.normal(0, EFFECT_SD, n)[None, :]
        if kind == "lowrank":
            u = rng.normal(size=(n, INTERACTION_RANK))
            v = rng.normal(size=(n, INTERACTION_RANK))
            inter = u @ v.T
            m = m + INTERACTION_SD * inter / inter.std()
    np.fill_diagonal(m, np.nan)
    names = task_names(n)
    return pd.DataFrame(m, index=pd.Index(names, name="source"), columns=pd.Index(names, name="target"))


def planted_side(kind: str, n_tasks: int, *, seed: int = 0, quality: float = SIDE_QUALITY) -> dict[str, pd.DataFrame]:
    """Side information for a planted matrix, as a study would have it before training: a task x task
    "similarity" whose off-diagonal correlation with the planted pair-specific part (the interaction for
    ``lowrank``) is about ``quality``; for ``effects`` and ``noise``, which have no pair-specific part, it
    is unrelated noise (side information that does not help must not hurt)."""
    truth = planted_matrix(kind, n_tasks, seed=seed).to_numpy()
    rng = np.random.default_rng([seed, 2])
    n = n_tasks
    off = ~np.eye(n, dtype=bool)
    noise = rng.normal(size=(n, n))
    if kind == "lowrank":
        rows = np.nanmean(truth, axis=1, keepdims=True) - np.nanmean(truth)
        cols = np.nanmean(truth, axis=0, keepdims=True) - np.nanmean(truth)
        inter = truth - np.nanmean(truth) - rows - cols  # the additive part taken out (exact up to the missing diagonal)
        inter = (inter - np.nanmean(inter[off])) / np.nanstd(inter[off])
        sim = quality * inter + np.sqrt(1 - quality**2) * noise
    else:
        sim = noise
    np.fill_diagonal(sim, np.nan)
    names = task_names(n)
    return {"similarity": pd.DataFrame(sim, index=pd.Index(names, name="source"), columns=pd.Index(names, name="target"))}


def planted_pairs(kind: str, n_tasks: int = 20, *, seed: int = 0, method: str = "synthetic") -> pd.DataFrame:
    """A measured study's pair table for a planted matrix: ``method, source, target, gain, gain_se,
    is_baseline`` and ``planted`` (the noiseless value), one row per off-diagonal cell."""
    truth = planted_matrix(kind, n_tasks, seed=seed)
    rng = np.random.default_rng([seed, 1])
    long = truth.stack().rename("planted").reset_index()
    long = long[long["source"] != long["target"]].reset_index(drop=True)  # the diagonal is a baseline, never a cell
    typical = NOISE_SE if kind == "noise" else SE
    se = typical * rng.lognormal(0.0, 0.3, len(long))
    long["gain"] = long["planted"] + rng.normal(0.0, se)
    long["gain_se"] = se
    long["method"] = method
    long["is_baseline"] = False
    return long[["method", "source", "target", "gain", "gain_se", "is_baseline", "planted"]]
