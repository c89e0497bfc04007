"""Transferability estimators: how well a source is expected to transfer to a target, without training.

Each estimator scores one (source, target) pair from the *target's* labelled few-shot data seen
through the source: either the source model's predictions over its own classes (LEEP, NCE) or
features (LogME, H-score, GBC). Larger is better for every estimator here. Written from the
papers; each is tested against an independent computation (tests/transfer/test_transferability.py).

* LEEP  -- Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
  Representations", ICML 2020.
* NCE   -- Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.
* H-score -- Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer
  Learning", ICIP 2019.
* LogME -- You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
  ICML 2021.
* GBC   -- Pandy et al., "Transferability Estimation using Bhattacharyya Class Separability", CVPR 2022.

The ranking scores (how well an estimator orders the sources of each target against the measured
gains) are at the end: Spearman over pairs, mean within-target Spearman, top-k hit rate, NDCG@k.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from mvlpt.errors import MvlptError


def _labels(y, n: int) -> tuple[np.ndarray, int]:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise MvlptError(f"transferability needs one integer label per sample ({n} samples), got shape {y.shape}.")
    _, inv = np.unique(y, return_inverse=True)
    return inv, int(inv.max()) + 1 if len(inv) else 0


# --------------------------------------------------------------------------------------------------
# Estimators from the source model's predictions
# --------------------------------------------------------------------------------------------------
def leep(probs, y) -> float:
    """LEEP: mean log-likelihood of the target labels under the "expected empirical predictor".

    ``probs`` (n, |Z|): the source model's class probabilities on the target samples; ``y`` (n,)
    target labels. P(y, z) = mean_i probs[i, z] [y_i = y]; P(y | z) = P(y, z) / P(z);
    LEEP = mean_i log sum_z P(y_i | z) probs[i, z].
    """
    p = np.asarray(probs, dtype=np.float64)
    yi, ny = _labels(y, len(p))
    joint = np.zeros((ny, p.shape[1]))
    np.add.at(joint, yi, p)
    joint /= len(p)
    cond = joint / np.clip(joint.sum(0, keepdims=True), 1e-300, None)  # P(y | z)
    eep = (p * cond[yi]).sum(1)
    return float(np.mean(np.log(np.clip(eep, 1e-300, None))))


def nce(source_labels, y) -> float:
    """NCE: negative conditional entropy -H(Y | Z) of target labels given the source's hard labels."""
    z = np.asarray(source_labels)
    yi, ny = _labels(y, len(z))
    zi, nz = _labels(z, len(z))
    joint = np.zeros((ny, nz))
    np.add.at(joint, (yi, zi), 1.0)
    joint /= len(z)
    pz = joint.sum(0, keepdims=True)
    nzm = joint > 0
    return float(np.sum(joint[nzm] * np.log((joint / pz)[nzm])))


# --------------------------------------------------------------------------------------------------
# Estimators from features
# --------------------------------------------------------------------------------------------------
def h_score(features, y) -> float:
    """H-score: tr(cov(f)^+ cov(E[f | y])) (pseudo-inverse, as the paper's code does)."""
    f = np.asarray(features, dtype=np.float64)
    yi, ny = _labels(y, len(f))
    f = f - f.mean(0)
    cov_f = f.T @ f / len(f)
    means = np.zeros((ny, f.shape[1]))
    np.add.at(means, yi, f)
    means /= np.bincount(yi, minlength=ny)[:, None]
    g = means[yi]  # each sample replaced by its class mean
    cov_g = g.T @ g / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g))


def _logme_column(
    sigma2: np.ndarray, uty: np.ndarray, y_norm2: float, n: int, d: int, tol: float = 1e-5, max_iter: int = 100
) -> float:
    """Maximised log evidence / n of Bayesian linear regression y = F w + e, w ~ N(0, 1/alpha),
    e ~ N(0, 1/beta), by MacKay's fixed-point updates in the eigenbasis of F^T F."""
    alpha, beta = 1.0, 1.0
    # residual part of y outside F's column space (n > rank)
    res_out = max(y_norm2 - float(np.sum(uty**2)), 0.0)
    for _ in range(max_iter):
        gamma = float(np.sum(beta * sigma2 / (alpha + beta * sigma2)))
        m2 = float(np.sum(beta**2 * sigma2 * uty**2 / (alpha + beta * sigma2) ** 2))  # |m|^2
        res = float(np.sum((alpha / (alpha + beta * sigma2)) ** 2 * uty**2)) + res_out  # |F m - y|^2
        new_alpha = gamma / max(m2, 1e-300)
        new_beta = (n - gamma) / max(res, 1e-300)
        done = abs(new_alpha / alpha - 1) < tol and abs(new_beta / beta - 1) < tol
        alpha, beta = min(max(new_alpha, 1e-12), 1e12), min(max(new_beta, 1e-12), 1e12)  # a perfect fit: bounded
        if done:
            break
    m2 = float(np.sum(beta**2 * sigma2 * uty**2 / (alpha + beta * sigma2) ** 2))
    res = float(np.sum((alpha / (alpha + beta * sigma2)) ** 2 * uty**2)) + res_out
    sig_full = np.zeros(d)
    sig_full[: len(sigma2)] = sigma2
    evidence = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * res
        - alpha / 2 * m2
        - 0.5 * np.sum(np.log(alpha + beta * sig_full))
    )
    return float(evidence / n)


def logme(features, y) -> float:
    """LogME: the maximised log marginal likelihood (per sample) of a Bayesian linear model from the
    features to each one-hot target column, averaged over the classes."""
    f = np.asarray(features, dtype=np.float64)
    yi, ny = _labels(y, len(f))
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma2 = s**2
    scores = []
    for k in range(ny):
        col = (yi == k).astype(np.float64)
        scores.append(_logme_column(sigma2, u.T @ col, float(col @ col), n, d))
    return float(np.mean(scores))


def gbc(features, y, eps: float = 1e-6) -> float:
    """GBC: minus the sum over ordered class pairs of the Bhattacharyya coefficient between per-class
    Gaussians with diagonal covariance (closer to 0 = classes better separated = better)."""
    f = np.asarray(features, dtype=np.float64)
    yi, ny = _labels(y, len(f))
    mu = np.stack([f[yi == k].mean(0) for k in range(ny)])
    var = np.stack([f[yi == k].var(0) for k in range(ny)]) + eps
    total = 0.0
    for i in range(ny):
        for j in range(ny):
            if i == j:
                continue
            v = (var[i] + var[j]) / 2
            db = np.sum((mu[i] - mu[j]) ** 2 / v) / 8 + 0.5 * (
                np.sum(np.log(v)) - 0.5 * (np.sum(np.log(var[i])) + np.sum(np.log(var[j])))
            )
            total += np.exp(-db)
    return float(-total)


ESTIMATORS = {"leep": leep, "nce": nce, "logme": logme, "h_score": h_score, "gbc": gbc}


# --------------------------------------------------------------------------------------------------
# The estimators where their assumptions hold (issue #22): cross-fitted, on features of a fixed size
# --------------------------------------------------------------------------------------------------
CROSSFIT_SEED = 0  # the seed of the class-stratified halves: one split per target, the same for every source


def stratified_halves(y, seed: int = CROSSFIT_SEED) -> np.ndarray:
    """A boolean mask of the first half of the samples, drawn class by class (``seed``): each class's
    samples are shuffled and its first ``ceil(n_c / 2)`` or ``floor(n_c / 2)`` go to half A,
    alternating between classes so that the halves differ in size by at most one. Depends on the
    labels only, so every source of a target is scored on the same halves."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    first = np.zeros(len(y), bool)
    extra = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = len(idx) // 2 + (len(idx) % 2) * (extra % 2 == 0)
        extra += len(idx) % 2
        first[idx[:k]] = True
    return first


def _conditional(joint_counts: np.ndarray, prior: float) -> np.ndarray:
    """P(y | z) from (soft) counts ``(|Y|, |Z|)``, each column smoothed by ``prior`` pseudo-samples spread
    uniformly over the target classes (a source class the estimation half never uses predicts the
    uniform distribution, not log 0)."""
    ny = joint_counts.shape[0]
    return (joint_counts + prior / ny) / (joint_counts.sum(0, keepdims=True) + prior)


def _crossfit(p: np.ndarray, y, fit, score, seed: int) -> float:
    """Estimate on one half, score the other, swap, average (weighted by the halves' sizes)."""
    yi, _ = _labels(y, len(p))
    a = stratified_halves(yi, seed)
    parts = [(a, ~a), (~a, a)]
    total, n = 0.0, 0
    for est, held in parts:
        if held.sum() == 0 or est.sum() == 0:
            continue
        total += float(np.sum(score(fit(p[est], yi[est]), p[held], yi[held])))
        n += int(held.sum())
    return total / n if n else float("nan")


def eep_conditional(probs, y, n_classes: int | None = None, prior: float = 1.0) -> np.ndarray:
    """LEEP's empirical P(y | z) ``(|Y|, |Z|)`` from source probabilities and target labels (soft counts),
    smoothed with ``prior`` pseudo-samples per source class (:func:`_conditional`)."""
    p = np.asarray(probs, np.float64)
    yi = np.asarray(y, np.int64)
    ny = int(n_classes if n_classes is not None else yi.max() + 1)
    joint = np.zeros((ny, p.shape[1]))
    np.add.at(joint, yi, p)
    return _conditional(joint, prior)


def leep_crossfit(probs, y, seed: int = CROSSFIT_SEED, prior: float = 1.0) -> float:
    """LEEP cross-fitted: P(y | z) estimated on one class-stratified half of the target samples, the
    log-likelihood of the expected empirical predictor averaged over the other half; then swapped.
    Unlike :func:`leep`, no sample is scored by a conditional it helped estimate (no in-sample bias)."""
    p = np.asarray(probs, np.float64)
    _, ny = _labels(y, len(p))

    def fit(pe, ye):
        return eep_conditional(pe, ye, ny, prior)

    def score(cond, ph, yh):
        return np.log(np.clip((ph * cond[yh]).sum(1), 1e-300, None))

    return _crossfit(p, y, fit, score, seed)


def nce_crossfit(source_labels, y, seed: int = CROSSFIT_SEED, prior: float = 1.0) -> float:
    """NCE (the LEEP paper's variant: the source's *predicted* labels) cross-fitted: P(y | z) counted on
    one half, mean log P(y_i | z_i) over the other half, swapped: minus the held-out conditional
    cross-entropy. Smoothed as :func:`leep_crossfit`."""
    z = np.asarray(source_labels)
    _, nz = _labels(z, len(z))
    zi = np.unique(z, return_inverse=True)[1]
    onehot = np.eye(nz)[zi]
    _, ny = _labels(y, len(z))

    def fit(pe, ye):
        joint = np.zeros((ny, nz))
        np.add.at(joint, ye, pe)
        return _conditional(joint, prior)

    def score(cond, ph, yh):
        return np.log((cond[yh] * ph).sum(1))

    return _crossfit(onehot, y, fit, score, seed)


def eep_features(probs, y, seed: int = CROSSFIT_SEED, prior: float = 1.0) -> np.ndarray:
    """Features of one size for every source: each target sample's cross-fitted expected-empirical-
    predictor probabilities over the *target's* classes, ``probs_i @ P(y | z)^T`` with P(y | z) from the
    other class-stratified half: ``(n, |Y|)`` whatever the source's class count."""
    p = np.asarray(probs, np.float64)
    yi, ny = _labels(y, len(p))
    a = stratified_halves(yi, seed)
    out = np.zeros((len(p), ny))
    for est, held in ((a, ~a), (~a, a)):
        if est.any() and held.any():
            out[held] = p[held] @ eep_conditional(p[est], yi[est], ny, prior).T
    return out


def logme_eep(probs, y) -> float:
    """LogME on :func:`eep_features` (target-class dimensions for every source)."""
    return logme(eep_features(probs, y), y)


def h_score_eep(probs, y) -> float:
    """H-score on :func:`eep_features`."""
    return h_score(eep_features(probs, y), y)


def gbc_eep(probs, y) -> float:
    """GBC (diagonal covariances, as :func:`gbc`) on :func:`eep_features`."""
    return gbc(eep_features(probs, y), y)


def gbc_spherical(features, y, pca_dims: int = 64, floor: float = 1e-4) -> float:
    """GBC in its authors' setting (Pandy et al. 2022, their code, ``gaussian_type="spherical"``): the
    features centred and reduced by PCA to ``min(pca_dims, samples, dims)`` dimensions, one Gaussian per
    class with a *spherical* covariance (``v_c``: the mean of the class's per-dimension variances, each
    floored at ``floor`` as their code does), minus the sum over ordered class pairs of the Bhattacharyya
    coefficient ``exp(-D_B)``, with their code's distance
    ``D_B = |mu_i - mu_j|^2 / (8 v) + 1/2 (log v - 1/2 log v_i - 1/2 log v_j)``, ``v = (v_i + v_j) / 2``
    (the log term of their spherical case is that of one dimension, not ``d`` times it; kept as published)."""
    f = np.asarray(features, np.float64)
    yi, ny = _labels(y, len(f))
    f = f - f.mean(0)
    k = int(min(pca_dims, f.shape[0], f.shape[1]))
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    z = f @ vt[:k].T
    mu = np.stack([z[yi == c].mean(0) for c in range(ny)])
    var = np.array([np.maximum(z[yi == c].var(0), floor).mean() for c in range(ny)])
    total = 0.0
    for i in range(ny):
        for j in range(ny):
            if i != j:
                v = (var[i] + var[j]) / 2
                db = np.sum((mu[i] - mu[j]) ** 2) / (8 * v) + 0.5 * (np.log(v) - 0.5 * np.log(var[i]) - 0.5 * np.log(var[j]))
                total += np.exp(-db)
    return float(-total)


def gbc_spherical_eep(probs, y) -> float:
    """GBC in its authors' setting (:func:`gbc_spherical`) on :func:`eep_features`."""
    return gbc_spherical(eep_features(probs, y), y)


# the estimators where their assumptions hold, with the source view each reads
CROSSFIT_ESTIMATORS = {
    "leep_xfit": leep_crossfit,
    "nce_xfit": nce_crossfit,
    "logme_eep": logme_eep,
    "h_score_eep": h_score_eep,
    "gbc_eep": gbc_eep,
    "gbc_spherical": gbc_spherical_eep,
}
ESTIMATOR_VIEWS = {
    "leep": "probabilities",
    "nce": "predictions",
    "logme": "logits",
    "h_score": "logits",
    "gbc": "logits",
    "leep_xfit": "probabilities",
    "nce_xfit": "predictions",
    "logme_eep": "probabilities",
    "h_score_eep": "probabilities",
    "gbc_eep": "probabilities",
    "gbc_spherical": "probabilities",
}


# --------------------------------------------------------------------------------------------------
# Scoring an estimator's ranking of sources against the measured gains
# --------------------------------------------------------------------------------------------------
def _finite_pairs(pred, gain) -> tuple[np.ndarray, np.ndarray]:
    pred, gain = np.asarray(pred, dtype=float), np.asarray(gain, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(gain)
    return pred[ok], gain[ok]


def spearman(pred, gain) -> float:
    p, g = _finite_pairs(pred, gain)
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(g) == 0:
        return float("nan")
    return float(stats.spearmanr(p, g).statistic)


def ndcg_at_k(pred, gain, k: int = 3) -> float:
    """NDCG@k of the sources ranked by ``pred``, with relevance = gain shifted to be >= 0."""
    p, g = _finite_pairs(pred, gain)
    if len(p) == 0:
        return float("nan")
    rel = g - g.min()
    k = min(k, len(p))
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    got = rel[np.argsort(-p, kind="stable")[:k]] @ disc
    ideal = np.sort(rel)[::-1][:k] @ disc
    return float(got / ideal) if ideal > 0 else float("nan")


def top_k_hit(pred, gain, k: int = 1) -> float:
    """1.0 if the measured best source is among the ``k`` sources ``pred`` ranks highest."""
    p, g = _finite_pairs(pred, gain)
    if len(p) == 0:
        return float("nan")
    return float(int(np.argmax(g)) in set(np.argsort(-p, kind="stable")[:k].tolist()))
