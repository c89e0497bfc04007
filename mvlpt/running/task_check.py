"""Preflight, per task: its data present and intact (and by which route), its images per class against
the configured shots and the few-shot policy, and the few-shot train / val images each seed gets
(:func:`check_task`, one :class:`TaskRow`); :func:`manifest_shortfall` names the ELEVATER tasks whose
manifest cannot give the shots."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mvlpt.errors import MvlptError

POLICY_KEY = "fewshot_policy"


@dataclasses.dataclass
class TaskRow:
    task: str
    suite: str
    classes: int
    data: str = ""  # built-in | present | missing | corrupt | unreadable
    route: str = ""
    folder: str = ""
    train_images: int | None = None
    per_class_min: int | None = None
    per_class_max: int | None = None
    per_class_from: str = ""  # "data" | "manifest (mean)"
    short_classes: int = 0
    shots_taken_min: int | None = None
    fewshot_train: int | None = None  # per seed
    fewshot_val: int | None = None
    test_images: int | None = None
    notes: list = dataclasses.field(default_factory=list)
    shots: int | None = None  # the shot count fewshot_train / fewshot_val are for
    study: str = ""  # a study inside the study (shots5, table1; mvlpt.study.settings), "" the study itself


def _fetch_cmd(task: str, data_dir: Path, explicit: bool) -> str:
    return f"`mvlpt data fetch {task}" + (f" --data-dir {data_dir}`" if explicit else "`")


def _split_plan(counts, shots: int) -> tuple[int, int, int]:
    """(few-shot train, val images per seed, smallest shots taken) for per-class image counts."""
    train = val = 0
    for n in counts:
        k = min(int(n), shots)
        if shots == 1:
            train += k
            val += 1 if n >= 2 else 0
            continue
        nv = max(1, round(0.2 * k)) if k >= 2 else 0
        train += k - nv
        val += nv
    return train, val, min((min(int(n), shots) for n in counts), default=0)


def check_task(name: str, cfg: dict, *, deep: bool, problems: list, warnings: list) -> TaskRow:
    import numpy as np

    from mvlpt.tasks import get_task
    from mvlpt.tasks.fewshot import class_counts

    task = get_task(name)
    shots, policy = int(cfg["shots"]), cfg[POLICY_KEY]
    row = TaskRow(name, task.source, task.num_classes, shots=shots)
    data_dir_cfg = cfg.get("data_dir")
    train = test = None
    if task.source in ("elevater", "coop"):
        from mvlpt.datasets import catalog, coop, lock, routes
        from mvlpt.datasets.paths import resolve_data_dir

        data_dir = resolve_data_dir(data_dir_cfg)
        fetch = _fetch_cmd(name, data_dir, bool(data_dir_cfg))
        present = routes.present_routes(name, data_dir)
        try:
            verdict = lock.verify(data_dir, name, quick=not deep)
        except MvlptError as e:
            verdict = None
            problems.append(f"task {name}: {e}")
        if not present:
            row.data = "missing"
            manual = (coop.route(name) if task.source == coop.SOURCE else routes.default_route(name)) == "manual"
            why = coop.route_spec(name).get("why", "") if task.source == coop.SOURCE else "its licence must be accepted first"
            how = f" ({why}: the command says what to download and where to put it)" if manual else ""
            problems.append(f"task {name}: no data under {data_dir}; run {fetch}{how}.")
        elif verdict is not None and verdict.status in ("corrupt", "missing"):
            row.data, row.route = verdict.status, verdict.route
            problems.append(
                f"task {name}: the data fetched by route {verdict.route} is {verdict.status} "
                f"({verdict.problems[0]}); delete the damaged files and run {fetch}."
            )
        else:
            row.data = "present"
            route, folder = present[0]
            if verdict is not None and verdict.status == "present":
                route = verdict.route or route
                folder = next((f for r, f in present if r == route), folder)
            else:
                warnings.append(
                    f"task {name}: data present (route {route}, {folder}) but not in the lock file; run "
                    f"`mvlpt data fetch {name} --route {route}` to record its checksums."
                )
            row.route, row.folder = route, str(folder)
        if row.data != "present":  # planned from ELEVATER's manifest, or the CoOp split's sizes (coop_tasks.json)
            if task.source == coop.SOURCE:
                n, n_test = (int(coop.spec(name)["planning"][s]) for s in ("train", "test"))
            else:
                entry = catalog.manifest_entry(name)
                n, n_test = int(entry["train"]["num_images"]), int(entry["test"]["num_images"])
            per = n // task.num_classes
            row.train_images, row.per_class_min, row.per_class_max = n, per, per
            row.per_class_from = "manifest (mean)"
            row.test_images = n_test
            counts = [per] * task.num_classes if not task.multilabel else [n] * task.num_classes
        else:
            try:
                train = task.load("train", data_dir_cfg)
                test = task.load("test", data_dir_cfg)
            except MvlptError as e:
                row.data = "unreadable"
                problems.append(str(e) if str(e).startswith(f"task {name}") else f"task {name}: {e}")
    else:
        row.data, row.route = "built-in", "synthetic"
        train, test = task.load("train"), task.load("test")
    if train is not None:
        counts = class_counts(np.asarray(train.labels), task.num_classes)
        row.train_images, row.test_images = len(train), len(test)
        row.per_class_min, row.per_class_max, row.per_class_from = int(counts.min()), int(counts.max()), "data"
    if row.train_images is None:
        return row
    short = {task.classnames[c]: int(n) for c, n in enumerate(counts) if n < shots}
    row.short_classes = len(short)
    empty = [c for c, n in short.items() if n == 0]
    if empty:
        problems.append(
            f"task {name}: {len(empty)} class(es) have no training image (e.g. {empty[0]!r}), so they "
            f"cannot be learned; check the task's data (`mvlpt data check {name} --images`)."
        )
    row.fewshot_train, row.fewshot_val, row.shots_taken_min = _split_plan(counts, shots)
    if short:
        worst = min(short, key=short.get)
        where = "" if row.per_class_from == "data" else " by ELEVATER's manifest"
        if policy == "strict":
            problems.append(
                f"task {name}: {len(short)} of {task.num_classes} classes have fewer than shots={shots} "
                f"training images{where} (class {worst!r}: {short[worst]}), which the strict few-shot policy "
                f"refuses; lower `shots`, drop the task, or set `{POLICY_KEY}: available`."
            )
        else:
            row.notes.append(
                f"{len(short)} classes short of {shots} shots: all their images are taken (smallest {row.shots_taken_min})"
            )
            warnings.append(
                f"task {name}: {len(short)} of {task.num_classes} classes have fewer than {shots} training "
                f"images{where} (smallest: {short[worst]}); policy available takes all they have "
                f"(recorded as shots_taken in the split files)."
            )
    if row.fewshot_val == 0:
        problems.append(f"task {name}: no class has a validation image at shots={shots}; raise `shots`.")
    return row


def manifest_shortfall(shots: int) -> dict[str, dict]:
    """ELEVATER tasks whose train split, by the shipped manifest, cannot give ``shots`` images per class:
    ``{task: {"train": n, "classes": C, "per_class": n // C}}`` (multi-label tasks excluded: a mean says
    nothing about them)."""
    from mvlpt.datasets import catalog

    out = {}
    for name in catalog.task_names():
        e = catalog.manifest_entry(name)
        if e["type"] == "classification_multilabel":
            continue
        n, C = int(e["train"]["num_images"]), int(e["num_classes"])
        if n // C < shots:
            out[name] = {"train": n, "classes": C, "per_class": n // C}
    return out
