"""The package data describing the ELEVATER suite (copied from ELEVATER, read-only).

* ``elevater_tasks.json``: per task its class names (ELEVATER's label order), synonyms, templates;
* ``elevater_vision_datasets.json``: ELEVATER's dataset manifest (IRIS/COCO layout, splits, sizes);
* ``elevater_routes.json``: the data routes per task (see :mod:`mvlpt.datasets.routes`).
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from mvlpt.errors import MvlptError

_PKG = "mvlpt.tasks"  # files in mvlpt/tasks/data/ (package data, see pyproject.toml)


def _load(name: str):
    return json.loads(resources.files(_PKG).joinpath("data", name).read_text(encoding="utf-8"))


@functools.cache
def tasks_info() -> dict:
    return _load("elevater_tasks.json")


@functools.cache
def manifest() -> dict:
    return {d["name"]: d for d in _load("elevater_vision_datasets.json")}


@functools.cache
def routes_table() -> dict:
    return _load("elevater_routes.json")


def task_names() -> list[str]:
    """The 20 ELEVATER tasks, in tasks.json order."""
    return list(tasks_info())


def check_task(task: str) -> None:
    if task not in tasks_info():
        raise MvlptError(f"{task!r} is not an ELEVATER task; the ELEVATER tasks are: {', '.join(task_names())}.")


def manifest_entry(task: str) -> dict:
    check_task(task)
    return manifest()[task]


def route_spec(task: str) -> dict:
    check_task(task)
    return routes_table()["tasks"][task]
