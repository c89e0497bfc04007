"""The offline synthetic task suite (mvlpt.tasks.synthetic)."""

from __future__ import annotations

import hashlib
import itertools
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from mvlpt.errors import MvlptError
from mvlpt.tasks import synthetic
from mvlpt.tasks.registry import METRICS, get_task, list_tasks

SUITE = synthetic.SUITE
SPLITS = ("train", "test")
SHOTS = 20  # the largest few-shot setting the study samples from "train"


def _task(name: str):
    # the suite's own Task objects (get_task also imports the ELEVATER module, which these tests do not need)
    return synthetic.TASKS[name]


def _load(name: str, split: str):
    return _task(name).load(split)


# ---------------------------------------------------------------------------------------------
# registration and metadata


def test_suite_names_are_usable_in_paths():
    assert len(SUITE) >= 6
    assert len(set(SUITE)) == len(SUITE)
    assert set(SUITE) == set(synthetic.TASKS)
    for name in SUITE:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name
        assert "__" not in name
        task = _task(name)
        assert task.name == name and task.source == "synthetic"
    for a, b in itertools.permutations(SUITE, 2):
        assert not b.startswith(a), f"{a!r} is a prefix of {b!r}"


def test_suite_is_registered():
    assert set(SUITE) <= set(list_tasks(source="synthetic"))
    for name in SUITE:
        assert get_task(name) is synthetic.TASKS[name]


@pytest.mark.parametrize("name", SUITE)
def test_task_metadata(name):
    task = _task(name)
    assert 2 <= task.num_classes <= 10
    assert len(set(task.classnames)) == task.num_classes
    assert all(c.strip() == c and c for c in task.classnames)
    assert task.templates and all("{}" in t for t in task.templates)
    for t in task.templates:
        assert "{}" not in t.format(task.classnames[0])
    assert task.metric in METRICS
    assert task.splits == SPLITS
    assert task.domain and task.description


def test_suite_has_the_metric_variety():
    tasks = [_task(n) for n in SUITE]
    assert any(t.metric == "mean_per_class_accuracy" for t in tasks)
    multilabel = [t for t in tasks if t.multilabel]
    assert multilabel and all(t.metric == "map_11point" for t in multilabel)
    assert sum(t.metric == "accuracy" for t in tasks) >= len(tasks) // 2


def test_designed_relationships_are_declared():
    tasks = [_task(n) for n in SUITE]
    pairs = list(itertools.combinations(tasks, 2))
    same_labels = [(a.name, b.name) for a, b in pairs if set(a.classnames) == set(b.classnames)]
    same_domain = [(a.name, b.name) for a, b in pairs if a.domain == b.domain]
    neither = [(a.name, b.name) for a, b in pairs if a.domain != b.domain and not set(a.classnames) & set(b.classnames)]
    assert any(_task(a).domain != _task(b).domain for a, b in same_labels), same_labels
    assert any(set(_task(a).classnames) != set(_task(b).classnames) for a, b in same_domain), same_domain
    assert neither
    # the pairs the module docstring promises
    assert ("glyph-digits", "sklearn-digits") in same_labels
    assert ("shape-colours", "texture-colours") in same_labels
    assert ("shapes", "shape-colours") in same_domain
    assert ("textures", "texture-colours") in same_domain
    assert ("glyph-digits", "glyph-letters") in same_domain


def test_registry_imports_no_suite():
    """The suites import the registry and register their tasks; the registry imports no suite (no
    import cycle), the package declares them to it."""
    import ast
    import inspect

    from mvlpt.tasks import registry

    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(registry))):
        if isinstance(node, ast.ImportFrom):
            names |= {node.module or ""} | {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    assert not {n for n in names if n.split(".")[-1] in ("synthetic", "elevater")}, names
    assert set(SUITE) <= set(list_tasks())


# ---------------------------------------------------------------------------------------------
# the public renderers (mvlpt.models.pretrain_tiny draws its pre-training images with them)


def _renderers():
    n = 6
    labels = np.arange(n) % 4
    return {
        "shape_images": lambda rng: synthetic.shape_images(rng, labels, labels[::-1]),
        "texture_images": lambda rng: synthetic.texture_images(rng, labels, labels, (labels + 1) % len(synthetic.TEXTURE_POOL)),
        "glyph_images": lambda rng: synthetic.glyph_images(rng, synthetic.LETTERS, labels),
        "sklearn_digit_images": lambda rng: synthetic.sklearn_digit_images(rng, synthetic.spare_sklearn_digits()[:n])[1],
        "orientation_images": lambda rng: synthetic.orientation_images(rng, (2, 1, 2, 1))[1],
    }


@pytest.mark.parametrize("name", list(_renderers()))
def test_public_renderers_depend_only_on_their_generator(name):
    render = _renderers()[name]
    a, b, c = render(np.random.default_rng(5)), render(np.random.default_rng(5)), render(np.random.default_rng(6))
    assert a.shape == (6, synthetic.SIZE, synthetic.SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_spare_digits_are_outside_both_task_splits():
    spare = set(synthetic.spare_sklearn_digits().tolist())
    _, target, used = synthetic._sklearn_digits()
    train, test = set(used["train"].tolist()), set(used["test"].tolist())
    assert spare and not spare & train and not spare & test
    assert len(spare) + len(train) + len(test) == len(target)
    labels, _ = synthetic.sklearn_digit_images(np.random.default_rng(0), np.array(sorted(spare)))
    assert np.array_equal(labels, target[sorted(spare)])


# ---------------------------------------------------------------------------------------------
# splits: shapes, labels, ids, images


@pytest.mark.parametrize("name", SUITE)
def test_split_contents(name):
    task = _task(name)
    counts = {}
    for split in SPLITS:
        s = task.load(split)
        n = len(s)
        assert len(s.ids) == n == len(s.labels) == len(s.images)
        assert 50 <= n <= 1000
        assert isinstance(s.images, np.ndarray) and s.images.dtype == np.uint8
        assert s.images.shape == (n, 32, 32, 3)
        if task.multilabel:
            assert s.labels.dtype == np.uint8 and s.labels.shape == (n, task.num_classes)
            assert set(np.unique(s.labels)) <= {0, 1}
            assert s.labels.sum(axis=1).min() >= 1  # every image has at least one label
            counts[split] = s.labels.sum(axis=0)
        else:
            assert s.labels.dtype == np.int64 and s.labels.shape == (n,)
            assert s.labels.min() >= 0 and s.labels.max() < task.num_classes
            counts[split] = np.bincount(s.labels, minlength=task.num_classes)
        img = s.image(0)
        assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
        assert np.array_equal(np.asarray(img), s.images[0])
    # enough train images per class for 20-shot sampling, every class in test
    assert counts["train"].min() >= SHOTS, counts["train"]
    assert counts["test"].min() >= 10, counts["test"]
    if task.metric == "accuracy" and not task.multilabel:  # balanced tasks are exactly balanced
        assert len(set(counts["train"])) == 1 and len(set(counts["test"])) == 1
    if task.metric == "mean_per_class_accuracy":  # the imbalanced one is imbalanced
        assert counts["train"].max() >= 2 * counts["train"].min()
        assert counts["test"].max() >= 2 * counts["test"].min()


@pytest.mark.parametrize("name", SUITE)
def test_ids_are_stable_unique_and_disjoint(name):
    ids = {split: list(_load(name, split).ids) for split in SPLITS}
    for split, xs in ids.items():
        assert len(set(xs)) == len(xs)
        assert all(re.fullmatch(rf"{split}/\d{{6}}", x) for x in xs)
    assert not set(ids["train"]) & set(ids["test"])
    assert ids["train"][:3] == ["train/000000", "train/000001", "train/000002"]


@pytest.mark.parametrize("name", SUITE)
def test_no_identical_images_within_or_across_splits(name):
    seen = set()
    total = 0
    for split in SPLITS:
        images = _load(name, split).images
        assert images.reshape(len(images), -1).std(axis=1).min() > 5  # nothing blank
        seen |= {hashlib.sha1(im.tobytes()).hexdigest() for im in images}
        total += len(images)
    assert len(seen) == total


def test_loader_ignores_data_dir_and_rejects_val(tmp_path):
    task = _task(SUITE[0])
    a = task.load("train", data_dir=str(tmp_path / "nowhere"))
    b = task.loader("train", None)
    assert a.ids == b.ids and np.array_equal(a.images, b.images)
    with pytest.raises(MvlptError):
        task.load("val")


def test_cached_arrays_cannot_be_modified():
    s = _load(SUITE[0], "train")
    with pytest.raises(ValueError):
        s.images[0, 0, 0, 0] = 0
    with pytest.raises(ValueError):
        s.labels[0] = 0
    s.ids.append("extra")  # the ids list handed out is a copy
    assert len(_load(SUITE[0], "train").ids) == len(s.labels)


# ---------------------------------------------------------------------------------------------
# determinism and speed

_DIGEST_CODE = """
import hashlib
from mvlpt.tasks import synthetic
h = hashlib.sha256()
for name in synthetic.SUITE:
    for split in ("train", "test"):
        ids, labels, images = synthetic.generate(name, split)
        h.update(("|".join(ids) + name + split).encode())
        h.update(labels.tobytes())
        h.update(images.tobytes())
print(h.hexdigest())
"""


@pytest.mark.parametrize("name", SUITE)
def test_generation_is_deterministic_in_process(name):
    for split in SPLITS:
        cached = _load(name, split)
        labels, images = synthetic._GENERATORS[name](split)  # bypasses the cache: a second generation
        assert np.array_equal(labels, cached.labels)
        assert np.array_equal(images, cached.images)


def test_generation_is_deterministic_across_processes(capsys):
    ns: dict = {}
    exec(compile(_DIGEST_CODE, "<digest>", "exec"), ns)
    here = capsys.readouterr().out.strip()
    out = subprocess.run([sys.executable, "-c", _DIGEST_CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here and len(here) == 64


def test_train_and_test_differ():
    for name in SUITE:
        tr, te = _load(name, "train"), _load(name, "test")
        n = min(len(tr), len(te))
        assert not np.array_equal(tr.images[:n], te.images[:n])


def test_generating_the_whole_suite_is_fast():
    start = time.perf_counter()
    for name in SUITE:
        for split in SPLITS:
            synthetic._GENERATORS[name](split)
    elapsed = time.perf_counter() - start
    # designed for < 1 s on one core; the bound leaves room for a busy shared machine
    assert elapsed < 5.0, f"generating the suite took {elapsed:.1f} s"


# ---------------------------------------------------------------------------------------------
# the labels are a function of the pixels (guards against a generator emitting random labels)


def _features(images: np.ndarray) -> np.ndarray:
    """Raw pixels downsampled to 8x8 plus the pooled log-amplitude spectrum of the grey image (shift-invariant)."""
    n = len(images)
    x = images.astype(np.float32) / 255.0
    pix = x.reshape(n, 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(n, -1)
    grey = x.mean(axis=-1)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    spec = np.log1p(np.abs(np.fft.fft2(grey))).reshape(n, 16, 2, 16, 2).mean(axis=(2, 4)).reshape(n, -1)
    return np.hstack([pix, spec])


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of binary ``labels`` (N,) under ``scores`` (..., N), no ties assumed."""
    order = np.argsort(-scores, axis=-1)
    hits = labels[order].astype(np.float64)
    precision = np.cumsum(hits, axis=-1) / np.arange(1, labels.shape[0] + 1)
    return (precision * hits).sum(axis=-1) / hits.sum(axis=-1)


def _probe(name: str, shuffle_train_labels: bool = False) -> tuple[float, float]:
    """(score, chance) of a linear probe trained on train, scored on test with the task's kind of metric."""
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train, test = _load(name, "train"), _load(name, "test")
    scaler = StandardScaler().fit(_features(train.images))
    xtr, xte = scaler.transform(_features(train.images)), scaler.transform(_features(test.images))
    ytr, yte = np.array(train.labels), test.labels
    if shuffle_train_labels:
        ytr = ytr[np.random.default_rng(0).permutation(len(ytr))]
    with threadpool_limits(1):  # BLAS threads fight over a busy shared machine
        if ytr.ndim == 2:  # multi-label: mean average precision over classes
            scores = Ridge(alpha=1000.0).fit(xtr, ytr.astype(np.float64)).predict(xte)
            score = np.mean([_average_precision(yte[:, k], scores[:, k]) for k in range(yte.shape[1])])
            # chance: the expected mAP of random scores (above the positive rate on a small test set)
            noise = np.random.default_rng(0).random((200, len(yte)))
            chance = np.mean([_average_precision(yte[:, k], noise).mean() for k in range(yte.shape[1])])
            return float(score), float(chance)
        pred = RidgeClassifier(alpha=1000.0).fit(xtr, ytr).predict(xte)
    score = np.mean([np.mean(pred[yte == c] == c) for c in np.unique(yte)])  # mean per-class accuracy
    return float(score), 1.0 / _task(name).num_classes


def test_average_precision_helper():
    y = np.array([1, 0, 1, 0, 0, 1], np.uint8)
    s = np.array([0.9, 0.8, 0.7, 0.1, 0.3, 0.2])  # ranks of the positives: 1, 3, 5
    assert _average_precision(y, s) == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    assert _average_precision(y, np.stack([s, -s])).shape == (2,)


@pytest.fixture(scope="module")
def probe_scores():
    return {name: _probe(name) for name in SUITE}


@pytest.mark.parametrize("name", SUITE)
def test_labels_are_predictable_from_pixels(name, probe_scores):
    score, chance = probe_scores[name]
    above = (score - chance) / (1 - chance)  # 0 = chance, 1 = perfect
    assert above > 0.2, f"{name}: linear probe {score:.3f} vs chance {chance:.3f}"


def test_tasks_are_not_trivial(probe_scores):
    trivial = [n for n, (score, _) in probe_scores.items() if score >= 0.99]
    assert len(trivial) <= len(SUITE) // 4, trivial


@pytest.mark.parametrize("name", ["shapes", "texture-colours", "glyph-digits", "orientation"])
def test_probe_is_at_chance_with_shuffled_labels(name):
    # the check above can fail: with labels unrelated to the pixels the same probe stays near chance
    score, chance = _probe(name, shuffle_train_labels=True)
    assert (score - chance) / (1 - chance) < 0.15, f"{name}: {score:.3f} vs chance {chance:.3f}"
