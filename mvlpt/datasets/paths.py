"""Where the data lives.

``data_dir`` argument > environment variable ``MVLPT_DATA_DIR`` > ``~/.cache/mvlpt/data``.

Inside it, one folder per route:

* ELEVATER's own layout: ``<data_dir>/<root_folder>`` (e.g. ``classification/cifar_10_20211007``), as
  ELEVATER's toolkit lays it out; ``<data_dir>/<basename of root_folder>`` and
  ``<data_dir>/<task>`` are accepted too;
* hub mirror (webdataset): ``<data_dir>/<task>/hub``;
* torchvision: ``<data_dir>/<task>/torchvision``;
* by hand (hateful-memes): ``<data_dir>/<task>/manual``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MVLPT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/mvlpt/data"
LOCK_NAME = "mvlpt-data.lock.json"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    value = data_dir if data_dir not in (None, "") else os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return Path(os.path.expandvars(str(value))).expanduser()


def route_dir(data_dir: Path, task: str, route: str) -> Path:
    return Path(data_dir) / task / route


def elevater_dirs(data_dir: Path, task: str, root_folder: str) -> list[Path]:
    """Candidate folders holding a task in ELEVATER's own layout, most specific first."""
    data_dir = Path(data_dir)
    cands = [data_dir / root_folder, data_dir / Path(root_folder).name, data_dir / task]
    out: list[Path] = []
    for c in cands:
        if c not in out:
            out.append(c)
    return out


def lock_path(data_dir: Path) -> Path:
    return Path(data_dir) / LOCK_NAME
