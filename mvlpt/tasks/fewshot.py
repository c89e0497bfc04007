"""The few-shot protocol, written to files so that a split can be inspected, pinned and shared.

1. Shuffle the ids of the task's *train* split with ``seed``.
2. Walk the shuffled list and take an image while its class (any of its classes, multi-label) still
   has fewer than ``shots`` images: k per class, greedily.
3. Split each class's k images 80/20 into train/val, class-balanced: ``n_val = round(0.2 * k)``
   (at least 1), e.g. 5 shots -> 4 train + 1 val, 20 -> 16 + 4.
   With ``shots == 1`` there is nothing to split; instead of the reference code's val = train, the
   next unused image of each class from the shuffled list becomes its validation image.

The test split is always the task's whole ``test`` split.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import MvlptError
from ..io import read_json, write_json
from .registry import Task

FORMAT = 1


def _classes_of(labels: np.ndarray, i: int) -> list[int]:
    row = labels[i]
    return list(np.flatnonzero(row)) if labels.ndim == 2 else [int(row)]


def make_split(task: Task, seed: int, shots: int, data_dir: str | None = None, split_data=None) -> dict:
    """Sample the few-shot train/val ids of ``task`` for ``seed`` and ``shots`` (see module docstring)."""
    if shots < 1:
        raise MvlptError(f"shots must be at least 1, got {shots}.")
    data = split_data if split_data is not None else task.load("train", data_dir)
    labels = np.asarray(data.labels)
    n = len(data)
    order = np.random.default_rng(seed).permutation(n)
    taken: dict[int, list[int]] = {c: [] for c in range(task.num_classes)}
    chosen: set[int] = set()
    for i in order:
        cls = _classes_of(labels, i)
        if any(len(taken[c]) < shots for c in cls):
            for c in cls:
                if len(taken[c]) < shots:
                    taken[c].append(int(i))
            chosen.add(int(i))
        if all(len(v) >= shots for v in taken.values()):
            break
    short = {task.classnames[c]: len(v) for c, v in taken.items() if len(v) < shots}
    if short:
        worst = min(short, key=short.get)
        raise MvlptError(
            f"task {task.name!r} has only {short[worst]} training images of class {worst!r}"
            f" ({len(short)} classes short in all), fewer than shots={shots}; lower shots."
        )
    train, val = [], []
    if shots == 1:
        used = {taken[c][0] for c in taken}
        train = [taken[c][0] for c in taken]
        for c in taken:
            extra = next((int(i) for i in order if int(i) not in used and c in _classes_of(labels, i)), None)
            if extra is None:
                raise MvlptError(
                    f"task {task.name!r}: class {task.classnames[c]!r} has a single training image, so a "
                    f"1-shot split has no separate validation image; use a task with more images."
                )
            used.add(extra)
            val.append(extra)
    else:
        n_val = max(1, round(0.2 * shots))
        seen: set[int] = set()
        for c in range(task.num_classes):
            for j, i in enumerate(taken[c]):
                if i in seen:
                    continue  # multi-label image already placed by an earlier class
                seen.add(i)
                (val if j >= shots - n_val else train).append(i)
    ids = data.ids
    return {
        "format": FORMAT,
        "task": task.name,
        "seed": int(seed),
        "shots": int(shots),
        "n_classes": task.num_classes,
        "train": [ids[i] for i in train],
        "val": [ids[i] for i in val],
    }


def write_split(split: dict, path: str | os.PathLike) -> None:
    write_json(split, path)


def read_split(path: str | os.PathLike, task: str | None = None) -> dict:
    split = read_json(path, "few-shot split file")
    if not isinstance(split, dict) or split.get("format") != FORMAT or not {"train", "val", "task"} <= set(split):
        raise MvlptError(f"few-shot split file {path} is not an mvlpt split (format {FORMAT}); recreate it with `mvlpt split`.")
    if task is not None and split["task"] != task:
        raise MvlptError(f"few-shot split file {path} belongs to task {split['task']!r}, not {task!r}.")
    return split


def indices_of(split_data, ids: list[str]) -> list[int]:
    """Positions of ``ids`` in a loaded split; an unknown id is an error naming it."""
    pos = {sid: i for i, sid in enumerate(split_data.ids)}
    missing = [s for s in ids if s not in pos]
    if missing:
        raise MvlptError(
            f"{len(missing)} sample ids of the few-shot split (e.g. {missing[0]!r}) are not in the task's data; "
            f"the data changed since the split was made: recreate the split."
        )
    return [pos[s] for s in ids]
