"""Pick the device a training job runs on, and lease one GPU per job on a multi-GPU workstation.

Snakemake's ``--resources gpu=8`` only *counts* GPUs: it never tells a job which one to use, so
without help every concurrent job would land on GPU 0. :func:`lease_device` fixes that with one
lock file per GPU (``gpu0.lock`` ... ``gpu{N-1}.lock``) in a lock directory. A job takes the first
free one with a non-blocking ``flock`` on a file descriptor that stays open for the lease's
lifetime. The kernel drops the lock when that descriptor closes, including when the process dies
(even by SIGKILL), so a crashed job never leaves a stale lease behind. The pid, host and time
written into the lock file are for people only: the lock decides who holds the GPU, not the
file's contents.

Which case applies:

* no CUDA, or ``requested="cpu"``: device ``"cpu"``, no lock;
* under a scheduler (``SLURM_JOB_ID`` is set) or with ``MVLPT_NO_LEASE=1``: the scheduler has
  already set ``CUDA_VISIBLE_DEVICES``, so use ``"cuda"`` (the first visible device), no lock;
* otherwise: lease a free GPU and use ``"cuda:<i>"``.

Typical use in a training entry point::

    with lease_device(args.device, label=run_id) as lease:
        log.info("device: %s", describe_lease(lease))
        if lease.index is not None:
            torch.cuda.set_device(lease.index)  # so that bare "cuda" tensors land on it too
        train(..., device=lease.device)

This module never changes ``CUDA_VISIBLE_DEVICES`` (it has no effect once CUDA is initialised),
and only imports torch when it has to count devices.

Lock file names follow physical GPU ids where they are known: if ``CUDA_VISIBLE_DEVICES=4,5`` is set
(by the user, not a scheduler), visible device ``cuda:0`` is leased through ``gpu4.lock``, so two
workflows given disjoint GPU sets by the user do not block each other. Without it,
``cuda:i`` uses ``gpu{i}.lock``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator

from mvlpt.errors import MvlptError

__all__ = [
    "DeviceLease",
    "default_lock_dir",
    "describe_lease",
    "lease_device",
    "list_leases",
    "resolve_device",
]

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "MVLPT_GPU_LOCK_DIR"
NO_LEASE_ENV = "MVLPT_NO_LEASE"
_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@dataclasses.dataclass(frozen=True)
class DeviceLease:
    """A device a job may use while the lease is held.

    ``device`` is a torch device string ("cpu", "cuda" or "cuda:<i>"); ``index`` is the CUDA
    ordinal as this process sees it (None on CPU); ``lock_path`` is the lock file held, or None
    when no lock is taken (CPU, scheduler allocation, MVLPT_NO_LEASE=1).
    """

    device: str
    index: int | None
    lock_path: str | None


# --------------------------------------------------------------------------------------------
# device resolution


def _cuda_device_count() -> int:
    """Number of CUDA devices torch can use in this process (0 if none). Tests patch this."""
    import torch  # imported lazily: callers on the CPU path pay nothing extra

    if not torch.cuda.is_available():
        return 0
    return int(torch.cuda.device_count())


def _count(n_devices: int | None) -> int:
    if n_devices is None:
        return _cuda_device_count()
    if isinstance(n_devices, bool) or not isinstance(n_devices, int) or n_devices < 0:
        raise ValueError(f"n_devices must be a non-negative int or None, got {n_devices!r}")
    return n_devices


def _resolve(requested: str | None, count: int) -> str:
    req = "auto" if requested is None else str(requested).strip().lower()
    if req == "auto":
        return "cuda" if count > 0 else "cpu"
    m = _DEVICE_RE.match(req)
    if m is None:
        raise MvlptError(f"Unknown device {requested!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    kind, idx = m.group(1), m.group(2)
    if kind == "cpu":
        if idx is not None:
            raise MvlptError(f"Unknown device {requested!r}; use 'cpu' without an index.")
        return "cpu"
    if count == 0:
        raise MvlptError(
            f"Device {requested!r} was requested but torch sees no CUDA GPU; "
            "request 'cpu' or 'auto' instead, or install a CUDA build of torch and check nvidia-smi."
        )
    if idx is not None and int(idx) >= count:
        visible = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise MvlptError(
            f"Device {requested!r} was requested but only {count} CUDA device(s) are visible "
            f"({visible}); pick one of those or use 'cuda'/'auto'."
        )
    return "cuda" if idx is None else f"cuda:{int(idx)}"


def resolve_device(requested: str | None = "auto", *, n_devices: int | None = None) -> str:
    """Validate a device request and return a torch device string.

    "auto" (or None) gives "cuda" when torch sees a CUDA GPU, else "cpu"; "cpu", "cuda" and
    "cuda:N" pass through once checked. A CUDA request that cannot be met raises MvlptError.
    ``n_devices`` overrides the CUDA device count (for tests; None asks torch).
    """
    return _resolve(requested, _count(n_devices))


def _index_of(device: str) -> int | None:
    if device == "cpu":
        return None
    return int(device.split(":", 1)[1]) if ":" in device else 0


# --------------------------------------------------------------------------------------------
# lock directory and lock files


def _scheduler_allocation() -> str | None:
    """Why no lease is taken (a scheduler or the user manages devices), or None."""
    if os.environ.get(NO_LEASE_ENV, "").strip() not in ("", "0"):
        return f"{NO_LEASE_ENV}={os.environ[NO_LEASE_ENV]}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"SLURM job {os.environ['SLURM_JOB_ID']}"
    return None


def default_lock_dir() -> str:
    """``$MVLPT_GPU_LOCK_DIR`` if set, else a per-user directory under the system temp dir."""
    env = os.environ.get(LOCK_DIR_ENV, "").strip()
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(tempfile.gettempdir(), f"mvlpt-gpu-locks-{os.getuid()}")


def _prepare_lock_dir(lock_dir: str | os.PathLike[str] | None) -> str:
    explicit = lock_dir is not None or bool(os.environ.get(LOCK_DIR_ENV, "").strip())
    path = os.path.abspath(os.fspath(lock_dir)) if lock_dir is not None else default_lock_dir()
    try:
        # 0o700 for the private default; an explicit dir may be shared on purpose (umask applies).
        os.makedirs(path, mode=0o777 if explicit else 0o700, exist_ok=True)
    except OSError as exc:
        raise MvlptError(
            f"Cannot create the GPU lock directory {path} ({exc.strerror}); set {LOCK_DIR_ENV} to a writable directory."
        ) from exc
    if not explicit:
        st = os.stat(path)
        if st.st_uid != os.getuid():
            raise MvlptError(
                f"The GPU lock directory {path} belongs to another user (uid {st.st_uid}); "
                f"set {LOCK_DIR_ENV} to a directory of your own."
            )
    return path


def _lock_names(count: int) -> list[str]:
    """Lock file name for each visible CUDA ordinal, keyed by physical id when known."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        entries = [e.strip() for e in cvd.split(",")]
        if len(entries) >= count and all(entries[:count]):
            names = [re.sub(r"[^A-Za-z0-9._-]", "_", e) for e in entries[:count]]
            if len(set(names)) == count:
                return [f"gpu{n}.lock" for n in names]
    return [f"gpu{i}.lock" for i in range(count)]


def _open_lock_file(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        # A shared lock dir where another user created the file: flock works on a read-only fd.
        return os.open(path, os.O_RDONLY)


def _try_lock(path: str) -> int | None:
    """Open ``path`` and take a non-blocking exclusive flock; the fd, or None if held elsewhere."""
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_info(fd: int, device: str, label: str | None) -> None:
    fields = {
        "pid": str(os.getpid()),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": device,
        "label": label or "",
        "cmd": " ".join(sys.argv)[:500],
    }
    text = "".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in fields.items())
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8", "replace"), 0)
    except OSError:
        pass  # read-only fd or full disk: the lock still holds, only the note is missing


def _read_info(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(4096)
    except OSError:
        return {}
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # no misleading note once the GPU is free
    except OSError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _timeout_of(wait: bool | float) -> float | None:
    """None = wait forever; otherwise the number of seconds to keep trying."""
    if wait is True:
        return None
    if wait is False:
        return 0.0
    timeout = float(wait)
    if timeout < 0 or timeout != timeout:
        raise ValueError(f"wait must be True, False or a non-negative number of seconds, got {wait!r}")
    return timeout


# --------------------------------------------------------------------------------------------
# public API


@contextlib.contextmanager
def lease_device(
    requested: str | None = "auto",
    lock_dir: str | os.PathLike[str] | None = None,
    wait: bool | float = True,
    *,
    n_devices: int | None = None,
    poll_interval: float = 0.5,
    label: str | None = None,
) -> Iterator[DeviceLease]:
    """Hold a device for the duration of a ``with`` block.

    requested: "auto", "cpu", "cuda" (any free GPU) or "cuda:N" (that GPU, waiting for it if
        another job holds it).
    lock_dir: where the ``gpu<i>.lock`` files live; default :func:`default_lock_dir`.
    wait: True waits as long as it takes, False tries once, a number waits at most that many
        seconds; when it runs out, MvlptError names the lock dir and the holders' pids.
    n_devices: number of CUDA devices to assume instead of asking torch (tests use it to fake
        GPUs on a CPU-only machine).
    poll_interval: seconds between attempts while every GPU is busy (jittered).
    label: free text written into the lock file so people can see which job holds a GPU.

    The lock is released on exit from the block, also when it raises. Call
    ``torch.cuda.set_device(lease.index)`` in the job when ``lease.index`` is not None.
    """
    count = _count(n_devices)
    device = _resolve(requested, count)
    if device == "cpu":
        yield DeviceLease("cpu", None, None)
        return
    reason = _scheduler_allocation()
    if reason is not None:
        log.debug("no GPU lease (%s): using %s", reason, device)
        yield DeviceLease(device, _index_of(device), None)
        return

    timeout = _timeout_of(wait)
    directory = _prepare_lock_dir(lock_dir)
    names = _lock_names(count)
    candidates = list(range(count)) if device == "cuda" else [_index_of(device)]
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while True:
        for i in candidates:
            path = os.path.join(directory, names[i])
            fd = _try_lock(path)
            if fd is None:
                continue
            leased = f"cuda:{i}"
            _write_info(fd, leased, label)
            log.debug("leased %s via %s", leased, path)
            try:
                yield DeviceLease(leased, i, path)
            finally:
                _release(fd)
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise MvlptError(_busy_message(directory, [names[i] for i in candidates], timeout))
        if not announced:
            log.info(
                "all %d candidate GPU(s) are leased (lock dir %s); waiting for one to free up",
                len(candidates),
                directory,
            )
            announced = True
        pause = max(0.0, poll_interval) * random.uniform(0.5, 1.5)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)


def _busy_message(directory: str, names: list[str], timeout: float | None) -> str:
    holders = []
    for name in names:
        info = _read_info(os.path.join(directory, name))
        holders.append(f"{name[:-5]} pid {info.get('pid', '?')}")
    waited = f"after waiting {timeout:g} s" if timeout else "and waiting was not allowed"
    return (
        f"No free GPU {waited}: every lock in {directory} is held ({', '.join(holders)}); "
        "wait for those jobs, lower --resources gpu=N, or pass a longer wait."
    )


def list_leases(lock_dir: str | os.PathLike[str] | None = None, *, n_devices: int | None = None) -> list[dict[str, str]]:
    """Which GPU lock is held and by whom, read from the lock dir (for humans and debugging).

    Each entry has "lock", "path", "held" ("yes"/"no") and, for held locks, the holder's note
    (pid, host, since, device, label, cmd). Probing briefly takes each free lock, so a job
    starting at that very moment may pick the next GPU instead; nothing else changes.
    """
    directory = os.path.abspath(os.fspath(lock_dir)) if lock_dir is not None else default_lock_dir()
    if n_devices is not None:
        names = _lock_names(_count(n_devices))
    elif os.path.isdir(directory):
        names = sorted(
            (f for f in os.listdir(directory) if re.fullmatch(r"gpu.+\.lock", f)),
            key=lambda f: (len(f), f),
        )
    else:
        names = []
    out = []
    for name in names:
        path = os.path.join(directory, name)
        entry = {"lock": name, "path": path}
        if not os.path.exists(path):
            entry["held"] = "no"
        else:
            fd = _try_lock(path)
            if fd is None:
                entry["held"] = "yes"
                entry.update(_read_info(path))
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                entry["held"] = "no"
        out.append(entry)
    return out


def describe_lease(lease: DeviceLease) -> str:
    """One line for logs, e.g. ``cuda:2 (lease /tmp/mvlpt-gpu-locks-1000/gpu2.lock)``."""
    if lease.device == "cpu":
        return "cpu (no GPU lease)"
    if lease.lock_path is not None:
        return f"{lease.device} (lease {lease.lock_path})"
    reason = _scheduler_allocation() or "no lease"
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = f", CUDA_VISIBLE_DEVICES={cvd}" if cvd is not None else ""
    return f"{lease.device} ({reason}{visible})"
