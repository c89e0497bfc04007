"""Result files (mvlpt.study.results), tables and gains (mvlpt.analysis.tables), correlations (mvlpt.analysis.stats), the analysis CLI
verbs and the analysis rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakes import make_record, write_fake_study, write_record
from mvlpt.analysis import stats, tables
from mvlpt.errors import MvlptError
from mvlpt.study import layout, results, vocabulary

REPO = Path(__file__).resolve().parents[2]


def _write(root: Path, method, source, target, seed, value, **fields):
    return write_record(root, method, source, target, seed, test=value, **fields)


@pytest.fixture
def small_study(tmp_path):
    """2 tasks x 1 method x 2 seeds with exact values."""
    root = tmp_path / "results"
    vals = {  # (source, target, seed) -> value
        ("a", "a", 1): 0.50,
        ("a", "a", 2): 0.60,
        ("b", "a", 1): 0.70,
        ("b", "a", 2): 0.60,
        ("b", "b", 1): 0.80,
        ("b", "b", 2): 0.80,
        ("a", "b", 1): 0.40,
        ("a", "b", 2): 0.60,
    }
    for (s, t, k), v in vals.items():
        _write(root, "coop", s, t, k, v)
    return root


def test_runs_pairs_matrix_best_source(small_study):
    runs = tables.load_results(small_study)
    assert list(runs.columns[:6]) == ["method", "source", "target", "seed", "metric", "value"]
    assert len(runs) == 8
    pairs = tables.pair_table(runs).set_index(["source", "target"])
    # paired per seed: (0.7-0.5 + 0.6-0.6)/2 = 0.1
    assert pairs.loc[("b", "a"), "gain"] == pytest.approx(0.10)
    assert pairs.loc[("b", "a"), "gain_std"] == pytest.approx(np.std([0.2, 0.0], ddof=1))
    assert pairs.loc[("b", "a"), "gain_rel"] == pytest.approx(0.10 / 0.55)
    assert pairs.loc[("a", "b"), "gain"] == pytest.approx(-0.30)
    assert pairs.loc[("a", "a"), "gain"] == pytest.approx(0.0)
    assert pairs.loc[("a", "b"), "std"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    m = tables.matrix(tables.pair_table(runs), "coop", "gain", ["a", "b"])
    # rows = source, columns = target
    assert m.loc["b", "a"] == pytest.approx(0.10) and m.loc["a", "b"] == pytest.approx(-0.30)
    assert m.index.name == "source" and m.columns.name == "target"
    best = tables.best_source(tables.pair_table(runs)).set_index("target")
    assert best.loc["a", "best_source"] == "b" and best.loc["b", "best_source"] == "a"
    assert best.loc["a", "n_positive"] == 1 and best.loc["b", "n_positive"] == 0
    sg = tables.source_gain(tables.pair_table(runs)).set_index("source")
    assert sg.loc["b", "mean_gain"] == pytest.approx(0.10) and sg.loc["a", "n_positive"] == 0


def test_missing_baseline_gives_nan_gain(tmp_path):
    root = tmp_path / "r"
    _write(root, "coop", "x", "y", 1, 0.5)
    pairs = tables.pair_table(tables.load_results(root))
    assert np.isnan(pairs["gain"].iloc[0])


def test_misplaced_or_foreign_result_file_is_an_error(tmp_path):
    p = _write(tmp_path, "coop", "a", "b", 1, 0.5)
    rec = json.loads(p.read_text())
    rec["target"] = "c"
    p.write_text(json.dumps(rec))
    with pytest.raises(MvlptError, match="path says"):
        tables.load_results(tmp_path)
    p.write_text(json.dumps({"format": 1, "method": "coop"}))
    with pytest.raises(MvlptError, match=r"lacks the field\(s\) source, target"):
        tables.load_results(tmp_path)


# One sentence for each kind of bad record, read by `mvlpt collect` (issue 14, item 4)
@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("test", float("nan"), r"has test = nan, which is not a finite fraction in \[0, 1\] \(not a percentage\)"),
        ("test", 87.5, r"has test = 87\.5, which is not a finite fraction in \[0, 1\] \(not a percentage\)"),
        ("val", -0.1, r"has val = -0\.1, which is not a finite fraction in \[0, 1\] \(not a percentage\)"),
        ("seed", "1", r"has seed = '1', which is not an integer from 0 to 2147483647"),
        ("shots", 0, r"has shots = 0, which is not an integer >= 1"),
    ],
    ids=["NaN metric", "percentage", "negative metric", "seed as text", "zero shots"],
)
def test_collect_refuses_an_invalid_record_in_one_sentence(tmp_path, run_mvlpt, field, value, needle):
    root = tmp_path / "results"
    _write(root, "coop", "a", "a", 1, 0.5)
    bad = layout.RESULT.path(root, "coop", "b", "a", 1)
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({**make_record("coop", "b", "a", 1, 0.6), field: value}))  # json writes NaN as NaN
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables")
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert re.search(rf"result file {re.escape(str(bad))} {needle}; delete it and rerun its training job\.$", errors[0]), errors[
        0
    ]
    assert not (root / "tables").exists()


def test_write_result_refuses_an_invalid_record_and_writes_nothing(tmp_path):
    path = layout.RESULT.path(tmp_path, "coop", "a", "a", 1)
    for bad in ({"test": float("nan")}, {"test": 87.5}, {"seed": "1"}):
        rec = make_record("coop", "a", "a", 1, 0.5)
        rec.pop("format")
        rec.update(bad)
        with pytest.raises(MvlptError):
            results.write_result(rec, path)
        assert not path.exists() and not list(tmp_path.rglob("*.json"))
    rec = make_record("coop", "a", "a", 1, 0.5)
    rec.pop("format")
    results.write_result(rec, path)
    assert results.read_result(path) == {**rec, "format": vocabulary.RESULT_FORMAT}


def test_truncated_result_file_is_named(tmp_path):
    p = _write(tmp_path, "coop", "a", "a", 1, 0.5)
    p.write_text(p.read_text()[:30])
    with pytest.raises(MvlptError, match=rf"result file {re.escape(str(p))} cannot be read \(.*\); delete it"):
        results.read_result(p)


# Seeds of other settings are not averaged, nor is a gain taken over a baseline of another setting (issue 14, item 1)
@pytest.mark.parametrize(
    "field,value",
    [
        ("shots", 10),
        ("epochs", 50),
        ("model", "ViT-B-16"),
        ("pretrained", "openai"),
        ("mode", "sequential"),
        ("method_options", {"n_ctx": 16}),
        ("setting_hash", "a-run-with-another-lr"),
    ],
)
def test_collect_refuses_seeds_of_different_settings_in_one_cell(tmp_path, run_mvlpt, caplog, field, value):
    root = tmp_path / "results"
    for k in (1, 2):
        _write(root, "coop", "a", "a", k, 0.5)
        _write(root, "coop", "b", "b", k, 0.5)
    first = _write(root, "coop", "b", "a", 1, 0.6)
    stray = _write(root, "coop", "b", "a", 2, 0.9, **{field: value})
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables")
    assert rc == 2 and len(errors) == 1, err
    line = errors[0]
    assert "the seeds of coop b->a were made with different settings" in line and f"({field} " in line
    assert str(first) in line and str(stray) in line and line.endswith("to average them anyway.")
    assert not (root / "tables").exists()
    # asked for explicitly, they are averaged (the former behaviour), with a warning naming the cell
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables", "--allow-mixed-settings")
    assert rc == 0 and not errors, err
    assert any("coop b->a" in r.getMessage() and "averaged anyway" in r.getMessage() for r in caplog.records)
    pairs = tables.read_table(root / "tables" / "pairs.csv").set_index(["source", "target"])
    assert pairs.loc[("b", "a"), "n_seeds"] == 2


def test_seeds_differing_only_in_seed_and_config_hash_are_averaged(tmp_path):
    root = tmp_path / "results"
    for k in (1, 2):
        _write(root, "coop", "a", "a", k, 0.5, config_hash=f"base{k}")
        _write(root, "coop", "b", "a", k, 0.5 + 0.1 * k, config_hash=f"pair{k}", wall_time_s=float(k), device=f"cuda:{k}")
    pairs = tables.pair_table(tables.load_results(root)).set_index(["source", "target"])
    assert pairs.loc[("b", "a"), "n_seeds"] == 2 and pairs.loc[("b", "a"), "gain"] == pytest.approx(0.15)


@pytest.mark.parametrize(
    "field,value",
    [
        ("shots", 10),
        ("epochs", 50),
        ("model", "ViT-B-16"),
        ("method_options", {"n_ctx": 16}),
        ("setting_hash", "a-run-with-another-lr"),
    ],
)
def test_no_gain_over_a_baseline_of_another_setting(tmp_path, run_mvlpt, field, value):
    root = tmp_path / "results"
    base = _write(root, "coop", "a", "a", 1, 0.5)
    pair = _write(root, "coop", "b", "a", 1, 0.7, **{field: value})
    rc, errors, err = run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables")
    assert rc == 2 and len(errors) == 1, err
    line = errors[0]
    assert "coop b->a and its baseline a->a were made with different settings" in line and f"({field} " in line
    assert str(base) in line and str(pair) in line and "make no gain" in line
    assert not (root / "tables").exists()
    # a joint pair over a single-task baseline of the same setting is fine: the mode is not compared there
    _write(root, "coop", "b", "a", 1, 0.7)
    assert tables.pair_table(tables.load_results(root)).set_index(["source", "target"]).loc[("b", "a"), "gain"] == pytest.approx(
        0.2
    )


def test_selection_filters_and_ignores_other_folders(tmp_path):
    write_fake_study(tmp_path, tasks=("a", "b", "c"), methods=("coop", "vpt"), seeds=(1, 2))
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "runs.csv").write_text("x\n")
    assert len(tables.load_results(tmp_path)) == 2 * 9 * 2
    assert len(tables.load_results(tmp_path, methods=["vpt"], tasks=["a", "b"], seeds=[2])) == 4
    with pytest.raises(MvlptError, match="does not exist"):
        tables.load_results(tmp_path / "nope")


def _planted_pairs(n_tasks=20, slope=1.0, noise_sd=0.5, seed=0):
    """Pairs with gain = slope * sim + target effect + noise; sim ~ N(0, 1), so r ~ slope/sqrt(slope^2+noise^2)."""
    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(n_tasks)]
    sim = rng.normal(size=(n_tasks, n_tasks))
    sim = (sim + sim.T) / np.sqrt(2)
    np.fill_diagonal(sim, 3.0)
    rows, srows = [], []
    for i, s in enumerate(tasks):
        for j, t in enumerate(tasks):
            gain = 0.0 if i == j else slope * sim[i, j] + rng.normal(0, noise_sd)
            rows.append(("coop", s, t, gain, gain, i == j))
            srows.append((s, t, "visual_cosine", sim[i, j]))
            srows.append((s, t, "visual_frechet", 5.0 - sim[i, j]))  # a distance: larger = less similar
            srows.append((s, t, "label_match", rng.uniform()))
    pairs = pd.DataFrame(rows, columns=["method", "source", "target", "gain", "gain_rel", "is_baseline"])
    sims = pd.DataFrame(srows, columns=["task_a", "task_b", "measure", "value"])
    return pairs, sims


def _row(corr, analysis, measure):
    r = corr[(corr["analysis"] == analysis) & (corr["similarity"] == measure)]
    assert len(r) == 1, (analysis, measure)
    return r.iloc[0]


@pytest.mark.parametrize("slope", [0.5, -0.5])
def test_planted_relationship_is_recovered(slope):
    pairs, sims = _planted_pairs(slope=slope, noise_sd=0.5)  # expected r = +-0.707
    corr = stats.correlate(pairs, sims, n_boot=400, n_perm=400, seed=1)
    sign = np.sign(slope)
    for kind in ("pearson", "spearman"):
        r = _row(corr, kind, "visual_cosine")
        assert r["n"] == 20 * 19
        assert sign * r["estimate"] == pytest.approx(0.707, abs=0.1)
        assert r["p_value"] < 1e-6
        assert r["ci_low"] < r["estimate"] < r["ci_high"]
        assert sign * r["ci_low"] > 0 and sign * r["ci_high"] > 0  # CI excludes 0
        # the distance is negated: same sign as the similarity it mirrors
        assert _row(corr, kind, "visual_frechet")["estimate"] == pytest.approx(r["estimate"], abs=1e-9)
    wt = _row(corr, "within_target_spearman", "visual_cosine")
    assert wt["n"] == 20 and sign * wt["estimate"] > 0.4 and wt["p_value"] < 0.01
    # label similarity is unrelated noise
    assert abs(_row(corr, "pearson", "label_match")["estimate"]) < 0.2
    # linear model on both similarities
    assert _row(corr, "linear_model_r2", "visual_cosine+label_match")["estimate"] == pytest.approx(0.5, abs=0.12)
    coef = _row(corr, "linear_model_coef_raw", "visual_cosine")
    assert coef["estimate"] == pytest.approx(slope, abs=0.1)
    std = _row(corr, "linear_model_coef", "visual_cosine")
    assert sign * std["ci_low"] > 0 and std["p_value"] < 1e-6
    assert _row(corr, "linear_model_coef", "label_match")["p_value"] > 0.01
    assert list(corr.columns) == list(stats.CORRELATION_COLUMNS)


def test_shuffled_gains_show_no_significant_correlation():
    pairs, sims = _planted_pairs(n_tasks=12, slope=1.0, noise_sd=0.3)
    rng = np.random.default_rng(123)
    significant = {"pearson": 0, "spearman": 0, "within_target_spearman": 0}
    n_rep = 15
    for _ in range(n_rep):
        shuffled = pairs.copy()
        off = ~shuffled["is_baseline"]
        shuffled.loc[off, "gain"] = rng.permutation(shuffled.loc[off, "gain"].to_numpy())
        corr = stats.correlate(
            shuffled,
            sims,
            measures=["visual_cosine"],
            model_measures=None,
            n_boot=200,
            n_perm=200,
            seed=int(rng.integers(1 << 30)),
        )
        for k in significant:
            r = _row(corr, k, "visual_cosine")
            assert abs(r["estimate"]) < 0.3
            significant[k] += r["p_value"] < 0.05
    # ~5% expected under the null; the planted data would give 15/15
    assert all(v <= 3 for v in significant.values()), significant


def test_correlate_rejects_unknown_measure_and_handles_tiny_input():
    pairs, sims = _planted_pairs(n_tasks=2)
    with pytest.raises(MvlptError, match="no similarity values"):
        stats.correlate(pairs, sims, measures=["nope"])
    corr = stats.correlate(pairs, sims, n_boot=10, n_perm=10)  # 2 pairs only: NaN, not an exception
    assert np.isnan(_row(corr, "pearson", "visual_cosine")["estimate"])


def test_collect_and_correlate_verbs_write_csv_and_parquet(tmp_path, run_mvlpt):
    root = tmp_path / "results"
    tasks = ["a", "b", "c", "d"]
    write_fake_study(root, tasks=tasks, methods=("coop", "vpt"), seeds=(1, 2))
    out = root / "tables"
    assert (
        run_mvlpt(
            "collect",
            "--results-dir",
            root,
            "--out-dir",
            out,
            "--methods",
            "coop",
            "vpt",
            "upt",
            "--tasks",
            *tasks,
            "--seeds",
            1,
            2,
        ).rc
        == 0
    )
    for name in ("runs", "pairs", "best_source", "source_gain", "target_gain"):
        csv, pq = pd.read_csv(out / f"{name}.csv"), pd.read_parquet(out / f"{name}.parquet")
        assert len(csv) == len(pq) > 0
    m = tables.read_matrix(out / "matrices" / "coop_gain.csv")
    assert m.shape == (4, 4) and list(m.index) == tasks and list(m.columns) == tasks
    pd.testing.assert_frame_equal(m, tables.read_matrix(out / "matrices" / "coop_gain.parquet"), check_names=False)
    assert np.isnan(tables.read_matrix(out / "matrices" / "upt_mean.csv").to_numpy()).all()  # promised even if empty
    rc, errors, _ = run_mvlpt(
        "collect",
        "--results-dir",
        root,
        "--out-dir",
        out,
        "--methods",
        "coop",
        "upt",
        "--tasks",
        *tasks,
        "--seeds",
        1,
        "--strict",
    )
    assert rc == 2 and len(errors) == 1 and "expected results are missing" in errors[0]
    sims = [root / "similarity" / f"{m}.csv" for m in ("visual_cosine", "visual_frechet", "label_match", "label_cosine")]
    assert (
        run_mvlpt(
            "correlate",
            "--pairs",
            out / "pairs.parquet",
            "--similarity",
            *sims,
            "--out",
            out / "correlations.csv",
            "--n-boot",
            50,
            "--n-perm",
            50,
        ).rc
        == 0
    )
    corr = pd.read_csv(out / "correlations.csv")
    assert set(corr["method"]) == {"coop", "vpt"}
    assert set(corr["shots"]) == {5}  # the study's shot count (the fake records' 5), from its pairs
    assert run_mvlpt("power", "--tables", out, "--out", out / "power.csv").rc == 0
    assert set(pd.read_csv(out / "power.csv")["shots"]) == {5}
    assert {"pearson", "spearman", "within_target_spearman", "linear_model_r2", "linear_model_coef"} <= set(corr["analysis"])
    assert (out / "correlations.parquet").exists()


@pytest.mark.skipif(shutil.which("snakemake", path=str(Path(sys.executable).parent)) is None, reason="no snakemake")
def test_analysis_rules_dry_run(tmp_path):
    """The analysis rules of the real Snakefile, on a fabricated study whose results all exist (a heatmap of the
    gain and one of its interaction per method)."""
    (tmp_path / "config.yaml").write_text(
        "methods: [coop, vpt]\ntasks: [shapes, orientation, glyph-digits]\nseeds: [1, 2]\nresults_dir: results\n"
        "similarity: {sample_size: 16}\nanalysis: {n_boot: 100, cluster: true}\n"
    )
    write_fake_study(tmp_path / "results", tasks=("shapes", "orientation", "glyph-digits"), seeds=(1, 2))
    for f in (tmp_path / "results" / "similarity").iterdir():
        f.unlink()  # so that the embedding and similarity rules enter the DAG
    snakemake = str(Path(sys.executable).parent / "snakemake")
    base = [
        snakemake,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
    ]
    res = subprocess.run(base + ["-n", "--quiet", "rules"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    out = res.stdout + res.stderr
    n_measures = len(vocabulary.MEASURES)  # one `similarity` job and one heatmap per registered measure
    for rule, count in [
        ("collect_results", 1),
        ("embed_task_images", 3),
        ("embed_task_labels", 3),
        ("similarity", n_measures),
        ("correlate_gain_similarity", 1),
        ("gain_heatmap", 4),
        ("power", 1),
        ("similarity_heatmap", n_measures),
        ("gain_scatter", 2),
        ("summary_figure", 1),
    ]:
        assert any(line.split()[:2] == [rule, str(count)] for line in out.splitlines()), (rule, out)
    # `figures` never pulls training or embedding jobs into the DAG
    res = subprocess.run(base + ["-n", "figures"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "embed_task" not in res.stdout and "collect_results" not in res.stdout and "figures" in res.stdout


@pytest.mark.parametrize("sizes", [(3, 3), (3, 4)], ids=["equal targets", "a target with a source fewer"])
def test_within_target_p_value_is_the_exact_within_target_permutation_test(sizes):
    """scipy's permutation_test (no strata) driven so that it permutes the sources within each target: with
    few pairs it enumerates every order, and its p-value equals the one from enumerating the within-target
    permutations directly."""
    import itertools
    import math

    rng = np.random.default_rng(5)
    rows = [(f"t{t}", f"s{i}", rng.uniform(), rng.normal()) for t, n in enumerate(sizes) for i in range(n)]
    df = pd.DataFrame(rows, columns=["target", "source", "sim", "gain"])
    n_total = math.factorial(sum(sizes))
    res = stats.within_target_spearman(df, "sim", "gain", n_perm=n_total, n_boot=0)

    def rho(x, y):
        return np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1]

    groups = [g for _, g in df.groupby("target")]
    observed = np.mean([rho(g["sim"], g["gain"]) for g in groups])
    null = [
        np.mean([rho(g["sim"], g["gain"].to_numpy()[list(p)]) for g, p in zip(groups, perms)])
        for perms in itertools.product(*(itertools.permutations(range(len(g))) for g in groups))
    ]
    null = np.asarray(null)
    tol = 1e-12
    expected = min(1.0, 2 * min((null >= observed - tol).mean(), (null <= observed + tol).mean()))
    assert res["n"] == len(sizes) and res["estimate"] == pytest.approx(observed, abs=1e-12)
    assert res["p_value"] == pytest.approx(expected, abs=1e-9)
    assert 0 < res["p_value"] <= 1


def test_within_target_spearman_with_unequal_targets_finds_the_planted_relationship():
    pairs, sims = _planted_pairs(n_tasks=10, slope=1.0, noise_sd=0.3)
    drop = pairs.sample(frac=0.2, random_state=1).index  # incomplete study: targets with fewer sources
    corr = stats.correlate(
        pairs.drop(index=drop), sims, measures=["visual_cosine"], model_measures=None, n_boot=200, n_perm=200, seed=0
    )
    wt = _row(corr, "within_target_spearman", "visual_cosine")
    assert wt["estimate"] > 0.5 and wt["p_value"] < 0.01 and wt["ci_low"] < wt["estimate"] < wt["ci_high"]


# --------------------------------------------------------------------------------------------------
# Shots: every table carries its study's shot count; the table and figure across shot counts
# --------------------------------------------------------------------------------------------------
def _shot_study(root, shots: int, gain: float) -> None:
    """Four tasks, CoOp and VPT, two seeds at ``shots``: baselines 0.45 to 0.75, every pair ``gain`` above its
    target's baseline (seed 2 a point above seed 1, so the seeds vary)."""
    tasks = {"a": 0.45, "b": 0.55, "c": 0.65, "d": 0.75}
    for m in ("coop", "vpt"):
        for t, base in tasks.items():
            for seed in (1, 2):
                write_record(root, m, t, t, seed, test=base + 0.01 * seed, shots=shots)
                for s in tasks:
                    if s != t:
                        write_record(root, m, s, t, seed, test=base + 0.01 * seed + gain, shots=shots)


def test_every_collected_table_carries_its_shots_and_the_shots_table_stacks_the_counts(tmp_path, run_mvlpt):
    folders = {}
    for shots, gain in ((1, 0.02), (5, 0.06)):
        root = tmp_path / f"shots{shots}"
        _shot_study(root, shots, gain)
        assert run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables").rc == 0
        folders[shots] = root / "tables"
        for name in (*vocabulary.TABLE_NAMES, "baselines"):
            df = pd.read_parquet(folders[shots] / f"{name}.parquet")
            assert "shots" in df.columns, name
            assert len(df) and set(df["shots"]) == {shots}, name
    out = tmp_path / "tables" / "shots.csv"
    assert run_mvlpt("shots", "table", "--study", f"5={folders[5]}", "--study", f"1={folders[1]}", "--out", out).rc == 0
    table = tables.read_table(out)
    assert list(table.columns) == list(tables.SHOTS_COLUMNS) and len(table) == 4
    assert list(zip(table["shots"], table["method"])) == [(1, "coop"), (1, "vpt"), (5, "coop"), (5, "vpt")]
    for row in table.itertuples():
        assert row.mean_gain == pytest.approx({1: 0.02, 5: 0.06}[row.shots])
        assert row.baseline_mean == pytest.approx(0.615) and row.n_targets == 4 and row.n_cells == 12
        assert np.isnan(row.zeroshot_mean)  # no reference rows in this study
    png = tmp_path / "figures" / "shots.png"
    assert run_mvlpt("shots", "figure", "--table", out, "--out", png).rc == 0
    assert png.is_file() and png.with_suffix(".pdf").is_file()
    # one shot count: no figure against shots; a folder of another count: refused; each in one sentence
    one = tmp_path / "one.csv"
    assert run_mvlpt("shots", "table", "--study", f"5={folders[5]}", "--out", one).rc == 0
    rc, errors, _ = run_mvlpt("shots", "figure", "--table", one, "--out", tmp_path / "one.png")
    assert rc == 2 and len(errors) == 1 and "at least two shot counts" in errors[0]
    rc, errors, _ = run_mvlpt("shots", "table", "--study", f"5={folders[1]}", "--out", tmp_path / "x.csv")
    assert rc == 2 and len(errors) == 1 and "holds shots 1, not 5" in errors[0]
    rc, errors, _ = run_mvlpt("shots", "table", "--study", "five=x", "--out", tmp_path / "x.csv")
    assert rc == 2 and len(errors) == 1 and "give a shot count and its tables folder" in errors[0]


def test_runs_of_several_shot_counts_have_no_single_shots_value():
    runs = tables.runs_table([make_record(shots=5), make_record(source="b", shots=5)])
    assert tables.study_shots(runs) == 5
    mixed = tables.runs_table([make_record(shots=5), make_record(source="b", shots=20)])
    assert tables.study_shots(mixed) is None
    assert tables.with_shots(pd.DataFrame({"method": ["coop"], "x": [1]}), 5).columns.tolist() == ["method", "shots", "x"]
