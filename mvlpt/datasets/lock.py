"""The lock file: what ``mvlpt data fetch`` put on disk, with sha256, so later runs can verify it.

``<data_dir>/mvlpt-data.lock.json``::

    {"format": 1,
     "tasks": {"cifar-10": {"route": "hub", "source": "clip-benchmark/wds_vtab-cifar10",
                            "revision": "<commit>", "dir": "cifar-10/hub", "fetched_at": "...",
                            "files": {"train/0.tar": {"sha256": "...", "size": 123, "url": "https://..."}}}}}

File paths are relative to the entry's ``dir``, which is relative to the data folder (or absolute
when the data sits elsewhere), so a data folder can be moved or shared as a whole.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mvlpt.datasets.paths import lock_path
from mvlpt.errors import MvlptError
from mvlpt.io import read_json, write_json

FORMAT = 1
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike, progress=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(_CHUNK)
            if not b:
                break
            h.update(b)
            if progress is not None:
                progress.update(len(b))
    return h.hexdigest()


def read_lock(data_dir: Path) -> dict:
    p = lock_path(data_dir)
    if not p.is_file():
        return {"format": FORMAT, "tasks": {}}
    data = read_json(p, what="lock file")
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tasks"), dict):
        raise MvlptError(f"lock file {p} is not a format-{FORMAT} mvlpt lock file; move it away and fetch again.")
    return data


def entry_dir(data_dir: Path, entry: dict) -> Path:
    d = Path(entry["dir"])
    return d if d.is_absolute() else Path(data_dir) / d


def record(
    data_dir: Path,
    task: str,
    *,
    route: str,
    folder: Path,
    files: Iterable[str],
    source: str = "",
    revision: str | None = None,
    urls: dict[str, str] | None = None,
    notes: str = "",
    hash_progress=None,
) -> dict:
    """Hash ``files`` (relative to ``folder``) and store them as ``task``'s entry in the lock file."""
    data_dir = Path(data_dir)
    folder = Path(folder)
    try:
        rel_dir = str(folder.resolve().relative_to(data_dir.resolve()))
    except ValueError:
        rel_dir = str(folder.resolve())
    entries = {}
    for f in sorted(set(files)):
        p = folder / f
        entries[f] = {"sha256": sha256_file(p, hash_progress), "size": p.stat().st_size}
        if urls and f in urls:
            entries[f]["url"] = urls[f]
    entry = {
        "route": route,
        "source": source,
        "revision": revision,
        "dir": rel_dir,
        "fetched_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "files": entries,
    }
    if notes:
        entry["notes"] = notes
    if hash_progress is not None and hasattr(hash_progress, "close"):
        hash_progress.close()
    lock = read_lock(data_dir)
    lock["tasks"][task] = entry
    lock["tasks"] = dict(sorted(lock["tasks"].items()))
    write_json(lock, lock_path(data_dir))
    return entry


def forget(data_dir: Path, task: str) -> None:
    lock = read_lock(data_dir)
    if lock["tasks"].pop(task, None) is not None:
        write_json(lock, lock_path(data_dir))


@dataclass
class Verdict:
    """The state of one task's locked files."""

    task: str
    status: str  # "present" | "missing" | "corrupt" | "not-locked"
    route: str = ""
    problems: list[str] = field(default_factory=list)
    n_files: int = 0
    n_bytes: int = 0

    def line(self) -> str:
        head = f"{self.task}: {self.status}"
        if self.route:
            head += f" (route {self.route}, {self.n_files} files, {self.n_bytes / 1e9:.2f} GB)"
        return head + "".join(f"\n    {p}" for p in self.problems)


def verify(data_dir: Path, task: str, *, quick: bool = False, hash_progress=None, lock: dict | None = None) -> Verdict:
    """Check ``task``'s locked files: all present with the recorded size and (unless ``quick``) sha256."""
    data_dir = Path(data_dir)
    lock = lock if lock is not None else read_lock(data_dir)
    entry = lock["tasks"].get(task)
    if entry is None:
        return Verdict(task, "not-locked")
    folder = entry_dir(data_dir, entry)
    v = Verdict(task, "present", route=entry.get("route", ""), n_files=len(entry["files"]))
    missing, corrupt = [], []
    for f, info in entry["files"].items():
        p = folder / f
        v.n_bytes += int(info.get("size", 0))
        if not p.is_file():
            missing.append(f"missing file {p}")
            continue
        size = p.stat().st_size
        if size != info.get("size"):
            corrupt.append(f"file {p} has {size} bytes, expected {info.get('size')} (sha256 {info['sha256']})")
            continue
        if not quick:
            actual = sha256_file(p, hash_progress)
            if actual != info["sha256"]:
                corrupt.append(f"checksum mismatch for {p}: expected sha256 {info['sha256']}, got {actual}")
    if corrupt:
        v.status = "corrupt"
    elif missing:
        v.status = "missing"
    v.problems = corrupt + missing
    return v
