"""The few-shot protocol, written to files so that a split can be inspected, pinned and shared.

1. Shuffle the ids of the task's *train* split with ``seed``.
2. Walk the shuffled list and take an image while its class (any of its classes, multi-label) still
   has fewer than ``shots`` images: k per class, greedily.
3. Split each class's k images 80/20 into train/val, class-balanced: ``n_val = round(0.2 * k)``
   (at least 1), e.g. 5 shots -> 4 train + 1 val, 20 -> 16 + 4.
   With ``shots == 1`` there is nothing to split; instead of the reference code's val = train, the
   next unused image of each class from the shuffled list becomes its validation image.

The test split is always the task's whole ``test`` split.

A class with fewer than ``shots`` training images (oxford-flower-102 has 10 per class; the paper's
pairwise study asks for 20) is handled by a *policy*:

* ``available`` (default): take every image the class has, as ELEVATER's own few-shot sampler does
  (``DatasetManifest.sample_few_shot_subset`` in microsoft/vision-datasets, which ELEVATER's
  toolkit calls: it walks the shuffled train split and stops early only once every class has k; a
  class with fewer keeps all of its images). Such a class's images are split 80/20 by its own
  count (``max(1, round(0.2 * n))`` val, none when it has a single image), and the split file
  records what was taken in ``shots_taken``: ``{"min", "max", "short": {class name: n}}``. The
  field is written only when a class is short, so the split of a task with enough images is
  byte-identical to what earlier versions wrote.
* ``strict``: refuse (an :class:`MvlptError` naming the task, the class and the fix); ``mvlpt
  preflight`` reports it before any job starts.

A class with no training image at all is an error under either policy (it cannot be learned). At
1 shot a class with a single image has no validation image of its own; ``available`` trains on it
and lists it in ``shots_taken["short"]``, ``strict`` refuses.
"""

from __future__ import annotations

import os

import numpy as np

from mvlpt.errors import MvlptError
from mvlpt.io import read_json, write_json
from mvlpt.study import settings
from mvlpt.study.names import check_seed, seed_ok
from mvlpt.tasks.registry import Task

FORMAT = 1
POLICIES = ("available", "strict")
DEFAULT_POLICY = settings.DEFAULTS["fewshot_policy"]  # the config schema's (mvlpt.study.settings)


def _classes_of(labels: np.ndarray, i: int) -> list[int]:
    row = labels[i]
    return list(np.flatnonzero(row)) if labels.ndim == 2 else [int(row)]


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Training images per class (multi-label: images that carry the class)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return (labels != 0).sum(0).astype(np.int64)
    return np.bincount(labels.astype(np.int64), minlength=num_classes)[:num_classes]


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise MvlptError(f"few-shot policy must be one of {', '.join(POLICIES)}, got {policy!r}.")
    return policy


def short_classes(task: Task, counts: np.ndarray, shots: int) -> dict[str, int]:
    """``{class name: images}`` of the classes with fewer than ``shots`` training images."""
    return {task.classnames[c]: int(n) for c, n in enumerate(counts) if n < shots}


def shortfall_sentence(task: Task, short: dict[str, int], shots: int) -> str:
    worst = min(short, key=short.get)
    return (
        f"task {task.name!r} has only {short[worst]} training images of class {worst!r}"
        f" ({len(short)} classes short in all), fewer than shots={shots}"
    )


def make_split(
    task: Task, seed: int, shots: int, data_dir: str | None = None, split_data=None, policy: str = DEFAULT_POLICY
) -> dict:
    """Sample the few-shot train/val ids of ``task`` for ``seed`` and ``shots`` (see module docstring)."""
    if shots < 1:
        raise MvlptError(f"shots must be at least 1, got {shots}.")
    check_seed(seed)
    check_policy(policy)
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
    empty = {name: n for name, n in short.items() if n == 0}
    if empty:
        raise MvlptError(
            f"{shortfall_sentence(task, empty, shots)}; a class without training images cannot be learned: check the task's data."
        )
    if short and policy == "strict":
        raise MvlptError(
            f"{shortfall_sentence(task, short, shots)}; lower shots, or use the few-shot policy "
            f"'available' (ELEVATER's: take every image such a class has)."
        )
    train, val = [], []
    if shots == 1:
        used = {taken[c][0] for c in taken if taken[c]}
        train = [taken[c][0] for c in taken if taken[c]]
        for c in taken:
            if not taken[c]:
                continue
            extra = next((int(i) for i in order if int(i) not in used and c in _classes_of(labels, i)), None)
            if extra is None:
                if policy == "strict":
                    raise MvlptError(
                        f"task {task.name!r}: class {task.classnames[c]!r} has a single training image, so a "
                        f"1-shot split has no separate validation image; use a task with more images."
                    )
                short[task.classnames[c]] = 1  # trained on, but no validation image of its own
                continue
            used.add(extra)
            val.append(extra)
    else:
        seen: set[int] = set()
        for c in range(task.num_classes):
            k = len(taken[c])
            # a full class: max(1, round(0.2 * shots)) val, as always; a short one: by its own count
            n_val = max(1, round(0.2 * k)) if k >= 2 else 0
            for j, i in enumerate(taken[c]):
                if i in seen:
                    continue  # multi-label image already placed by an earlier class
                seen.add(i)
                (val if j >= k - n_val else train).append(i)
    ids = data.ids
    split = {
        "format": FORMAT,
        "task": task.name,
        "seed": int(seed),
        "shots": int(shots),
        "n_classes": task.num_classes,
        "train": [ids[i] for i in train],
        "val": [ids[i] for i in val],
    }
    if short:
        counts = [len(v) for v in taken.values()]
        split["shots_taken"] = {"min": int(min(counts)), "max": int(max(counts)), "short": dict(sorted(short.items()))}
    return split


def shots_taken(split: dict) -> dict | None:
    """What a split took where classes were short (``{"min", "max", "short"}``), None when every class had k."""
    return split.get("shots_taken")


def write_split(split: dict, path: str | os.PathLike) -> None:
    write_json(split, path)


def read_split(path: str | os.PathLike, task: str | None = None) -> dict:
    split = read_json(path, "few-shot split file")
    if not isinstance(split, dict) or split.get("format") != FORMAT or not {"train", "val", "task"} <= set(split):
        raise MvlptError(f"few-shot split file {path} is not an mvlpt split (format {FORMAT}); recreate it with `mvlpt split`.")
    if task is not None and split["task"] != task:
        raise MvlptError(f"few-shot split file {path} belongs to task {split['task']!r}, not {task!r}.")
    problem = split_problem(split)
    if problem:
        raise MvlptError(f"few-shot split file {path} {problem}; recreate it with `mvlpt split`.")
    return split


def split_problem(split: dict) -> str | None:
    """What makes a split disagree with itself, as a clause (None: nothing): ids that are not text, an
    id listed twice, a validation id that is also a training id (the run would validate on training
    images), no training id, a seed or shots that is not a valid number."""
    if not isinstance(split.get("task"), str) or not split["task"]:
        return f"has task {split.get('task')!r}, which is not a task name"
    for part in ("train", "val"):
        ids = split[part]
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            return f"has {part} ids that are not a list of texts"
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            return f"lists the {part} id {dup!r} twice"
    if not split["train"]:
        return "has no training ids"
    both = set(split["train"]) & set(split["val"])
    if both:
        return (
            f"has {len(both)} ids in both train and val (e.g. {sorted(both)[0]!r}), so the run would validate on training images"
        )
    if "seed" in split and not seed_ok(split["seed"]):
        return f"has seed {split['seed']!r}, which is not an integer from 0 to 2**31 - 1"
    if "shots" in split and not (
        isinstance(split["shots"], int) and not isinstance(split["shots"], bool) and split["shots"] >= 1
    ):
        return f"has shots {split['shots']!r}, which is not an integer >= 1"
    taken = split.get("shots_taken")
    if taken is not None and not (isinstance(taken, dict) and isinstance(taken.get("short"), dict)):
        return f"has shots_taken {taken!r}, which is not an object with a 'short' entry"
    return None


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
