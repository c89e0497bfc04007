"""The study on a real SLURM cluster, through the project's own profile (workflow/profiles/slurm).

A single-node cluster (munge, MariaDB + slurmdbd, slurmctld, slurmd from Debian packages, one fake
GPU) is installed and started by tests/slurm/cluster.sh, snakemake-executor-plugin-slurm is
installed into a temporary folder (the project's environment stays as it is), and a small study is
run twice: on the cluster with `--workflow-profile workflow/profiles/slurm`, and locally with
`--cores 2`. The result files must agree (CPU, deterministic; only the measured wall time may
differ), and every job must have gone through SLURM (sacct, scontrol, the plugin's logs).

Runs only as root on Debian (it installs packages, writes /etc/slurm and starts daemons) and is
skipped with the reason otherwise; MVLPT_SKIP_SLURM=1 skips it anywhere. `pytest tests/workflow/test_slurm.py
-s` prints the wall times of both runs. The daemons it started are stopped by PID at the end, also
when the test fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
SNAKEFILE = REPO / "Snakefile"

# Tested together with snakemake 9.27.1 (pinned: the test installs exactly these, without deps;
# their dependencies, numpy, pandas, pyyaml, throttler and the snakemake interfaces, come with
# snakemake and mvlpt).
PLUGINS = ["snakemake-executor-plugin-slurm==2.8.0", "snakemake-executor-plugin-slurm-jobstep==0.6.1"]

# Binaries cluster.sh needs; if one is missing, `cluster.sh install` apt-gets the packages.
BINARIES = [
    "/usr/sbin/munged",
    "/usr/bin/munge",
    "/usr/sbin/mariadbd",
    "/usr/bin/mariadb-admin",
    "/usr/sbin/slurmdbd",
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/bin/sbatch",
    "/usr/bin/sacct",
    "/usr/bin/sacctmgr",
    "/usr/bin/squeue",
    "/usr/bin/sinfo",
    "/usr/bin/scontrol",
    "/usr/bin/scancel",
]
DAEMONS = {"slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mysqld"}
OUR_CONF_MARKERS = (
    "written by mvlpt tests/slurm/cluster.sh",  # tests/slurm/cluster.sh
    "Minimal single-node SLURM on loopback",  # the measured recipe it follows
)

# The study: two tasks, CoOp, one seed, two epochs -> 2 split files, 2 baselines, 1 joint run
# (both directions). On SLURM: one grouped submission for the splits, three GPU training jobs.
STUDY = {
    "tasks": ["shapes", "glyph-digits"],
    "methods": ["coop"],
    "seeds": [1],
    "shots": 4,
    "mode": "joint",
    "model": {"name": "mvlpt-tiny", "pretrained": "synthetic", "init_seed": 0},
    "train": {"epochs": 2, "batch_size": 8, "batch_size_multitask": 16, "cache_features": False},
    "device": "cpu",
    "results_dir": "results",
    "cache_dir": "cache",
}
RESULTS = [f"results/coop/{s}__{t}/seed1.json" for s in STUDY["tasks"] for t in STUDY["tasks"]]
SPLITS = [f"cache/splits/{t}/shots4_seed1.json" for t in STUDY["tasks"]]
# fields of a result file that may differ between two identical runs
VOLATILE = {"wall_time_s"}

LOCAL_TIMEOUT = 300
SLURM_TIMEOUT = 420


# ------------------------------------------------------------------------------------------------
# When this test may run
# ------------------------------------------------------------------------------------------------
def _running_daemons() -> list[str]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        if name in DAEMONS:
            found.append(f"{name} (pid {comm.parent.name})")
    return found


def _why_not() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.environ.get("MVLPT_SKIP_SLURM", "") not in ("", "0"):
        return "MVLPT_SKIP_SLURM is set"
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root: installs Debian packages, writes /etc/slurm and starts the SLURM daemons"
    if not Path("/etc/debian_version").exists():
        return "needs Debian (the cluster comes from Debian's slurm-wlm, slurmdbd, munge and mariadb-server)"
    missing = [b for b in BINARIES if not Path(b).exists()]
    if missing and not shutil.which("apt-get"):
        return f"SLURM is not installed ({missing[0]} missing) and there is no apt-get to install it"
    for tool in ("bash", "setpriv", "hostname", "free"):
        if not shutil.which(tool):
            return f"needs `{tool}`"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists():
        text = conf.read_text(errors="replace")
        if not any(m in text for m in OUR_CONF_MARKERS):
            return f"{conf} exists and was not written by tests/slurm/cluster.sh; not overwriting a real SLURM setup"
    running = _running_daemons()
    if running:
        return f"a SLURM/munge/MariaDB daemon is already running ({', '.join(running)}); not starting a second cluster"
    return None


# ------------------------------------------------------------------------------------------------
# Subprocesses: every one with a timeout; a timed-out one is stopped with its children
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    cmd: list[str]
    rc: int | None  # None: timed out
    out: str
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.out.splitlines()[-n:])

    def describe(self) -> str:
        status = "timed out" if self.rc is None else f"exit status {self.rc}"
        return f"`{' '.join(map(str, self.cmd))}`: {status} after {self.wall_s:.0f} s; last lines:\n{self.tail()}"


def _stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process group (Snakemake then scancels its SLURM jobs), SIGKILL after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(cmd, *, timeout: float, env=None, cwd=None) -> Run:
    cmd = [str(c) for c in cmd]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        out, _ = proc.communicate()
        rc = None
    return Run(cmd, rc, out or "", time.monotonic() - t0)


def _tail_file(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(cannot read: {e})"
    return "\n".join(lines[-n:])


# ------------------------------------------------------------------------------------------------
# Fixtures: the cluster, the plugin
# ------------------------------------------------------------------------------------------------
def _cancel_all_jobs() -> None:
    """Cancel whatever is left on the test cluster (it is ours alone) and wait for it to go."""
    q = run(["squeue", "-h", "-o", "%i"], timeout=20)
    ids = q.out.split() if q.ok else []
    if ids:
        run(["scancel", *ids], timeout=20)
        for _ in range(30):
            q = run(["squeue", "-h", "-o", "%i"], timeout=20)
            if not q.ok or not q.out.strip():
                break
            time.sleep(1)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = _why_not()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    if any(not Path(b).exists() for b in BINARIES):
        r = run(["bash", CLUSTER_SH, "install"], timeout=600)
        assert r.ok, f"installing the SLURM packages failed: {r.describe()}"
    cluster_dir = tmp_path_factory.mktemp("slurm-cluster")
    try:
        t0 = time.monotonic()
        r = run(["bash", CLUSTER_SH, "start", cluster_dir], timeout=180)
        if not r.ok:
            logs = "\n".join(
                f"--- {p}\n{_tail_file(p)}"
                for p in sorted((cluster_dir / "log").glob("*.out"))
                + [Path("/var/log/slurm/slurmctld.log"), Path("/var/log/slurm/slurmd.log")]
            )
            pytest.fail(f"starting the SLURM cluster failed: {r.describe()}\n{logs}")
        print(f"\n[slurm] cluster up in {time.monotonic() - t0:.1f} s ({cluster_dir})")
        yield cluster_dir
    finally:
        _cancel_all_jobs()
        r = run(["bash", CLUSTER_SH, "stop", cluster_dir], timeout=90)
        print(f"\n[slurm] {r.out.strip()}")
        left = [p for p in (cluster_dir / "pids").glob("*.pid")] if (cluster_dir / "pids").exists() else []
        assert r.ok and not left, f"stopping the SLURM cluster failed: {r.describe()}"


@pytest.fixture(scope="module")
def plugin_path(slurm_cluster, tmp_path_factory) -> str | None:
    """A PYTHONPATH entry holding the SLURM executor plugin, or None when the environment has it."""
    probe = "import snakemake_executor_plugin_slurm, snakemake_executor_plugin_slurm_jobstep"
    if run([sys.executable, "-c", probe], timeout=120).ok:
        return None
    target = tmp_path_factory.mktemp("slurm-plugin")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--target",
        target,
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        *PLUGINS,
    ]
    r = run(cmd, timeout=180)
    if not r.ok:  # one retry: a registry hiccup should not fail CI
        time.sleep(5)
        r = run(cmd, timeout=180)
    assert r.ok, f"installing {' '.join(PLUGINS)} failed (MVLPT_SKIP_SLURM=1 skips this test): {r.describe()}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])))
    r = run([sys.executable, "-c", probe], timeout=120, env=env)
    assert r.ok, f"the SLURM plugin does not import next to this snakemake: {r.describe()}"
    return str(target)


def _env(tmp: Path, plugin: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SNAKEMAKE_SLURM"))}
    # `mvlpt` (the rules' command) next to this interpreter, also when the venv is not activated
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env["MVLPT_DATA_DIR"] = str(tmp / "data")
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("PYTHONPATH", None)
    if plugin:
        env["PYTHONPATH"] = plugin
    return env


def _snakemake(*args) -> list:
    return [sys.executable, "-m", "snakemake", "--snakefile", SNAKEFILE, *args]


# ------------------------------------------------------------------------------------------------
# Diagnostics for a failed run
# ------------------------------------------------------------------------------------------------
def _diagnostics(run_: Run, workdir: Path) -> str:
    parts = [run_.describe()]
    slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
    for p in slurm_logs[-4:]:
        parts.append(f"--- SLURM log {p.relative_to(workdir)}\n{_tail_file(p)}")
    rule_logs = sorted((workdir / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime) if (workdir / "logs").exists() else []
    for p in rule_logs[-3:]:
        parts.append(f"--- rule log {p.relative_to(workdir)}\n{_tail_file(p, 15)}")
    for cmd in (["sinfo"], ["squeue", "--states=all"]):
        r = run(cmd, timeout=20)
        parts.append(f"--- {' '.join(cmd)}\n{r.out.strip()}")
    parts.append(f"--- /var/log/slurm/slurmctld.log\n{_tail_file(Path('/var/log/slurm/slurmctld.log'), 15)}")
    return "\n".join(parts)


def _read_results(workdir: Path) -> dict:
    out = {}
    for rel in RESULTS:
        data = json.loads((workdir / rel).read_text())
        out[rel] = {k: v for k, v in data.items() if k not in VOLATILE}
    for rel in SPLITS:
        out[rel] = json.loads((workdir / rel).read_text())
    return out


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------
def test_profile_plans_the_demo_study(slurm_cluster, plugin_path, tmp_path):
    """The profile parses with the plugin and groups the small jobs (dry run of the demo study)."""
    r = run(
        _snakemake("-n", "--directory", tmp_path, "--workflow-profile", PROFILE, "--configfile", REPO / "config" / "config.yaml"),
        timeout=180,
        env=_env(tmp_path, plugin_path),
    )
    assert r.ok, f"dry run with the SLURM profile failed: {r.describe()}"
    groups = set(re.findall(r"Group job (\S+) \(", r.out))
    assert {"splits", "label_embeddings", "similarity"} <= groups, (
        f"expected the profile's groups in the plan, found {sorted(groups)}:\n{r.tail()}"
    )


def test_study_on_slurm_equals_local_run(slurm_cluster, plugin_path, tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    local_dir.mkdir()
    slurm_dir.mkdir()

    # 1) locally, as `snakemake --cores 2` would (no workflow profile: only the study differs)
    local = run(
        _snakemake(
            *RESULTS,
            "--directory",
            local_dir,
            "--workflow-profile",
            "none",
            "--cores",
            "2",
            "--configfile",
            tmp_path / "study.yaml",
        ),
        timeout=LOCAL_TIMEOUT,
        env=_env(tmp_path),
    )
    assert local.ok, f"the local run failed: {_diagnostics(local, local_dir)}"

    # 2) on SLURM with the project's profile. Test-cluster settings on top: fast status checks (the
    # profile's 20 s suit real clusters) and memory requests capped at 2000 MB (the training rules ask
    # for 16000, more than a small CI machine has); `resources` keeps the profile's own entries.
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    resources = dict(profile.get("resources") or {}, mem_mb=2000)
    slurm = run(
        _snakemake(
            *RESULTS,
            "--directory",
            slurm_dir,
            "--workflow-profile",
            PROFILE,
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-keep-successful-logs",
            "--resources",
            *[f"{k}={v}" for k, v in resources.items()],
            "--configfile",
            tmp_path / "study.yaml",
        ),
        timeout=SLURM_TIMEOUT,
        env=_env(tmp_path, plugin_path),
    )
    assert slurm.ok, f"the SLURM run failed: {_diagnostics(slurm, slurm_dir)}"

    print(
        f"\n[slurm] wall time: SLURM {slurm.wall_s:.1f} s, local (--cores 2) {local.wall_s:.1f} s "
        f"(ratio {slurm.wall_s / local.wall_s:.2f})"
    )

    # 3) the same numbers
    local_results, slurm_results = _read_results(local_dir), _read_results(slurm_dir)
    for rel in local_results:
        assert slurm_results[rel] == local_results[rel], (
            f"{rel} differs between SLURM and local:\nSLURM: {slurm_results[rel]}\nlocal: {local_results[rel]}"
        )

    # 4) every job went through SLURM: one submission per job, each COMPLETED in the accounting
    # database, the GPU rules with a GPU request, and a SLURM log per submission
    run_id = re.search(r"SLURM run ID: (\S+)", slurm.out)
    assert run_id, f"no SLURM run ID in the output:\n{slurm.tail()}"
    submitted = dict(re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?$", slurm.out, re.M))
    assert len(submitted) == 4, f"expected 4 submissions (1 group of splits, 3 training jobs), got {submitted}"
    states = {}
    for _ in range(30):  # slurmdbd lags a moment behind the controller
        r = run(["sacct", "-X", "-n", "-P", "--format=JobIDRaw,State", "--name", run_id.group(1)], timeout=30)
        states = dict(line.split("|", 1) for line in r.out.split() if "|" in line)
        if set(submitted) <= set(states) and all(states[j] == "COMPLETED" for j in submitted):
            break
        time.sleep(1)
    assert set(submitted) <= set(states) and all(states[j] == "COMPLETED" for j in submitted), (
        f"sacct does not show every job COMPLETED: submitted {sorted(submitted)}, sacct {states}"
    )
    for job_id, log in submitted.items():
        r = run(["scontrol", "-o", "show", "job", job_id], timeout=30)
        assert r.ok, f"scontrol show job {job_id}: {r.describe()}"
        comment = re.search(r"Comment=(\S+)", r.out)
        tres = re.search(r"TresPerJob=(\S+)", r.out)
        if comment and comment.group(1).startswith("rule_train"):  # gpu=1 -> sbatch --gpus=1
            assert tres and "gpu" in tres.group(1), f"no GPU request in SLURM job {job_id}:\n{r.out}"
        assert Path(log).is_file(), f"no SLURM log {log} for job {job_id}"
