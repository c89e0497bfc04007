"""Atomic file writes: a temp file in the same folder, fsync, then rename.

An interrupted writer leaves either the old file, no file, or a ``.tmp`` leftover that no reader
mistakes for a finished output; never a half-written file under the final name. Files get the
permissions the umask gives any new file (``tempfile.mkstemp`` alone would leave them 0600).

Several writes can be committed together (:func:`write_together`): every file is written under its
temporary name first and all are renamed at the end, so a run's outputs appear together or not at
all. :func:`check_writable` tells, before any work, whether an output could be written.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mvlpt.errors import MvlptError

# Inside write_together(): the (temporary, final) paths written so far, renamed when the group ends.
_group: contextvars.ContextVar[list | None] = contextvars.ContextVar("mvlpt_write_group", default=None)


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        raise MvlptError(f"cannot write {path}: {blocker} is a file, not a folder.") from None


# The longest file name (bytes) most file systems take; a temporary name adds _TEMP_EXTRA bytes to it.
NAME_MAX = 255
_TEMP_EXTRA = len(".") + len(".") + 8 + len(".tmp")


def check_destination(path: str | os.PathLike) -> Path:
    """The rule of every writer: ``path`` may be written only if it is new or a regular file. A folder,
    a device (``/dev/null``), a FIFO or a socket is refused with one sentence (it is never renamed over:
    as root that would replace the device for the whole machine); to discard an output, write it to a
    scratch file and delete it. A file name too long for the file system (with the temporary name's
    extra bytes) is refused too. Returns ``path``."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise MvlptError(f"cannot write {path}: give a file name, not a folder.")
    if len(os.fsencode(path.name)) + _TEMP_EXTRA > NAME_MAX:
        raise MvlptError(
            f"cannot write {path}: its file name is {len(os.fsencode(path.name))} bytes long, file "
            f"systems take {NAME_MAX - _TEMP_EXTRA} here at most; give a shorter name."
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise MvlptError(f"cannot write {path}: the path is too long for the file system; give a shorter one.") from None
        return path  # a parent that is a file or unreadable: _make_parent / mkstemp say so
    if stat.S_ISDIR(st.st_mode):
        raise MvlptError(f"cannot write {path}: it is a folder; give a file name.")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise MvlptError(
            f"cannot write {path}: it is {kind}, not a regular file, and mvlpt never replaces one; "
            f"give a file path (to discard an output, write it to a scratch file and delete that)."
        )
    return path


def same_file_key(path: str | os.PathLike) -> tuple:
    """What identifies the file ``path`` names: (device, inode) of an existing one (links, hard links and
    other spellings of it agree), else the real path of its folder plus its name."""
    path = Path(path)
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.join(os.path.realpath(path.parent), path.name))


def check_distinct(paths: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike] = ()) -> None:
    """One sentence if two of ``paths`` (what one command writes) are one file, or if one of them is
    one of ``inputs`` (what it reads): compared as files, not as strings."""
    seen: dict[tuple, Path] = {}
    for p in paths:
        key = same_file_key(p)
        if key in seen:
            same = "" if str(seen[key]) == str(p) else f" (as {seen[key]})"
            raise MvlptError(f"{p}{same} is given as the output of two different things; give each its own file.")
        seen[key] = Path(p)
    for p in inputs:
        key = same_file_key(p)
        if key in seen:
            raise MvlptError(f"{seen[key]} is both read and written by this command (as {p}); give the output its own file.")


def _new_temp(path: Path) -> Path:
    """An empty temporary file next to ``path`` (mode 0600 until :func:`atomic_path` finishes it)."""
    check_destination(path)
    try:
        _make_parent(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise MvlptError(f"cannot write {path}: {e.strerror or e}.") from None
    return Path(tmp)


def check_folder(path: str | os.PathLike, what: str) -> None:
    """One sentence if ``path`` exists but is not a folder (a missing one is the caller's to report)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MvlptError(f"the {what} {path} is a file, not a folder.")


def check_writable(paths: Iterable[str | os.PathLike]) -> None:
    """Fail now, with one sentence, if any of ``paths`` could not be written later: a parent that is
    a file, the path itself a folder or not a regular file (:func:`check_destination`), no permission, a
    read-only file system, the same file twice (:func:`check_distinct`). Creates the missing parent
    folders (a run's outputs need them anyway); writes no file."""
    paths = list(paths)
    for p in paths:
        check_destination(p)
    check_distinct(paths)
    for p in paths:
        _new_temp(Path(p)).unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path`` (at the end of the
    enclosing :func:`write_together`, if any)."""
    path = Path(path)
    tmp = _new_temp(path)
    try:
        yield tmp
        # the mode any new file gets; set after writing, as some writers (safetensors) replace the file
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        group = _group.get()
        if group is not None:
            group.append((tmp, path))
            return
        check_destination(path)  # it may have become one while the file was written
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MvlptError(f"cannot write {path}: {e.strerror or e}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def write_together() -> Iterator[None]:
    """Every :func:`atomic_path` write inside the block is renamed into place only when the block ends
    without an error, all at once and in the order written; on any error (or Ctrl-C) none of them
    appears and their temporary files are removed."""
    if _group.get() is not None:  # nested: the outer group commits
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _group.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _group.reset(token)
    done: list[Path] = []
    for tmp, path in pending:
        try:
            check_destination(path)  # it may have become one while the files were written
            os.replace(tmp, path)
        except (OSError, MvlptError) as e:
            for p in done:  # take back the part already in place: all or none
                p.unlink(missing_ok=True)
            for t, _ in pending:
                t.unlink(missing_ok=True)
            if isinstance(e, MvlptError):
                raise
            raise MvlptError(f"cannot write {path}: {e.strerror or e}.") from None
        done.append(path)


def content_hash(obj) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no spaces): a file's identity by content."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "file"):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MvlptError(f"{what} {path} does not exist.") from None
    except IsADirectoryError:
        raise MvlptError(f"{what} {path} is a folder, not a file.") from None
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, a number too long, nesting too deep
        raise MvlptError(
            f"{what} {path} is not valid JSON ({str(e)[:200]}); delete it and rerun the step that makes it."
        ) from None
    except OSError as e:  # a FIFO's reader would wait; a device or a damaged disk: one sentence
        raise MvlptError(f"{what} {path} cannot be read ({e.strerror or e}).") from None


def write_npz(path: str | os.PathLike, meta: dict, **arrays) -> Path:
    """``arrays`` and the JSON ``meta`` as one .npz file, atomically (embedding files)."""
    import numpy as np

    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.asarray(json.dumps(meta)), **arrays)
    return path


def read_npz(path: str | os.PathLike, what: str, command: str) -> tuple[dict, dict]:
    """(meta, arrays) of a file of :func:`write_npz`; a missing or unreadable file is one sentence naming
    ``what`` it is and the ``command`` that makes it."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}
    except FileNotFoundError:
        raise MvlptError(f"{what} {path} does not exist; make it with `{command}`.") from None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, UnicodeError) as e:
        raise MvlptError(f"{what} {path} cannot be read ({e}); delete it and rerun `{command}`.") from None


def check_npz(
    path: str | os.PathLike,
    what: str,
    command: str,
    meta,
    arrays: dict,
    *,
    rows: Iterable[str] = (),
    ints: Iterable[str] = (),
    kinds: Iterable[str] | None = None,
) -> None:
    """The domain of an embedding file (issue 24, class 4), or one sentence: ``meta`` is a JSON object
    with a valid task name (and a ``kind`` of ``kinds``, given them); ``features`` is a 2-D array of
    finite real numbers with at least one row and one column; each array of ``rows`` has one entry per
    row of ``features`` and each of ``ints`` holds non-negative integers. A NaN or an empty file
    would otherwise flow into every similarity and predictor silently."""
    import numpy as np

    from mvlpt.study.names import name_problem

    def bad(problem: str):
        raise MvlptError(f"{what} {path} {problem}; delete it and rerun `{command}`.")

    if not isinstance(meta, dict):
        bad("has no metadata object")
    if name_problem(meta.get("task")):
        bad(f"names no valid task (task {meta.get('task')!r})")
    if kinds is not None and meta.get("kind") not in tuple(kinds):
        bad(f"has kind {meta.get('kind')!r}, not one of {', '.join(kinds)}")
    missing = [k for k in ("features", *rows) if k not in arrays]
    if missing:
        bad(f"lacks the array(s) {', '.join(missing)}")
    f = arrays["features"]
    if f.dtype.kind not in "fiu" or f.ndim != 2:
        bad(f"has features of shape {f.shape} and type {f.dtype}, not a 2-D array of numbers")
    if f.shape[0] == 0 or f.shape[1] == 0:
        bad(f"is empty (features of shape {f.shape}): it holds no embedding")
    if not np.isfinite(f).all():
        bad(f"holds {int((~np.isfinite(f)).sum())} NaN or infinite feature value(s)")
    for k in rows:
        if arrays[k].ndim != 1 or len(arrays[k]) != len(f):
            bad(f"has {k} of shape {arrays[k].shape} for {len(f)} feature rows")
    for k in ints:
        a = arrays[k]
        if a.dtype.kind not in "iu" or (a.size and int(a.min()) < 0):
            bad(f"has {k} that are not non-negative integers")
