"""CLI verbs for the ELEVATER data and the CoOp data sets of Table 1 (:mod:`mvlpt.datasets.coop`):
``mvlpt data fetch | check | routes``.

mvlpt data fetch TASK... [--data-dir DIR] [--route auto|local|hub|torchvision|manual] [--source S] [--revision R]
mvlpt data fetch all                       (every ELEVATER task)
mvlpt data check [TASK...] [--data-dir DIR] [--quick] [--images [--on-corrupt fail|skip]]
mvlpt data routes [TASK...] [--markdown]
"""

from __future__ import annotations

import sys

from mvlpt.errors import MvlptError
from mvlpt.io import check_folder

ROUTE_CHOICES = ("auto", "local", "hub", "torchvision", "manual")


def _tasks(names: list[str] | None, *, default_all: bool) -> list[str]:
    from mvlpt.datasets import catalog, coop

    if not names or names == ["all"]:
        if names == ["all"] or default_all:
            return catalog.task_names()
        raise MvlptError("name at least one task (or `all`); `mvlpt data routes` lists them.")
    for n in names:
        if not coop.is_coop(n):
            catalog.check_task(n)
    return list(dict.fromkeys(names))


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_fetch(args) -> int:
    from mvlpt.datasets import routes
    from mvlpt.datasets.paths import resolve_data_dir

    tasks = _tasks(args.tasks, default_all=False)
    data_dir = resolve_data_dir(args.data_dir)
    check_folder(data_dir, "data folder")
    if args.source and len(tasks) > 1:
        raise MvlptError("--source names one task's files; fetch one task at a time with it.")
    failed: list[tuple[str, str]] = []
    for task in tasks:
        try:
            entry = routes.fetch(task, data_dir, route=args.route, source=args.source, revision=args.revision)
        except MvlptError as e:
            if len(tasks) == 1:
                raise
            failed.append((task, str(e)))
            print(f"mvlpt: error: {e}", file=sys.stderr, flush=True)
            continue
        size = sum(f["size"] for f in entry["files"].values()) / 1e9
        if entry.get("status") == "already-present":
            _say(
                f"{task}: already fetched by route {entry['route']} ({len(entry['files'])} files, {size:.2f} GB; "
                f"`mvlpt data check {task}` verifies their sha256, `--route {entry['route']}` fetches again)"
            )
            continue
        _say(
            f"{task}: fetched by route {entry['route']} ({len(entry['files'])} files, {size:.2f} GB, "
            f"sha256 recorded in {data_dir / 'mvlpt-data.lock.json'})"
        )
        if entry.get("notes") and entry["route"] != "local":
            _say(f"    splits: {entry['notes']}")
    if failed:
        raise MvlptError(
            f"{len(failed)} of {len(tasks)} tasks were not fetched ({', '.join(t for t, _ in failed)}); see the messages above."
        )
    return 0


def run_check(args) -> int:
    from mvlpt.datasets import lock, routes
    from mvlpt.datasets.paths import resolve_data_dir

    tasks = _tasks(args.tasks, default_all=True)
    data_dir = resolve_data_dir(args.data_dir)
    check_folder(data_dir, "data folder")
    locked = lock.read_lock(data_dir)
    bad = 0
    for task in tasks:
        v = lock.verify(data_dir, task, quick=args.quick, lock=locked)
        if v.status == "not-locked":
            present = routes.present_routes(task, data_dir)
            if present:
                route, folder = present[0]
                line = (
                    f"{task}: present (route {route}, {folder}), not in the lock file: run "
                    f"`mvlpt data fetch {task} --route {route}` to record its checksums"
                )
                status = "present"
            else:
                line, status = f"{task}: missing (run `mvlpt data fetch {task}`)", "missing"
        else:
            line, status = v.line(), v.status
            if v.status == "corrupt":
                line += f"\n    delete the files named above and run `mvlpt data fetch {task}`"
            elif v.status == "missing":
                line += f"\n    run `mvlpt data fetch {task}`"
        _say(line)
        if status == "present" and args.images:
            status = _check_images(task, data_dir, args.on_corrupt)
        bad += status != "present"
    if bad:
        _say(f"{bad} of {len(tasks)} task(s) are not ready.")
    return 1 if bad else 0


def _check_images(task: str, data_dir, on_corrupt: str) -> str:
    from mvlpt.datasets.images import CorruptImageError, check_split
    from mvlpt.tasks import get_task

    t = get_task(task)
    status = "present"
    for split in t.splits:
        try:
            data = t.load(split, data_dir)
        except MvlptError as e:
            _say(f"    {split}: not loadable ({e})")
            continue
        try:
            _, report = check_split(data, on_corrupt=on_corrupt, task=task, progress=True)
        except CorruptImageError as e:
            _say(f"    {split}: {e}")
            return "corrupt"
        if report:
            _say(f"    {split}: " + report.summary().replace("\n", "\n    "))
            status = "corrupt"
        else:
            _say(f"    {split}: {len(data)} images decode")
    return status


def routes_markdown(tasks: list[str]) -> str:
    from mvlpt.datasets.routes import route_rows

    lines = [
        "| task | routes (default first) | source of the default route | disk, GB | where the default route's splits differ from ELEVATER's |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for r in route_rows():
        if r["task"] not in tasks:
            continue
        alt = "; ".join(f"{k}: {v}" for k, v in r["alt"].items())
        note = r["split_note"] + (f" (alternative {alt})" if alt else "")
        gb = f"{r['disk_gb']:g}" if r["disk_gb"] is not None else "?"
        if r["disk_source"].startswith("estimate"):
            gb = "~" + gb  # estimated; other numbers are read off the hub's file listing
        lines.append(f"| {r['task']} | {', '.join(r['routes'])} | `{r['source']}` | {gb} | {note} |")
    return "\n".join(lines)


def run_routes(args) -> int:
    from mvlpt.datasets.routes import route_rows

    tasks = _tasks(args.tasks, default_all=True)
    if args.markdown:
        _say(routes_markdown(tasks))
        return 0
    for r in route_rows():
        if r["task"] not in tasks:
            continue
        gb = f"{r['disk_gb']:g} GB" if r["disk_gb"] is not None else "? GB"
        _say(f"{r['task']}: {' > '.join(r['routes'])}  [{r['source']}, ~{gb}]")
        _say(f"    splits: {r['split_note']}")
        for k, v in r["alt"].items():
            _say(f"    {k}: {v}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="fetch and check the ELEVATER data",
        description="Fetch the ELEVATER tasks' data (local copy, hub mirror, torchvision or by hand), record their "
        "sha256 in <data-dir>/mvlpt-data.lock.json, and check them later.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="{fetch,check,routes}")
    sub.required = True

    f = sub.add_parser(
        "fetch",
        help="download a task's data and record checksums",
        description="Download (with progress) or register the data of the named ELEVATER tasks and "
        "record the sha256 of every file in the lock file. Offline, each route fails at once "
        "with a sentence saying what to do.",
    )
    f.add_argument("tasks", nargs="+", metavar="TASK", help="ELEVATER task names, or `all`")
    f.add_argument("--data-dir", default=None, help="data folder (default: $MVLPT_DATA_DIR or ~/.cache/mvlpt/data)")
    f.add_argument(
        "--route",
        choices=ROUTE_CHOICES,
        default="auto",
        help="auto (default): register data already on disk, else the task's preferred route",
    )
    f.add_argument(
        "--source",
        default=None,
        help="local: a folder with ELEVATER's files for the task; hub: a folder (or file:// URL) in the "
        "CLIP_benchmark webdataset layout, or another hub repo id",
    )
    f.add_argument("--revision", default=None, help="hub: a branch, tag or commit (default: the table's, else main)")
    f.set_defaults(func=run_fetch)

    c = sub.add_parser(
        "check",
        help="say per task: present / missing / corrupt",
        description="Verify the files recorded in the lock file (size and sha256) and say per task "
        "whether its data are present, missing or corrupt. Exit status 1 when any is not present.",
    )
    c.add_argument("tasks", nargs="*", metavar="TASK", help="tasks to check (default: all 20)")
    c.add_argument("--data-dir", default=None)
    c.add_argument("--quick", action="store_true", help="compare sizes only, skip the sha256")
    c.add_argument("--images", action="store_true", help="also decode every image and report corrupt ones with their path")
    c.add_argument(
        "--on-corrupt",
        choices=("fail", "skip"),
        default="skip",
        help="with --images: stop at the first corrupt image (fail) or list them all (skip, default)",
    )
    c.set_defaults(func=run_check)

    r = sub.add_parser(
        "routes",
        help="print the data route table",
        description="Print, per task, its data routes, their source, disk space and how their splits differ from ELEVATER's.",
    )
    r.add_argument("tasks", nargs="*", metavar="TASK")
    r.add_argument("--markdown", action="store_true", help="as a Markdown table")
    r.set_defaults(func=run_routes)
