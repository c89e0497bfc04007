"""The Snakemake workflow: the DAG of the study, an end-to-end run, reruns, config errors, lint.

Every Snakemake call runs in a subprocess (the stable interface), with the repository's Snakefile and
a working directory in tmp_path, so nothing here touches the repository's results/.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from studies import copy_study, job_counts, snakemake

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install -e '.[test]')")

# Facts of the study's design, written out here so that the expected DAG does not come from the rules:
SIMILARITY_MEASURES = 4  # visual_cosine, visual_frechet, label_match, label_cosine
FROZEN_IMAGE_METHODS = {"coop"}  # CoOp learns text prompts only: its image features are computed once per task


def expected_jobs(cfg: dict) -> dict[str, int]:
    """Jobs of a study that has nothing on disk, counted from the study's design (not from the rules).

    n tasks, m methods, k seeds. Every method trains each task alone (the baseline, n runs) and each
    ordered pair of distinct tasks (n(n-1) cells): joint mode trains an unordered pair once for both
    directions (n(n-1)/2 runs), sequential mode each ordered pair. A run is one process for all seeds
    (stacked) or one per seed. Splits: one per task and seed. Analysis: one embedding per task and
    kind (images, labels), one table and heatmap per similarity measure, a heatmap and scatter per method.
    Reference rows: one zero-shot job per task, one linear-probe job per task and seed.
    Predictors: one few-shot embedding per task, one job per predictor (the 5 published estimators of
    mvlpt.transfer.transferability, their 6 variants where the assumptions hold, and each similarity measure), one job per
    method for the predictors of its trained prompts (the 11 estimators again, 4 on the target-class logits and the
    prompt-specific one), one score table and its figure, when there are at least two sources per target to
    rank (three tasks).
    """
    n, m, k = len(cfg["tasks"]), len(cfg["methods"]), len(cfg["seeds"])
    per_run = 1 if cfg.get("stack_seeds", True) else k
    jobs = {
        "fewshot_split": n * k,
        "train_single": m * n * per_run,
        "embed_task_images": n,
        "embed_task_labels": n,
        "similarity": SIMILARITY_MEASURES,
        "similarity_heatmap": SIMILARITY_MEASURES,
        "collect_results": 1,
        "correlate_gain_similarity": 1,
        "gain_heatmap": 2 * m,  # the gain and its interaction (pair-specific part)
        "power": 1,
        "gain_scatter": m,
        "summary_figure": 1,
        "all": 1,
        # reference rows: zero-shot per task (seed-independent), the linear probe per task and few-shot seed
        "reference_zeroshot": n,
        "reference_linear_probe": n * k,
    }
    if n >= 3:
        jobs.update(
            {
                "embed_task_fewshot": n,
                "predictor": 11 + SIMILARITY_MEASURES,
                "prompt_predictors": m,
                "score_predictors": 1,
                "predictors_figure": 1,
            }
        )
    if FROZEN_IMAGE_METHODS & set(cfg["methods"]) and cfg.get("train", {}).get("cache_features", True):
        jobs["frozen_features"] = n  # one feature cache per task, shared by every run of those methods
    if cfg.get("mode", "joint") == "joint":
        jobs["train_joint"] = m * n * (n - 1) // 2 * per_run
    elif cfg["mode"] == "zero_epoch":  # one job per method (and seed) evaluates every cell, training nothing
        jobs["transfer_zero_epoch"] = m * per_run
    else:
        jobs["train_sequential"] = m * n * (n - 1) * per_run
    return jobs


# ------------------------------------------------------------------------------------------------
# The paper's DAG, from config/elevater.yaml
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant",
    [
        {},
        *(
            pytest.param(v, marks=pytest.mark.slow)
            for v in (  # the fast lane: the paper's own
                {"mode": "sequential"},
                {"stack_seeds": False},
                {"methods": ["vpt", "upt"]},
                {"methods": ["coop"], "train": {"epochs": 5, "cache_features": False}},
            )
        ),
    ],
)
def test_paper_config_dag_has_every_pair(tmp_path, variant):
    cfg = yaml.safe_load((REPO / "config" / "elevater.yaml").read_text())
    cfg.update(variant)
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=configfile)
    assert res.returncode == 0, res.stderr + res.stdout
    assert job_counts(res.stdout + res.stderr) == expected_jobs(cfg)
    assert len(cfg["tasks"]) == 20


# ------------------------------------------------------------------------------------------------
# Shots as a study axis (docs/shots.md) and the paper's Table 1 setting (docs/multitask.md)
# ------------------------------------------------------------------------------------------------
SMALL = {
    "tasks": ["shapes", "glyph-digits", "orientation"],
    "methods": ["coop", "vpt"],
    "seeds": [1, 2],
    "mode": "joint",
    "model": {"name": "mvlpt-tiny", "pretrained": "synthetic", "init_seed": 0},
    "train": {"epochs": 1, "warmup_epochs": 0},
}


def axis_jobs(cfg: dict, counts: list[int]) -> dict[str, int]:
    """A study over ``counts`` shot counts: each count's study is the single-shot study (its rules prefixed
    shots{N}_), then one table across them, the figure when there are two counts or more, and `all`."""
    one = {r: n for r, n in expected_jobs(cfg).items() if r != "all"}
    jobs = {f"shots{c}_{r}": n for c in counts for r, n in one.items()}
    jobs.update({"shots_table": 1, "all": 1})
    if len(counts) > 1:
        jobs["shots_figure"] = 1
    return jobs


def _outputs(out: str) -> dict[str, set[str]]:
    """rule -> the output files of its jobs, from a dry-run's job list."""
    found: dict[str, set[str]] = {}
    rule = None
    for line in out.splitlines():
        m = re.match(r"(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m[1]
        m = re.match(r"\s+(?:output|log): (.*)$", line)
        if m and rule:
            found.setdefault(rule, set()).update(f.strip() for f in m[1].split(", "))
    return found


@pytest.mark.parametrize("counts", [[3, 5], [4]])
def test_a_shots_list_is_one_study_per_shot_count(tmp_path, counts):
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump({**SMALL, "shots": counts}))
    res = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=configfile)
    assert res.returncode == 0, res.stderr + res.stdout
    assert job_counts(res.stdout + res.stderr) == axis_jobs({**SMALL, "shots": counts[0]}, counts)


def test_a_scalar_shots_study_keeps_its_paths_and_each_shot_count_lies_in_its_folder(tmp_path):
    """A scalar `shots` lays its files out as before the axis existed (no shots{N} folder anywhere); in a
    study over [3, 5], the files of shot count 3 are exactly those of the scalar study at 3 shots, each
    below a shots3 folder of the results, the cache and the logs."""
    scalar, axis = tmp_path / "scalar.yaml", tmp_path / "axis.yaml"
    scalar.write_text(yaml.safe_dump({**SMALL, "shots": 3}))
    axis.write_text(yaml.safe_dump({**SMALL, "shots": [3, 5]}))
    res = snakemake(tmp_path, "-n", configfile=scalar)
    assert res.returncode == 0, res.stderr + res.stdout
    today = {f for files in _outputs(res.stdout).values() for f in files}
    assert "results/coop/shapes__shapes/seed1.json" in today and "results/tables/pairs.csv" in today
    assert "resources/cache/splits/shapes/shots3_seed1.json" in today
    assert "logs/train_single/coop/shapes/seeds1-2.log" in today
    assert not [f for f in today if re.search(r"(^|/)shots\d+/", f)]
    res = snakemake(tmp_path, "-n", configfile=axis)
    assert res.returncode == 0, res.stderr + res.stdout
    by_rule = _outputs(res.stdout)
    three = {f for rule, files in by_rule.items() if rule.startswith("shots3_") for f in files}
    assert {re.sub(r"^(results|resources/cache|logs)/shots3/", r"\1/", f) for f in three} == today
    five = {f for rule, files in by_rule.items() if rule.startswith("shots5_") for f in files}
    assert "results/shots5/vpt/glyph-digits__orientation/seed2.json" in five
    assert by_rule["shots_table"] >= {"results/tables/shots.csv", "results/tables/shots.parquet"}
    assert by_rule["shots_figure"] >= {"results/figures/shots.png", "results/figures/shots.pdf"}


@pytest.mark.slow
def test_paper_config_dag_over_shots(tmp_path):
    """config/elevater.yaml with shots [5, 20]: twice the paper's DAG, each below its shots folder."""
    cfg = yaml.safe_load((REPO / "config" / "elevater.yaml").read_text())
    res = snakemake(tmp_path, "-n", "--quiet", "rules", "--config", "shots=[5, 20]", configfile=REPO / "config" / "elevater.yaml")
    assert res.returncode == 0, res.stderr + res.stdout
    assert job_counts(res.stdout + res.stderr) == axis_jobs(cfg, [5, 20])


def test_table1_target_trains_one_source_prompt_per_method_for_every_target(tmp_path):
    """`snakemake table1` on offline tasks: before its groups exist, the targets' baselines at the Table 1
    shots, the group checkpoint (strategy fixed, the sources), the tables and the figure; the plan says
    what the checkpoint adds: one source prompt per method and each target fine-tuned from it."""
    cfg = {**SMALL, "shots": [3, 5], "table1": {"sources": ["shapes", "glyph-digits"], "targets": ["orientation"], "shots": 4}}
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", "-p", "table1", configfile=configfile)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert job_counts(out) == {
        "table1_fewshot_split": 2,  # the target, two seeds
        "table1_train_single": 2,  # its baselines, CoOp and VPT
        "table1_frozen_features": 1,
        "table1_multitask_groups": 1,
        "table1_multitask_table": 1,
        "table1_multitask_figure": 1,
        "table1": 1,
    }
    assert (
        "table1: multitask study: 4 training jobs (2 group source prompts, 2 targets fine-tuned from them, 0 joint group runs) "
        "for coop, vpt x 1 targets of 2 fixed sources" in out
    )
    groups = next(line for line in out.splitlines() if "mvlpt multitask groups" in line)
    assert "--strategies fixed" in groups and "--modes init" in groups and "--sources shapes glyph-digits" in groups
    assert "--shots 4" in next(line for line in out.splitlines() if "mvlpt train" in line)
    outputs = {f for files in _outputs(res.stdout).values() for f in files}
    assert "results/table1/coop/orientation__orientation/seed1.json" in outputs
    assert "results/table1/tables/multitask_summary.csv" in outputs
    # a cluster job names its rule, not the target: the studies inside the study are made for it too
    for job in ("table1_train_single:method=coop,task=orientation", "shots5_train_single:method=vpt,task=shapes"):
        res = snakemake(tmp_path, "-n", "--target-jobs", job, configfile=configfile)
        assert res.returncode == 0 and f"rule {job.split(':')[0]}:" in res.stdout, res.stdout + res.stderr


def test_table1_on_the_paper_config_plans_the_whole_study(tmp_path):
    """`snakemake -n table1` on config/elevater.yaml (the 11 CoOp sources, ImageNet, SUN397 and UCF101 among
    them, and the 12 held-out ELEVATER targets, no data on disk): before its groups exist, the targets' few-shot
    splits and baselines for the 3 methods at 5 shots, their frozen features, the group checkpoint with the
    11 sources; the plan says what it adds: one source prompt per method and each target fine-tuned from it."""
    paper = yaml.safe_load((REPO / "config" / "elevater.yaml").read_text())
    sources, targets = paper["table1"]["sources"], paper["table1"]["targets"]
    assert {"imagenet", "sun397", "ucf101"} <= set(sources) and len(sources) == 11 and len(targets) == 12
    res = snakemake(tmp_path, "-n", "-p", "table1", configfile=REPO / "config" / "elevater.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    n_methods, n_seeds = len(paper["methods"]), len(paper["seeds"])
    assert job_counts(out) == {
        "table1_fewshot_split": len(targets) * n_seeds,
        "table1_train_single": len(targets) * n_methods,  # seeds stacked
        "table1_frozen_features": len(targets),
        "table1_multitask_groups": 1,
        "table1_multitask_table": 1,
        "table1_multitask_figure": 1,
        "table1": 1,
    }
    assert (
        f"table1: multitask study: {n_methods + len(targets) * n_methods} training jobs ({n_methods} group source prompts, "
        f"{len(targets) * n_methods} targets fine-tuned from them, 0 joint group runs) for coop, vpt, upt x 12 targets of 11 fixed sources"
        in out
    )
    groups = next(line for line in out.splitlines() if "mvlpt multitask groups" in line)
    assert f"--sources {' '.join(sources)}" in groups and "--strategies fixed" in groups
    assert "--shots 5" in next(line for line in out.splitlines() if "mvlpt train" in line)


def test_demo_config_dag(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    res = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=REPO / "config" / "config.yaml")
    assert res.returncode == 0, res.stderr + res.stdout
    assert job_counts(res.stdout + res.stderr) == expected_jobs(cfg)


@pytest.mark.parametrize("variant", [{}, {"stack_seeds": False}])
def test_zero_epoch_world_dag(tmp_path, variant):
    """config/groundtruth2.yaml (mode zero_epoch): one transfer_zero_epoch job per method (per seed unstacked)
    writes every off-diagonal cell's result."""
    cfg = {**yaml.safe_load((REPO / "config" / "groundtruth2.yaml").read_text()), **variant}
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=configfile)
    assert res.returncode == 0, res.stderr + res.stdout
    assert job_counts(res.stdout + res.stderr) == expected_jobs(cfg)
    res = snakemake(tmp_path, "-n", "--until", "transfer_zero_epoch", configfile=configfile)
    blocks = [b for b in res.stdout.split("\nrule ") if b.startswith("transfer_zero_epoch:")]
    outputs = [
        p.strip()
        for b in blocks
        for line in b.splitlines()
        if line.strip().startswith("output:")
        for p in line.split(":", 1)[1].split(",")
    ]
    n, k = len(cfg["tasks"]), len(cfg["seeds"])
    expected = {
        f"results/groundtruth2/{m}/{s}__{t}/seed{seed}.json"
        for m in cfg["methods"]
        for s in cfg["tasks"]
        for t in cfg["tasks"]
        if s != t
        for seed in cfg["seeds"]
    }
    assert len(outputs) == len(expected) == len(cfg["methods"]) * n * (n - 1) * k and set(outputs) == expected


def test_every_ordered_pair_has_its_own_result_file(tmp_path):
    """The default target asks for results/{method}/{source}__{target}/seed{seed}.json for all pairs."""
    cfg = {"tasks": ["shapes", "orientation", "glyph-digits"], "methods": ["vpt"], "seeds": [1, 2]}
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", "--printshellcmds", configfile=configfile)
    assert res.returncode == 0, res.stderr + res.stdout
    outputs = set(re.findall(r"results/vpt/[\w.-]+__[\w.-]+/seed\d\.json", res.stdout))
    expected = {f"results/vpt/{s}__{t}/seed{k}.json" for s in cfg["tasks"] for t in cfg["tasks"] for k in (1, 2)}
    assert expected <= outputs
    # one joint job per unordered pair, with both directions and both seeds as outputs
    commands = [line.split(":", 1)[1].strip() for line in res.stdout.splitlines() if line.startswith("Shell command:")]
    joint = [cmd for cmd in commands if cmd.startswith("mvlpt train") and cmd.count("--task ") == 2]
    assert len(joint) == 3
    assert all(cmd.count("--seed ") == 2 and cmd.count("--output ") == 2 for cmd in joint)


# ------------------------------------------------------------------------------------------------
# The demo study, end to end: the session's shared study (tests/studies.py), copied here because the
# tests below rerun and extend it
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_study(finished_study, tmp_path_factory):
    """A copy of the shared study (a small version of the demo config, run once with --cores 2)."""
    study = finished_study
    # the preflight ran before the first job and left Snakemake's console as it was (open_clip logs
    # through the root logger, which would print every Snakemake message a second time)
    report = json.loads((study.work / "logs" / "preflight.json").read_text())
    assert report["problems"] == [] and [t["task"] for t in report["tasks"]] == study.cfg["tasks"]
    assert "INFO:snakemake.logging" not in study.log, study.log[-3000:]
    copy = copy_study(study, tmp_path_factory.mktemp("study") / "work")
    return copy.work, copy.configfile, copy.cfg


def result_files(cfg, root: Path):
    return [
        root / "results" / m / f"{s}__{t}" / f"seed{k}.json"
        for m in cfg["methods"]
        for s in cfg["tasks"]
        for t in cfg["tasks"]
        for k in cfg["seeds"]
    ]


@pytest.mark.slow
def test_demo_study_writes_every_result_and_table(small_study):
    work, _, cfg = small_study
    for f in result_files(cfg, work):
        r = json.loads(f.read_text())
        method, pair = f.parent.parent.name, f.parent.name
        assert (r["method"], f"{r['source']}__{r['target']}") == (method, pair)
        assert 0.0 <= r["test"] <= 1.0 and r["epochs"] == cfg["train"]["epochs"] and r["shots"] == cfg["shots"]
        assert r["mode"] == ("single" if r["source"] == r["target"] else "joint")
    import pandas as pd

    pairs = pd.read_csv(work / "results" / "tables" / "pairs.csv")
    n = len(cfg["tasks"])
    assert len(pairs) == len(cfg["methods"]) * n * n
    assert (work / "results" / "tables" / "correlations.csv").stat().st_size > 0
    # the reference rows: zero-shot per task, linear probe per task and seed, beside every baseline
    reference = pd.read_csv(work / "results" / "tables" / "reference.csv")
    assert sorted(reference["method"].value_counts().items()) == [("linear_probe", n * len(cfg["seeds"])), ("zeroshot", n)]
    assert pairs["zeroshot"].notna().all() and pairs["linear_probe"].notna().all()
    baselines = pd.read_csv(work / "results" / "tables" / "baselines.csv")
    assert len(baselines) == len(cfg["methods"]) * n and baselines["baseline_below_zeroshot"].notna().all()
    for name in ("summary.png", "gain_coop.pdf", "gain_vpt.png", "similarity_visual_frechet.png", "scatter_vpt.png"):
        assert (work / "results" / "figures" / name).stat().st_size > 0
    # every job left a log; training jobs left a benchmark
    assert list((work / "logs" / "train_joint").rglob("*.log"))
    assert list((work / "logs" / "benchmarks" / "train_single").rglob("*.tsv"))
    # no resumable training state is left behind by finished runs
    assert not list((work / "resources" / "cache" / "state").rglob("*.state.safetensors"))


@pytest.mark.slow
def test_second_invocation_has_nothing_to_do(small_study):
    work, configfile, _ = small_study
    res = snakemake(work, "-n", configfile=configfile)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "Nothing to be done" in res.stdout + res.stderr


@pytest.mark.slow
def test_deleting_one_result_reruns_only_what_depends_on_it(small_study):
    work, configfile, _ = small_study
    victim = work / "results" / "vpt" / "orientation__shapes" / "seed1.json"
    before = json.loads(victim.read_text())
    victim.unlink()
    res = snakemake(work, "-n", "--quiet", "rules", configfile=configfile)
    assert res.returncode == 0, res.stderr + res.stdout
    counts = job_counts(res.stdout + res.stderr)
    # the joint vpt run of {shapes, orientation} (it writes both directions), then what reads results
    assert counts.pop("train_joint") == 1
    assert counts.pop("collect_results") == 1 and counts.pop("all") == 1
    assert set(counts) <= {
        "correlate_gain_similarity",
        "gain_heatmap",
        "gain_scatter",
        "summary_figure",
        "score_predictors",
        "predictors_figure",
        "power",
    }
    assert counts.get("gain_heatmap", 0) <= 4  # the gain and the interaction heatmap of each method
    res = snakemake(work, "--cores", "2", configfile=configfile)
    assert res.returncode == 0, (res.stderr + res.stdout)[-4000:]
    after = json.loads(victim.read_text())
    assert after["test"] == before["test"] and after["val"] == before["val"]  # same run, same numbers


@pytest.mark.slow
def test_runtime_options_reach_the_jobs_but_do_not_rerun_them(small_study, tmp_path):
    """train.compile, eval_batch_size, checkpoint_every and workers do not change results
    (TrainConfig.RUNTIME): switching them on after a study ran trains nothing again, yet a new job gets
    them (and, with compile, the kernel cache all jobs share); an option that changes results reruns."""
    work, _, cfg = small_study
    runtime = {"compile": "default", "eval_batch_size": 7, "checkpoint_every": 3, "workers": 1}
    changed = tmp_path / "runtime.yaml"
    changed.write_text(yaml.safe_dump({**cfg, "train": {**cfg["train"], **runtime}}))
    res = snakemake(work, "-n", configfile=changed)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, (res.stderr + res.stdout)[-3000:]

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    res = snakemake(fresh, "-n", "--printshellcmds", configfile=changed)
    assert res.returncode == 0, (res.stderr + res.stdout)[-3000:]
    train = [line for line in res.stdout.splitlines() if line.startswith("Shell command:") and " mvlpt train " in line]
    assert train and all("--compile-cache resources/cache/torch-compile" in cmd for cmd in train)
    for cmd in train:
        options = [json.loads(v) for v in re.findall(r"--train-options '(\{[^']*\})'", cmd)]
        assert len(options) == 2 and options[1] == runtime and options[0]["epochs"] == cfg["train"]["epochs"]
        assert not set(options[0]) & set(runtime)

    changed.write_text(yaml.safe_dump({**cfg, "train": {**cfg["train"], **runtime, "lr": 0.02}}))
    res = snakemake(work, "-n", "--quiet", "rules", configfile=changed)
    counts = job_counts(res.stdout + res.stderr)
    n, m = len(cfg["tasks"]), len(cfg["methods"])
    assert counts.get("train_single") == m * n and counts.get("train_joint") == m * n * (n - 1) // 2, counts


# ------------------------------------------------------------------------------------------------
# The multitask study: groups chosen from the pairwise tables (a checkpoint), then trained
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multitask_study(small_study):
    work, configfile, cfg = small_study
    res = snakemake(work, "--cores", "2", "multitask", configfile=configfile, timeout=900)
    assert res.returncode == 0, (res.stderr + res.stdout)[-6000:]
    return work, configfile, cfg, res


@pytest.mark.slow
def test_multitask_study_chooses_groups_from_the_pairwise_gains_and_trains_them(multitask_study):
    import pandas as pd

    work, _, cfg, res = multitask_study
    assert "multitask study: up to" in res.stderr  # the job count it adds, before the groups are known
    tasks = cfg["tasks"]
    groups = pd.read_csv(work / "results" / "multitask" / "groups.csv")
    for method in ("coop",):
        gain = pd.read_csv(work / "results" / "tables" / "matrices" / f"{method}_gain.csv", index_col=0)
        for target in tasks:
            # the pairwise study's best source for the target (k = 1), read here from the gain matrix
            column = gain[target]  # the matrix: source rows x target columns
            best = column.drop(target).astype(float).idxmax()
            rows = groups[(groups.method == method) & (groups.strategy == "gain") & (groups.target == target)]
            assert set(rows["mode"]) == {"init", "joint"}
            assert rows.set_index("mode").loc["init", "sources"] == best, (method, target)
            alls = groups[(groups.method == method) & (groups.strategy == "all") & (groups.target == target)]
            assert set(alls.set_index("mode").loc["init", "sources"].split("+")) == set(tasks) - {target}
    soft = groups[groups.method == "softcpt"]
    assert set(soft["mode"]) == {"joint"} and set(soft["strategy"]) == {"all"} and soft["group"].nunique() == 1
    table = pd.read_csv(work / "results" / "tables" / "multitask.csv")
    assert len(table) == len(groups)  # every (method, mode, strategy, target) has its row
    assert table["test_mean"].between(0, 1).all() and table["baseline_mean"].between(0, 1).all()
    summary = pd.read_csv(work / "results" / "tables" / "multitask_summary.csv")
    assert set(summary["method"]) == {"coop", "softcpt"}
    for ext in ("png", "pdf"):
        assert (work / "results" / "figures" / f"multitask.{ext}").stat().st_size > 0
    # one joint run served every member of its group: a result per member and seed in its folder
    for row in groups[groups["mode"] == "joint"].itertuples():
        for member in row.tasks.split("+"):
            rec = json.loads(
                (work / "results" / "multitask" / row.method / "joint" / row.group / member / "seed1.json").read_text()
            )
            assert rec["target"] == member and rec["mode"] == "joint"


@pytest.mark.slow
def test_multitask_jobs_build_with_one_job_per_seed(multitask_study):
    """stack_seeds: false gives the group source and target jobs one seed each (joint runs stack theirs);
    forced in a dry-run over the finished study, so that every job's command is built."""
    work, configfile, _, _ = multitask_study
    rules = ["train_group_source", "train_group_target", "train_group_joint"]
    res = snakemake(
        work,
        "-n",
        "-p",
        "multitask",
        "--config",
        "stack_seeds=false",
        "--rerun-triggers",
        "mtime",
        "--forcerun",
        *rules,
        configfile=configfile,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    counts = job_counts(out)
    assert all(counts.get(rule, 0) >= 1 for rule in rules), counts
    commands = [line for line in out.splitlines() if line.startswith("Shell command:") and "mvlpt train" in line]
    assert len(commands) == sum(counts[rule] for rule in rules)
    assert all("--state resources/cache/state/multitask/" in cmd for cmd in commands)


@pytest.mark.slow
def test_multitask_rerun_with_unchanged_tables_trains_nothing(multitask_study):
    work, configfile, _, _ = multitask_study
    res = snakemake(work, "-n", "multitask", configfile=configfile)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout + res.stderr
    # the pairwise tables rewritten with the same content (a newer time stamp): Snakemake compares the
    # contents of small inputs, so nothing runs, not even the checkpoint
    groups = work / "results" / "multitask" / "groups.csv"
    table = work / "results" / "tables" / "multitask.csv"
    before = groups.read_bytes(), table.read_bytes()
    for matrix in (work / "results" / "tables" / "matrices").glob("*_gain.csv"):
        matrix.write_bytes(matrix.read_bytes())
    res = snakemake(work, "-n", "multitask", configfile=configfile)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout + res.stderr
    # the groups chosen again (forced): the same groups, byte for byte, and no training job runs, because a
    # training job's identity is its task set (the group's hash), not the groups file
    res = snakemake(work, "--cores", "2", "multitask", "--forcerun", "multitask_groups", configfile=configfile)
    assert res.returncode == 0, (res.stderr + res.stdout)[-4000:]
    out = res.stdout + res.stderr
    ran = set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", out, re.M))  # every job Snakemake ran, as it ran
    assert "multitask_groups" in ran, out[-3000:]
    assert not {rule for rule in ran if rule.startswith("train")}, ran
    assert (groups.read_bytes(), table.read_bytes()) == before


# ------------------------------------------------------------------------------------------------
# Config errors: one sentence, before any job runs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, needle",
    [
        ({"tasks": ["shapes", "no-such-task"]}, "unknown task(s) in `tasks`: no-such-task"),
        ({"tasks": []}, "tasks: [] should be non-empty"),
        ({"methods": ["coop", "prefix"]}, "unknown method(s) in `methods`: prefix (known: "),
        ({"methods": ["coop", "softcpt"]}, "method(s) softcpt in `methods` train multitask only"),
        ({"method_options": {"cop": {"n_ctx": 4}}}, "unknown method(s) in `method_options`: cop"),
        ({"shots": -1}, "invalid config: shots: -1 is neither a number of images per class (an integer >= 1) nor a list"),
        ({"shots": [5, 0]}, "invalid config: shots: [5, 0] is neither a number of images per class"),
        ({"shots": [5, 20, 5]}, "invalid config: shots: 5 listed more than once (give each shot count once)"),
        ({"shots": []}, "invalid config: shots: [] is neither"),
        ({"tasks": ["shapes", "shapes"]}, "listed more than once in `tasks`: shapes"),
        ({"similarity": {"sampel_size": 8}}, "'sampel_size' was unexpected"),
        (
            {"analysis": {"model_measures": ["visual_cosine", "colour"]}},
            "unknown similarity measure(s) in `analysis.model_measures`: colour",
        ),
        # the rules of `mvlpt train` itself (mvlpt.training.config.TrainConfig), before any job runs
        ({"train": {"lr": math.nan}}, "invalid config: train: lr must be"),
        (
            {"train": {"epochs": 3, "warmup_epochs": 5}},
            "invalid config: train: warmup_epochs (5) must be smaller than epochs (3)",
        ),
        ({"train": {"epochs": 3.5}}, "invalid config: train.epochs: 3.5 is not of type 'integer'"),
        # `lr: 2e-3` in a YAML file is the text '2e-3' to PyYAML (YAML 1.1 needs the decimal point)
        (
            {"train": {"lr": "2e-3"}},
            "invalid config: train.lr: '2e-3' is not of type 'number': YAML reads 2e-3 as text, "
            "write 0.002 instead (see config/README.md).",
        ),
    ],
)
def test_config_errors_stop_before_any_job(tmp_path, override, needle):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg.update(override)
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--cores", "1", configfile=configfile)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert needle in out, out
    sentence = next(line for line in out.splitlines() if line.startswith("invalid config:"))
    assert sentence.endswith("."), sentence  # one sentence, on one line
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_command_line_config_values_are_read_as_yaml(tmp_path):
    """`--config` lists and objects: Snakemake passes their scalars as strings; the workflow reads them
    as a config file would (issue 14, item 9)."""
    res = snakemake(
        tmp_path,
        "-n",
        "--printshellcmds",
        "--config",
        "seeds=[1]",
        "train={epochs: 3, lr: 0.05}",
        "stack_seeds=false",
        "methods=[vpt]",
        configfile=REPO / "config" / "config.yaml",
    )
    assert res.returncode == 0, res.stderr + res.stdout
    train = [line for line in res.stdout.splitlines() if "mvlpt train" in line]
    assert train and all(" --seed 1 " in cmd and "--seed 2" not in cmd for cmd in train)
    # an object given on the command line is merged into the config file's: epochs and lr replaced, the rest kept
    assert all('"epochs": 3,' in cmd and '"lr": 0.05' in cmd and '"batch_size": 8' in cmd for cmd in train)
    assert all("--method vpt" in cmd for cmd in train)
    res = snakemake(tmp_path, "-n", "--config", "train={epochs: 3, warmup_epochs: 3}", configfile=REPO / "config" / "config.yaml")
    assert res.returncode != 0 and "warmup_epochs (3) must be smaller than epochs (3)" in res.stdout + res.stderr


def test_multitask_config_errors_stop_the_multitask_target_only(tmp_path):
    """The multitask section is checked when `snakemake multitask` asks for it, not in a pairwise run."""
    args = ("--config", "methods=[vpt]", "multitask={methods: [coop, vpt]}")
    res = snakemake(tmp_path, "-n", "multitask", *args, configfile=REPO / "config" / "config.yaml")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "invalid config: multitask: method coop is not among the study's `methods`" in out, out
    sentence = next(line for line in out.splitlines() if line.startswith("invalid config:"))
    assert sentence.endswith(".") and not sentence.endswith(".."), sentence
    res = snakemake(tmp_path, "-n", "results/tables/multitask.csv", *args, configfile=REPO / "config" / "config.yaml")
    assert (
        res.returncode != 0 and "method coop is not among the study's `methods`" in res.stdout + res.stderr
    )  # a file target too
    res = snakemake(tmp_path, "-n", *args, configfile=REPO / "config" / "config.yaml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("tasks: [shapes, orientation]\nmethods: [coop, vpt\nseeds: [1]\n")
    res = snakemake(tmp_path, "-n")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "invalid config: config/config.yaml, line 3, column 6 is not valid YAML" in out, out


def test_default_profile_is_loaded():
    """profiles/default sits next to the Snakefile, where Snakemake looks for a workflow profile (issue 14, item 6)."""
    res = subprocess.run(
        [SNAKEMAKE, "-n", "--quiet", "rules", "--configfile", "config/config.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Using workflow specific profile profiles/default" in res.stdout + res.stderr


@pytest.fixture(scope="module")
def failing_job(tmp_path_factory):
    """A config that passes every check but whose training job fails (an option the method lacks)."""
    work = tmp_path_factory.mktemp("failing")
    cfg = {
        "tasks": ["shapes"],
        "methods": ["vpt"],
        "seeds": [1],
        "shots": 2,
        "device": "cpu",
        "model": {"name": "mvlpt-tiny", "pretrained": "synthetic"},
        "train": {"epochs": 1, "warmup_epochs": 0},
        "method_options": {"vpt": {"n_tokenz": 4}},
    }
    (work / "study.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(work, "--cores", "1", "results/vpt/shapes__shapes/seed1.json", configfile=work / "study.yaml")
    return res


@pytest.mark.slow
def test_failed_job_shows_its_error_sentence_on_the_console(failing_job):
    out = failing_job.stdout + failing_job.stderr
    assert failing_job.returncode != 0
    assert "mvlpt: error: bad options for method 'vpt'" in out, out[-3000:]


def test_lint_is_clean():
    res = subprocess.run(
        [SNAKEMAKE, "--lint", "--snakefile", str(REPO / "Snakefile")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
