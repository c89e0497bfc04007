"""The statistics of a gain (mvlpt.analysis.gainstats): each against an independent computation on a small example,
and the intervals and the power formula against simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fakes import write_record
from mvlpt.analysis import gainstats, stats, tables
from mvlpt.errors import MvlptError
from mvlpt.training import metrics

TASKS = [f"t{i}" for i in range(6)]


def _frame(a):
    return pd.DataFrame(a, index=TASKS[: a.shape[0]], columns=TASKS[: a.shape[1]])


def test_decompose_matches_a_dummy_coded_least_squares_fit():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(6, 6)) + 2 * rng.normal(size=6)[:, None] - rng.normal(size=6)[None, :]
    np.fill_diagonal(g, np.nan)
    g[1, 4] = np.nan  # a missing cell
    d = gainstats.decompose(_frame(g))
    # independent fit: treatment (dummy) coding with numpy's lstsq; the fitted values do not depend on the coding
    rows, cols = np.nonzero(np.isfinite(g))
    x = np.zeros((len(rows), 1 + 5 + 5))
    x[:, 0] = 1
    for k, (r, c) in enumerate(zip(rows, cols)):
        if r > 0:
            x[k, r] = 1
        if c > 0:
            x[k, 5 + c] = 1
    beta, *_ = np.linalg.lstsq(x, g[rows, cols], rcond=None)
    resid = g[rows, cols] - x @ beta
    assert np.allclose(d.interaction.to_numpy()[rows, cols], resid)
    assert np.isnan(d.interaction.to_numpy()[1, 4]) and np.isnan(np.diag(d.interaction.to_numpy())).all()
    assert abs(d.source.sum()) < 1e-12 and abs(d.target.sum()) < 1e-12
    total = sum(d.ss[k] for k in ("source", "target", "covariance", "interaction"))
    assert total == pytest.approx(d.ss["total"]) and sum(d.shares().values()) == pytest.approx(1.0)
    assert d.ss["interaction"] == pytest.approx(float((resid**2).sum()))
    assert d.df["interaction"] == len(rows) - 11


def test_decompose_recovers_planted_effects_and_refuses_too_few_cells():
    a, b = np.array([1.0, -2, 0.5, 0.5]), np.array([0.3, 0.3, -0.1, -0.5])
    g = 0.7 + a[:, None] + b[None, :]
    np.fill_diagonal(g, np.nan)
    d = gainstats.decompose(_frame(g))
    assert d.mean == pytest.approx(0.7) and np.allclose(d.source, a) and np.allclose(d.target, b)
    assert np.nanmax(np.abs(d.interaction.to_numpy())) < 1e-12 and d.shares()["interaction"] < 1e-20
    with pytest.raises(MvlptError, match="too few to separate"):
        gainstats.decompose(_frame(np.array([[np.nan, 1.0], [2.0, np.nan]])))
    with pytest.raises(MvlptError, match="has 0 measured"):  # baselines only
        gainstats.decompose(_frame(np.full((3, 3), np.nan)))


def test_additive_residual_is_decompose_vectorised():
    rng = np.random.default_rng(1)
    mats = rng.normal(size=(4, 6, 6)) + rng.normal(size=(4, 6, 1)) * 3
    for m in mats:
        np.fill_diagonal(m, np.nan)
    mats[2, 0, 3] = np.nan
    res = gainstats.additive_residual(mats)
    for m, r in zip(mats, res):
        assert np.allclose(r, gainstats.decompose(_frame(m)).interaction.to_numpy(), equal_nan=True, atol=1e-9)


def test_cell_intervals_by_hand():
    per_seed = np.array([0.05, 0.02, 0.08])[:, None, None]  # one cell, three seeds
    per_rep = np.random.default_rng(0).normal(0.05, 0.01, size=(200, 1, 1))
    out = gainstats.cell_intervals(per_seed, per_rep, 0.9)
    v_s = np.var([0.05, 0.02, 0.08], ddof=1) / 3
    v_t = np.var(per_rep[:, 0, 0], ddof=1)
    se = np.sqrt(v_s + v_t)
    dof = (v_s + v_t) ** 2 / (v_s**2 / 2 + v_t**2 / 199)
    t = sps.t.ppf(0.95, dof)
    assert out["se"][0, 0] == pytest.approx(se) and out["df"][0, 0] == pytest.approx(dof)
    assert out["ci_low"][0, 0] == pytest.approx(0.05 - t * se) and out["ci_high"][0, 0] == pytest.approx(0.05 + t * se)
    assert out["p"][0, 0] == pytest.approx(2 * sps.t.sf(0.05 / se, dof))
    assert out["interval"][0, 0] == "seeds+test"
    one_seed = gainstats.cell_intervals(per_seed[:1], per_rep, 0.9)  # one seed: the test set's error only, and said so
    assert one_seed["interval"][0, 0] == "test" and one_seed["se"][0, 0] == pytest.approx(np.sqrt(v_t))


def test_fdr_is_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2])
    q = gainstats.fdr(p)
    finite = np.array([0.01, 0.04, 0.03, 0.2])
    order = np.argsort(finite)
    m = len(finite)
    hand = np.minimum.accumulate((finite[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    expect = np.empty(m)
    expect[order] = np.minimum(hand, 1)
    assert np.allclose(q[[0, 1, 3, 4]], expect) and np.isnan(q[2])
    assert (gainstats.fdr(p, "by")[[0, 1, 3, 4]] >= expect).all()
    with pytest.raises(MvlptError, match="unknown FDR method"):
        gainstats.fdr(p, "holm")


def test_intervals_cover_at_their_level_on_simulated_noise():
    """Gains of true size 0.03 with seed noise and a test-set error that every seed shares: the interval covers
    the truth at about its level; dropping the test-set term (the old tables' seed spread) undercovers."""
    rng = np.random.default_rng(7)
    n_cells, k, r = 4000, 3, 200
    truth, sd_seed, sd_test = 0.03, 0.02, 0.02
    test_err = rng.normal(0, sd_test, size=n_cells)  # the fixed test set's error of the cell, shared by its seeds
    per_seed = truth + test_err[None, :] + rng.normal(0, sd_seed, size=(k, n_cells))
    per_rep = per_seed.mean(0)[None, :] + rng.normal(0, sd_test, size=(r, n_cells))  # the bootstrap around it
    out = gainstats.cell_intervals(per_seed[:, None, :], per_rep[:, None, :], 0.9)
    cover = np.mean((out["ci_low"] <= truth) & (truth <= out["ci_high"]))
    assert 0.87 <= cover <= 0.95, cover
    seeds_only = gainstats.cell_intervals(per_seed[:, None, :], np.full((0, 1, n_cells), np.nan), 0.9)
    assert np.mean((seeds_only["ci_low"] <= truth) & (truth <= seeds_only["ci_high"])) < cover - 0.05


def test_min_detectable_gain_has_its_power_in_simulation():
    noise = gainstats.Noise("x", sigma_seed=0.03, sigma_test_unit=0.3, n_cells=1, source="test")
    k, n_test = 4, 900
    mde = gainstats.min_detectable_gain(noise, k, n_test, alpha=0.05, power=0.8)
    rng = np.random.default_rng(11)
    sims = 6000
    sd_test = noise.sigma_test_unit / np.sqrt(n_test)
    per_seed = mde + rng.normal(0, sd_test, size=sims)[None, :] + rng.normal(0, noise.sigma_seed, size=(k, sims))
    per_rep = per_seed.mean(0)[None, :] + rng.normal(0, sd_test, size=(200, sims))
    p = gainstats.cell_intervals(per_seed[:, None, :], per_rep[:, None, :], 0.95)["p"]
    assert 0.74 <= np.mean(p < 0.05) <= 0.86
    assert gainstats.seeds_needed(noise, mde, n_test) == k
    assert gainstats.seeds_needed(noise, 0.005, n_test) is None  # below what the test set's error allows: no seeds help
    assert gainstats.min_detectable_gain(noise, 1, n_test) == np.inf


def test_metric_replicates_equal_the_metric_on_the_shared_resamples():
    rng = np.random.default_rng(2)
    s, y = rng.normal(size=(120, 4)), rng.integers(0, 4, 120)
    idx = metrics.bootstrap_indices(120, 30)
    assert (idx == metrics.bootstrap_indices(120, 30)).all()  # the same resamples for every run of the test set
    for name in ("accuracy", "mean_per_class_accuracy"):
        hand = [metrics.compute_metric(name, s[i], y[i]) for i in idx]
        assert np.allclose(metrics.metric_replicates(name, s, y, n=30), hand)
    rec = metrics.bootstrap_record("roc_auc", rng.normal(size=(50, 2)), rng.integers(0, 2, 50))
    assert rec["n"] == len(rec["values"]) == metrics.TEST_BOOTSTRAP["n"] and len(rec["test_set"]) == 16


def _boot(values, test_set="abc"):
    return {"n": len(values), "seed": 0, "test_set": test_set, "values": [float(v) for v in values]}


def test_collect_pairs_replicates_with_the_baseline_of_the_same_seed(tmp_path):
    rng = np.random.default_rng(5)
    reps = {}
    for s in ("a", "b", "c"):
        for t in ("a", "b", "c"):
            for k in (1, 2):
                v = rng.uniform(0.3, 0.7, size=20)
                reps[(s, t, k)] = v
                write_record(tmp_path, "coop", s, t, k, test=float(v.mean()), test_bootstrap=_boot(v))
    runs, replicates = tables.load_study(tmp_path)
    pairs = tables.with_cell_statistics(tables.pair_table(runs), runs, replicates).set_index(["source", "target"])
    rep_gain = np.mean([reps[("a", "b", k)] - reps[("b", "b", k)] for k in (1, 2)], axis=0)
    seed_gain = [reps[("a", "b", k)].mean() - reps[("b", "b", k)].mean() for k in (1, 2)]
    se = np.sqrt(np.var(seed_gain, ddof=1) / 2 + np.var(rep_gain, ddof=1))
    cell = pairs.loc[("a", "b")]
    assert cell["gain_se"] == pytest.approx(se) and cell["interval"] == "seeds+test"
    assert cell["gain_se_test"] == pytest.approx(np.std(rep_gain, ddof=1))
    assert np.isnan(pairs.loc[("b", "b"), "gain_se"])  # the diagonal is a baseline, not a gain
    q = gainstats.fdr(pairs.loc[~pairs["is_baseline"], "gain_p"].to_numpy())
    assert np.allclose(pairs.loc[~pairs["is_baseline"], "gain_q"], q)
    # a run tested on another test set cannot be paired: one sentence
    write_record(tmp_path, "coop", "c", "b", 3, test=0.5, test_bootstrap=_boot(np.full(20, 0.5), test_set="zzz"))
    with pytest.raises(MvlptError, match="different test sets"):
        tables.load_study(tmp_path)


def test_gain_summary_counts_only_significant_gains():
    pairs = pd.DataFrame(
        {
            "method": "coop",
            "source": ["a", "b", "c", "a"],
            "target": ["b", "a", "a", "a"],
            "gain": [0.05, 0.02, -0.04, 0.0],
            "is_baseline": [False, False, False, True],
            "gain_q": [0.01, 0.3, 0.02, np.nan],
            "interaction_q": [0.5, 0.5, 0.01, np.nan],
            "gain_se": 0.01,
            "gain_se_seed": 0.01,
            "gain_se_test": 0.005,
            "interaction": [0.01, -0.01, 0.0, np.nan],
            "interaction_se": 0.01,
            "interval": "seeds+test",
        }
    )
    s = tables.gain_summary(pairs).iloc[0]
    assert s["share_positive"] == pytest.approx(2 / 3)
    assert s["share_significant_positive"] == pytest.approx(1 / 3) and s["share_significant_negative"] == pytest.approx(1 / 3)
    assert s["share_interaction_significant"] == pytest.approx(1 / 3)


def test_masked_spearman_and_the_two_level_interval():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    x[1, 3] = np.nan
    rho = stats.masked_spearman(x, y, axis=-1)
    for i in range(5):
        ok = np.isfinite(x[i])
        assert rho[i] == pytest.approx(sps.spearmanr(x[i, ok], y[i, ok]).statistic)
    # a similarity that orders every target's sources as its gains do: the two-level CI sits near 1
    n = 6
    sim = rng.normal(size=(n, n))
    per_seed = np.stack([sim + rng.normal(0, 0.05, size=(n, n)) for _ in range(3)])
    for m in (sim, *per_seed):
        np.fill_diagonal(m, np.nan)
    lo, hi = stats.two_level_within_target_ci(sim, per_seed, n_boot=300, rng=np.random.default_rng(0), level=0.9)
    assert 0.6 < lo <= hi <= 1.0
    lo0, hi0 = stats.two_level_within_target_ci(
        rng.normal(size=(n, n)), per_seed, n_boot=300, rng=np.random.default_rng(0), level=0.9
    )
    assert lo0 < 0.6  # an unrelated similarity is not confidently related
