"""`snakemake budgeted` (workflow/rules/budget.smk; issue 26): its DAG trains only the pairs the rounds chose
and grows round by round; a larger budget keeps every round and every finished job; nonsense in the
`budget` section stops the run in one sentence. The fast tests train nothing: a round's checkpoint runs for
real (`mvlpt budget select`, seconds), the training jobs it schedules are faked (their files written as a
finished run leaves them); the slow one runs a small budgeted study end to end."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import fakes
import studies
from mvlpt.study import budget, layout

TASKS = ["shapes", "shape-colours", "texture-colours", "glyph-digits", "orientation"]
STUDY = {
    "tasks": TASKS,
    "methods": ["vpt"],
    "seeds": [1, 2],
    "shots": 3,
    "mode": "joint",
    "device": "cpu",
    "preflight": False,
    "model": {"name": "mvlpt-tiny", "pretrained": "synthetic", "init_seed": 0},
    "train": {"epochs": 1, "batch_size": 8, "batch_size_multitask": 16, "warmup_epochs": 0},
    # 10 unordered pairs: 5 of them, 3 in round 0, then one per round
    "budget": {"pairs": 0.5, "round_size": 1, "initial": 3, "rule": "uncertainty"},
}
ROUND = layout.BUDGET_ROUND.path(Path("results") / "budget", "vpt", 0).as_posix().replace("round0", "round{}")


def write_config(work: Path, cfg: dict) -> Path:
    path = work / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def smk(work: Path, *args: str, cfg: dict = STUDY, targets: tuple[str, ...] = ("budgeted",)):
    """Snakemake on ``targets`` (given first: options such as --rerun-triggers take several values) in ``work``."""
    cmd = [str(studies.SNAKEMAKE), *targets, "--snakefile", str(studies.REPO / "Snakefile"), "--directory", str(work)]
    cmd += ["--configfile", str(write_config(work, cfg)), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def dry_run(work: Path, *args: str, cfg: dict = STUDY) -> tuple[dict[str, int], list[tuple[str, dict]], str]:
    """A dry-run of `budgeted`: the job counts by rule, every job (rule, wildcards), the console output."""
    res = smk(work, "-n", *args, cfg=cfg)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    jobs, rule = [], None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if m:
            rule = m[1]
            jobs.append((rule, {}))
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule:
            jobs[-1] = (rule, dict(kv.split("=", 1) for kv in m[1].split(", ")))
    return studies.job_counts(out), jobs, out


def trained_pairs(jobs) -> set[tuple[str, str]]:
    return {(w["a"], w["b"]) for rule, w in jobs if rule == "train_joint"}


def round_pairs(work: Path, r: int) -> list[tuple[str, str]]:
    return budget.read_round(work / ROUND.format(r))


def planted_gain(s: str, t: str) -> float:
    """A gain with row and column structure (sources help alike, targets take alike)."""
    i, j = TASKS.index(s), TASKS.index(t)
    return 0.04 * (i - 2) - 0.02 * (j - 2) + 0.005 * ((i * j) % 3)


def finish(work: Path, jobs, stamp: float) -> None:
    """What the listed split and training jobs leave behind, as old as ``stamp``: every output file (the
    result files as valid records with planted gains, the rest empty)."""
    res = smk(work, "-n", "-p", "--rerun-triggers", "mtime")
    outputs = set()
    rule = None
    for line in (res.stdout + res.stderr).splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if m:
            rule = m[1]
        m = re.match(r"\s+output: (.*)$", line)
        if m and rule in ("fewshot_split", "train_single", "train_joint", "frozen_features"):
            outputs.update(f.strip() for f in m[1].split(", "))
    assert outputs
    rng = np.random.default_rng(0)
    for f in sorted(outputs):
        path = work / f
        placed = layout.parse_result_path(f)
        if placed is not None:
            method, s, t, seed = placed
            base = 0.5 + 0.05 * TASKS.index(t)
            value = base if s == t else base + planted_gain(s, t)
            path.unlink(missing_ok=True)
            fakes.write_record(work / "results", method, s, t, seed, test=float(value + rng.normal(0, 0.003)), shots=3)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        os.utime(path, (stamp, stamp))


def run_round(work: Path, r: int, cfg: dict = STUDY) -> list[tuple[str, str]]:
    res = smk(work, "--cores", "1", "--rerun-triggers", "mtime", cfg=cfg, targets=(ROUND.format(r),))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return round_pairs(work, r)


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """A budgeted study's folder after two rounds: the DAG before any round, after round 0's checkpoint,
    and after round 0's jobs and round 1's checkpoint."""
    work = tmp_path_factory.mktemp("budgeted")
    stamp = time.time() - 3600
    before = dry_run(work)
    r0 = run_round(work, 0)
    after0 = dry_run(work)
    finish(work, after0[1], stamp)
    r1 = run_round(work, 1)
    after1 = dry_run(work, "--rerun-triggers", "mtime")
    return work, before, (r0, after0), (r1, after1)


def test_round_0_trains_the_baselines_and_only_the_initial_pairs(two_rounds):
    _, (counts, jobs, out), (r0, (counts0, jobs0, _)), _ = two_rounds
    assert "budgeted study: 5 of 10 unordered pairs (50 %) per method in 3 round(s) of 3, 1, 1" in out
    # before round 0 has chosen: the baselines and the checkpoint, no pair
    assert counts["train_single"] == len(TASKS) and counts["budget_round"] == 1 and "train_joint" not in counts
    assert [w for rule, w in jobs if rule == "budget_round"] == [{"method": "vpt", "round": "0"}]
    # after: exactly its pairs, one joint job each (both directions, both seeds stacked)
    assert len(r0) == 3 and trained_pairs(jobs0) == set(r0)
    assert counts0["train_joint"] == 3 and counts0["train_single"] == len(TASKS)
    assert [w["round"] for rule, w in jobs0 if rule == "budget_round"] == ["1"]


def test_the_dag_grows_by_rounds_and_never_retrains_a_finished_pair(two_rounds):
    work, _, (r0, _), (r1, (counts1, jobs1, _)) = two_rounds
    assert len(r1) == 1 and not set(r1) & set(r0)  # the next round, chosen from round 0's results
    assert trained_pairs(jobs1) == set(r1)  # only its pair; round 0's and the baselines are done
    assert "train_single" not in counts1 and "fewshot_split" not in counts1
    assert [w["round"] for rule, w in jobs1 if rule == "budget_round"] == ["2"]
    # the round read what round 0 measured: its log names it, and its file ranks pairs of the study
    assert all(a in TASKS and b in TASKS and TASKS.index(a) < TASKS.index(b) for a, b in r0 + r1)


def test_a_larger_budget_keeps_every_round_and_finished_job(two_rounds):
    """Under the default rerun triggers (params included): a larger budget changes no round's command, so
    rounds 0 and 1 stay, and their pairs are not trained again; a changed rule chooses round 1 again (its
    command changed) but keeps round 0, the initial design, which does not read the rule."""
    work, *_ = two_rounds
    larger = {**STUDY, "budget": {**STUDY["budget"], "pairs": 0.8}}
    counts, jobs, out = dry_run(work, cfg=larger)
    assert "8 of 10 unordered pairs (80 %) per method in 6 round(s)" in out
    assert [w["round"] for rule, w in jobs if rule == "budget_round"] == ["2"]
    assert "train_single" not in counts
    assert trained_pairs(jobs) == set(round_pairs(work, 1))  # round 1's pair, still to train; nothing else
    other_rule = {**STUDY, "budget": {**STUDY["budget"], "rule": "random"}}
    counts, jobs, out = dry_run(work, cfg=other_rule)
    assert [w["round"] for rule, w in jobs if rule == "budget_round"] == ["1"]
    # side information: its jobs join round 1's inputs (which its command now names), round 0 stays
    with_side = {**STUDY, "budget": {**STUDY["budget"], "side": ["baseline", "label_match"]}}
    counts, jobs, out = dry_run(work, cfg=with_side)
    assert [w["round"] for rule, w in jobs if rule == "budget_round"] == ["1"]
    assert counts["similarity"] == 1 and counts["embed_task_labels"] == len(TASKS)
    assert "--side label_match=results/similarity/label_match.csv" in smk(work, "-n", "-p", cfg=with_side).stdout


def test_bad_budget_config_stops_the_budgeted_run_in_one_sentence(tmp_path):
    res = smk(tmp_path, "-n", cfg={**STUDY, "budget": {"pairs": 1.5}})
    out = res.stdout + res.stderr
    assert res.returncode != 0
    sentence = "invalid config: budget.pairs is 1.5, a decimal above 1: give a fraction of the pairs in (0, 1] or a whole number of pairs."
    assert sentence in out, out[-2000:]
    res = smk(tmp_path, "-n", cfg={**STUDY, "tasks": TASKS[:2]})
    assert res.returncode != 0 and "the budgeted study needs at least 3 tasks (the config has 2)" in res.stdout + res.stderr
    # the pairwise study of the same config does not read the section's sense
    res = smk(tmp_path, "-n", "--quiet", "rules", cfg={**STUDY, "budget": {"pairs": 1.5}}, targets=())
    assert res.returncode == 0, (res.stdout + res.stderr)[-2000:]


@pytest.mark.slow
def test_a_small_budgeted_study_runs_end_to_end(tmp_path):
    """4 tasks, VPT, one seed and epoch, half of the 6 pairs in 2 rounds: trained, completed, reported."""
    cfg = {
        **STUDY,
        "tasks": TASKS[:4],
        "seeds": [1],
        "budget": {"pairs": 0.5, "round_size": 1, "initial": 2},
    }
    t0 = time.monotonic()
    res = smk(tmp_path, "--cores", "2", cfg=cfg)
    wall = time.monotonic() - t0
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    r0, r1 = round_pairs(tmp_path, 0), round_pairs(tmp_path, 1)
    assert (len(r0), len(r1)) == (2, 1) and not (tmp_path / ROUND.format(2)).exists()
    assert len(re.findall(r"^(?:local)?rule train_joint:$", log, flags=re.M)) == 3
    assert len(re.findall(r"^(?:local)?rule train_single:$", log, flags=re.M)) == 4
    bdir = tmp_path / "results" / "budget"
    completed = pd.read_csv(layout.BUDGET_TABLE.path(bdir, "vpt", "completed", "csv"))
    assert len(completed) == 12 and int(completed["measured"].sum()) == 6
    measured = {tuple(x) for x in completed.loc[completed["measured"], ["source", "target"]].to_numpy()}
    assert measured == set(budget.cells_of(r0 + r1, symmetric=True))
    assert completed.loc[~completed["measured"], "lo"].lt(completed.loc[~completed["measured"], "hi"]).all()
    best = pd.read_csv(layout.BUDGET_TABLE.path(bdir, "vpt", "best_source", "csv"))
    assert set(best["target"]) == set(cfg["tasks"]) and best["probability"].between(0, 1).all()
    progress = pd.read_csv(layout.BUDGET_TABLE.path(bdir, "vpt", "progress", "csv"))
    assert progress["pairs"].tolist() == [2, 3] and progress["share"].tolist() == [2 / 6, 3 / 6]
    for name in ("completed", "progress"):
        assert layout.BUDGET_FIGURE.path(bdir, "vpt", name, "png").stat().st_size > 0
    assert wall < 300, wall
    res = smk(tmp_path, "-n", cfg=cfg)
    assert "Nothing to be done" in res.stdout + res.stderr
