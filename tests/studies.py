"""The one end-to-end study the tests share (issue 23): a small study run once per session.

``STUDY`` is the config: three tasks (enough for the predictor jobs), CoOp (frozen-feature cache) and
VPT, two stacked seeds, a resumable state saved after every epoch, then the analysis, the reference rows
and the predictors, with few resamples; its ``multitask`` section is used by ``snakemake multitask``
only. :func:`build` runs it in a copy of the checkout (:func:`checkout`) with the README's command
``snakemake --cores 2`` and nothing else, so the workflow profile profiles/default applies, exactly as a
user runs the demo. The conftest fixture ``finished_study`` builds it once; tests read it and never write
into it: a test that reruns or extends it works on :func:`copy_study`'s copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
README_COMMAND = [str(SNAKEMAKE), "--cores", "2"]  # README: "snakemake --cores 2", in the checkout
CONFIGFILE = "study.yaml"  # the study's config, also written as the checkout's config/config.yaml
CACHE = Path("resources") / "cache"  # the schema's default cache_dir, relative to the study folder

STUDY = {
    "tasks": ["shapes", "glyph-digits", "orientation"],
    "methods": ["coop", "vpt"],
    "seeds": [1, 2],
    "shots": 3,
    "mode": "joint",
    "device": "cpu",
    "model": {"name": "mvlpt-tiny", "pretrained": "synthetic", "init_seed": 0},
    "train": {"epochs": 3, "lr": 0.01, "batch_size": 8, "batch_size_multitask": 16, "warmup_epochs": 0, "checkpoint_every": 1},
    "similarity": {"sample_size": 8},
    "analysis": {"n_boot": 50, "n_perm": 50},
    # `snakemake multitask` on top: CoOp in both modes, two strategies, and SoftCPT
    "multitask": {"methods": ["coop", "softcpt"], "modes": ["init", "joint"], "strategies": ["all", "gain"], "k": 1},
}


class Study(NamedTuple):
    """A finished study: its folder, config file and config, the console output of its run and its wall time."""

    work: Path
    configfile: Path
    cfg: dict
    log: str
    wall_s: float


def env() -> dict:
    # one BLAS/OpenMP thread per job: two jobs on two cores without oversubscription
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def checkout(workdir: Path, cfg: dict = STUDY) -> Path:
    """A copy of the workflow as a user's checkout has it, with ``cfg`` as config/config.yaml (and as
    ``study.yaml``, for calls that name their config file)."""
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake")
    shutil.copy(REPO / "Snakefile", workdir / "Snakefile")
    for folder in ("workflow", "profiles"):
        shutil.copytree(REPO / folder, workdir / folder, ignore=ignore)
    (workdir / "config").mkdir()
    text = yaml.safe_dump(cfg)
    (workdir / "config" / "config.yaml").write_text(text)
    (workdir / CONFIGFILE).write_text(text)
    return workdir


def build(workdir: Path, cfg: dict = STUDY, timeout: float = 1800) -> Study:
    """Run the README's command in a fresh checkout at ``workdir`` to the end; the finished :class:`Study`."""
    assert SNAKEMAKE.exists(), f"snakemake is not installed next to {sys.executable}"
    checkout(workdir, cfg)
    t0 = time.monotonic()
    with open(workdir / "snakemake.log", "w") as log:
        proc = subprocess.run(README_COMMAND, cwd=workdir, env=env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    wall = time.monotonic() - t0
    text = (workdir / "snakemake.log").read_text()
    assert proc.returncode == 0, text[-6000:]
    return Study(workdir, workdir / CONFIGFILE, cfg, text, wall)


def copy_study(study: Study, dest: Path) -> Study:
    """A copy of a finished study at ``dest`` (time stamps kept, so Snakemake finds nothing to do there):
    for a test that reruns, extends or damages it."""
    shutil.copytree(study.work, dest, symlinks=True)
    return study._replace(work=dest, configfile=dest / CONFIGFILE)


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, timeout: int = 600):
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(output: str) -> dict[str, int]:
    """The `Job stats` table of a dry-run: rule -> number of jobs."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
    return counts
