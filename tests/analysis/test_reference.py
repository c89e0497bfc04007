"""Reference rows (mvlpt.analysis.reference): zero-shot CLIP and the few-shot linear probe, their records, the
tables `mvlpt collect` makes of them and the strip beside the gain heatmap."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fakes import make_record, write_record  # noqa: E402
from mvlpt.analysis import reference, tables  # noqa: E402
from mvlpt.errors import MvlptError  # noqa: E402
from mvlpt.tasks import get_task  # noqa: E402
from mvlpt.tasks.fewshot import make_split, write_split  # noqa: E402
from mvlpt.training import metrics  # noqa: E402
from mvlpt.training.metrics import metric_replicates  # noqa: E402


@pytest.fixture(scope="module")
def clip():
    from mvlpt.models.clip import load_clip

    return load_clip("mvlpt-tiny", "synthetic", device="cpu")


def _hand_image_features(clip, split, indices=None):
    """open_clip's image tower on the ELEVATER-preprocessed images, L2-normalised, in numpy."""
    idx = range(len(split)) if indices is None else indices
    x = torch.stack([clip.transform(split.image(i)) for i in idx])
    with torch.no_grad():
        f = clip.model.encode_image(x).numpy().astype(np.float64)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# Zero-shot
# --------------------------------------------------------------------------------------------------
def test_zeroshot_equals_a_hand_computation_with_open_clip(clip):
    import open_clip

    task = get_task("shapes")
    rec = reference.zeroshot(clip, task)
    # by hand: every template of every class through open_clip's text tower, normalised, averaged, renormalised
    tok = open_clip.get_tokenizer("mvlpt-tiny")
    with torch.no_grad():
        text = clip.model.encode_text(tok([t.format(c) for c in task.classnames for t in task.templates])).numpy()
    text = text.astype(np.float64) / np.linalg.norm(text, axis=1, keepdims=True)
    w = text.reshape(task.num_classes, len(task.templates), -1).mean(1)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    test = task.load("test")
    y = np.asarray(test.labels)
    logits = float(clip.model.logit_scale.exp()) * _hand_image_features(clip, test) @ w.T
    assert rec["test"] == pytest.approx(float((logits.argmax(1) == y).mean()), abs=1e-12)
    assert rec["kind"] == "zeroshot" and rec["seed"] is None and rec["n_templates"] == len(task.templates) == 4
    assert rec["n_test"] == len(y) and rec["metric"] == "accuracy" and rec["model"] == "mvlpt-tiny"
    # the record's bootstrap replicates are the metric's replicates of these very scores, paired by test set
    boot = rec["test_bootstrap"]
    assert boot["test_set"] == metrics.test_set_hash(y) and boot["n"] == 200
    np.testing.assert_allclose(boot["values"], metric_replicates("accuracy", logits, y), atol=1e-6)
    reps = reference.reference_replicates([rec])
    assert list(reps) == [("zeroshot", "shapes", None)]
    np.testing.assert_allclose(reps[("zeroshot", "shapes", None)], metric_replicates("accuracy", logits, y), atol=1e-6)
    np.testing.assert_allclose(
        reference.zeroshot_scores(clip, task, _hand_image_features(clip, test)), logits, rtol=1e-5, atol=1e-5
    )


# --------------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------------
def test_choose_C_takes_the_best_validation_metric_and_on_ties_the_smallest_C():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    y = np.repeat(np.arange(3), 6)
    x = centres[y] + 0.05 * rng.normal(size=(len(y), 8))
    vy = np.repeat(np.arange(3), 2)
    vx = centres[vy] + 0.05 * rng.normal(size=(len(vy), 8))
    c, val, sweep = reference.choose_C(x, y, vx, vy, "accuracy", 3, grid=(10.0, 0.1, 1.0))
    assert sweep == {0.1: 1.0, 1.0: 1.0, 10.0: 1.0}  # separable: every C is perfect
    assert (c, val) == (0.1, 1.0)  # the tie goes to the strongest regularisation
    # a class the probe never saw scores lowest for every image
    model = reference.fit_probe(x[y < 2], y[y < 2], 1.0)
    s = reference.probe_scores(model, vx, 3)
    assert s.shape == (6, 3) and (s[:, 2] == reference.LOW_SCORE).all()
    with pytest.raises(MvlptError, match="single class"):
        reference.fit_probe(x[y == 0], y[y == 0], 1.0)


def test_linear_probe_chooses_C_as_a_hand_sweep_does(clip, tmp_path):
    from sklearn.linear_model import LogisticRegression

    task = get_task("shapes")
    split = make_split(task, 1, 10)
    grid = (0.01, 0.1, 1.0, 10.0, 100.0)
    rec = reference.linear_probe(clip, task, split, grid=grid, cache_dir=tmp_path, write_cache=True)
    train = task.load("train")
    pos = {sid: i for i, sid in enumerate(train.ids)}
    tr, va = [pos[s] for s in split["train"]], [pos[s] for s in split["val"]]
    labels = np.asarray(train.labels)
    tx, vx = _hand_image_features(clip, train, tr), _hand_image_features(clip, train, va)
    ty, vy = labels[tr], labels[va]
    vals = {}
    for c in grid:
        m = LogisticRegression(C=c, max_iter=1000).fit(tx, ty)
        vals[c] = float((m.predict(vx) == vy).mean())
    best = min(c for c in grid if vals[c] == max(vals.values()))
    assert rec["C"] == best and rec["val"] == pytest.approx(vals[best])
    assert rec["val_by_C"] == {f"{c:g}": pytest.approx(v) for c, v in vals.items()}
    test = task.load("test")
    hand = LogisticRegression(C=best, max_iter=1000).fit(tx, ty)
    scores = hand.predict_log_proba(_hand_image_features(clip, test))
    assert rec["test"] == pytest.approx(float((scores.argmax(1) == np.asarray(test.labels)).mean()), abs=1e-9)
    assert (rec["n_train"], rec["n_val"], rec["n_test"]) == (len(tr), len(va), len(test))
    assert rec["seed"] == 1 and rec["shots"] == 10 and rec["fit_on"] == "train" and rec["head"] == "multinomial"
    from mvlpt.io import content_hash

    assert rec["split_hash"] == content_hash({"train": split["train"], "val": split["val"]})
    # the features went to the trainer's cache, under the trainer's names
    names = {p.name for p in tmp_path.rglob("*.safetensors")}
    assert names == {"shots10_seed1_train.safetensors", "shots10_seed1_val.safetensors", "test.safetensors"}
    # paired replicates: the same test set as every training result on it
    boot = rec["test_bootstrap"]
    np.testing.assert_allclose(boot["values"], metric_replicates("accuracy", scores, np.asarray(test.labels)), atol=1e-6)
    # ELEVATER's refit on train + val is an option
    refit = reference.linear_probe(clip, task, split, grid=grid, cache_dir=tmp_path, fit_on="train+val")
    assert refit["C"] == best and refit["fit_on"] == "train+val"


def test_linear_probe_of_a_multilabel_task_is_one_vs_rest(clip):
    task = get_task("texture-colours")
    assert task.multilabel and task.metric == "map_11point"
    rec = reference.linear_probe(clip, task, make_split(task, 1, 5), grid=(0.1, 1.0, 10.0))
    assert rec["head"] == "one_vs_rest" and 0 <= rec["test"] <= 1
    assert rec["test_bootstrap"]["test_set"] == metrics.test_set_hash(np.asarray(task.load("test").labels))


# --------------------------------------------------------------------------------------------------
# The verb
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_reference_verb_writes_records_and_refuses_in_one_sentence(tmp_path, run_mvlpt):
    task = get_task("orientation")
    split_file = tmp_path / "split.json"
    write_split(make_split(task, 2, 4), split_file)
    out = tmp_path / "reference" / "linear_probe" / "orientation" / "seed2.json"
    rc, errors, err = run_mvlpt(
        "reference",
        "--kind",
        "linear_probe",
        "--task",
        "orientation",
        "--split-file",
        split_file,
        "--seed",
        "2",
        "--c-grid",
        "0.1",
        "1",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert rc == 0 and not errors, err
    rec = reference.read_reference(out)
    assert rec["seed"] == 2 and rec["C"] in (0.1, 1.0) and rec["metric"] == "mean_per_class_accuracy"
    assert set(rec["val_by_C"]) == {"0.1", "1"}
    zs = tmp_path / "zs.json"
    assert run_mvlpt("reference", "--kind", "zeroshot", "--task", "orientation", "--device", "cpu", "--out", zs).rc == 0
    assert reference.read_reference(zs)["seed"] is None
    for args, needle in [
        (("--kind", "linear_probe", "--task", "orientation"), "a linear probe needs its few-shot split"),
        (("--kind", "linear_probe", "--task", "orientation", "--split-file", split_file, "--seed", "1"), "sampled with seed 2"),
        (("--kind", "zeroshot", "--task", "orientation", "--seed", "1"), "zero-shot uses no few-shot split"),
        (("--kind", "linear_probe", "--task", "orientation", "--split-file", split_file, "--c-grid", "-1"), "positive"),
        (("--kind", "zeroshot", "--task", "no-such-task"), "no-such-task"),
    ]:
        rc, errors, err = run_mvlpt("reference", *args, "--device", "cpu", "--out", tmp_path / "x.json")
        assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
        assert needle in errors[0] and errors[0].endswith("."), errors[0]
    assert not (tmp_path / "x.json").exists()


def test_a_damaged_reference_file_is_one_sentence(tmp_path):
    path = reference.reference_path(tmp_path, "zeroshot", "a")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_zs("a", 0.5) | {"test": 50.0}))
    with pytest.raises(MvlptError, match=r"not a fraction in \[0, 1\]; delete it and rerun its reference job\.$"):
        reference.read_reference(path)
    with pytest.raises(MvlptError, match="unknown reference kind"):
        reference.reference_path(tmp_path, "fewshot", "a")


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------
def _zs(task, test, **fields):
    return {
        "format": reference.REFERENCE_FORMAT,
        "kind": "zeroshot",
        "task": task,
        "seed": None,
        "metric": "accuracy",
        "test": test,
        "model": "fake",
        "pretrained": None,
        "n_templates": 4,
        "n_test": 20,
        **fields,
    }


def _lp(task, seed, test, **fields):
    return {
        "format": reference.REFERENCE_FORMAT,
        "kind": "linear_probe",
        "task": task,
        "seed": seed,
        "metric": "accuracy",
        "test": test,
        "val": 0.5,
        "C": 1.0,
        "fit_on": "train",
        "shots": 5,
        "model": "fake",
        "pretrained": None,
        "n_train": 8,
        "n_val": 2,
        "n_test": 20,
        **fields,
    }


def _study(root):
    """Baselines a: 0.40, 0.42 (mean 0.41); b: 0.70; one off-diagonal pair each way; coop only."""
    for seed, (a, b) in zip((1, 2), ((0.40, 0.70), (0.42, 0.70))):
        write_record(root, "coop", "a", "a", seed, a)
        write_record(root, "coop", "b", "b", seed, b)
        write_record(root, "coop", "b", "a", seed, a + 0.05)
        write_record(root, "coop", "a", "b", seed, b - 0.02)


def _write_reference(root, zs_b=0.6):
    reference.write_reference(_zs("a", 0.48), reference.reference_path(root, "zeroshot", "a"))
    reference.write_reference(_zs("b", zs_b), reference.reference_path(root, "zeroshot", "b"))
    for seed, v in ((1, 0.30), (2, 0.34)):
        reference.write_reference(_lp("a", seed, v), reference.reference_path(root, "linear_probe", "a", seed))


def test_collect_adds_reference_tables_and_columns_and_flags_a_baseline_below_zeroshot(tmp_path, run_mvlpt):
    root = tmp_path / "results"
    _study(root)
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "plain")
    assert rc == 0 and "no reference results" in err and "baseline_below_zeroshot is NA" in err, err
    plain = tables.read_table(root / "plain" / "pairs.parquet")
    assert plain["zeroshot"].isna().all() and plain["linear_probe"].isna().all()
    assert plain["baseline_below_zeroshot"].isna().all()
    assert tables.read_table(root / "plain" / "reference.parquet").empty
    assert tables.read_table(root / "plain" / "baselines.parquet")["zeroshot"].isna().all()

    _write_reference(root)
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables")
    assert rc == 0 and not errors, err
    assert (
        "1 of 2 prompt baselines end below zero-shot (worst: coop on a, -7.0 points; 0 with their whole interval below)" in err
    ), err
    pairs = tables.read_table(root / "tables" / "pairs.parquet").set_index(["source", "target"])
    # every column the pairs table has without the reference is unchanged
    cols = [c for c in plain.columns if c not in reference.PAIR_COLUMNS + ("source", "target")]
    pd.testing.assert_frame_equal(
        pairs[cols].reset_index(drop=True), plain.set_index(["source", "target"])[cols].reset_index(drop=True)
    )
    for source in ("a", "b"):  # on every row of a target
        assert pairs.loc[(source, "a"), "zeroshot"] == pytest.approx(0.48)
        assert pairs.loc[(source, "a"), "linear_probe"] == pytest.approx(0.32)
        assert bool(pairs.loc[(source, "a"), "baseline_below_zeroshot"]) is True  # 0.41 < 0.48
        assert pairs.loc[(source, "b"), "zeroshot"] == pytest.approx(0.6)
        assert np.isnan(pairs.loc[(source, "b"), "linear_probe"])
        assert bool(pairs.loc[(source, "b"), "baseline_below_zeroshot"]) is False  # 0.70 > 0.60
    base = tables.read_table(root / "tables" / "baselines.csv").set_index("target")
    assert (
        list(base.reset_index().columns)
        == [
            "target",
            "method",
            "shots",  # every table carries its study's shot count (docs/shots.md)
            *reference.BASELINE_COLUMNS[2:],
            *reference.INTERVAL_COLUMNS,
        ]
    )
    assert set(base["shots"]) == {5}
    assert base.loc["a", "baseline_mean"] == pytest.approx(0.41)
    assert base.loc["a", "baseline_minus_zeroshot"] == pytest.approx(-0.07)
    assert base.loc["a", "baseline_minus_linear_probe"] == pytest.approx(0.09)
    assert base.loc["a", "linear_probe_seeds"] == 2 and base.loc["b", "linear_probe_seeds"] == 0
    assert base["baseline_below_zeroshot"].tolist() == [True, False]
    ref = tables.read_table(root / "tables" / "reference.csv")
    assert sorted(zip(ref["method"], ref["target"], ref["seed"])) == [
        ("linear_probe", "a", 1),
        ("linear_probe", "a", 2),
        ("zeroshot", "a", -1),
        ("zeroshot", "b", -1),
    ]
    # nothing downstream takes a reference row for a method: runs, best source and matrices are as before
    for name in ("runs", "best_source", "source_gain", "matrices/coop_gain"):
        pd.testing.assert_frame_equal(
            tables.read_table(root / "tables" / f"{name}.csv"), tables.read_table(root / "plain" / f"{name}.csv")
        )
    assert not list((root / "tables" / "matrices").glob("zeroshot*")) and not list((root / "tables" / "matrices").glob("linear*"))
    # a selection of seeds selects the linear probes too
    assert run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "seed1", "--seeds", "1").rc == 0
    assert tables.read_table(root / "seed1" / "baselines.csv").set_index("target").loc["a", "linear_probe"] == pytest.approx(0.30)


def test_collect_refuses_a_reference_of_another_model(tmp_path, run_mvlpt):
    root = tmp_path / "results"
    _study(root)
    reference.write_reference(_zs("a", 0.48, model="ViT-B-16"), reference.reference_path(root, "zeroshot", "a"))
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables")
    assert rc == 2 and len(errors) == 1, err
    assert (
        "the zeroshot reference of a was made with another setting than its prompt runs (model 'ViT-B-16' vs 'fake')" in errors[0]
    )
    assert run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables", "--allow-mixed-settings").rc == 0


def test_flag_is_na_without_zeroshot_and_the_reference_table_has_its_columns_when_empty():
    pairs = tables.pair_table(tables.runs_table([make_record("coop", "a", "a", 1, 0.5), make_record("coop", "b", "a", 1, 0.6)]))
    empty = reference.reference_table([])
    assert list(empty.columns) == list(reference.REFERENCE_COLUMNS)
    out = reference.with_reference(pairs, empty)
    assert out["baseline_below_zeroshot"].isna().all() and str(out["baseline_below_zeroshot"].dtype) == "boolean"
    assert (
        reference.flagged_sentence(reference.baselines_table(pairs, empty))
        == "no zero-shot reference: baseline_below_zeroshot is NA"
    )
    out = reference.with_reference(pairs, reference.reference_table([_zs("a", 0.5)]))
    assert out["baseline_below_zeroshot"].tolist() == [False, False]  # equal is not below


# --------------------------------------------------------------------------------------------------
# The strip beside the gain heatmap
# --------------------------------------------------------------------------------------------------
def test_gain_heatmap_with_reference_has_a_strip_aligned_with_its_columns_marking_baselines_below_zeroshot():
    from mvlpt.analysis import plots

    names = ["a", "b", "c"]
    gain = pd.DataFrame(np.arange(9.0).reshape(3, 3) / 100, index=names, columns=names)
    ref = pd.DataFrame(
        {"baseline": [0.40, 0.70, 0.50], "zeroshot": [0.48, 0.60, np.nan], "linear_probe": [0.30, np.nan, 0.55]}, index=names
    )
    plain = plots.gain_heatmap(gain, "coop")
    assert not any(ax.get_gid() == "reference" for ax in plain.axes)
    fig = plots.gain_heatmap(gain, "coop", reference=ref)
    strip = next(ax for ax in fig.axes if ax.get_gid() == "reference")
    heat = next(ax for ax in fig.axes if ax.get_xlabel() == "target")
    points = {c.get_gid(): c.get_offsets() for c in strip.collections if c.get_gid()}
    np.testing.assert_allclose(points["below"], [[0.5, 40.0]])  # a: 40 < 48, red
    np.testing.assert_allclose(points["baseline"], [[1.5, 70.0], [2.5, 50.0]])
    np.testing.assert_allclose(np.ma.filled(points["zeroshot"][:2], np.nan), [[0.5, 48.0], [1.5, 60.0]])
    assert "baseline below zero-shot on 1 of 2 targets" in strip.get_title()
    # the strip's x range is the heatmap's columns, at the same place on the page
    assert strip.get_xlim() == (0.0, 3.0) and heat.get_xlim() == (0.0, 3.0)
    hp, sp = heat.get_position(), strip.get_position()
    assert sp.x0 == pytest.approx(hp.x0) and sp.width == pytest.approx(hp.width) and sp.y0 > hp.y1
    plt.close("all")


def test_plot_gain_heatmap_verb_takes_the_baselines_table(tmp_path, run_mvlpt):
    root = tmp_path / "results"
    _study(root)
    _write_reference(root)
    assert run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables").rc == 0
    rc, errors, err = run_mvlpt(
        "plot",
        "gain-heatmap",
        "--pairs",
        root / "tables" / "pairs.csv",
        "--method",
        "coop",
        "--reference",
        root / "tables" / "baselines.parquet",
        "--out",
        tmp_path / "fig" / "gain",
    )
    assert rc == 0 and not errors, err
    assert (tmp_path / "fig" / "gain.png").exists() and (tmp_path / "fig" / "gain.pdf").exists()


@pytest.mark.slow
def test_every_figure_gets_the_strip_when_the_results_hold_reference_rows(tmp_path, monkeypatch):
    from mvlpt.analysis import figures, plots

    root = tmp_path / "results"
    _study(root)
    seen = []
    draw = plots.gain_heatmap

    def spy(gain, method, **kw):
        seen.append(kw.get("reference"))
        return draw(gain, method, **kw)

    monkeypatch.setattr(plots, "gain_heatmap", spy)
    figures.make_all_figures(root, tmp_path / "figs")
    assert seen == [None, None]  # gain and interaction heatmaps; no reference records: as before
    _write_reference(root)
    figures.make_all_figures(root, tmp_path / "figs")
    assert len(seen) == 4 and seen[2] is not None and seen[3] is not None  # both heatmaps get the strip
    ref = seen[-1]
    assert ref.loc["a", "zeroshot"] == pytest.approx(0.48) and ref.loc["a", "baseline"] == pytest.approx(0.41)
    assert ref.loc["a", "linear_probe"] == pytest.approx(0.32)
    plt.close("all")


def test_zeroshot_classifier_in_text_batches_is_the_label_embedding_of_the_task_templates(clip, monkeypatch):
    from mvlpt.analysis.similarity import encode_task_labels

    task = get_task("glyph-digits")  # 10 classes x 4 templates: 40 texts, in batches of 7
    monkeypatch.setattr(reference, "TEXT_BATCH", 7)
    np.testing.assert_allclose(
        reference.zeroshot_classifier(clip, task), encode_task_labels(clip, task, "task").features, atol=1e-5
    )


def test_strip_and_q_frames_together_on_one_heatmap():
    from mvlpt.analysis import plots

    names = ["a", "b", "c"]
    gain = pd.DataFrame(np.arange(9.0).reshape(3, 3) / 100, index=names, columns=names)
    q = pd.DataFrame(0.5, index=names, columns=names)
    q.loc["a", "b"] = 0.01
    ref = pd.DataFrame(
        {"baseline": [0.40, 0.70, 0.50], "zeroshot": [0.48, 0.60, 0.45], "linear_probe": [0.30, 0.5, 0.55]}, index=names
    )
    fig = plots.gain_heatmap(gain, "coop", q=q, reference=ref)
    strip = next(ax for ax in fig.axes if ax.get_gid() == "reference")
    heat = next(ax for ax in fig.axes if ax.get_xlabel() == "target")
    assert len([p for p in heat.patches if isinstance(p, plt.Rectangle) and not p.get_fill()]) == 1
    assert "framed: q < 0.05 (1 of 6 cells)" in strip.get_title()
    assert "baseline below zero-shot on 1 of 3 targets" in strip.get_title()
    plt.close("all")


def test_baselines_table_gives_baseline_minus_zeroshot_an_interval_from_seeds_and_paired_test_replicates():
    from scipy import stats

    runs = tables.runs_table(
        [make_record("coop", "a", "a", k, v) for k, v in ((1, 0.40), (2, 0.44), (3, 0.42))]
        + [make_record("coop", "b", "b", k, 0.7) for k in (1, 2, 3)]
    )
    pairs = tables.pair_table(runs)
    ref_rows = reference.reference_table([_zs("a", 0.48), _zs("b", 0.69)])
    rng = np.random.default_rng(0)
    z = 0.48 + rng.normal(0, 0.03, 200)
    reps = {("coop", "a", "a", k): z - 0.06 + rng.normal(0, 0.01, 200) for k in (1, 2, 3)}
    table = reference.baselines_table(
        pairs, ref_rows, runs=runs, replicates=reps, reference_reps={("zeroshot", "a", None): z}, level=0.95
    ).set_index("target")
    # by hand: the seeds' variance of the mean plus the variance of the paired replicate differences, Welch's t
    seeds = np.array([0.40, 0.44, 0.42]) - 0.48
    diff = np.mean([reps[("coop", "a", "a", k)] for k in (1, 2, 3)], axis=0) - z
    var_s, var_t = seeds.var(ddof=1) / 3, diff.var(ddof=1)
    se = np.sqrt(var_s + var_t)
    dof = (var_s + var_t) ** 2 / (var_s**2 / 2 + var_t**2 / 199)
    half = stats.t.ppf(0.975, dof) * se
    row = table.loc["a"]
    assert row["baseline_minus_zeroshot"] == pytest.approx(seeds.mean())
    assert row["baseline_minus_zeroshot_se"] == pytest.approx(se)
    assert (row["baseline_minus_zeroshot_ci_low"], row["baseline_minus_zeroshot_ci_high"]) == (
        pytest.approx(seeds.mean() - half),
        pytest.approx(seeds.mean() + half),
    )
    assert row["baseline_minus_zeroshot_interval"] == "seeds+test"
    assert bool(row["baseline_below_zeroshot_significant"]) is True
    # b: 0.70 vs 0.69, no test replicates: the seeds alone (all equal: no spread, so no interval), not significant
    assert bool(table.loc["b", "baseline_below_zeroshot"]) is False
    assert pd.isna(table.loc["b", "baseline_below_zeroshot_significant"])
    # without runs: the columns are there, empty
    plain = reference.baselines_table(pairs, ref_rows)
    assert list(plain.columns) == list(reference.BASELINE_COLUMNS + reference.INTERVAL_COLUMNS)
    assert plain["baseline_minus_zeroshot_se"].isna().all() and plain["baseline_below_zeroshot_significant"].isna().all()
