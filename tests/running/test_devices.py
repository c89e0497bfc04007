"""Device selection and GPU leasing (mvlpt.running.devices), CPU-only: GPUs are faked with n_devices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mvlpt.errors import MvlptError
from mvlpt.running import devices
from mvlpt.running.devices import DeviceLease, describe_lease, lease_device, list_leases, resolve_device

SCHEDULER_ENV = ("SLURM_JOB_ID", "MVLPT_NO_LEASE", "CUDA_VISIBLE_DEVICES", "MVLPT_GPU_LOCK_DIR")

# A job that waits for the start signal, leases a (fake) GPU, holds it for a random time and
# records (device, start, end). time.monotonic is one system-wide clock on Linux.
HOLDER = textwrap.dedent(
    """
    import json, os, random, sys, time
    from mvlpt.running.devices import lease_device
    lock_dir, n, out, go, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    rng = random.Random(seed)
    open(out + ".ready", "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
    with lease_device("auto", lock_dir, wait=30, n_devices=n, poll_interval=0.02, label=f"job{seed}") as lease:
        t0 = time.monotonic()
        time.sleep(rng.uniform(0.15, 0.4))
        t1 = time.monotonic()
    with open(out, "w") as fh:
        json.dump({"device": lease.device, "start": t0, "end": t1, "pid": os.getpid()}, fh)
    """
)

# Leases the only fake GPU, says so, then sleeps until killed.
SLEEPER = textwrap.dedent(
    """
    import sys, time
    from mvlpt.running.devices import lease_device
    with lease_device("auto", sys.argv[1], n_devices=1, label="sleeper") as lease:
        open(sys.argv[2], "w").write(lease.device)
        time.sleep(120)
    """
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in SCHEDULER_ENV:
        monkeypatch.delenv(name, raising=False)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCHEDULER_ENV}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wait_for(path: Path, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"child exited early with {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.01)


def _per_device_overlaps(records: list[dict]) -> list[tuple]:
    """Pairs of holders whose intervals on the same device overlap (should be none)."""
    bad = []
    by_device: dict[str, list[dict]] = {}
    for r in records:
        by_device.setdefault(r["device"], []).append(r)
    for dev, rs in by_device.items():
        rs.sort(key=lambda r: r["start"])
        for a, b in zip(rs, rs[1:]):
            if b["start"] < a["end"]:
                bad.append((dev, a["pid"], b["pid"]))
    return bad


def _max_concurrency(records: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    cur = best = 0
    for _, step in events:  # at equal times -1 sorts first: touching intervals do not overlap
        cur += step
        best = max(best, cur)
    return best


def test_overlap_checker_detects_overlap():
    # the checker below must be able to fail, or the concurrency test proves nothing
    recs = [
        {"device": "cuda:0", "start": 0.0, "end": 1.0, "pid": 1},
        {"device": "cuda:0", "start": 0.5, "end": 1.5, "pid": 2},
        {"device": "cuda:1", "start": 0.0, "end": 1.0, "pid": 3},
    ]
    assert _per_device_overlaps(recs) == [("cuda:0", 1, 2)]
    assert _max_concurrency(recs) == 3
    recs[1]["start"] = 1.0
    assert _per_device_overlaps(recs) == []


def test_concurrent_processes_never_share_a_device(tmp_path):
    n_gpus, n_jobs = 2, 6
    lock_dir, go = tmp_path / "locks", tmp_path / "go"
    procs, outs = [], []
    for k in range(n_jobs):
        out = tmp_path / f"job{k}.json"
        outs.append(out)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(lock_dir), str(n_gpus), str(out), str(go), str(k)],
                env=_child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for out, proc in zip(outs, procs):
            _wait_for(Path(str(out) + ".ready"), 20, proc)
        go.touch()  # all jobs contend at once: more jobs than GPUs, so most of them must wait
        for proc in procs:
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    records = [json.loads(out.read_text()) for out in outs]
    assert len(records) == n_jobs
    assert {r["device"] for r in records} == {f"cuda:{i}" for i in range(n_gpus)}
    assert _per_device_overlaps(records) == []
    assert _max_concurrency(records) == n_gpus  # both GPUs were busy at once, never more
    assert sorted(p.name for p in lock_dir.iterdir()) == ["gpu0.lock", "gpu1.lock"]
    assert all(e["held"] == "no" for e in list_leases(lock_dir, n_devices=n_gpus))


def test_sigkilled_holder_frees_its_device(tmp_path):
    lock_dir, marker = tmp_path / "locks", tmp_path / "acquired"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, str(lock_dir), str(marker)],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(marker, 20, proc)
        assert marker.read_text() == "cuda:0"
        (entry,) = list_leases(lock_dir, n_devices=1)
        assert entry["held"] == "yes" and entry["pid"] == str(proc.pid) and entry["label"] == "sleeper"
        # busy: a short wait times out and names the lock dir and the holder
        t0 = time.monotonic()
        with pytest.raises(MvlptError) as exc:
            with lease_device("auto", lock_dir, wait=0.3, n_devices=1, poll_interval=0.05):
                pass
        assert 0.25 <= time.monotonic() - t0 < 3
        assert str(lock_dir) in str(exc.value) and f"pid {proc.pid}" in str(exc.value)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        t0 = time.monotonic()
        with lease_device("auto", lock_dir, wait=5, n_devices=1, poll_interval=0.05) as lease:
            assert lease.device == "cuda:0"
            assert time.monotonic() - t0 < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_timeout_when_all_busy_in_process(tmp_path):
    # flock locks belong to open file descriptions, so two leases in one process exclude each other
    with lease_device("cuda", tmp_path, n_devices=2) as a, lease_device("cuda", tmp_path, n_devices=2) as b:
        assert {a.device, b.device} == {"cuda:0", "cuda:1"}
        assert (a.index, b.index) == (0, 1)
        with pytest.raises(MvlptError, match="No free GPU"):
            with lease_device("auto", tmp_path, wait=False, n_devices=2):
                pass
        with pytest.raises(MvlptError, match=f"pid {os.getpid()}"):
            with lease_device("auto", tmp_path, wait=0.1, n_devices=2, poll_interval=0.02):
                pass
        info = Path(a.lock_path).read_text()
        assert f"pid={os.getpid()}" in info and "device=cuda:0" in info
    with lease_device("auto", tmp_path, wait=False, n_devices=2) as c:
        assert c.device == "cuda:0"


def test_released_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with lease_device("auto", tmp_path, n_devices=1) as lease:
            assert Path(lease.lock_path).read_text()
            raise RuntimeError("boom")
    assert Path(lease.lock_path).read_text() == ""  # note cleared on release
    with lease_device("auto", tmp_path, wait=False, n_devices=1) as again:
        assert again.device == "cuda:0"


def test_explicit_index_leases_that_gpu(tmp_path):
    with lease_device("cuda:1", tmp_path, n_devices=3) as lease:
        assert lease == DeviceLease("cuda:1", 1, str(tmp_path / "gpu1.lock"))
        with pytest.raises(MvlptError):
            with lease_device("cuda:1", tmp_path, wait=False, n_devices=3):
                pass
        with lease_device("cuda", tmp_path, wait=False, n_devices=3) as other:
            assert other.device == "cuda:0"


def test_lock_names_follow_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with lease_device("auto", tmp_path, n_devices=2) as a, lease_device("auto", tmp_path, n_devices=2) as b:
        assert (a.device, b.device) == ("cuda:0", "cuda:1")
        assert (Path(a.lock_path).name, Path(b.lock_path).name) == ("gpu4.lock", "gpu5.lock")


def test_cpu_requests_take_no_lock(tmp_path):
    with lease_device("cpu", tmp_path, n_devices=4) as lease:
        assert lease == DeviceLease("cpu", None, None)
    with lease_device("auto", tmp_path, n_devices=0) as lease:
        assert lease == DeviceLease("cpu", None, None)
    assert describe_lease(lease) == "cpu (no GPU lease)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("var,value", [("SLURM_JOB_ID", "12345"), ("MVLPT_NO_LEASE", "1")])
def test_scheduler_allocation_is_respected(tmp_path, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with lease_device("auto", tmp_path / "locks", n_devices=1) as a, lease_device("auto", tmp_path / "locks", n_devices=1) as b:
        assert a == b == DeviceLease("cuda", 0, None)
        assert value in describe_lease(a) and "CUDA_VISIBLE_DEVICES=3" in describe_lease(a)
    assert not (tmp_path / "locks").exists()


def test_lock_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MVLPT_GPU_LOCK_DIR", str(tmp_path / "shared"))
    assert devices.default_lock_dir() == str(tmp_path / "shared")
    with lease_device(n_devices=1) as lease:
        assert lease.lock_path == str(tmp_path / "shared" / "gpu0.lock")
        assert describe_lease(lease) == f"cuda:0 (lease {lease.lock_path})"
    monkeypatch.delenv("MVLPT_GPU_LOCK_DIR")
    assert devices.default_lock_dir().endswith(f"mvlpt-gpu-locks-{os.getuid()}")


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(devices, "_cuda_device_count", lambda: 0)
    assert resolve_device() == "cpu"
    assert resolve_device(None) == "cpu"
    assert resolve_device("cpu") == "cpu"
    for bad in ("cuda", "cuda:0", "CUDA"):
        with pytest.raises(MvlptError, match="no CUDA"):
            resolve_device(bad)
    with pytest.raises(MvlptError, match="no CUDA"):
        with lease_device("cuda"):
            pass
    monkeypatch.setattr(devices, "_cuda_device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device(" cuda:1 ") == "cuda:1"
    with pytest.raises(MvlptError, match="only 2 CUDA"):
        resolve_device("cuda:2")
    for bad in ("gpu", "cuda:x", "cpu:0", "mps"):
        with pytest.raises(MvlptError, match="Unknown device"):
            resolve_device(bad)


def test_real_torch_count_on_this_machine():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
