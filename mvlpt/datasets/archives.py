"""Open archive handles, one set per process (reopened after a fork, e.g. in DataLoader workers)."""

from __future__ import annotations

import os
import tarfile
import threading
import zipfile
from pathlib import Path

_lock = threading.Lock()
_pid = -1
_zips: dict[str, zipfile.ZipFile] = {}
_files: dict[str, object] = {}


def _check_pid() -> None:
    global _pid, _zips, _files
    if _pid != os.getpid():
        # Handles inherited through fork share a file offset with the parent: never reuse them.
        _zips, _files, _pid = {}, {}, os.getpid()


def zip_handle(path: str | Path) -> zipfile.ZipFile:
    key = str(path)
    with _lock:
        _check_pid()
        zf = _zips.get(key)
        if zf is None:
            zf = zipfile.ZipFile(key)
            _zips[key] = zf
        return zf


def read_zip_member(path: str | Path, member: str) -> bytes:
    """Bytes of ``member`` in zip ``path`` (tries ``\\``->``/`` and a leading ``/`` stripped)."""
    zf = zip_handle(path)
    for name in dict.fromkeys((member, member.replace("\\", "/"), member.replace("\\", "/").lstrip("/"))):
        try:
            info = zf.getinfo(name)
        except KeyError:
            continue
        with _lock:  # ZipFile reads from one shared file object
            return zf.read(info)
    raise KeyError(f"no member {member!r} in {path}")


def read_range(path: str | Path, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of a plain file (a tar shard member's data)."""
    key = str(path)
    with _lock:
        _check_pid()
        fh = _files.get(key)
        if fh is None:
            fh = open(key, "rb")
            _files[key] = fh
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise OSError(f"file ended after {len(data)} of {size} bytes")
    return data


def close_all() -> None:
    with _lock:
        for zf in _zips.values():
            zf.close()
        for fh in _files.values():
            fh.close()
        _zips.clear()
        _files.clear()


def is_tar(path: str | Path) -> bool:
    try:
        return tarfile.is_tarfile(str(path))
    except OSError:
        return False
