import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from mvlpt.training.metrics import average_precision_11point, compute_metric


@pytest.fixture
def fabricated():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300)
    labels[:40] = 0  # imbalanced
    scores = rng.normal(size=(300, 5))
    scores[np.arange(300), labels] += rng.normal(1.0, 1.0, 300)  # better than chance
    return scores, labels


def test_accuracy_and_mean_per_class_match_sklearn(fabricated):
    scores, labels = fabricated
    pred = scores.argmax(1)
    assert compute_metric("accuracy", scores, labels) == pytest.approx(accuracy_score(labels, pred))
    assert compute_metric("mean_per_class_accuracy", scores, labels) == pytest.approx(balanced_accuracy_score(labels, pred))
    assert compute_metric("accuracy", scores, labels) != pytest.approx(compute_metric("mean_per_class_accuracy", scores, labels))


def test_roc_auc_matches_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(size=(200, 2))
    scores[:, 1] += labels * 0.8
    scores[:10] = 0.0  # ties
    expected = roc_auc_score(labels, scores[:, 1] - scores[:, 0])
    assert compute_metric("roc_auc", scores, labels) == pytest.approx(expected)


def test_11_point_map_on_known_ranking():
    # ranking: P N P N N, 2 positives. precision at recall 0.5 = 1, at recall 1 = 2/3
    s = np.array([5, 4, 3, 2, 1.0])
    t = np.array([1, 0, 1, 0, 0])
    expected = (6 * 1.0 + 5 * (2 / 3)) / 11  # recall thresholds 0..0.5 -> 1, 0.6..1.0 -> 2/3
    assert average_precision_11point(s, t) == pytest.approx(expected)
    scores = np.stack([s, -s], 1)
    labels = np.stack([t, 1 - t], 1)
    assert compute_metric("map_11point", scores, labels) == pytest.approx((expected + average_precision_11point(-s, 1 - t)) / 2)


def test_11_point_map_close_to_sklearn_ap_on_large_random():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(2)
    t = rng.integers(0, 2, 2000)
    s = rng.normal(size=2000) + t
    assert abs(average_precision_11point(s, t) - average_precision_score(t, s)) < 0.03


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metric("f1", np.zeros((2, 2)), np.zeros(2))
