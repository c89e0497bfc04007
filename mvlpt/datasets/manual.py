"""Layouts for data that cannot be downloaded automatically (a licence must be accepted first).

hateful-memes: the Hateful Memes release (Facebook AI) unpacked under
``<data_dir>/hateful-memes/manual``::

    img/             the meme images (``img/01235.png``, ...); an ``img.zip`` holding ``img/...`` works too
    train.jsonl      8,500 lines {"id", "img", "label", "text"}  -> ELEVATER's train split
    dev_seen.jsonl   500 lines                                  -> ELEVATER's test split

``label`` 1 means hateful (ELEVATER class 1, "hatespeech meme"), 0 not hateful (class 0, "meme").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mvlpt.datasets import archives
from mvlpt.datasets.images import CorruptImageError, decode_image
from mvlpt.errors import MvlptError


def present(root: Path, spec: dict, split: str | None = None) -> bool:
    root = Path(root)
    splits = [split] if split else list(spec["splits"])
    have_images = (root / spec["images"]).is_dir() or (root / f"{spec['images']}.zip").is_file()
    return have_images and all(s in spec["splits"] and (root / spec["splits"][s]).is_file() for s in splits)


def files(root: Path, spec: dict) -> list[str]:
    """Files of the manual layout (relative to ``root``), for the lock file."""
    root = Path(root)
    out = [spec["splits"][s] for s in spec["splits"]]
    zipped = root / f"{spec['images']}.zip"
    if zipped.is_file():
        out.append(zipped.name)
    else:
        out += sorted(str(p.relative_to(root)) for p in (root / spec["images"]).rglob("*") if p.is_file())
    return out


class ManualSplit:
    def __init__(self, task: str, root: Path, spec: dict, split: str, num_classes: int):
        self.task, self.root, self.split = task, Path(root), split
        if split not in spec["splits"]:
            raise MvlptError(f"task {task}: the hand-fetched layout has no {split!r} split.")
        index = self.root / spec["splits"][split]
        refs, labels = [], []
        with open(index, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    refs.append(str(rec["img"]))
                    labels.append(int(rec["label"]))
                except (ValueError, KeyError, TypeError):
                    raise MvlptError(
                        f"task {task}: line {lineno} of {index} is not a record with 'img' and 'label'; "
                        f"replace the file with the original release's."
                    ) from None
        lab = np.asarray(labels, dtype=np.int64)
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise MvlptError(f"task {task}: {index} has labels outside 0..{num_classes - 1}.")
        self.refs = refs
        self.ids = refs
        self.labels = lab
        self._zip = self.root / f"{spec['images']}.zip"
        self._use_zip = not (self.root / spec["images"]).is_dir() and self._zip.is_file()

    def __len__(self) -> int:
        return len(self.refs)

    def image(self, i: int) -> Image.Image:
        ref = self.refs[i]
        try:
            if self._use_zip:
                name = f"{self._zip}@{ref}"
                try:
                    data = archives.read_zip_member(self._zip, ref)
                except KeyError:
                    raise CorruptImageError(name, "not in the archive") from None
                return decode_image(data, name=name)
            return decode_image(self.root / ref)
        except CorruptImageError as e:
            raise CorruptImageError(e.path, e.reason, task=self.task) from None
