"""The labelled few-shot *train* images of a task, encoded once by the frozen CLIP for the transferability
predictors (docs/predictors.md): :class:`FewShot` (features, class labels, the split seed of each row and the
model's logit scale), :func:`encode_fewshot` from the study's pinned split files (every seed), and the
``{task}.fewshot.npz`` file (:func:`save_fewshot`, :func:`load_fewshot`). A multi-label image counts once per
class it carries (:func:`fewshot_rows`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvlpt.errors import MvlptError

FEWSHOT_FORMAT = 1


@dataclasses.dataclass
class FewShot:
    """A task's few-shot train images: features ``(M, D)`` (L2-normalised), class ``labels`` ``(M,)``
    and the split ``seeds`` ``(M,)`` they belong to (an image in two seeds' splits appears twice)."""

    task: str
    features: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    ids: tuple[str, ...]
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.seeds = np.asarray(self.seeds, dtype=np.int64)
        n = len(self.features)
        if self.features.ndim != 2 or len(self.labels) != n or len(self.seeds) != n or len(self.ids) != n:
            raise ValueError(
                f"few-shot embeddings of {self.task}: features {self.features.shape}, {len(self.labels)} labels, "
                f"{len(self.seeds)} seeds and {len(self.ids)} ids do not match"
            )

    @property
    def logit_scale(self) -> float:
        return float(self.meta["logit_scale"])


def fewshot_rows(split_labels: np.ndarray, positions: Sequence[int]) -> tuple[list[int], list[int]]:
    """(positions, class) rows of the images at ``positions``: one per image (multiclass), or one per
    class an image carries (multi-label ``(N, C)`` labels)."""
    labels = np.asarray(split_labels)
    rows, classes = [], []
    for p in positions:
        if labels.ndim == 1:
            rows.append(int(p))
            classes.append(int(labels[p]))
        else:
            for c in np.flatnonzero(labels[p]):
                rows.append(int(p))
                classes.append(int(c))
    return rows, classes


def encode_fewshot(
    clip, task, split_files: Sequence[str | os.PathLike], *, data_dir: str | None = None, batch_size: int = 128
) -> FewShot:
    """Encode the train images of ``task``'s few-shot ``split_files`` (one per seed) with their labels."""
    from mvlpt.tasks.fewshot import indices_of, read_split
    from mvlpt.training.data import encode_split_images

    if not split_files:
        raise MvlptError(f"no few-shot split files given for task {task.name!r}; pass the study's split files.")
    train = task.load("train", data_dir)
    rows, classes, seeds = [], [], []
    for path in split_files:
        split = read_split(path, task.name)
        r, c = fewshot_rows(train.labels, indices_of(train, split["train"]))
        rows += r
        classes += c
        seeds += [int(split["seed"])] * len(r)
    unique = sorted(set(rows))
    feats = encode_split_images(clip, train, unique, batch_size=batch_size).numpy()
    at = {p: i for i, p in enumerate(unique)}
    meta = {
        "model": clip.key,
        "logit_scale": float(clip.model.logit_scale.exp().item()),
        "classnames": list(task.classnames),
        "split_files": [Path(p).name for p in split_files],
    }
    return FewShot(
        task.name,
        feats[[at[p] for p in rows]],
        np.asarray(classes),
        np.asarray(seeds),
        tuple(str(train.ids[p]) for p in rows),
        meta,
    )


def save_fewshot(fs: FewShot, path: str | os.PathLike) -> Path:
    from mvlpt.io import write_npz

    meta = dict(fs.meta, task=fs.task, kind="fewshot", format=FEWSHOT_FORMAT)
    return write_npz(path, meta, features=fs.features, labels=fs.labels, seeds=fs.seeds, ids=np.asarray(fs.ids, dtype=str))


def load_fewshot(path: str | os.PathLike) -> FewShot:
    from mvlpt.io import read_npz

    path = Path(path)
    meta, z = read_npz(path, "few-shot embedding file", "mvlpt predict embed")
    if not isinstance(meta, dict) or meta.get("format") != FEWSHOT_FORMAT or meta.get("kind") != "fewshot":
        raise MvlptError(
            f"{path} is not a few-shot embedding file of this mvlpt (kind "
            f"{meta.get('kind') if isinstance(meta, dict) else None!r}); pass the files of `mvlpt predict embed`."
        )
    from mvlpt.io import check_npz  # its domain: finite, non-empty, one label/seed/id per row (issue 24, class 4)

    check_npz(
        path, "few-shot embedding file", "mvlpt predict embed", meta, z, rows=("labels", "seeds", "ids"), ints=("labels", "seeds")
    )
    try:
        return FewShot(meta["task"], z["features"], z["labels"], z["seeds"], tuple(str(s) for s in z["ids"]), meta)
    except KeyError as e:
        raise MvlptError(
            f"few-shot embedding file {path} cannot be read ({e}); delete it and rerun `mvlpt predict embed`."
        ) from None
