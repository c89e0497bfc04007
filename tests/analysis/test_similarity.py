"""Task similarity measures (mvlpt.analysis.similarity), their caching, and the embed/similarity verbs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mvlpt.analysis import similarity
from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary
from mvlpt.tasks import ArraySplit, Task


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _emb(task, kind, x, names=None):
    return similarity.Embeddings(task, kind, x, tuple(names or [f"{task}-{i}" for i in range(len(x))]), {"model": "m"})


def _random_tasks(rng, n_tasks=5, n=40, d=16):
    """Image embeddings of tasks whose means point in different directions."""
    centres = _unit(rng.normal(size=(n_tasks, d))) * 2
    return [_emb(f"t{k}", "images", _unit(centres[k] + rng.normal(size=(n, d)) * 0.5)) for k in range(n_tasks)]


# ---------------------------------------------------------------------------------------------- measures
def test_frechet_of_a_sample_with_itself_is_zero_also_with_few_samples():
    rng = np.random.default_rng(0)
    for n, d in [(5, 64), (30, 16), (400, 8)]:  # n < d: singular sample covariance
        x = _unit(rng.normal(size=(n, d)))
        for shrink in vocabulary.SHRINKAGES:
            dist = similarity.frechet_distance_samples(x, x, shrinkage=shrink)
            assert 0.0 <= dist < 1e-8, (n, d, shrink, dist)
        y = _unit(rng.normal(size=(n, d)) + 1.0)
        assert similarity.frechet_distance_samples(x, y) > 0.1
        assert similarity.frechet_distance_samples(x, y) == pytest.approx(similarity.frechet_distance_samples(y, x), rel=1e-6)


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    # d^2 = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2 for diagonal covariances a, b
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    f1 = similarity.GaussianFit(mu1, np.diag(a), np.diag(np.sqrt(a)), 10)
    f2 = similarity.GaussianFit(mu2, np.diag(b), np.diag(np.sqrt(b)), 10)
    expected = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert similarity.frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-10)
    # and from samples with the plain sample covariance (large n): close to the population value
    rng = np.random.default_rng(1)
    x = mu1 + rng.normal(size=(20000, 3)) * np.sqrt(a)
    y = mu2 + rng.normal(size=(20000, 3)) * np.sqrt(b)
    assert similarity.frechet_distance_samples(x, y, shrinkage="none") == pytest.approx(expected, rel=0.05)


def test_identical_class_names_give_label_similarity_one():
    rng = np.random.default_rng(0)
    a = _unit(rng.normal(size=(6, 32)))
    b = a[[3, 1, 5, 0, 2, 4]]  # same names, other order
    assert similarity.label_match(a, b) == pytest.approx(1.0, abs=1e-6)
    c = _unit(rng.normal(size=(4, 32)))
    assert similarity.label_match(a, c) < 0.9
    # one direction is a subset: A's classes all found in the union, not vice versa
    union = np.vstack([a, c])
    assert similarity.label_match_directed(a, union) == pytest.approx(1.0)
    assert similarity.label_match_directed(union, a) < 1.0
    assert similarity.label_match(a, union) == pytest.approx(0.5 * (1 + similarity.label_match_directed(union, a)))


def test_task_with_itself_is_maximally_similar():
    rng = np.random.default_rng(2)
    imgs = _random_tasks(rng)
    labs = [_emb(f"t{k}", "labels", _unit(rng.normal(size=(5 + k, 16)))) for k in range(5)]
    for measure, embs in [("visual_cosine", imgs), ("visual_frechet", imgs), ("label_match", labs), ("label_cosine", labs)]:
        m = similarity.similarity_matrix(embs, measure)
        a = m.to_numpy()
        assert a.shape == (5, 5) and list(m.index) == list(m.columns) == [e.task for e in embs]
        assert np.allclose(a, a.T)
        if vocabulary.MEASURES[measure].distance:
            assert np.allclose(np.diag(a), 0)
            assert (a[~np.eye(5, dtype=bool)] > 1e-3).all()
            assert (a.argmin(axis=1) == np.arange(5)).all()
        else:
            assert np.allclose(np.diag(a), 1, atol=1e-6)
            assert (a.argmax(axis=1) == np.arange(5)).all()
            assert (a[~np.eye(5, dtype=bool)] < 1 - 1e-3).all()


def test_matrix_long_round_trip_and_errors():
    rng = np.random.default_rng(3)
    imgs = _random_tasks(rng, n_tasks=3)
    m = similarity.similarity_matrix(imgs, "visual_cosine")
    long = similarity.matrix_to_long(m, "visual_cosine")
    assert list(long.columns) == ["task_a", "task_b", "measure", "value"] and len(long) == 9
    pd.testing.assert_frame_equal(similarity.long_to_matrix(long), m, check_names=False)
    with pytest.raises(MvlptError, match="needs labels"):
        similarity.similarity_matrix(imgs, "label_match")
    with pytest.raises(MvlptError, match="unknown similarity measure"):
        similarity.similarity_matrix(imgs, "nope")
    other = _emb("x", "images", imgs[0].features)
    other.meta["model"] = "other"
    with pytest.raises(MvlptError, match="different models"):
        similarity.similarity_matrix([imgs[0], other], "visual_cosine")


def test_similarity_matrix_dispatches_through_the_study_registry(monkeypatch):
    """The matrix of every registered measure is its registered function's N x N array; a measure added to
    mvlpt.study.vocabulary.MEASURES is computed (and offered by `mvlpt similarity`) without touching similarity.py."""
    rng = np.random.default_rng(4)
    imgs = _random_tasks(rng, n_tasks=3)
    labs = [_emb(f"t{k}", "labels", _unit(rng.normal(size=(4 + k, 16)))) for k in range(3)]
    for name, meas in vocabulary.MEASURES.items():
        embs = imgs if meas.kind == "images" else labs
        direct = meas.compute(embs)
        assert isinstance(direct, np.ndarray) and direct.shape == (3, 3)
        assert np.array_equal(similarity.similarity_matrix(embs, name).to_numpy(), direct)
    ridge = similarity.similarity_matrix(imgs, "visual_frechet", shrinkage="ridge", ridge=0.5).to_numpy()
    assert np.array_equal(ridge, similarity.frechet_matrix(imgs, shrinkage="ridge", ridge=0.5))
    assert not np.allclose(ridge, similarity.frechet_matrix(imgs))  # the options reach the function
    extra = vocabulary.Measure("label_cosine_copy", "labels", "mvlpt.analysis.similarity:mean_cosine_matrix", False, "a copy")
    monkeypatch.setitem(vocabulary.MEASURES, extra.name, extra)
    assert np.array_equal(
        similarity.similarity_matrix(labs, extra.name).to_numpy(), similarity.similarity_matrix(labs, "label_cosine").to_numpy()
    )
    from mvlpt.cli import build_parser

    args = build_parser().parse_args(["similarity", "--measure", extra.name, "--embeddings", "x.npz", "--out", "y.csv"])
    assert args.measure == extra.name


# ---------------------------------------------------------------------------------------------- encoding + cache
class FakeCLIP:
    """Duck-typed FrozenCLIP: image = its mean colour, text = a hash of the string; counts calls."""

    key = "fake-clip"
    image_size = 4
    device = "cpu"

    def __init__(self):
        self.image_calls = 0
        self.text_calls = 0

    def to_uint8(self, image):
        return torch.from_numpy(np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.uint8).copy()).permute(2, 0, 1)

    def normalize(self, batch):
        return batch.float() / 255

    def transform(self, image):
        return self.normalize(self.to_uint8(image))

    def encode_images(self, batch):
        self.image_calls += 1
        feats = torch.cat([batch.mean(dim=(2, 3)), torch.ones(len(batch), 1) * 0.1], dim=1)
        return torch.nn.functional.normalize(feats, dim=-1)

    def encode_texts(self, texts):
        self.text_calls += 1
        rng = [np.random.default_rng(abs(hash(t)) % (1 << 32)).normal(size=8) for t in texts]
        return torch.nn.functional.normalize(torch.tensor(np.array(rng), dtype=torch.float32), dim=-1)


def _colour_task(name, colour, classnames=("p", "q", "r"), n_per_class=10):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    n = n_per_class * len(classnames)
    imgs = np.clip(np.array(colour)[None, None, None] + rng.normal(0, 20, size=(n, 8, 8, 3)), 0, 255).astype(np.uint8)
    labels = np.repeat(np.arange(len(classnames)), n_per_class)
    split = ArraySplit([f"{name}-{i}" for i in range(n)], labels, imgs)
    return Task(name, tuple(classnames), ("a photo of a {}.", "a picture of a {}."), "accuracy", lambda s, d: split)


def test_image_selection_is_fewshot_train_plus_fixed_sample():
    from mvlpt.tasks.fewshot import make_split

    task = _colour_task("red", (200, 30, 30))
    sel = similarity.ImageSelection(fewshot_seeds=(1, 2), shots=5, sample_size=7, sample_seed=3)
    idx = similarity.select_images(task, sel)
    train = task.load("train")
    ids = {train.ids[i] for i in idx}
    for seed in (1, 2):
        assert set(make_split(task, seed, 5)["train"]) <= ids
    assert idx == sorted(idx) and idx == similarity.select_images(task, sel)  # deterministic
    assert len(similarity.select_images(task, similarity.ImageSelection(fewshot_seeds=(), sample_size=7))) == 7
    assert len(similarity.select_images(task, similarity.ImageSelection(fewshot_seeds=(), sample_size=10_000))) == len(train)


def test_cache_makes_n_tasks_cost_n_encodings(tmp_path):
    clip = FakeCLIP()
    tasks = [_colour_task("red", (200, 30, 30)), _colour_task("green", (30, 200, 30)), _colour_task("reddish", (190, 40, 40))]
    sel = similarity.ImageSelection(fewshot_seeds=(1,), shots=2, sample_size=5)

    def all_pairs():
        embs = [similarity.cached_embeddings(clip, t, "images", cache_dir=tmp_path, selection=sel, batch_size=64) for t in tasks]
        return similarity.similarity_matrix(embs, "visual_cosine")

    m = all_pairs()
    assert clip.image_calls == 3  # one batch per task
    m2 = all_pairs()
    assert clip.image_calls == 3  # from the cache
    pd.testing.assert_frame_equal(m, m2)
    assert m.loc["red", "reddish"] > m.loc["red", "green"]
    # other settings -> another cache entry
    similarity.cached_embeddings(clip, tasks[0], "images", cache_dir=tmp_path, selection=similarity.ImageSelection(sample_size=6))
    assert clip.image_calls == 4
    labs = similarity.cached_embeddings(clip, tasks[0], "labels", cache_dir=tmp_path, templates="task")
    assert labs.features.shape == (3, 8) and np.allclose(np.linalg.norm(labs.features, axis=1), 1, atol=1e-5)
    assert labs.meta["templates"] == ["a photo of a {}.", "a picture of a {}."]
    path = tmp_path / "e.npz"
    similarity.save_embeddings(labs, path)
    back = similarity.load_embeddings(path)
    assert back.names == labs.names and np.array_equal(back.features, labs.features) and back.meta["model"] == "fake-clip"


# ---------------------------------------------------------------------------------------------- real tiny CLIP
def test_embed_and_similarity_verbs_with_the_tiny_clip(tmp_path, run_mvlpt):
    """End to end on the synthetic suite with the study's model: glyph-digits and sklearn-digits share their
    class names ("zero".."nine"), so their label similarity is 1; every task is most similar to itself."""
    tasks = ["glyph-digits", "sklearn-digits", "orientation"]
    image_tasks = ["glyph-digits", "orientation"]  # images cost more: two tasks are enough
    for t in tasks:
        assert (
            run_mvlpt("embed", "--task", t, "--kind", "labels", "--out", tmp_path / f"{t}.labels.npz", "--device", "cpu").rc == 0
        )
    for t in image_tasks:
        assert (
            run_mvlpt(
                "embed",
                "--task",
                t,
                "--kind",
                "images",
                "--out",
                tmp_path / f"{t}.images.npz",
                "--device",
                "cpu",
                "--fewshot-seeds",
                "1",
                "--shots",
                "2",
                "--sample-size",
                "8",
            ).rc
            == 0
        )
    imgs = similarity.load_embeddings(tmp_path / "orientation.images.npz")
    assert imgs.kind == "images" and imgs.features.shape[0] >= 8 and imgs.meta["model"].startswith("mvlpt-tiny")
    for measure in vocabulary.MEASURES:
        kind = vocabulary.MEASURES[measure].kind
        names = tasks if kind == "labels" else image_tasks
        out = tmp_path / "sim" / f"{measure}.csv"
        assert (
            run_mvlpt(
                "similarity", "--measure", measure, "--embeddings", *[tmp_path / f"{t}.{kind}.npz" for t in names], "--out", out
            ).rc
            == 0
        )
        m = similarity.long_to_matrix(pd.read_parquet(out.with_suffix(".parquet")), measure, names)
        a = m.to_numpy()
        if vocabulary.MEASURES[measure].distance:  # maximal similarity = minimal distance (ties allowed: same class names)
            assert np.allclose(np.diag(a), 0, atol=1e-6) and np.allclose(a.min(1), np.diag(a))
        else:
            assert np.allclose(np.diag(a), 1, atol=1e-5) and np.allclose(a.max(1), np.diag(a))
    lm = similarity.long_to_matrix(pd.read_csv(tmp_path / "sim" / "label_match.csv"))
    assert lm.loc["glyph-digits", "sklearn-digits"] == pytest.approx(1.0, abs=1e-5)
    assert lm.loc["glyph-digits", "orientation"] < 0.999
    rc, errors, _ = run_mvlpt(
        "similarity",
        "--measure",
        "visual_cosine",
        "--embeddings",
        tmp_path / "orientation.labels.npz",
        "--out",
        tmp_path / "x.csv",
    )
    assert rc == 2 and len(errors) == 1 and "needs images" in errors[0] and not (tmp_path / "x.csv").exists()
