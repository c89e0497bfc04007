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
