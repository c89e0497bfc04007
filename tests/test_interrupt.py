"""Interruption anywhere (issue 7, part 1): SIGKILL leaves either no file or a complete one, a rerun
redoes only what is incomplete, and a killed training resumes from its saved state.

* ``test_sigkilled_training_resumes_from_its_state``: ``mvlpt train --state F`` killed with SIGKILL
  after a state save resumes there (it says so) and ends with the metrics of an uninterrupted run.
  (``tests/test_train.py::test_resume_equals_uninterrupted`` interrupts in-process, per method.)
* ``test_killed_study_reruns_to_identical_tables``: a small study run through Snakemake, first
  uninterrupted, then killed (the whole process group, SIGKILL) three times: once just after the
  first resumable training state is saved, then at seeded random moments (each 10-50 % of the
  uninterrupted wall time into its rerun). After every kill each file under a final name is
  complete; every rerun starts with ``snakemake --unlock`` and runs ``--rerun-incomplete``;
  training jobs killed after a state save resume from it (their logs say so, no state goes back
  to an earlier epoch); the last rerun ends with tables equal to the uninterrupted run's (CPU:
  bit-identical metrics) and nothing left to do.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open

from mvlpt.checkpoints import load_state
from mvlpt.cli import main
from mvlpt.results import read_result

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
RESUMED = "resuming from the saved training state"

# Small but complete: baselines and joint pairs, CoOp (frozen-feature cache) and VPT, two stacked
# seeds, a state saved after every epoch. Tables only (collect_results): no similarity or figures.
STUDY = textwrap.dedent("""\
    tasks: [shapes, orientation]
    methods: [coop, vpt]
    seeds: [1, 2]
    shots: 3
    device: cpu
    model: {name: mvlpt-tiny, pretrained: synthetic, init_seed: 0}
    train: {epochs: 3, lr: 0.01, batch_size: 8, batch_size_multitask: 16, warmup_epochs: 0, checkpoint_every: 1}
    results_dir: results
    cache_dir: cache
""")
TARGET = "collect_results"
N_KILLS = 2  # at random moments, after one kill just after a state save
KILL_SEED = 7


def _env():
    # one BLAS/OpenMP thread per job: two jobs on two cores without oversubscription
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --------------------------------------------------------------------------------------------------
# mvlpt level: SIGKILL after a state save, then resume
# --------------------------------------------------------------------------------------------------
def _train_args(tmp_path, out, *extra):
    opts = json.dumps({"epochs": 4, "lr": 0.01, "batch_size": 8, "warmup_epochs": 0, "checkpoint_every": 1})
    return ["train", "--method", "vpt", "--task", "shapes", "--seed", "1", "--shots", "3", "--train-options", opts,
            "--pretrained", "synthetic", "--device", "cpu", "--output", f"shapes={out}", *extra]


def test_sigkilled_training_resumes_from_its_state(tmp_path, capsys):
    full = tmp_path / "full.json"
    assert main(_train_args(tmp_path, full)) == 0
    capsys.readouterr()

    state, out = tmp_path / "state" / "run.safetensors", tmp_path / "killed.json"
    args = _train_args(tmp_path, out, "--state", str(state))
    proc = subprocess.Popen([sys.executable, "-m", "mvlpt.cli", *args], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
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
    assert [p.name for p in state.parent.iterdir()] == [state.name], "no temp file left next to the state"

    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{RESUMED} {state} at epoch {saved_at + 1} of 4" in err, err
    assert not state.exists(), "the state is removed once the run is complete"
    a, b = read_result(full), read_result(out)
    for key in ("test", "val", "best_epoch", "config_hash", "n_train", "n_val", "n_test"):
        assert a[key] == b[key], key


# --------------------------------------------------------------------------------------------------
# Snakemake level: the study killed at random moments
# --------------------------------------------------------------------------------------------------
def _smk(workdir, *args):
    return [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]


def _start(workdir, *args, log_name):
    log = open(workdir / log_name, "w")
    proc = subprocess.Popen(_smk(workdir, *args), cwd=workdir, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: snakemake and every job it starts
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


def _tables(workdir):
    """Every CSV table of the study, wall times left out (the only column that may differ)."""
    root = workdir / "results" / "tables"
    out = {}
    for p in sorted(root.rglob("*.csv")):
        df = pd.read_csv(p)
        out[str(p.relative_to(root))] = df.drop(columns=[c for c in df.columns if c == "wall_time_s"])
    return out


def _visible(paths):
    return [p for p in paths if not p.name.startswith(".")]  # .name.XXXX.tmp: an atomic write's leftover


def _check_nothing_half_written(workdir):
    """Every file under a final name is complete; returns the number of files checked."""
    n = 0
    results, cache = workdir / "results", workdir / "cache"
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
    return n


def _states(workdir):
    """Resumable training states on disk: path (relative to the work dir, as mvlpt names it) -> next epoch."""
    return {str(p.relative_to(workdir)): load_state(p)[1]["next_epoch"] for p in _visible((workdir / "cache").glob("state/**/*.state.safetensors"))}


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


@pytest.fixture
def study(tmp_path):
    def make(name):
        d = tmp_path / name
        d.mkdir()
        (d / "config.yaml").write_text(STUDY)
        return d
    return make


def test_killed_study_reruns_to_identical_tables(study):
    assert SNAKEMAKE.exists(), f"snakemake is not installed next to {sys.executable}"
    ref = study("uninterrupted")
    t0 = time.monotonic()
    _run_to_end(ref, TARGET, log_name="snakemake.log")
    t_ref = time.monotonic() - t0
    reference = _tables(ref)
    assert {"runs.csv", "pairs.csv", "matrices/coop_gain.csv", "matrices/vpt_gain.csv"} <= set(reference)
    assert len(reference["runs.csv"]) == 2 * 2 * 4  # methods x seeds x (source, target) pairs

    work = study("killed")
    kills, segments, resumed, states = [], [], 0, {}
    t0 = time.monotonic()

    def segment(k, stop):
        """Run the study until ``stop()`` says kill (then SIGKILL its process group) or it ends."""
        nonlocal resumed, states
        if k:
            _run_to_end(work, "--unlock", log_name=f"unlock{k}.log", timeout=300)
        proc = _start(work, TARGET, "--rerun-incomplete", log_name=f"segment{k}.log")
        started = time.monotonic()
        try:
            while proc.poll() is None and not stop(time.monotonic() - started):
                assert time.monotonic() - started < 900, "a segment ran for 900 s"
                time.sleep(0.02)
        finally:
            finished = proc.poll() is not None
            if not finished:
                _kill_group(proc)
        assert not finished or proc.returncode == 0, (work / f"segment{k}.log").read_text()[-4000:]
        incomplete = work / ".snakemake" / "incomplete"
        marked = len(list(incomplete.iterdir())) if incomplete.is_dir() else 0
        checked = _check_nothing_half_written(work)
        after = _states(work)
        resumed += _check_resumed(work, states, after)
        states = after
        segments.append(round(time.monotonic() - started, 1))
        kills.append({"after_s": segments[-1], "hit": not finished, "outputs_marked_incomplete": marked,
                      "files_checked": checked, "training_states": len(after)})
        return finished, time.monotonic() - started

    # Kill 1 lands just after the first resumable training state is saved, so that resuming is
    # exercised whatever the timing; the others at seeded random moments.
    finished, _ = segment(0, lambda t: bool(_visible((work / "cache").glob("state/**/*.state.safetensors"))))
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

    _run_to_end(work, "--unlock", log_name="unlock_final.log", timeout=300)
    started = time.monotonic()
    _run_to_end(work, TARGET, "--rerun-incomplete", log_name="final.log")
    segments.append(round(time.monotonic() - started, 1))
    t_killed = time.monotonic() - t0
    resumed += _check_resumed(work, states, _states(work))
    _check_nothing_half_written(work)

    rerun = _tables(work)
    assert rerun.keys() == reference.keys()
    for name, df in reference.items():
        pd.testing.assert_frame_equal(rerun[name], df, check_exact=True, obj=name)
    assert not _states(work), "no resumable state is left once every job is complete"
    proc = subprocess.run(_smk(work, TARGET, "-n"), cwd=work, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    leftovers = [p for p in work.rglob(".*.tmp")]
    print(f"\nkill test: {sum(k['hit'] for k in kills)} of {len(kills)} kills hit a running study "
          f"(seed {KILL_SEED}): {kills}; training jobs that resumed from a saved state: {resumed}; identical reruns: 1 of 1; "
          f"uninterrupted {t_ref:.1f} s, interrupted + reruns {t_killed:.1f} s (segments {segments}); "
          f"atomic-write leftovers: {len(leftovers)}")
    assert resumed >= 1, "no killed training job was seen resuming from its state"
