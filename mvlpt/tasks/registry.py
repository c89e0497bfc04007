"""Task registry: a task name maps to its class names, prompt templates, metric and loader.

A *task* is an image-classification problem. Its data comes as splits ("train", "test" and, where
the task has one, "val"); the few-shot protocol samples from "train" only (see :mod:`mvlpt.tasks.fewshot`).

Loaders are lazy: :meth:`Task.load` returns a :class:`TaskSplit`, whose images are decoded one at a
time, so a 262k-image split costs only its index in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from mvlpt.errors import MvlptError

METRICS = ("accuracy", "mean_per_class_accuracy", "roc_auc", "map_11point")
SPLITS = ("train", "val", "test")


class TaskSplit(Protocol):
    """One split of a task: stable sample ids, labels, and images decoded on demand.

    ``labels`` is ``(N,)`` int64 for multiclass tasks and ``(N, C)`` uint8 multi-hot for multi-label ones.
    ``image(i)`` returns an RGB ``PIL.Image``.
    """

    ids: Sequence[str]
    labels: np.ndarray

    def __len__(self) -> int: ...

    def image(self, i: int) -> Image.Image: ...


def generated_loader(generate, name: str):
    """The loader of a task whose splits are generated in memory: ``generate(name, split)`` returns
    ``(ids, labels, images)`` (the offline and designed suites)."""

    def load(split: str, data_dir: str | None = None) -> ArraySplit:  # data_dir: nothing to read
        ids, labels, images = generate(name, split)
        return ArraySplit(ids=list(ids), labels=labels, images=images)

    load.__name__ = f"load_{name.replace('-', '_')}"
    return load


@dataclasses.dataclass
class ArraySplit:
    """A split held in memory: uint8 images ``(N, H, W, 3)`` (or a list of PIL images)."""

    ids: list[str]
    labels: np.ndarray
    images: object  # np.ndarray (N, H, W, 3) uint8, or a list of PIL images

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, i: int) -> Image.Image:
        img = self.images[i]
        if isinstance(img, Image.Image):
            return img.convert("RGB")
        return Image.fromarray(np.asarray(img, dtype=np.uint8)).convert("RGB")


Loader = Callable[..., TaskSplit]  # loader(split: str, data_dir: str | None) -> TaskSplit


@dataclasses.dataclass(frozen=True)
class Task:
    """What the study needs to know about a task."""

    name: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    metric: str
    loader: Loader
    multilabel: bool = False
    splits: tuple[str, ...] = ("train", "test")
    domain: str = ""
    description: str = ""
    source: str = "synthetic"  # "synthetic" (offline suite), "elevater", "coop" (mvlpt.tasks.coop) or "designed"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: unknown metric {self.metric!r}; expected one of {METRICS}")
        # names read from the data (mvlpt.tasks.coop.DataClassNames) are checked when they are read
        if not getattr(self.classnames, "from_data", False) and len(set(self.classnames)) != len(self.classnames):
            raise ValueError(f"task {self.name!r}: class names are not unique")
        lazy = getattr(self.templates, "from_data", False)  # open_clip's ImageNet templates: checked when read
        if not self.templates or (not lazy and any("{}" not in t for t in self.templates)):
            raise ValueError(f"task {self.name!r}: every template needs a '{{}}' for the class name")

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def load(self, split: str, data_dir: str | None = None) -> TaskSplit:
        if split not in self.splits:
            raise MvlptError(f"task {self.name!r} has no {split!r} split (it has: {', '.join(self.splits)}).")
        return self.loader(split, data_dir)


_REGISTRY: dict[str, Task] = {}
_SUITE_LOADERS: list[Callable[[], object]] = []


def register(task: Task, *, replace: bool = False) -> Task:
    if task.name in _REGISTRY and not replace:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def add_suite_loader(load: Callable[[], object]) -> None:
    """Declare a suite of tasks: ``load()`` registers them (each call after the first does nothing, as
    an import does). Loaders run at the first lookup, so the registry imports no suite and importing
    it stays cheap; :mod:`mvlpt.tasks` declares the built-in suites."""
    _SUITE_LOADERS.append(load)


def _ensure_builtin() -> None:
    for load in _SUITE_LOADERS:
        load()


def get_task(name: str) -> Task:
    from mvlpt.study.names import check_name

    check_name(name, "task name")
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise MvlptError(f"unknown task {name!r}; known tasks are: {known}.") from None


def list_tasks(source: str | None = None) -> list[str]:
    _ensure_builtin()
    return sorted(n for n, t in _REGISTRY.items() if source is None or t.source == source)
