"""The 20 ELEVATER image-classification tasks of the MVLPT study.

Names, class names (in ELEVATER's label order), templates and the dataset manifest are package data
copied from ELEVATER (``mvlpt/tasks/data``). Metrics follow ELEVATER: mean per-class accuracy for
caltech-101, fgvc-aircraft-2013b-variants102, oxford-flower-102 and oxford-iiit-pets; 11-point mAP
for voc-2007-classification (multi-label); ROC-AUC for hateful-memes; accuracy otherwise.

hateful-memes: ELEVATER scores it by ROC-AUC, the MVLPT reference code by accuracy. The default is
ROC-AUC; :func:`scored_task` gives the task scored by accuracy, for the commands that take
``--hateful-memes-metric`` (the workflow passes the config key ``elevater: {hateful_memes_metric: ...}``).

Loading: ``get_task(name).load(split, data_dir)``; ``data_dir`` None -> ``$MVLPT_DATA_DIR`` ->
``~/.cache/mvlpt/data``. The data may be in ELEVATER's own layout, the hub mirror's, torchvision's
or the hand-fetched layout (see :mod:`mvlpt.datasets.routes`); when several are present the one
recorded in the lock file wins, else the first of local > hub > torchvision > manual. Loading is
lazy: an index is read, images are decoded by ``split.image(i)``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from pathlib import Path

import numpy as np

from mvlpt.datasets import catalog, iris, lock, routes, wds
from mvlpt.datasets.labels import check_same_order, map_by_name, map_by_position
from mvlpt.datasets.paths import resolve_data_dir
from mvlpt.errors import MvlptError
from mvlpt.tasks.registry import Task, TaskSplit, register

log = logging.getLogger(__name__)

SOURCE = "elevater"
METRIC_OVERRIDES = {
    "caltech-101": "mean_per_class_accuracy",
    "fgvc-aircraft-2013b-variants102": "mean_per_class_accuracy",
    "oxford-flower-102": "mean_per_class_accuracy",
    "oxford-iiit-pets": "mean_per_class_accuracy",
    "voc-2007-classification": "map_11point",
    "hateful-memes": "roc_auc",
}
HATEFUL_MEMES = "hateful-memes"
HATEFUL_MEMES_METRICS = ("roc_auc", "accuracy")

_cache: dict[tuple, TaskSplit] = {}
_cache_lock = threading.Lock()


def task_names() -> list[str]:
    return catalog.task_names()


def _chosen_route(task: str, data_dir: Path) -> tuple[str, Path]:
    present = routes.present_routes(task, data_dir)
    if not present:
        raise MvlptError(
            f"task {task}: no data found under {data_dir} (looked for {routes.looked_for(task, data_dir)}); "
            f"run `mvlpt data fetch {task}` or see README 'Getting the data'."
        )
    try:
        locked = lock.read_lock(data_dir)["tasks"].get(task)
    except MvlptError:
        locked = None
    if locked:
        for route, folder in present:
            if route == locked.get("route"):
                return route, folder
    return present[0]


@functools.cache
def _hub_mapping(task: str, folder: str, mtime_ns: int) -> tuple[np.ndarray, bool]:
    info = catalog.tasks_info()[task]
    spec = catalog.route_spec(task)["hub"]
    names = wds.classnames(Path(folder))
    if spec.get("label_map") == "position":
        mapping = map_by_position(len(names), info["num_classes"], what="hub mirror", task=task)
    else:
        mapping = map_by_name(
            names,
            info["classnames"],
            synonyms=info.get("synonyms"),
            aliases=spec.get("aliases"),
            what=f"hub mirror's classnames.txt ({folder})",
            task=task,
        )
        if spec.get("label_order") == "official":
            check_same_order(mapping, names, info["classnames"], what=f"hub mirror's classnames.txt ({folder})", task=task)
    return mapping, wds.is_multilabel(Path(folder))


def load_split(task: str, split: str, data_dir: str | os.PathLike | None = None) -> TaskSplit:
    """Load ``split`` of ELEVATER task ``task`` from whichever route's data are on disk."""
    data_dir = resolve_data_dir(data_dir)
    route, folder = _chosen_route(task, data_dir)
    key = (task, split, str(folder), route)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    info = catalog.tasks_info()[task]
    entry = catalog.manifest_entry(task)
    multilabel = entry["type"] == "classification_multilabel"
    spec = catalog.route_spec(task)
    if route == "local":
        if split not in entry:
            raise MvlptError(f"task {task} has no {split!r} split in ELEVATER.")
        out = iris.IrisSplit(task, folder, entry, split, info["classnames"], info.get("synonyms"), multilabel)
    elif route == "hub":
        src_split = spec["hub"]["splits"].get(split)
        if src_split is None:
            raise MvlptError(
                f"task {task}: the hub mirror has no {split!r} split (it has: {', '.join(spec['hub']['splits'])}); "
                f"use ELEVATER's own files (route local) to get it, or use the few-shot validation split instead."
            )
        mapping, ml = _hub_mapping(task, str(folder), (folder / "classnames.txt").stat().st_mtime_ns)
        out = wds.WdsSplit(task, folder, split, mapping, info["num_classes"], multilabel=multilabel or ml, source_split=src_split)
    elif route == "torchvision":
        from mvlpt.datasets.tv import TorchvisionSplit

        out = TorchvisionSplit(task, folder, spec["torchvision"], split, info["classnames"], info.get("synonyms"))
    else:
        from mvlpt.datasets.manual import ManualSplit

        out = ManualSplit(task, folder, spec["manual"], split, info["num_classes"])
    with _cache_lock:
        _cache[key] = out
    return out


def clear_cache() -> None:
    """Forget loaded splits (e.g. after fetching data in the same process)."""
    with _cache_lock:
        _cache.clear()
    _hub_mapping.cache_clear()


def _make_task(name: str, hateful_memes_metric: str | None = None) -> Task:
    info = catalog.tasks_info()[name]
    entry = catalog.manifest_entry(name)
    metric = METRIC_OVERRIDES.get(name, "accuracy")
    if name == HATEFUL_MEMES and hateful_memes_metric:
        metric = hateful_memes_metric
    splits = tuple(s for s in ("train", "val", "test") if s in entry)
    return Task(
        name=name,
        classnames=tuple(info["classnames"]),
        templates=tuple(info["templates"]),
        metric=metric,
        loader=functools.partial(load_split, name),
        multilabel=entry["type"] == "classification_multilabel",
        splits=splits,
        domain=Path(entry["root_folder"]).name,
        description=entry.get("description", ""),
        source=SOURCE,
    )


def scored_task(task: Task, hateful_memes_metric: str | None = None) -> Task:
    """``task``, hateful-memes scored by ``hateful_memes_metric``: ``"roc_auc"`` (ELEVATER, the default,
    also for None) or ``"accuracy"`` (the MVLPT reference code). Any other task is returned as it is;
    the registry is left alone."""
    if hateful_memes_metric is not None and hateful_memes_metric not in HATEFUL_MEMES_METRICS:
        raise MvlptError(f"hateful_memes_metric must be one of {', '.join(HATEFUL_MEMES_METRICS)}, not {hateful_memes_metric!r}.")
    if task.name != HATEFUL_MEMES or task.source != SOURCE or not hateful_memes_metric or task.metric == hateful_memes_metric:
        return task
    return dataclasses.replace(task, metric=hateful_memes_metric)


def _register_all() -> None:
    for name in catalog.task_names():
        register(_make_task(name), replace=True)


_register_all()
