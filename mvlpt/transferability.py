"""Transferability estimators: how well a source is expected to transfer to a target, without training.

Each estimator scores one (source, target) pair from the *target's* labelled few-shot data seen
through the source: either the source model's predictions over its own classes (LEEP, NCE) or
features (LogME, H-score, GBC). Larger is better for every estimator here. Written from the
papers; each is tested against an independent computation (tests/test_transferability.py).

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

from .errors import MvlptError


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


def _logme_column(sigma2: np.ndarray, uty: np.ndarray, y_norm2: float, n: int, d: int,
                  tol: float = 1e-5, max_iter: int = 100) -> float:
    """Maximised log evidence / n of Bayesian linear regression y = F w + e, w ~ N(0, 1/alpha),
    e ~ N(0, 1/beta), by MacKay's fixed-point updates in the eigenbasis of F^T F."""
    alpha, beta = 1.0, 1.0
    # residual part of y outside F's column space (n > rank)
    res_out = max(y_norm2 - float(np.sum(uty ** 2)), 0.0)
    for _ in range(max_iter):
        gamma = float(np.sum(beta * sigma2 / (alpha + beta * sigma2)))
        m2 = float(np.sum(beta ** 2 * sigma2 * uty ** 2 / (alpha + beta * sigma2) ** 2))  # |m|^2
        res = float(np.sum((alpha / (alpha + beta * sigma2)) ** 2 * uty ** 2)) + res_out  # |F m - y|^2
        new_alpha = gamma / max(m2, 1e-300)
        new_beta = (n - gamma) / max(res, 1e-300)
        done = abs(new_alpha / alpha - 1) < tol and abs(new_beta / beta - 1) < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m2 = float(np.sum(beta ** 2 * sigma2 * uty ** 2 / (alpha + beta * sigma2) ** 2))
    res = float(np.sum((alpha / (alpha + beta * sigma2)) ** 2 * uty ** 2)) + res_out
    sig_full = np.zeros(d)
    sig_full[: len(sigma2)] = sigma2
    evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                - beta / 2 * res - alpha / 2 * m2 - 0.5 * np.sum(np.log(alpha + beta * sig_full)))
    return float(evidence / n)


def logme(features, y) -> float:
    """LogME: the maximised log marginal likelihood (per sample) of a Bayesian linear model from the
    features to each one-hot target column, averaged over the classes."""
    f = np.asarray(features, dtype=np.float64)
    yi, ny = _labels(y, len(f))
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma2 = s ** 2
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
            db = (np.sum((mu[i] - mu[j]) ** 2 / v) / 8
                  + 0.5 * (np.sum(np.log(v)) - 0.5 * (np.sum(np.log(var[i])) + np.sum(np.log(var[j])))))
            total += np.exp(-db)
    return float(-total)


ESTIMATORS = {"leep": leep, "nce": nce, "logme": logme, "h_score": h_score, "gbc": gbc}


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
