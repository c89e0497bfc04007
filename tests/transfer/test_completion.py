"""The completion model (mvlpt.transfer.completion): planted matrices recovered from a subset, intervals
that cover at their level, honest on noise, in a fraction of a second."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mvlpt.errors import MvlptError
from mvlpt.transfer import completion, planted


def planted_study(n: int, seed: int, *, rank: int = 1, effect_sd=0.04, inter_sd=0.04, se=0.005):
    """A planted effects + rank-``rank`` matrix with small, known measurement noise: (truth, pairs)."""
    rng = np.random.default_rng(seed)
    tasks = [f"task{k:02d}" for k in range(n)]
    u, v = rng.normal(size=(n, rank)), rng.normal(size=(n, rank))
    inter = u @ v.T
    truth = rng.normal(0, effect_sd, (n, 1)) + rng.normal(0, effect_sd, (1, n)) + inter_sd * inter / inter.std()
    cells = [(s, t) for s in range(n) for t in range(n) if s != t]
    gain = np.array([truth[s, t] for s, t in cells]) + rng.normal(0, se, len(cells))
    pairs = pd.DataFrame(
        {"source": [tasks[s] for s, _ in cells], "target": [tasks[t] for _, t in cells], "gain": gain, "gain_se": se}
    )
    pairs["truth"] = [truth[s, t] for s, t in cells]
    return tasks, pairs


def subset(pairs: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    idx = np.random.default_rng(seed).choice(len(pairs), int(round(share * len(pairs))), replace=False)
    return pairs.iloc[np.sort(idx)]


def hidden(completed: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    m = completed.merge(pairs, on=["source", "target"], suffixes=("", "_full"))
    return m[~m["measured"]]


def test_recovers_a_planted_low_rank_plus_effects_matrix_from_half_its_cells():
    tasks, pairs = planted_study(12, seed=3)
    measured = subset(pairs, 0.5, seed=0)
    full = completion.complete(measured, tasks, seed=0)
    effects = completion.complete(measured, tasks, seed=0, rank=0)
    h_full, h_eff = hidden(full, pairs), hidden(effects, pairs)
    rho_full = stats.spearmanr(h_full["gain"], h_full["truth"])[0]
    rho_eff = stats.spearmanr(h_eff["gain"], h_eff["truth"])[0]
    # the interaction is half the planted variance: only a model that finds it can rank the hidden cells
    assert full.attrs["rank"] >= 1
    assert rho_full >= 0.9, rho_full
    assert rho_full > rho_eff + 0.1, (rho_full, rho_eff)
    # the measured cells are returned as measured, at their own value and standard error
    got = full[full["measured"]].merge(measured, on=["source", "target"], suffixes=("", "_m"))
    assert len(got) == len(measured)
    assert np.allclose(got["gain"], got["gain_m"]) and np.allclose(got["sd"], got["gain_se"])


def test_one_row_per_off_diagonal_cell_with_ordered_intervals():
    tasks, pairs = planted_study(7, seed=1)
    out = completion.complete(subset(pairs, 0.6, seed=1), tasks, level=0.8)
    assert list(out.columns) == list(completion.COMPLETED_COLUMNS)
    assert len(out) == 7 * 6 and not (out["source"] == out["target"]).any()
    assert not out.duplicated(["source", "target"]).any()
    assert (out["lo"] < out["gain"]).all() and (out["gain"] < out["hi"]).all() and (out["sd"] > 0).all()
    z = stats.norm.ppf(0.9)
    assert np.allclose(out["hi"] - out["gain"], z * out["sd"])


@pytest.mark.parametrize("kind", ["noise", "effects"])
def test_intervals_cover_hidden_cells_at_their_level(kind):
    # 12 replays of 20 tasks, a third measured: 12 x 253 hidden cells. The cells of one matrix share its
    # calibration factor, so the matrices, not the cells, are the independent units: the per-matrix
    # coverage varies by about 0.04 (measured), its mean over 12 by about 0.012; 0.04 is > 3 of those.
    level, cover = 0.9, []
    for seed in range(12):
        pairs = planted.planted_pairs(kind, 20, seed=seed)
        tasks = planted.task_names(20)
        h = hidden(completion.complete(subset(pairs, 1 / 3, seed), tasks, level=level, seed=seed), pairs)
        cover.append(((h["gain_full"] >= h["lo"]) & (h["gain_full"] <= h["hi"])).mean())
    assert abs(np.mean(cover) - level) <= 0.04, cover


def test_pure_noise_gives_wide_intervals_and_no_confident_best_source():
    pairs = planted.planted_pairs("noise", 20, seed=5)
    tasks = planted.task_names(20)
    out = completion.complete(subset(pairs, 1 / 3, 5), tasks, seed=5)
    h = hidden(out, pairs)
    spread = pairs["gain"].std()
    # no structure found: the predictions hug the mean and the interval is as wide as the data
    assert out.attrs["rank"] == 0
    assert h["gain"].std() < 0.35 * spread
    assert h["sd"].median() > 0.8 * spread
    best = completion.best_sources(out, seed=0)
    assert best["probability"].mean() < 0.5  # unmeasured best sources are not claimed with confidence
    # a structured matrix, by contrast, gives narrow intervals relative to its spread
    eff = planted.planted_pairs("effects", 20, seed=5)
    h_eff = hidden(completion.complete(subset(eff, 1 / 3, 5), tasks, seed=5), eff)
    assert h_eff["sd"].median() < 0.5 * eff["gain"].std()


def test_side_information_that_tracks_the_interaction_helps_and_noise_does_not_hurt():
    tasks = planted.task_names(20)
    gains = {}
    for label, kind_side in (("none", None), ("good", "lowrank"), ("useless", "effects")):
        rhos = []
        for seed in range(3):
            pairs = planted.planted_pairs("lowrank", 20, seed=seed)
            side = None if kind_side is None else planted.planted_side(kind_side, 20, seed=seed)
            if kind_side == "lowrank":
                side = planted.planted_side("lowrank", 20, seed=seed, quality=0.9)
            h = hidden(completion.complete(subset(pairs, 1 / 3, seed), tasks, side=side, seed=seed), pairs)
            rhos.append(stats.spearmanr(h["gain"], h["planted"])[0])
        gains[label] = np.mean(rhos)
    assert gains["good"] > gains["none"] + 0.05, gains
    assert gains["useless"] > gains["none"] - 0.03, gains


def test_per_task_series_and_matrices_become_features():
    tasks = ["a", "b", "c"]
    sim = pd.DataFrame([[1, 0.2, 0.4], [0.2, 1, 0.9], [0.4, 0.9, 1]], index=tasks, columns=tasks)
    feats, names = completion.side_features({"sim": sim, "base": pd.Series({"a": 0.5, "b": 0.7, "c": 0.9})}, tasks)
    assert names == ["sim", "base:source", "base:target"]
    assert feats.shape == (3, 3, 3)
    assert feats[1, 2, 0] > feats[0, 1, 0]  # the order of the similarity survives its standardization
    assert feats[2, 0, 1] > feats[0, 2, 1] and feats[0, 2, 2] > feats[2, 0, 2]
    with pytest.raises(MvlptError, match="DataFrame or a per-task Series"):
        completion.side_features({"x": [1, 2, 3]}, tasks)


def test_a_20_task_completion_takes_well_under_a_second():
    pairs = planted.planted_pairs("lowrank", 20, seed=0)
    measured = subset(pairs, 1 / 3, 0)
    side = planted.planted_side("lowrank", 20, seed=0)
    best = min(_timed(lambda: completion.complete(measured, planted.task_names(20), side=side)) for _ in range(3))
    assert best < 1.0, best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_best_sources_names_a_clear_winner_with_certainty():
    rows = [("a", "c", 0.30, 0.01), ("b", "c", 0.00, 0.01), ("c", "a", 0.1, 0.05), ("b", "a", 0.1, 0.05)]
    rows += [("a", "b", 0.0, 0.2), ("c", "b", 0.01, 0.2)]
    done = pd.DataFrame(rows, columns=["source", "target", "gain", "sd"])
    best = completion.best_sources(done, draws=4000, seed=1).set_index("target")
    assert best.loc["c", "best_source"] == "a" and best.loc["c", "probability"] > 0.99
    assert 0.4 < best.loc["a", "probability"] < 0.6  # a tie is a coin flip
    assert 0.4 < best.loc["b", "probability"] < 0.6 and best.loc["b", "top3"] == ["c", "a"]


def test_bad_inputs_end_in_one_sentence():
    tasks = ["a", "b", "c"]
    ok = pd.DataFrame({"source": ["a", "b"], "target": ["b", "c"], "gain": [0.1, 0.2], "gain_se": [0.01, 0.01]})
    with pytest.raises(MvlptError, match="not in the task list"):
        completion.complete(ok.assign(source=["a", "zz"]), tasks)
    with pytest.raises(MvlptError, match="diagonal"):
        completion.complete(ok.assign(target=["a", "c"]), tasks)
    with pytest.raises(MvlptError, match="more than once"):
        completion.complete(pd.concat([ok, ok]), tasks)
    with pytest.raises(MvlptError, match="at least 2 measured cells"):
        completion.complete(ok.iloc[:1], tasks)
    with pytest.raises(MvlptError, match="level"):
        completion.complete(ok, tasks, level=1.5)
