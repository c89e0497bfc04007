"""ELEVATER's own layout: a task folder holding index files, a label map and zip archives.

The manifest (``vision_datasets.json``) names, per split, the index file and the archives:

* ``format`` absent (IRIS): one line per image, ``<archive.zip>@<path in archive> <labels>``, labels
  0-based, comma-separated for multi-label; the path may also be a plain file relative to the task
  folder. ``labelmap`` (``labels.txt``) lists class names, one per line, in label-id order.
* ``format: coco``: a COCO json with ``images`` (``file_name`` as above), ``annotations``
  (``image_id``, ``category_id``) and ``categories`` (ids from 1).

Label ids are paired with ELEVATER's class names (``tasks.json``) in order, as the MVLPT reference
code does; when a label map is present it is checked against those names and, if it orders the same
names differently, labels are mapped by name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mvlpt.datasets import archives
from mvlpt.datasets.images import CorruptImageError, decode_image
from mvlpt.datasets.labels import map_by_name, normalise
from mvlpt.errors import MvlptError

log = logging.getLogger(__name__)


def split_files(entry: dict, split: str) -> tuple[str, list[str]]:
    s = entry[split]
    return s["index_path"], list(s.get("files_for_local_usage", []))


def required_files(entry: dict, splits: Sequence[str] | None = None) -> list[str]:
    """Files (relative to the task folder) that ELEVATER's layout needs for ``splits``."""
    out: list[str] = []
    for split in splits or [s for s in ("train", "val", "test") if s in entry]:
        if split not in entry:
            continue
        index, files = split_files(entry, split)
        for f in [index, *files]:
            if f not in out:
                out.append(f)
    if entry.get("labelmap") and entry["labelmap"] not in out:
        out.append(entry["labelmap"])
    return out


def find_root(candidates: Sequence[Path], entry: dict, split: str | None = None) -> Path | None:
    """The first candidate folder that holds the index file(s) of ``split`` (or of train and test)."""
    splits = [split] if split else [s for s in ("train", "test") if s in entry]
    for root in candidates:
        if all((root / entry[s]["index_path"]).is_file() for s in splits):
            return root
    return None


def _parse_txt(path: Path, multilabel: bool, task: str) -> tuple[list[str], list[list[int]]]:
    refs: list[str] = []
    labels: list[list[int]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(None, 1)
            if len(parts) == 1:
                if multilabel:  # an image without any label
                    refs.append(parts[0])
                    labels.append([])
                    continue
                raise MvlptError(f"task {task}: line {lineno} of {path} has no label ({line!r}); the index file is damaged.")
            ref, lab = parts
            try:
                ids = [int(x) for x in lab.split(",") if x != ""]
            except ValueError:
                raise MvlptError(
                    f"task {task}: line {lineno} of {path} has a label that is not a number ({lab!r}); the index file is damaged."
                ) from None
            if not multilabel and len(ids) != 1:
                raise MvlptError(f"task {task}: line {lineno} of {path} has {len(ids)} labels for a single-label task.")
            refs.append(ref)
            labels.append(ids)
    return refs, labels


def _parse_coco(path: Path, task: str) -> tuple[list[str], list[list[int]], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise MvlptError(f"task {task}: cannot read COCO index {path} ({e}); fetch the task again.") from None
    cats = sorted(data.get("categories", []), key=lambda c: c["id"])
    cat_pos = {c["id"]: i for i, c in enumerate(cats)}
    images = sorted(data.get("images", []), key=lambda im: im["id"])
    by_image: dict[int, list[int]] = {im["id"]: [] for im in images}
    for ann in data.get("annotations", []):
        if ann["image_id"] not in by_image or ann["category_id"] not in cat_pos:
            raise MvlptError(
                f"task {task}: annotation {ann.get('id')} in {path} refers to an unknown image or "
                f"category; the index file is damaged."
            )
        pos = cat_pos[ann["category_id"]]
        if pos not in by_image[ann["image_id"]]:
            by_image[ann["image_id"]].append(pos)
    refs = [im["file_name"] for im in images]
    labels = [by_image[im["id"]] for im in images]
    return refs, labels, [str(c.get("name", c["id"])) for c in cats]


def _read_labelmap(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip()]


def _label_mapping(source_names: list[str] | None, classnames: Sequence[str], synonyms, task: str, what: str) -> np.ndarray:
    n = len(classnames)
    identity = np.arange(n, dtype=np.int64)
    if not source_names:
        return identity
    if len(source_names) != n:
        raise MvlptError(
            f"task {task}: the {what} lists {len(source_names)} classes but ELEVATER's task has {n}; "
            f"the files do not belong to this task."
        )
    try:
        mapping = map_by_name(source_names, classnames, synonyms=synonyms, task=task, what=what)
    except MvlptError:
        log.info(
            "task %s: %s names are not ELEVATER's class names; label ids are taken in order, as ELEVATER's reference code does",
            task,
            what,
        )
        return identity
    if not np.array_equal(mapping, identity):
        log.warning("task %s: %s orders the classes differently from tasks.json; labels are mapped by name", task, what)
    return mapping


class IrisSplit:
    """One split of a task in ELEVATER's layout; images are decoded from the zips on demand."""

    def __init__(
        self, task: str, root: Path, entry: dict, split: str, classnames: Sequence[str], synonyms=None, multilabel: bool = False
    ):
        self.task, self.root, self.split, self.multilabel = task, Path(root), split, multilabel
        index, self._zips = split_files(entry, split)
        index_path = self.root / index
        if not index_path.is_file():
            raise MvlptError(f"task {task}: index file {index_path} is missing; run `mvlpt data fetch {task}`.")
        if entry.get("format") == "coco":
            refs, raw, names = _parse_coco(index_path, task)
            mapping = _label_mapping(names, classnames, synonyms, task, f"category list of {index_path.name}")
        else:
            refs, raw = _parse_txt(index_path, multilabel, task)
            lm = entry.get("labelmap")
            names = _read_labelmap(self.root / lm) if lm and (self.root / lm).is_file() else None
            mapping = _label_mapping(names, classnames, synonyms, task, f"label map {lm}")
        n_cls = len(classnames)
        for i, ids in enumerate(raw):
            bad = [x for x in ids if x < 0 or x >= n_cls]
            if bad:
                raise MvlptError(
                    f"task {task}: {refs[i]} in {index_path} has label {bad[0]} outside 0..{n_cls - 1}; "
                    f"the index file does not belong to this task."
                )
            if not multilabel and not ids:
                raise MvlptError(f"task {task}: {refs[i]} in {index_path} has no label.")
        self.refs = refs
        self.ids = list(refs)
        if len(set(self.ids)) != len(self.ids):
            seen: dict[str, int] = {}
            self.ids = []
            for r in refs:
                k = seen.get(r, 0)
                seen[r] = k + 1
                self.ids.append(r if k == 0 else f"{r}#{k}")
        if multilabel:
            lab = np.zeros((len(raw), n_cls), dtype=np.uint8)
            for i, ids in enumerate(raw):
                lab[i, mapping[ids]] = 1 if ids else 0
        else:
            lab = mapping[np.asarray([ids[0] for ids in raw], dtype=np.int64)] if raw else np.zeros(0, np.int64)
        self.labels = lab

    def __len__(self) -> int:
        return len(self.refs)

    def _locate(self, ref: str) -> tuple[Path, str | None]:
        """(zip path, member) or (file path, None)."""
        if "@" in ref:
            archive, member = ref.split("@", 1)
            return self.root / archive, member
        path = self.root / ref.replace("\\", "/")
        if not path.exists() and len(self._zips) == 1:
            return self.root / self._zips[0], ref
        return path, None

    def source(self, i: int) -> str:
        path, member = self._locate(self.refs[i])
        return f"{path}@{member}" if member is not None else str(path)

    def read_bytes(self, i: int) -> bytes:
        path, member = self._locate(self.refs[i])
        name = f"{path}@{member}" if member is not None else str(path)
        if member is None:
            try:
                return path.read_bytes()
            except OSError as e:
                raise CorruptImageError(name, f"{type(e).__name__}: {e.strerror or e}", task=self.task) from None
        if not path.is_file():
            raise MvlptError(f"task {self.task}: archive {path} is missing; run `mvlpt data fetch {self.task}`.")
        try:
            return archives.read_zip_member(path, member)
        except KeyError:
            raise CorruptImageError(name, "listed in the index file but not in the archive", task=self.task) from None
        except Exception as e:  # zipfile.BadZipFile, zlib.error, OSError: a damaged archive or member
            raise CorruptImageError(name, f"{type(e).__name__}: {e}", task=self.task) from None

    def image(self, i: int) -> Image.Image:
        name = self.source(i)
        try:
            return decode_image(self.read_bytes(i), name=name)
        except CorruptImageError as e:
            if e.task is None:
                raise CorruptImageError(e.path, e.reason, task=self.task) from None
            raise


def labelmap_matches(root: Path, entry: dict, classnames: Sequence[str]) -> bool | None:
    """True/False whether the label map names ELEVATER's classes in order; None without a label map."""
    lm = entry.get("labelmap")
    if not lm or not (root / lm).is_file():
        return None
    names = _read_labelmap(root / lm)
    return [normalise(n) for n in names] == [normalise(n) for n in classnames]
