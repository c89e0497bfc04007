"""The three CoOp data sets of the paper's Table 1 that are not ELEVATER tasks: ``imagenet``, ``sun397``,
``ucf101`` (source ``"coop"``; their data and routes: :mod:`mvlpt.datasets.coop`).

ImageNet's 1,000 class names and its templates (CLIP's 80 ImageNet templates, "a photo of a {}." among
them) come from open_clip (``open_clip.zero_shot_metadata``), as ELEVATER's tasks ship the benchmark's.
SUN397's and UCF-101's class names come from their data (SUN397's ``ClassName.txt``, the mid-frames'
folder names; the templates are CoOp's): their :class:`DataClassNames` knows its length (397, 101) without
the data, so that the DAG and preflight can plan (``task.num_classes``), and reads the names at the first
use; without the data that use ends in one sentence naming ``mvlpt data fetch <task>``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from mvlpt.datasets import coop
from mvlpt.errors import MvlptError
from mvlpt.tasks.registry import Task, register

SOURCE = coop.SOURCE


class DataClassNames(Sequence):
    """A task's class names read from its data: ``len()`` is known beforehand; reading them (index,
    iteration) needs the data, in the folder the task's last load used (else ``$MVLPT_DATA_DIR``, else
    ``~/.cache/mvlpt/data``): code that reads them from another data folder loads a split first, as training does."""

    from_data = True  # mvlpt.tasks.registry.Task checks such names when they are read

    def __init__(self, task: str, count: int):
        self.task, self.count, self.data_dir = task, int(count), None

    def __len__(self) -> int:
        return self.count

    def names(self) -> tuple[str, ...]:
        return _read_names(self.task, str(coop.folder(self.task, self.data_dir)))

    def __getitem__(self, i):
        return self.names()[i]

    def __iter__(self):
        return iter(self.names())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash((self.task, self.count))

    def __repr__(self) -> str:
        return f"DataClassNames({self.task!r}, {self.count})"


@functools.cache
def _names_cached(task: str, folder: str, mtime_ns: int) -> tuple[str, ...]:
    return coop.classnames(task, Path(folder).parents[1])


def _read_names(task: str, folder: str) -> tuple[str, ...]:
    data_dir = Path(folder).parents[1]
    if not coop.present(task, data_dir):
        return coop.classnames(task, data_dir)  # raises the one sentence
    return _names_cached(task, folder, coop.image_root(task, data_dir).stat().st_mtime_ns)


# open_clip's list (CLIP's) names two pairs of ILSVRC classes alike; a task's names must be unique, so the
# first of each pair keeps open_clip's name and the second the other word of its ILSVRC-2012 synset
# (744 n04008634 "projectile, missile"; 836 n04355933 "sunglass", beside 837 n04356056 "sunglasses").
IMAGENET_RENAMED = {744: ("missile", "projectile"), 836: ("sunglasses", "sunglass")}


@functools.cache
def imagenet_metadata() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """ImageNet's class names and templates as open_clip ships them (its templates are functions of the
    name), the names repeated in open_clip's list told apart (:data:`IMAGENET_RENAMED`)."""
    from open_clip import zero_shot_metadata as meta

    names = list(meta.IMAGENET_CLASSNAMES)
    for i, (theirs, ours) in IMAGENET_RENAMED.items():
        if names[i] == theirs:
            names[i] = ours
    templates = tuple(t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES)
    if len(set(names)) != len(names) or any("{}" not in t for t in templates):
        raise MvlptError("open_clip's ImageNet names repeat a name or a template lacks '{}'; check IMAGENET_RENAMED.")
    return tuple(names), templates


class OpenClipList(Sequence):
    """One of open_clip's ImageNet lists (:func:`imagenet_metadata`: 0 the names, 1 the templates), read on
    first use: importing open_clip takes seconds, which every workflow start and ``mvlpt`` command would pay
    when the task registers. ``len()`` is known beforehand; the lists are checked when read."""

    from_data = True  # mvlpt.tasks.registry.Task leaves the check to the reading (imagenet_metadata)

    def __init__(self, part: int, count: int):
        self.part, self.count = part, count

    def values(self) -> tuple[str, ...]:
        return imagenet_metadata()[self.part]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):
        return self.values()[i]

    def __iter__(self):
        return iter(self.values())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash((self.part, self.count))

    def __repr__(self) -> str:
        return f"OpenClipList({self.part}, {self.count})"


IMAGENET_COUNTS = (1000, 80)  # open_clip's IMAGENET_CLASSNAMES and OPENAI_IMAGENET_TEMPLATES (a test holds them)


def _loader(task: str, names: DataClassNames | None):
    def load(split: str, data_dir=None):
        if names is not None:
            names.data_dir = data_dir  # the names are read where the images are
        return coop.load_split(task, split, data_dir)

    load.__name__ = f"load_{task}"
    return load


def _make_task(name: str) -> Task:
    s = coop.spec(name)
    if s["classnames_from"] == "open_clip":
        classnames, templates = (OpenClipList(part, n) for part, n in enumerate(IMAGENET_COUNTS))
        names = None
    else:
        classnames = names = DataClassNames(name, s["num_classes"])
        templates = tuple(s["templates"])
    return Task(
        name=name,
        classnames=classnames,
        templates=templates,
        metric="accuracy",
        loader=_loader(name, names),
        splits=("train", "test"),
        domain=s["domain"],
        description=s["description"],
        source=SOURCE,
    )


def _register_all() -> None:
    for name in coop.task_names():
        register(_make_task(name), replace=True)


_register_all()
