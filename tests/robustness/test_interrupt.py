"""Interruption anywhere (issue 7, part 1; issue 14, items 6 and 7): SIGKILL leaves either no file or a
complete one, the README's plain command redoes only what is incomplete, and a killed training resumes
from its saved state.

* ``test_sigkilled_training_resumes_from_its_state``: ``mvlpt train --state F`` killed with SIGKILL
  after a state save resumes there (it says so) and ends with the metrics of an uninterrupted run.
  (``tests/training/test_train.py::test_resume_equals_uninterrupted`` interrupts in-process, per method.)
* ``test_killed_study_reruns_to_identical_tables``: the shared small study (tests/studies.py), run in a copy
  of the checkout with the README's command ``snakemake --cores 2`` and nothing else (so the workflow profile
  profiles/default applies), first uninterrupted (the session fixture ``finished_study``), then killed
  (the whole process group, SIGKILL) three times: once just after the first resumable training state is
  saved, then at seeded random moments (each 10-50 % of the uninterrupted wall time into its rerun). After every kill each file
  under a final name is complete; every rerun is the same plain command (the killed run's lock is
  removed by the workflow, its incomplete jobs redone by the profile's rerun-incomplete); training
  jobs killed after a state save resume from it (their logs say so, no state goes back to an
  earlier epoch); the last rerun ends with tables equal to the uninterrupted run's (CPU:
  bit-identical metrics) and nothing left to do.
* ``test_orphaned_jobs_of_a_killed_snakemake``: in a copy of the finished study missing one result, only
  Snakemake is killed while it reruns that training job; the job lives on (held stopped by the test, so
  that it surely outlives the rerun). The plain rerun refuses to start
  beside it and names it; once the orphan has ended (and written its outputs), the plain rerun redoes
  its job and ends with the uninterrupted run's tables.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open

from mvlpt.cli import main
from mvlpt.study.results import read_result
from mvlpt.training.checkpoints import load_state
from studies import CACHE, README_COMMAND, checkout, copy_study, env

RESUMED = "resuming from the saved training state"
N_KILLS = 2  # at random moments, after one kill just after a state save
KILL_SEED = 7
UNLOCKED = "removed the lock left by a killed Snakemake"
# The study killed here is the shared study of tests/studies.py (three tasks, CoOp with its frozen-feature
# cache and VPT, two stacked seeds, a state saved after every epoch, then the analysis): its finished copy,
# the session fixture ``finished_study``, is the uninterrupted reference.


# --------------------------------------------------------------------------------------------------
# mvlpt level: SIGKILL after a state save, then resume
# --------------------------------------------------------------------------------------------------
def _train_args(tmp_path, out, *extra):
    opts = json.dumps({"epochs": 4, "lr": 0.01, "batch_size": 8, "warmup_epochs": 0, "checkpoint_every": 1})
    return [
        "train",
        "--method",
        "vpt",
        "--task",
        "shapes",
        "--seed",
        "1",
        "--shots",
        "3",
        "--train-options",
        opts,
        "--pretrained",
        "synthetic",
        "--device",
        "cpu",
        "--output",
        f"shapes={out}",
        *extra,
    ]


@pytest.mark.slow
def test_sigkilled_training_resumes_from_its_state(tmp_path, capsys):
    full = tmp_path / "full.json"
    assert main(_train_args(tmp_path, full)) == 0
    capsys.readouterr()

    state, out = tmp_path / "state" / "run.safetensors", tmp_path / "killed.json"
    args = _train_args(tmp_path, out, "--state", str(state))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvlpt.cli", *args],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not state.exists():  # written atomically: once it is there, it is whole
            assert proc.poll() is None, f"training ended before its first state save: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no training state within 300 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed run leaves no result"
    _, meta = load_state(state)  # complete and readable
    saved_at = meta["next_epoch"]
    assert 1 <= saved_at < 4
    # beside it at most the hidden temporary file of a save the kill interrupted, never a second state
    others = [p.name for p in state.parent.iterdir() if p != state]
    assert all(n.startswith(f".{state.name}.") and n.endswith(".tmp") for n in others), others

    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{RESUMED} {state} at epoch {saved_at + 1} of 4" in err, err
    assert not state.exists(), "the state is removed once the run is complete"
    assert not list(state.parent.iterdir()), "and so are temporary files a killed save left"
    a, b = read_result(full), read_result(out)
    for key in ("test", "val", "best_epoch", "config_hash", "n_train", "n_val", "n_test"):
        assert a[key] == b[key], key


# --------------------------------------------------------------------------------------------------
# Snakemake level: the study killed at random moments
# --------------------------------------------------------------------------------------------------
def _start(workdir, *args, log_name):
    log = open(workdir / log_name, "w")
    proc = subprocess.Popen(
        [*README_COMMAND, *args], cwd=workdir, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )  # its own process group: snakemake and every job it starts
    log.close()
    return proc


def _group_alive(pgid):
    """Processes of group ``pgid`` that are not zombies."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid):  # every job of the group is gone before the files are inspected
        assert time.monotonic() < deadline, f"processes of group {proc.pid} survived SIGKILL"
        time.sleep(0.05)


def _run_to_end(workdir, *args, log_name, timeout=900):
    proc = _start(workdir, *args, log_name=log_name)
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert rc == 0, (workdir / log_name).read_text()[-4000:]


TIMES = ("wall_time_s", "cost_s")  # a run's wall time, a predictor's compute time: the only columns that may differ


def _tables(workdir):
    """Every CSV table of the study, the measured times (TIMES) left out."""
    root = workdir / "results" / "tables"
    out = {}
    for p in sorted(root.rglob("*.csv")):
        df = pd.read_csv(p)
        out[str(p.relative_to(root))] = df.drop(columns=[c for c in df.columns if c in TIMES])
    return out


def _visible(paths):
    return [p for p in paths if not p.name.startswith(".")]  # .name.XXXX.tmp: an atomic write's leftover


def _check_nothing_half_written(workdir):
    """Every file under a final name is complete; returns the number of files checked."""
    n = 0
    results, cache = workdir / "results", workdir / CACHE
    for p in _visible((results).glob("*/*__*/seed*.json")):
        read_result(p)  # parses, current format, every required field
        n += 1
    for p in _visible(results.glob("prompts/**/*.safetensors")):
        with safe_open(str(p), "pt") as fh:
            assert fh.metadata().get("kind") == "prompt", p
            for k in fh.keys():
                fh.get_tensor(k)
        n += 1
    for p in _visible(cache.glob("splits/**/*.json")):
        split = json.loads(p.read_text())
        assert split["train"] and split["val"], p
        n += 1
    for p in _visible(cache.glob("features/*.done.json")):
        json.loads(p.read_text())
        n += 1
    for p in _visible(cache.glob("features/**/*.safetensors")):
        with safe_open(str(p), "pt") as fh:
            fh.get_tensor("features")
        n += 1
    for p in _visible(cache.glob("state/**/*.state.safetensors")):
        load_state(p)
        n += 1
    for p in _visible(results.glob("tables/**/*.csv")):
        pd.read_csv(p)
        n += 1
    for p in _visible(results.glob("tables/**/*.parquet")):
        pd.read_parquet(p)
        n += 1
    for p in _visible(results.glob("similarity/*.parquet")):
        pd.read_parquet(p)
        n += 1
    return n


def _states(workdir):
    """Resumable training states on disk: path (relative to the work dir, as mvlpt names it) -> next epoch."""
    states = _visible((workdir / CACHE).glob("state/**/*.state.safetensors"))
    return {str(p.relative_to(workdir)): load_state(p)[1]["next_epoch"] for p in states}


def _check_resumed(workdir, before, after):
    """Jobs whose state existed when a segment started: those that finished in it say they resumed, and
    no state goes back to an earlier epoch (a job that started over would). Returns the resumed count."""
    logs = "\n".join(p.read_text(errors="replace") for p in (workdir / "logs").rglob("*.log"))
    resumed = 0
    for path, epoch in before.items():
        if path in after:
            assert after[path] >= epoch, f"{path} went back from epoch {epoch} to {after[path]}: the job started over"
        else:
            assert f"{RESUMED} {path} at epoch" in logs, f"the job of {path} finished without resuming from it"
            resumed += 1
    return resumed


@pytest.fixture(scope="module")
def reference(finished_study):
    """The study run uninterrupted (the shared study, built by the README's command): its tables, and its wall time."""
    tables = _tables(finished_study.work)
    cfg = finished_study.cfg
    assert {"runs.csv", "pairs.csv", "correlations.csv", "matrices/coop_gain.csv", "matrices/vpt_gain.csv"} <= set(tables)
    assert len(tables["runs.csv"]) == len(cfg["methods"]) * len(cfg["seeds"]) * len(cfg["tasks"]) ** 2  # every run
    assert "Using workflow specific profile profiles/default" in finished_study.log
    return tables, finished_study.wall_s


def _check_same_tables_and_done(work, reference_tables):
    rerun = _tables(work)
    assert rerun.keys() == reference_tables.keys()
    for name, df in reference_tables.items():
        pd.testing.assert_frame_equal(rerun[name], df, check_exact=True, obj=name)
    assert not _states(work), "no resumable state is left once every job is complete"
    proc = subprocess.run([*README_COMMAND, "-n"], cwd=work, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.slow
def test_killed_study_reruns_to_identical_tables(reference, tmp_path):
    reference_tables, t_ref = reference
    work = checkout(tmp_path)
    kills, segments, resumed, states = [], [], 0, {}
    t0 = time.monotonic()

    def segment(k, stop):
        """Run the study until ``stop()`` says kill (then SIGKILL its process group) or it ends."""
        nonlocal resumed, states
        proc = _start(work, log_name=f"segment{k}.log")
        started = time.monotonic()
        try:
            while proc.poll() is None and not stop(time.monotonic() - started):
                assert time.monotonic() - started < 900, "a segment ran for 900 s"
                time.sleep(0.02)
        finally:
            finished = proc.poll() is not None
            if not finished:
                _kill_group(proc)
        log = (work / f"segment{k}.log").read_text()
        assert not finished or proc.returncode == 0, log[-4000:]
        if k and kills[-1]["hit"]:  # the plain command got past the lock of the run killed before
            assert UNLOCKED in log, log[-4000:]
        incomplete = work / ".snakemake" / "incomplete"
        marked = len(list(incomplete.iterdir())) if incomplete.is_dir() else 0
        checked = _check_nothing_half_written(work)
        after = _states(work)
        resumed += _check_resumed(work, states, after)
        states = after
        segments.append(round(time.monotonic() - started, 1))
        kills.append(
            {
                "after_s": segments[-1],
                "hit": not finished,
                "outputs_marked_incomplete": marked,
                "files_checked": checked,
                "training_states": len(after),
            }
        )
        return finished, time.monotonic() - started

    # Kill 1 lands just after the first resumable training state is saved, so that resuming is
    # exercised whatever the timing; the others at seeded random moments.
    finished, _ = segment(0, lambda t: bool(_visible((work / CACHE).glob("state/**/*.state.safetensors"))))
    assert not finished and kills[0]["training_states"] >= 1
    # Each rerun starts with Snakemake's own start-up and lost work to redo, so each random kill is
    # drawn on its own segment's clock (not as differences of one timeline, which would land the
    # later kills in Snakemake's start-up on a fast machine).
    rng = random.Random(KILL_SEED)
    delays = [rng.uniform(0.1, 0.5) * t_ref for _ in range(N_KILLS)]
    for k, delay in enumerate(delays):
        finished, _ = segment(k + 1, lambda t, d=delay: t >= d)
        if finished:
            break

    if not finished:
        segment(len(kills), lambda t: False)  # the final rerun: the same plain command, to the end
    t_killed = time.monotonic() - t0
    _check_nothing_half_written(work)
    _check_same_tables_and_done(work, reference_tables)

    leftovers = [p for p in work.rglob(".*.tmp")]
    print(
        f"\nkill test: {sum(k['hit'] for k in kills)} kills hit a running study "
        f"(seed {KILL_SEED}): {kills}; training jobs that resumed from a saved state: {resumed}; identical reruns: 1 of 1; "
        f"uninterrupted {t_ref:.1f} s, interrupted + reruns {t_killed:.1f} s (segments {segments}); "
        f"atomic-write leftovers: {len(leftovers)}"
    )
    assert resumed >= 1, "no killed training job was seen resuming from its state"


@pytest.mark.slow
def test_orphaned_jobs_of_a_killed_snakemake(reference, finished_study, tmp_path):
    """Only Snakemake is killed; its training job, orphaned, lives on and writes its outputs later. The
    rerun must not run beside it (both would write the same files), must say why, and must recover once
    it has ended. The test holds the orphan stopped (SIGSTOP) while the rerun starts, so that the orphan
    surely outlives it, then lets it finish. It starts from a copy of the finished study with one result of
    the joint VPT run {shapes, orientation} deleted: the plain command reruns that job (and what reads it)."""
    reference_tables, _ = reference
    work = copy_study(finished_study, tmp_path / "work").work
    (work / "results" / "vpt" / "orientation__shapes" / "seed1.json").unlink()
    proc = _start(work, log_name="killed.log")
    try:
        deadline = time.monotonic() + 600
        while not _visible((work / CACHE).glob("state/**/*.state.safetensors")):  # a training job is mid-run
            assert proc.poll() is None, (work / "killed.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "no training state within 600 s"
            time.sleep(0.02)
        jobs = [pid for pid in _group_alive(proc.pid) if pid != proc.pid]  # what Snakemake started
        assert jobs
        for pid in jobs:
            os.kill(pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)  # Snakemake alone: its jobs are orphaned
        proc.wait()
        orphans = [pid for pid in jobs if pid in _group_alive(proc.pid)]
        assert orphans, "no job outlived Snakemake"

        refused = subprocess.run(README_COMMAND, cwd=work, env=env(), capture_output=True, text=True, timeout=300)
        out = refused.stdout + refused.stderr
        assert refused.returncode != 0, out[-4000:]
        assert "jobs of a killed Snakemake" in out and any(f"{pid} (" in out for pid in orphans), out[-4000:]
        assert "wait for them to end (or kill them)" in out, out[-4000:]
        print(
            "\norphan test: the rerun beside the orphaned job said:",
            next(line for line in out.splitlines() if "jobs of a killed Snakemake" in line),
        )
    finally:
        for pid in _group_alive(proc.pid):
            os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 600
    while _group_alive(proc.pid):  # the orphans finish their run and write its outputs
        assert time.monotonic() < deadline, "the orphaned jobs did not end within 600 s"
        time.sleep(0.1)
    _check_nothing_half_written(work)

    _run_to_end(work, log_name="rerun.log")
    assert UNLOCKED in (work / "rerun.log").read_text()
    _check_nothing_half_written(work)
    _check_same_tables_and_done(work, reference_tables)


def test_removing_a_state_removes_what_a_killed_save_of_it_left(tmp_path):
    from mvlpt.training.checkpoints import remove

    state = tmp_path / "run.safetensors"
    state.write_bytes(b"state")
    leftover = tmp_path / ".run.safetensors.abc123.tmp"  # the name mvlpt.io.atomic_path gives a save in progress
    leftover.write_bytes(b"half")
    other = tmp_path / ".other.safetensors.abc123.tmp"  # another file's: not this state's business
    other.write_bytes(b"x")
    remove(state)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]
