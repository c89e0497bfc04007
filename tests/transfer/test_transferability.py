"""Transferability estimators against independent computations and cases with known answers."""

import math

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.metrics import mutual_info_score

from mvlpt.transfer import transferability


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
    assert transferability.leep(probs, y) == pytest.approx(total / n, rel=1e-12)


def test_leep_is_zero_for_a_perfect_one_to_one_source():
    y = np.repeat(np.arange(4), 5)
    probs = np.eye(4)[y]  # the source predicts a class that determines the target label
    assert transferability.leep(probs, y) == pytest.approx(0.0, abs=1e-12)


def test_nce_equals_mutual_information_minus_label_entropy():
    rng = np.random.default_rng(2)
    z = rng.integers(0, 5, 200)
    y = (z + rng.integers(0, 2, 200)) % 4
    h_y = stats.entropy(np.bincount(y))
    assert transferability.nce(z, y) == pytest.approx(mutual_info_score(y, z) - h_y, rel=1e-10)


def test_h_score_equals_the_definition():
    f, y = _data(3)
    fc = f - f.mean(0)
    cov_f = np.cov(fc, rowvar=False, bias=True)
    g = np.stack([fc[y == c].mean(0) for c in y])
    cov_g = np.cov(g, rowvar=False, bias=True)
    assert transferability.h_score(f, y) == pytest.approx(np.trace(np.linalg.inv(cov_f) @ cov_g), rel=1e-8)


def _log_evidence(f, t, alpha, beta):
    """log N(t; 0, I/beta + F F^T/alpha): the marginal likelihood, computed directly."""
    cov = np.eye(len(f)) / beta + f @ f.T / alpha
    return stats.multivariate_normal(np.zeros(len(f)), cov).logpdf(t)


@pytest.mark.parametrize("n,d", [(50, 4), (12, 20)])  # more samples than features, and fewer
def test_logme_is_the_maximised_evidence(n, d):
    f, y = _data(4, n=n, d=d, classes=2, sep=1.0)
    ours = transferability.logme(f, y)
    # independent: maximise the directly computed evidence over (log alpha, log beta) per class
    best = []
    for k in range(2):
        t = (y == k).astype(float)
        res = optimize.minimize(
            lambda p, t=t: -_log_evidence(f, t, math.exp(p[0]), math.exp(p[1])),
            x0=[0.0, 0.0],
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000},
        )
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
            db = dm @ np.linalg.inv(s) @ dm / 8 + 0.5 * math.log(
                np.linalg.det(s) / math.sqrt(np.linalg.det(si) * np.linalg.det(sj))
            )
            total += math.exp(-db)
    assert transferability.gbc(f, y, eps=eps) == pytest.approx(-total, rel=1e-10)


@pytest.mark.parametrize("name", ["logme", "h_score", "gbc"])
def test_feature_estimators_prefer_features_that_separate_the_classes(name):
    good, y = _data(6, sep=3.0)
    rng = np.random.default_rng(7)
    noise = rng.normal(size=good.shape)  # the same target, seen through a useless source
    fn = transferability.ESTIMATORS[name]
    assert fn(good, y) > fn(noise, y)


def test_prediction_estimators_rank_the_identical_source_first():
    # target labels y; sources: itself (its own classifier), a noisy relabelling, and noise
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(5), 8)
    own = np.eye(5)[y] * 0.9 + 0.02
    partial = np.where(rng.random(len(y)) < 0.5, y, rng.integers(0, 5, len(y)))
    unrelated = rng.integers(0, 5, len(y))
    probs = {"own": own, "partial": np.eye(5)[partial] * 0.9 + 0.02, "unrelated": np.eye(5)[unrelated] * 0.9 + 0.02}
    leep = {k: transferability.leep(p, y) for k, p in probs.items()}
    assert leep["own"] > leep["partial"] > leep["unrelated"]
    nce = {k: transferability.nce(p.argmax(1), y) for k, p in probs.items()}
    assert nce["own"] > nce["partial"] > nce["unrelated"]


def test_ranking_scores():
    gain = [0.1, 0.5, -0.2, 0.3]
    assert transferability.spearman([1, 4, 0, 2], gain) == pytest.approx(1.0)
    assert transferability.top_k_hit([1, 4, 0, 2], gain, 1) == 1.0
    assert transferability.top_k_hit([4, 1, 0, 2], gain, 1) == 0.0
    assert transferability.top_k_hit([4, 1, 0, 2], gain, 3) == 1.0
    assert transferability.ndcg_at_k([1, 4, 0, 2], gain, 3) == pytest.approx(1.0)
    # by hand: ranking [0, 3, 1] of relevances (g - min) [0.3, 0.5, 0.7] at positions 1, 2, 3
    rel = np.array(gain) - min(gain)
    got = rel[0] / 1 + rel[3] / math.log2(3) + rel[1] / 2
    ideal = rel[1] / 1 + rel[3] / math.log2(3) + rel[0] / 2
    assert transferability.ndcg_at_k([4, 1, 0, 3], gain, 3) == pytest.approx(got / ideal)
    assert math.isnan(transferability.spearman([1, 1, 1, 1], gain))  # a constant predictor ranks nothing


# --------------------------------------------------------------------------------------------------
# The estimators where their assumptions hold (issue #22): cross-fitted, fixed-size features
# --------------------------------------------------------------------------------------------------
def _softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _clusters(seed=0, classes=4, d=32, per=10, spread=3.0, scale=30.0, noise_dirs=8, unrelated=20):
    """A target of ``classes`` clusters on the sphere; sources seen as CLIP logits ``scale * x @ W^T``:
    the identical source (W = the target's class directions), the same plus ``noise_dirs`` pure-noise
    class directions, one of ``unrelated`` random class directions, and label-free prototypes (every
    target image its own class)."""
    rng = np.random.default_rng(seed)
    cent = rng.normal(size=(classes, d))
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    y = np.repeat(np.arange(classes), per)
    x = cent[y] + spread * rng.normal(size=(len(y), d)) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)

    def unit(n):
        w = rng.normal(size=(n, d))
        return w / np.linalg.norm(w, axis=1, keepdims=True)

    heads = {"identical": cent, "noisy": np.vstack([cent, unit(noise_dirs)]), "unrelated": unit(unrelated), "prototypes": x}
    return {k: scale * x @ w.T for k, w in heads.items()}, y


def test_stratified_halves_split_every_class_and_depend_on_the_labels_only():
    y = np.array([0] * 5 + [1] * 4 + [2] * 3 + [3] * 1)
    a = transferability.stratified_halves(y, seed=3)
    for c in range(4):
        assert abs(int(a[y == c].sum()) - int((~a[y == c]).sum())) <= 1
    assert abs(int(a.sum()) - int((~a).sum())) <= 1
    assert np.array_equal(a, transferability.stratified_halves(y, seed=3))  # the same for every source of a target
    assert not np.array_equal(a, transferability.stratified_halves(y, seed=4))


def _cond_by_loops(p, y, ny, prior):
    """P(y | z) by loops: soft counts plus ``prior`` pseudo-samples spread over the target classes."""
    cond = np.zeros((ny, p.shape[1]))
    for z in range(p.shape[1]):
        col = sum(p[i, z] for i in range(len(y)))
        for c in range(ny):
            cond[c, z] = (sum(p[i, z] for i in range(len(y)) if y[i] == c) + prior / ny) / (col + prior)
    return cond


def test_cross_fitted_leep_nce_and_eep_features_equal_the_definition_by_loops():
    rng = np.random.default_rng(0)
    n, nz, ny = 17, 5, 3
    probs = _softmax(rng.normal(size=(n, nz)) * 2)
    y = np.r_[np.arange(ny), rng.integers(0, ny, n - ny)]
    a = transferability.stratified_halves(y)
    leep = nce = 0.0
    z = probs.argmax(1)
    onehot = np.eye(nz)[np.unique(z, return_inverse=True)[1]]
    feats = np.zeros((n, ny))
    for est, held in ((a, ~a), (~a, a)):
        cond = _cond_by_loops(probs[est], y[est], ny, 1.0)
        cond_hard = _cond_by_loops(onehot[est], y[est], ny, 1.0)
        for i in np.flatnonzero(held):
            leep += math.log(sum(cond[y[i], k] * probs[i, k] for k in range(nz)))
            nce += math.log(cond_hard[y[i], list(np.unique(z)).index(z[i])])
            feats[i] = [sum(cond[c, k] * probs[i, k] for k in range(nz)) for c in range(ny)]
    assert transferability.leep_crossfit(probs, y) == pytest.approx(leep / n, rel=1e-10)
    assert transferability.nce_crossfit(z, y) == pytest.approx(nce / n, rel=1e-10)
    assert np.allclose(transferability.eep_features(probs, y), feats)
    assert transferability.logme_eep(probs, y) == pytest.approx(transferability.logme(feats, y))
    assert transferability.h_score_eep(probs, y) == pytest.approx(transferability.h_score(feats, y))
    assert transferability.gbc_eep(probs, y) == pytest.approx(transferability.gbc(feats, y))
    assert transferability.eep_features(np.hstack([probs, np.zeros((n, 7))]), y).shape == (n, ny)  # one size for every source


@pytest.mark.parametrize("d,k", [(5, 64), (12, 4)])
def test_gbc_spherical_is_the_authors_code_after_sklearn_pca(d, k):
    """Their get_gbc_score(gaussian_type="spherical") written out: per-class variance floored at 1e-4 and
    averaged over dimensions, their Bhattacharyya distance (one-dimensional log term), ordered pairs."""
    from sklearn.decomposition import PCA

    f, y = _data(seed=2, n=40, d=d, classes=3, sep=1.0)
    z = PCA(n_components=min(k, *f.shape)).fit_transform(f)
    total = 0.0
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            mi, mj = z[y == i].mean(0), z[y == j].mean(0)
            si, sj = np.maximum(z[y == i].var(0), 1e-4).mean(), np.maximum(z[y == j].var(0), 1e-4).mean()
            s = (si + sj) / 2
            db = np.sum((mi - mj) ** 2 / s) / 8 + 0.5 * (np.log(s) - 0.5 * np.log(si) - 0.5 * np.log(sj))
            total += math.exp(-db)
    assert transferability.gbc_spherical(f, y, pca_dims=k) == pytest.approx(-total, rel=1e-8)
    # one dimension: their distance is the exact Bhattacharyya distance of two normals
    x = np.r_[np.random.default_rng(0).normal(0, 1, 30), np.random.default_rng(1).normal(1, 2, 30)][:, None]
    lab = np.repeat([0, 1], 30)
    m0, m1, v0, v1 = x[:30].mean(), x[30:].mean(), x[:30].var(), x[30:].var()
    exact = (m0 - m1) ** 2 / (4 * (v0 + v1)) + 0.5 * np.log((v0 + v1) / (2 * np.sqrt(v0 * v1)))
    assert transferability.gbc_spherical(x, lab) == pytest.approx(-2 * math.exp(-exact))


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_class_directions_raise_the_logit_estimators_but_not_the_fixed_size_ones(seed):
    """The issue's failing case: an identical source with pure-noise class directions appended. On the
    source-class logits (one dimension per source class) GBC and H-score rise (the 'more classes' failure);
    on the cross-fitted target-class EEP features every feature estimator falls."""
    logits, y = _clusters(seed)
    same, noisy = logits["identical"], logits["noisy"]
    assert transferability.gbc(noisy, y) > transferability.gbc(same, y) and transferability.h_score(
        noisy, y
    ) > transferability.h_score(same, y)  # reproduced
    for fn in (
        transferability.gbc_eep,
        transferability.h_score_eep,
        transferability.logme_eep,
        transferability.gbc_spherical_eep,
        transferability.leep_crossfit,
    ):
        assert fn(_softmax(noisy), y) < fn(_softmax(same), y), fn.__name__


@pytest.mark.parametrize("seed", range(4))
def test_cross_fitting_ranks_the_identical_source_above_label_free_prototypes(seed):
    """The issue's in-sample case: label-free prototypes (each target image its own source class) fit the
    labels perfectly in-sample, so in-sample LEEP and NCE prefer them to the identical source; on held-out
    images the identical source wins."""
    logits, y = _clusters(seed)
    same, proto = _softmax(logits["identical"]), _softmax(logits["prototypes"])
    assert transferability.leep(proto, y) > transferability.leep(same, y) and transferability.nce(
        proto.argmax(1), y
    ) > transferability.nce(same.argmax(1), y)
    assert transferability.leep_crossfit(same, y) > transferability.leep_crossfit(proto, y)
    assert transferability.nce_crossfit(same.argmax(1), y) > transferability.nce_crossfit(proto.argmax(1), y)


def test_label_permutation_control():
    """Target labels permuted (no source can know them): the in-sample scores still depend on the source
    (more source classes fit noise better: the mean difference is over 3 times the spread of one
    permutation's difference), the cross-fitted ones do not (identical vs an unrelated source with 20
    classes: the mean difference over 24 permutations is within one spread)."""
    rng = np.random.default_rng(7)
    diffs = {"leep": [], "nce": [], "leep_xfit": [], "nce_xfit": [], "logme_eep": [], "h_score": [], "h_score_eep": []}
    for seed in range(4):
        logits, y = _clusters(seed)
        a, b = logits["identical"], logits["unrelated"]
        pa, pb = _softmax(a), _softmax(b)
        for _ in range(6):
            yp = rng.permutation(y)
            diffs["leep"].append(transferability.leep(pb, yp) - transferability.leep(pa, yp))
            diffs["nce"].append(transferability.nce(pb.argmax(1), yp) - transferability.nce(pa.argmax(1), yp))
            diffs["h_score"].append(transferability.h_score(b, yp) - transferability.h_score(a, yp))
            diffs["leep_xfit"].append(transferability.leep_crossfit(pb, yp) - transferability.leep_crossfit(pa, yp))
            diffs["nce_xfit"].append(
                transferability.nce_crossfit(pb.argmax(1), yp) - transferability.nce_crossfit(pa.argmax(1), yp)
            )
            diffs["logme_eep"].append(transferability.logme_eep(pb, yp) - transferability.logme_eep(pa, yp))
            diffs["h_score_eep"].append(transferability.h_score_eep(pb, yp) - transferability.h_score_eep(pa, yp))
    # effect in units of the spread of one permutation's difference (the noise of scoring one target)
    z = {k: np.mean(v) / np.std(v, ddof=1) for k, v in diffs.items()}
    for k in ("leep", "nce", "h_score"):  # in-sample: the many-class unrelated source wins on permuted labels
        assert z[k] > 3, (k, z)
    for k in ("leep_xfit", "nce_xfit", "logme_eep", "h_score_eep"):  # cross-fitted: within the noise
        assert abs(z[k]) < 1, (k, z)


@pytest.mark.parametrize("name", sorted(transferability.CROSSFIT_ESTIMATORS))
def test_every_new_estimator_ranks_own_above_partial_above_unrelated(name):
    """The known answer of the published estimators, re-checked for the cross-fitted, fixed-size ones: the
    target's own classifier, a half-relabelled one, an unrelated one (probabilities of 5 classes)."""
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(5), 8)
    partial = np.where(rng.random(len(y)) < 0.5, y, rng.integers(0, 5, len(y)))
    unrelated = rng.integers(0, 5, len(y))
    probs = {k: np.eye(5)[z] * 0.9 + 0.02 for k, z in (("own", y), ("partial", partial), ("unrelated", unrelated))}
    fn = transferability.CROSSFIT_ESTIMATORS[name]
    view = {k: (p.argmax(1) if transferability.ESTIMATOR_VIEWS[name] == "predictions" else p) for k, p in probs.items()}
    score = {k: fn(v, y) for k, v in view.items()}
    assert score["own"] > score["partial"] > score["unrelated"], score
