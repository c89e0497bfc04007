"""Evaluation metrics of the study, as ELEVATER defines them.

All take ``scores`` of shape ``(N, C)`` (logits or probabilities: only their order matters, except
for ROC-AUC where the positive-class score is used) and ``labels`` of shape ``(N,)`` (class indices)
or ``(N, C)`` (multi-hot, for multi-label tasks). All return a float in [0, 1].
"""

from __future__ import annotations

import numpy as np


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if labels.ndim == 2:  # multi-label: the top-1 prediction counts if it is one of the true labels
        return float(labels[np.arange(len(labels)), scores.argmax(1)].astype(bool).mean())
    return float((scores.argmax(1) == labels).mean())


def mean_per_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy per class, averaged over the classes present in ``labels``."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    pred = scores.argmax(1)
    classes = np.unique(labels)
    return float(np.mean([(pred[labels == c] == c).mean() for c in classes]))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Binary ROC-AUC of the positive class (column 1), as ELEVATER reports it for hateful-memes.

    Scores are turned into the softmax probability of class 1 first; the area is the probability
    that a random positive outranks a random negative (ties count half).
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] != 2:
        raise ValueError("roc_auc needs scores of shape (N, 2)")
    pos_score = scores[:, 1] - scores[:, 0]  # monotone in softmax(scores)[:, 1]
    pos, neg = pos_score[labels == 1], pos_score[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def average_precision_11point(scores: np.ndarray, targets: np.ndarray) -> float:
    """PASCAL VOC 2007 11-point interpolated AP of one class."""
    order = np.argsort(-scores, kind="stable")
    tp = targets[order].astype(np.float64)
    npos = tp.sum()
    if npos == 0:
        return float("nan")
    ctp = np.cumsum(tp)
    recall = ctp / npos
    precision = ctp / np.arange(1, len(tp) + 1)
    ap = 0.0
    for t in np.linspace(0, 1, 11):
        p = precision[recall >= t]
        ap += (p.max() if p.size else 0.0) / 11
    return float(ap)


def map_11point(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of the 11-point interpolated AP (multi-label, VOC 2007)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    aps = [average_precision_11point(scores[:, c], labels[:, c]) for c in range(labels.shape[1])]
    return float(np.nanmean(aps))


METRICS = {
    "accuracy": accuracy,
    "mean_per_class_accuracy": mean_per_class_accuracy,
    "roc_auc": roc_auc,
    "map_11point": map_11point,
}


def compute_metric(name: str, scores, labels) -> float:
    try:
        fn = METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None
    return fn(np.asarray(scores), np.asarray(labels))


# --------------------------------------------------------------------------------------------------
# The test set's sampling error: the metric on bootstrap resamples of the test set
# --------------------------------------------------------------------------------------------------
# Every run of a target resamples its test set with the same indices (drawn from ``seed`` and the test
# set's size), so the replicates of two runs on one test set are paired: their difference, replicate
# by replicate, is the bootstrap distribution of the difference of the two metrics (a gain), whatever
# the metric is. 200 replicates estimate a standard error to about 5 % (relative).
TEST_BOOTSTRAP = {"n": 200, "seed": 0}


def bootstrap_indices(n_examples: int, n: int = TEST_BOOTSTRAP["n"], seed: int = TEST_BOOTSTRAP["seed"]) -> np.ndarray:
    """``(n, n_examples)`` indices of ``n`` resamples with replacement; the same for the same arguments."""
    rng = np.random.default_rng([int(seed), int(n_examples)])
    return rng.integers(0, n_examples, size=(int(n), int(n_examples)))


def metric_replicates(name: str, scores, labels, n: int = TEST_BOOTSTRAP["n"], seed: int = TEST_BOOTSTRAP["seed"]) -> np.ndarray:
    """The metric ``name`` on ``n`` bootstrap resamples of the examples (:func:`bootstrap_indices`):
    shape ``(n,)``. A resample on which the metric is undefined (e.g. ROC-AUC without a positive) is NaN."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    idx = bootstrap_indices(len(labels), n, seed)
    if labels.ndim == 1 and name in ("accuracy", "mean_per_class_accuracy"):  # vectorised: one argmax
        correct = (scores.argmax(1) == labels).astype(np.float64)[idx]
        if name == "accuracy":
            return correct.mean(1)
        cls = labels[idx]  # mean over the classes present in each resample of their accuracy
        k = int(labels.max()) + 1 if len(labels) else 0
        rows = np.repeat(np.arange(len(idx)), idx.shape[1])
        hits = np.zeros((len(idx), k))
        count = np.zeros((len(idx), k))
        np.add.at(hits, (rows, cls.ravel()), correct.ravel())
        np.add.at(count, (rows, cls.ravel()), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanmean(np.where(count > 0, hits / count, np.nan), axis=1)
    out = np.empty(len(idx))
    with np.errstate(invalid="ignore", divide="ignore"):
        for b, i in enumerate(idx):
            try:
                out[b] = compute_metric(name, scores[i], labels[i])
            except ValueError:
                out[b] = np.nan
    return out


def test_set_hash(labels) -> str:
    """A short fingerprint of a test set's labels in their order: runs whose replicates are paired share it."""
    import hashlib

    labels = np.ascontiguousarray(np.asarray(labels).astype(np.int64))
    h = hashlib.sha256(str(labels.shape).encode() + labels.tobytes()).hexdigest()
    return h[:16]


def bootstrap_record(name: str, scores, labels) -> dict:
    """What a result records of its test set's sampling error: ``{"n", "seed", "test_set", "values"}``
    (the replicates rounded to 6 decimals; NaN as null)."""
    values = metric_replicates(name, scores, labels)
    return {
        "n": TEST_BOOTSTRAP["n"],
        "seed": TEST_BOOTSTRAP["seed"],
        "test_set": test_set_hash(labels),
        "values": [None if not np.isfinite(v) else round(float(v), 6) for v in values],
    }
