"""Transferability estimators against independent computations and cases with known answers."""

import math

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.metrics import mutual_info_score

from mvlpt import transferability as T


def _data(seed=0, n=60, d=5, classes=3, sep=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, d)) * sep
    return centers[y] + rng.normal(size=(n, d)), y


def test_leep_equals_the_definition_computed_by_loops():
    rng = np.random.default_rng(1)
    n, nz, ny = 40, 4, 3
    probs = rng.dirichlet(np.ones(nz), n)
    y = rng.integers(0, ny, n)
    # P(y, z), P(z), P(y|z) and the expected empirical predictor, by hand
    joint = [[sum(probs[i, z] for i in range(n) if y[i] == yy) / n for z in range(nz)] for yy in range(ny)]
    pz = [sum(joint[yy][z] for yy in range(ny)) for z in range(nz)]
    total = 0.0
    for i in range(n):
        total += math.log(sum(joint[y[i]][z] / pz[z] * probs[i, z] for z in range(nz)))
    assert T.leep(probs, y) == pytest.approx(total / n, rel=1e-12)


def test_leep_is_zero_for_a_perfect_one_to_one_source():
    y = np.repeat(np.arange(4), 5)
    probs = np.eye(4)[y]  # the source predicts a class that determines the target label
    assert T.leep(probs, y) == pytest.approx(0.0, abs=1e-12)


def test_nce_equals_mutual_information_minus_label_entropy():
    rng = np.random.default_rng(2)
    z = rng.integers(0, 5, 200)
    y = (z + rng.integers(0, 2, 200)) % 4
    h_y = stats.entropy(np.bincount(y))
    assert T.nce(z, y) == pytest.approx(mutual_info_score(y, z) - h_y, rel=1e-10)


def test_h_score_equals_the_definition():
    f, y = _data(3)
    fc = f - f.mean(0)
    cov_f = np.cov(fc, rowvar=False, bias=True)
    g = np.stack([fc[y == c].mean(0) for c in y])
    cov_g = np.cov(g, rowvar=False, bias=True)
    assert T.h_score(f, y) == pytest.approx(np.trace(np.linalg.inv(cov_f) @ cov_g), rel=1e-8)


def _log_evidence(f, t, alpha, beta):
    """log N(t; 0, I/beta + F F^T/alpha): the marginal likelihood, computed directly."""
    cov = np.eye(len(f)) / beta + f @ f.T / alpha
    return stats.multivariate_normal(np.zeros(len(f)), cov).logpdf(t)


@pytest.mark.parametrize("n,d", [(50, 4), (12, 20)])  # more samples than features, and fewer
def test_logme_is_the_maximised_evidence(n, d):
    f, y = _data(4, n=n, d=d, classes=2, sep=1.0)
    ours = T.logme(f, y)
    # independent: maximise the directly computed evidence over (log alpha, log beta) per class
    best = []
    for k in range(2):
        t = (y == k).astype(float)
        res = optimize.minimize(lambda p: -_log_evidence(f, t, math.exp(p[0]), math.exp(p[1])), x0=[0.0, 0.0],
                                method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
        best.append(-res.fun / n)
    assert ours == pytest.approx(np.mean(best), abs=1e-4)


def test_gbc_equals_bhattacharyya_with_full_matrices():
    f, y = _data(5, d=3)
    eps = 1e-6
    total = 0.0
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            si = np.diag(f[y == i].var(0) + eps)
            sj = np.diag(f[y == j].var(0) + eps)
            s = (si + sj) / 2
            dm = f[y == i].mean(0) - f[y == j].mean(0)
            db = dm @ np.linalg.inv(s) @ dm / 8 + 0.5 * math.log(np.linalg.det(s) / math.sqrt(np.linalg.det(si) * np.linalg.det(sj)))
            total += math.exp(-db)
    assert T.gbc(f, y, eps=eps) == pytest.approx(-total, rel=1e-10)


@pytest.mark.parametrize("name", ["logme", "h_score", "gbc"])
def test_feature_estimators_prefer_features_that_separate_the_classes(name):
    good, y = _data(6, sep=3.0)
    rng = np.random.default_rng(7)
    noise = rng.normal(size=good.shape)  # the same target, seen through a useless source
    fn = T.ESTIMATORS[name]
    assert fn(good, y) > fn(noise, y)


def test_prediction_estimators_rank_the_identical_source_first():
    # target labels y; sources: itself (its own classifier), a noisy relabelling, and noise
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(5), 8)
    own = np.eye(5)[y] * 0.9 + 0.02
    partial = np.where(rng.random(len(y)) < 0.5, y, rng.integers(0, 5, len(y)))
    unrelated = rng.integers(0, 5, len(y))
    probs = {"own": own, "partial": np.eye(5)[partial] * 0.9 + 0.02, "unrelated": np.eye(5)[unrelated] * 0.9 + 0.02}
    leep = {k: T.leep(p, y) for k, p in probs.items()}
    assert leep["own"] > leep["partial"] > leep["unrelated"]
    nce = {k: T.nce(p.argmax(1), y) for k, p in probs.items()}
    assert nce["own"] > nce["partial"] > nce["unrelated"]


def test_ranking_scores():
    gain = [0.1, 0.5, -0.2, 0.3]
    assert T.spearman([1, 4, 0, 2], gain) == pytest.approx(1.0)
    assert T.top_k_hit([1, 4, 0, 2], gain, 1) == 1.0
    assert T.top_k_hit([4, 1, 0, 2], gain, 1) == 0.0
    assert T.top_k_hit([4, 1, 0, 2], gain, 3) == 1.0
    assert T.ndcg_at_k([1, 4, 0, 2], gain, 3) == pytest.approx(1.0)
    # by hand: ranking [0, 3, 1] of relevances (g - min) [0.3, 0.5, 0.7] at positions 1, 2, 3
    rel = np.array(gain) - min(gain)
    got = rel[0] / 1 + rel[3] / math.log2(3) + rel[1] / 2
    ideal = rel[1] / 1 + rel[3] / math.log2(3) + rel[0] / 2
    assert T.ndcg_at_k([4, 1, 0, 3], gain, 3) == pytest.approx(got / ideal)
    assert math.isnan(T.spearman([1, 1, 1, 1], gain))  # a constant predictor ranks nothing
