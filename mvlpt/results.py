"""Result files: one small JSON per run and target, written atomically; tables are built from these.

Layout: ``{results_dir}/{method}/{source}__{target}/seed{seed}.json`` (baseline: source == target).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .errors import MvlptError
from .io import read_json, write_json

FORMAT = 1
REQUIRED = ("method", "source", "target", "mode", "seed", "shots", "metric", "test", "val", "best_epoch",
            "epochs", "wall_time_s", "device", "model", "pretrained", "mvlpt_version", "config_hash",
            "n_train", "n_val", "n_test")


def result_path(results_dir, method: str, source: str, target: str, seed: int) -> Path:
    return Path(results_dir) / method / f"{source}__{target}" / f"seed{seed}.json"


def write_result(result: dict, path: str | os.PathLike) -> None:
    missing = [k for k in REQUIRED if k not in result]
    if missing:
        raise ValueError(f"result lacks {missing}")
    write_json({"format": FORMAT, **result}, path)


def read_result(path: str | os.PathLike) -> dict:
    res = read_json(path, "result file")
    if not isinstance(res, dict) or "format" not in res:
        raise MvlptError(f"result file {path} is not an mvlpt result (no 'format' field); delete it and rerun its job.")
    if res["format"] != FORMAT:
        raise MvlptError(
            f"result file {path} has format {res['format']}, this mvlpt reads format {FORMAT}; "
            f"rerun its job (delete the file) or use the mvlpt version that wrote it."
        )
    missing = [k for k in REQUIRED if k not in res]
    if missing:
        raise MvlptError(f"result file {path} lacks the fields {', '.join(missing)}; delete it and rerun its job.")
    return res


def iter_results(root: str | os.PathLike) -> Iterator[dict]:
    """Every result under ``root`` (``*/*__*/seed*.json``), in a stable order."""
    for path in sorted(Path(root).glob("*/*__*/seed*.json")):
        yield read_result(path)
