"""Webdataset tar shards, as CLIP_benchmark publishes them on the Hugging Face hub.

Layout (``clip-benchmark/wds_<name>``)::

    classnames.txt                      one class name per line, in the shards' label order
    zeroshot_classification_templates.txt
    dataset_type.txt                    optional: "multilabel" -> labels are .npy multi-hot vectors
    train/nshards.txt, train/0.tar, train/1.tar, ...
    test/nshards.txt,  test/0.tar, ...

A sample is the group of tar members sharing a key (the member path up to the first dot of its
file name): an image (``.webp``, ``.png``, ``.jpg`` or ``.jpeg``) and a label (``.cls``: the class
index as text; ``.npy`` for multi-label). Shards are indexed once (member offsets and labels), the
index is cached next to each shard (``<shard>.mvlpt-index.json``, invalidated when the shard's size
or modification time changes), and an image is read by seeking to its offset.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from mvlpt.datasets import archives
from mvlpt.datasets.images import CorruptImageError, decode_image
from mvlpt.errors import MvlptError

log = logging.getLogger(__name__)

IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")
LABEL_EXTS = ("cls", "npy")
INDEX_SUFFIX = ".mvlpt-index.json"
INDEX_FORMAT = 1


def read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip()]


def shard_paths(root: Path, split: str) -> list[Path]:
    """The tar shards of ``split`` under ``root`` (from nshards.txt when present)."""
    d = Path(root) / split
    nfile = d / "nshards.txt"
    if nfile.is_file():
        try:
            n = int(nfile.read_text().strip())
        except ValueError:
            n = -1
        if n >= 0:
            return [d / f"{i}.tar" for i in range(n)]
    shards = [p for p in d.glob("*.tar")] if d.is_dir() else []
    return sorted(shards, key=lambda p: (int(p.stem) if p.stem.isdigit() else 1 << 30, p.name))


def has_split(root: Path, split: str) -> bool:
    shards = shard_paths(root, split)
    return bool(shards) and all(p.is_file() for p in shards)


def _split_key(name: str) -> tuple[str, str]:
    d, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return (f"{d}/{stem}" if d else stem), ext.lower()


def _decode_label(ext: str, data: bytes, where: str):
    if ext == "cls":
        try:
            return int(data.decode("utf-8").strip())
        except ValueError:
            raise MvlptError(f"{where}: the .cls label {data[:20]!r} is not a class index; the shard is damaged.") from None
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    return np.asarray(arr).reshape(-1).astype(np.float32).tolist()


def index_shard(path: Path, *, use_cache: bool = True) -> list[dict]:
    """Index one shard: ``[{"key", "ext", "offset", "size", "label"}]`` (cached next to the shard)."""
    path = Path(path)
    st = path.stat()
    cache = path.with_name(path.name + INDEX_SUFFIX)
    sig = {"format": INDEX_FORMAT, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if use_cache and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if all(data.get(k) == v for k, v in sig.items()):
                return data["samples"]
        except (OSError, ValueError, KeyError):
            pass
    groups: dict[str, dict] = {}
    order: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, ext = _split_key(m.name)
                g = groups.get(key)
                if g is None:
                    g = groups[key] = {}
                    order.append(key)
                if ext in IMAGE_EXTS and "ext" not in g:
                    g.update(ext=ext, offset=m.offset_data, size=m.size)
                elif ext in LABEL_EXTS and "label" not in g:
                    fh = tf.extractfile(m)
                    g["label"] = _decode_label(ext, fh.read() if fh else b"", f"shard {path} member {m.name}")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise MvlptError(f"shard {path} cannot be read ({type(e).__name__}: {e}); delete it and fetch the task again.") from None
    samples = []
    for key in order:
        g = groups[key]
        if "ext" not in g and "label" not in g:
            continue  # e.g. a stray metadata member
        if "ext" not in g:
            raise MvlptError(f"shard {path}: sample {key!r} has a label but no image; delete the shard and fetch again.")
        if "label" not in g:
            raise MvlptError(f"shard {path}: sample {key!r} has an image but no label; delete the shard and fetch again.")
        samples.append({"key": key, **g})
    if use_cache:
        try:
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**sig, "samples": samples}))
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only data folder: index again next time
    return samples


class WdsSplit:
    """One split read from webdataset shards; labels mapped to ELEVATER's class order."""

    def __init__(
        self,
        task: str,
        root: Path,
        split: str,
        mapping: np.ndarray,
        num_classes: int,
        multilabel: bool = False,
        source_split: str | None = None,
    ):
        self.task, self.root, self.split, self.multilabel = task, Path(root), split, multilabel
        src = source_split or split
        shards = shard_paths(self.root, src)
        if not shards or not all(p.is_file() for p in shards):
            missing = [str(p) for p in shards if not p.is_file()] or [str(self.root / src / "*.tar")]
            raise MvlptError(f"task {task}: shard {missing[0]} is missing; run `mvlpt data fetch {task}`.")
        self._shards: list[Path] = shards
        ids, shard_of, offsets, sizes, exts, raw = [], [], [], [], [], []
        for si, shard in enumerate(shards):
            for s in index_shard(shard):
                ids.append(f"{shard.stem}/{s['key']}")
                shard_of.append(si)
                offsets.append(s["offset"])
                sizes.append(s["size"])
                exts.append(s["ext"])
                raw.append(s["label"])
        self.ids = ids
        self._shard_of = np.asarray(shard_of, dtype=np.int32)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._exts = exts
        n_src = len(mapping)
        if multilabel:
            lab = np.zeros((len(raw), num_classes), dtype=np.uint8)
            for i, r in enumerate(raw):
                v = np.asarray(r if isinstance(r, list) else [r], dtype=np.float32)
                if v.size == n_src:
                    present = np.flatnonzero(v > 0)  # multi-hot (VOC: 1 present, 0/-1 absent)
                else:
                    present = v.astype(np.int64)  # a list of class indices
                if present.size and (present.min() < 0 or present.max() >= n_src):
                    raise MvlptError(f"task {task}: sample {ids[i]} has a label outside the mirror's {n_src} classes.")
                lab[i, mapping[present]] = 1
        else:
            arr = np.asarray([r if not isinstance(r, list) else -1 for r in raw], dtype=np.int64)
            bad = np.flatnonzero((arr < 0) | (arr >= n_src))
            if bad.size:
                raise MvlptError(
                    f"task {task}: sample {ids[int(bad[0])]} has label {int(arr[bad[0]])} outside the "
                    f"mirror's {n_src} classes; the shards and classnames.txt do not match."
                )
            lab = mapping[arr]
        self.labels = lab

    def __len__(self) -> int:
        return len(self.ids)

    def source(self, i: int) -> str:
        return f"{self._shards[int(self._shard_of[i])]}@{self.ids[i].split('/', 1)[1]}.{self._exts[i]}"

    def image(self, i: int) -> Image.Image:
        name = self.source(i)
        shard = self._shards[int(self._shard_of[i])]
        try:
            data = archives.read_range(shard, int(self._offsets[i]), int(self._sizes[i]))
        except OSError as e:
            raise CorruptImageError(name, f"{type(e).__name__}: {e}", task=self.task) from None
        try:
            return decode_image(data, name=name)
        except CorruptImageError as e:
            raise CorruptImageError(e.path, e.reason, task=self.task) from None


def classnames(root: Path) -> list[str]:
    return read_lines(Path(root) / "classnames.txt")


def is_multilabel(root: Path) -> bool:
    p = Path(root) / "dataset_type.txt"
    return p.is_file() and p.read_text().strip().lower() == "multilabel"
