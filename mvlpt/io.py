"""Atomic file writes: a temp file in the same folder, fsync, then rename.

An interrupted writer leaves either the old file, no file, or a ``.tmp`` leftover that no reader
mistakes for a finished output; never a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import MvlptError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``."""
    path = Path(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
            raise MvlptError(f"cannot write {path}: {blocker} is a file, not a folder.") from None
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise MvlptError(f"cannot write {path}: {e.strerror or e}.") from None
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MvlptError(f"cannot write {path}: {e.strerror or e}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "file"):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MvlptError(f"{what} {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MvlptError(f"{what} {path} is not valid JSON ({e}); delete it and rerun the step that makes it.") from None
