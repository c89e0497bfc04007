"""Data routes: find a task's data on disk, or fetch it, and record what was fetched in the lock file.

Routes, in order of preference:

1. ``local``: ELEVATER's own layout (index files, label map, zip archives) under the data folder;
   ``fetch --route local`` records their checksums (``--source DIR`` copies them in first);
2. ``hub``: CLIP_benchmark's webdataset copies on the Hugging Face hub (19 of the 20 tasks);
   ``--source`` may name a local folder (or ``file://`` URL) in that layout, or another hub repo;
3. ``torchvision``: torchvision's downloaders, for the tasks whose official splits are ELEVATER's;
4. ``manual``: no automatic route (hateful-memes: its licence must be accepted); ``fetch`` says
   exactly what to download and where to put it, and records the files once they are there.

Offline, a route fails at once (a 5-second reachability check, DNS included) with one sentence
naming the task, the route and what to do; nothing retries.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import socket
import sys
import urllib.parse
from pathlib import Path

from mvlpt.datasets import coop, iris, lock, manual, wds
from mvlpt.datasets.catalog import manifest_entry, route_spec, routes_table
from mvlpt.datasets.paths import elevater_dirs, resolve_data_dir, route_dir
from mvlpt.errors import MvlptError

log = logging.getLogger(__name__)

ROUTES = ("local", "hub", "torchvision", "manual")
CONNECT_TIMEOUT = 5.0
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


# --------------------------------------------------------------------------------------------- layout
def elevater_root(task: str, data_dir: Path, split: str | None = None) -> Path | None:
    entry = manifest_entry(task)
    return iris.find_root(elevater_dirs(data_dir, task, entry["root_folder"]), entry, split)


def hub_root(task: str, data_dir: Path) -> Path:
    return route_dir(data_dir, task, "hub")


def present_routes(task: str, data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """The routes whose data are on disk for ``task``, in order of preference: ``[(route, folder)]``."""
    data_dir = resolve_data_dir(data_dir)
    if coop.is_coop(task):  # the CoOp data sets of Table 1: one route each (mvlpt.datasets.coop)
        return [(coop.route(task), coop.folder(task, data_dir))] if coop.present(task, data_dir) else []
    spec = route_spec(task)
    out: list[tuple[str, Path]] = []
    root = elevater_root(task, data_dir)
    if root is not None:
        out.append(("local", root))
    h = hub_root(task, data_dir)
    if (h / "classnames.txt").is_file() and wds.has_split(h, "train") and wds.has_split(h, "test"):
        out.append(("hub", h))
    t = route_dir(data_dir, task, "torchvision")
    if "torchvision" in spec and t.is_dir() and any(t.iterdir()):
        out.append(("torchvision", t))
    m = route_dir(data_dir, task, "manual")
    if "manual" in spec and manual.present(m, spec["manual"]):
        out.append(("manual", m))
    return out


def looked_for(task: str, data_dir: Path) -> str:
    """Where the loaders look for ``task`` (for 'no data found' messages)."""
    entry = manifest_entry(task)
    spec = route_spec(task)
    places = [f"{p} (ELEVATER layout)" for p in elevater_dirs(data_dir, task, entry["root_folder"])]
    places.append(f"{hub_root(task, data_dir)} (hub mirror)")
    if "torchvision" in spec:
        places.append(f"{route_dir(data_dir, task, 'torchvision')} (torchvision)")
    if "manual" in spec:
        places.append(f"{route_dir(data_dir, task, 'manual')} (by hand)")
    return ", ".join(places)


# ------------------------------------------------------------------------------------- reachability
def _proxy_for(url: str) -> str | None:
    scheme = urllib.parse.urlsplit(url).scheme or "https"
    for k in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if os.environ.get(k):
            return os.environ[k]
    return None


def _connect(host: str, port: int, timeout: float) -> None:
    # getaddrinfo ignores socket timeouts; bound the whole attempt (DNS included) with a thread.
    def attempt():
        with socket.create_connection((host, port), timeout=timeout):
            return True

    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        fut = ex.submit(attempt)
        fut.result(timeout=timeout + 0.5)
    except concurrent.futures.TimeoutError:
        raise OSError(f"no answer within {timeout:.0f} s") from None
    finally:
        ex.shutdown(wait=False)


_unreachable: dict[tuple[str, int], str] = {}  # hosts that failed in this process: fail at once next time


def check_reachable(url: str, *, task: str, route: str, what_to_do: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise :class:`MvlptError` (one sentence) unless ``url``'s host (or the proxy) answers quickly."""
    target = _proxy_for(url) or url
    parts = urllib.parse.urlsplit(target if "://" in target else f"https://{target}")
    host = parts.hostname or ""
    port = parts.port or (80 if parts.scheme == "http" else 443)
    reason = _unreachable.get((host, port))
    if reason is None:
        try:
            _connect(host, port, timeout)
            return
        except OSError as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            _unreachable[(host, port)] = reason
    raise MvlptError(f"task {task}: route {route} cannot reach {host} ({reason}); {what_to_do}.")


def _offline_flag() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no")


# ----------------------------------------------------------------------------------------- hub route
def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or routes_table().get("hub_endpoint", "https://huggingface.co")


def _hub_download(repo_id: str, revision: str, local_dir: Path, allow_patterns: list[str]) -> tuple[str, dict[str, str]]:
    """Download ``repo_id`` (a dataset repo) into ``local_dir``; return (commit, {file: url}).

    Tests replace this function to stand in for the hub.
    """
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    from huggingface_hub import HfApi, hf_hub_url, snapshot_download

    endpoint = hub_endpoint()
    info = HfApi(endpoint=endpoint).dataset_info(repo_id, revision=revision, timeout=10)
    commit = info.sha or revision
    snapshot_download(
        repo_id=repo_id,
        repo_type="dataset",
        revision=commit,
        local_dir=str(local_dir),
        allow_patterns=allow_patterns,
        etag_timeout=10,
        max_workers=4,
        endpoint=endpoint,
    )
    files = [str(p.relative_to(local_dir)) for p in Path(local_dir).rglob("*") if p.is_file()]
    urls = {f: hf_hub_url(repo_id, f, repo_type="dataset", revision=commit, endpoint=endpoint) for f in files}
    return commit, urls


def _copy_tree(src: Path, dst: Path, patterns: list[str] | None = None) -> list[str]:
    import fnmatch

    copied = []
    for p in sorted(src.rglob("*")):
        if not p.is_file() or p.name.endswith(wds.INDEX_SUFFIX):
            continue
        rel = p.relative_to(src).as_posix()
        if patterns and not any(fnmatch.fnmatch(rel, pat) for pat in patterns):
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, out)
        copied.append(rel)
    return copied


def _local_source(source: str | None) -> Path | None:
    if not source:
        return None
    if source.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path))
    p = Path(source).expanduser()
    # "org/name" is a hub repo id unless such a folder exists; explicit paths are always local.
    return p if p.exists() or source.startswith(("/", ".", "~")) else None


def _hub_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(wds.INDEX_SUFFIX) and ".cache" not in p.relative_to(folder).parts
    )


def fetch_hub(task: str, data_dir: Path, source: str | None = None, revision: str | None = None) -> dict:
    spec = route_spec(task).get("hub")
    if spec is None:
        raise MvlptError(f"task {task} has no hub mirror; run `mvlpt data routes` to see its routes.")
    folder = hub_root(task, data_dir)
    patterns = list(routes_table().get("hub_patterns", []))
    local = _local_source(source)
    if local is not None:
        if not local.is_dir():
            raise MvlptError(
                f"task {task}: route hub: source folder {local} does not exist; give a folder in the "
                f"CLIP_benchmark webdataset layout (classnames.txt, train/*.tar, test/*.tar)."
            )
        folder.mkdir(parents=True, exist_ok=True)
        _copy_tree(local, folder, patterns)
        commit, urls, src = None, {f: (local / f).as_uri() for f in _hub_files(folder)}, str(local)
    else:
        repo = source or spec["repo"]
        rev = revision or spec.get("revision") or "main"
        todo = (
            f"connect to the internet (or set HTTPS_PROXY), or copy the {repo} files from a machine that has "
            f"them and run `mvlpt data fetch {task} --route hub --source DIR`"
        )
        if _offline_flag():
            raise MvlptError(
                f"task {task}: route hub is unavailable because HF_HUB_OFFLINE is set; unset it, or {todo.split(', or ', 1)[1]}."
            )
        check_reachable(hub_endpoint(), task=task, route="hub", what_to_do=todo)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{task}: downloading {repo} ({spec.get('disk_gb', '?')} GB) into {folder}", file=sys.stderr)
        try:
            commit, urls = _hub_download(repo, rev, folder, patterns)
        except MvlptError:
            raise
        except Exception as e:  # network errors surface as many types; one sentence, no retry
            raise MvlptError(
                f"task {task}: route hub failed while downloading {repo} ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); run the same command again to resume, "
                f"or {todo.split(', or ', 1)[1]}."
            ) from None
        src = repo
    if not (folder / "classnames.txt").is_file() or not wds.has_split(folder, "train") or not wds.has_split(folder, "test"):
        raise MvlptError(
            f"task {task}: route hub: {folder} lacks classnames.txt or the train/test shards after the "
            f"download; the source is not in CLIP_benchmark's webdataset layout."
        )
    return lock.record(
        data_dir,
        task,
        route="hub",
        folder=folder,
        files=_hub_files(folder),
        source=src,
        revision=commit,
        urls=urls,
        notes=spec.get("split_note", ""),
        hash_progress=_hash_bar(folder),
    )


# ---------------------------------------------------------------------------------- torchvision route
def _tv_files(folder: Path) -> list[str]:
    # Archives and annotation files; the images unpacked from archives are covered by the archives' sums.
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in _IMAGE_SUFFIXES
    )


def fetch_torchvision(task: str, data_dir: Path) -> dict:
    spec = route_spec(task).get("torchvision")
    if spec is None:
        note = route_spec(task).get("torchvision_note")
        raise MvlptError(f"task {task} has no torchvision route{' (' + note + ')' if note else ''}; use `--route hub`.")
    from mvlpt.datasets.tv import open_dataset

    folder = route_dir(data_dir, task, "torchvision")
    todo = f"connect to the internet (or set HTTPS_PROXY), or use another route (`mvlpt data routes {task}`)"
    for host in spec.get("hosts", []):
        check_reachable(f"https://{host}", task=task, route="torchvision", what_to_do=todo)
    folder.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # a stalled connection fails instead of hanging forever
    try:
        for split in spec["splits"]:
            print(f"{task}: torchvision {spec['class']} ({split}) into {folder}", file=sys.stderr)
            open_dataset(task, folder, spec, split, download=True)
    except MvlptError:
        raise
    except Exception as e:
        raise MvlptError(
            f"task {task}: route torchvision failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); run the same command again, or {todo.split(', or ', 1)[1]}."
        ) from None
    finally:
        socket.setdefaulttimeout(old)
    return lock.record(
        data_dir,
        task,
        route="torchvision",
        folder=folder,
        files=_tv_files(folder),
        source=f"torchvision.datasets.{spec['class']}",
        notes=spec.get("split_note", ""),
        hash_progress=_hash_bar(folder),
    )


# ---------------------------------------------------------------------------------------- local route
def fetch_local(task: str, data_dir: Path, source: str | None = None) -> dict:
    entry = manifest_entry(task)
    needed = iris.required_files(entry)
    src = _local_source(source)
    if src is not None:
        # Accept the task folder itself or an ELEVATER root holding classification/<...>.
        cand = [src, src / entry["root_folder"], src / Path(entry["root_folder"]).name]
        found = next((c for c in cand if all((c / f).is_file() for f in needed)), None)
        if found is None:
            raise MvlptError(
                f"task {task}: route local: {src} does not hold ELEVATER's files for the task "
                f"({', '.join(needed)}); point --source at the folder {entry['root_folder']}."
            )
        dest = Path(data_dir) / entry["root_folder"]
        dest.mkdir(parents=True, exist_ok=True)
        for f in needed:
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(found / f, dest / f)
        root = dest
    else:
        root = elevater_root(task, data_dir)
        if root is None:
            raise MvlptError(
                f"task {task}: route local found no ELEVATER index files under {data_dir} (looked in "
                f"{', '.join(map(str, elevater_dirs(data_dir, task, entry['root_folder'])))}); "
                f"put ELEVATER's files ({', '.join(needed)}) in {Path(data_dir) / entry['root_folder']}."
            )
    missing = [f for f in needed if not (root / f).is_file()]
    if missing:
        raise MvlptError(f"task {task}: route local: {root} lacks {', '.join(missing)}; copy them from ELEVATER's release.")
    return lock.record(
        data_dir,
        task,
        route="local",
        folder=root,
        files=needed,
        source=str(source or root),
        notes="ELEVATER's own files",
        hash_progress=_hash_bar(root),
    )


# ---------------------------------------------------------------------------------------- manual route
def manual_instructions(task: str, data_dir: Path) -> str:
    spec = route_spec(task).get("manual")
    entry = manifest_entry(task)
    return spec["instructions"].format(
        dir=route_dir(data_dir, task, "manual"), elevater_dir=Path(data_dir) / entry["root_folder"]
    )


def fetch_manual(task: str, data_dir: Path) -> dict:
    spec = route_spec(task).get("manual")
    if spec is None:
        raise MvlptError(f"task {task} has no hand-fetched layout; use `--route hub`.")
    folder = route_dir(data_dir, task, "manual")
    if not manual.present(folder, spec):
        raise MvlptError(f"task {task}: {manual_instructions(task, data_dir)}.")
    return lock.record(
        data_dir,
        task,
        route="manual",
        folder=folder,
        files=manual.files(folder, spec),
        source="by hand",
        notes=spec.get("split_note", ""),
        hash_progress=_hash_bar(folder),
    )


# --------------------------------------------------------------------------------------------- fetch
def _hash_bar(folder: Path):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(desc=f"sha256 {folder.name}", unit="B", unit_scale=True, leave=False, disable=None)


def default_route(task: str) -> str:
    spec = route_spec(task)
    return spec["routes"][0] if spec.get("routes") else "manual"


def fetch(
    task: str, data_dir: str | Path | None = None, route: str = "auto", source: str | None = None, revision: str | None = None
) -> dict:
    """Bring ``task``'s data onto disk by ``route`` (``auto``: what is there, else the preferred route)
    and record sha256 sums in the lock file; return the lock entry."""
    data_dir = resolve_data_dir(data_dir)
    if coop.is_coop(task):
        if route not in ("auto", coop.route(task)):
            raise MvlptError(
                f"task {task} has one route, {coop.route(task)}; use `--route {coop.route(task)}` or leave --route out."
            )
        if source:
            raise MvlptError(f"task {task} takes no --source: {coop.instructions(task, data_dir)}.")
        return coop.fetch(task, data_dir)
    spec = route_spec(task)
    if route == "auto":
        if source:
            raise MvlptError("--source needs an explicit --route (local or hub).")
        present = present_routes(task, data_dir)
        locked = lock.read_lock(data_dir)["tasks"].get(task)
        if locked and any(r == locked.get("route") for r, _ in present):
            if lock.verify(data_dir, task, quick=True).status == "present":
                return {**locked, "status": "already-present"}  # nothing to do, even offline
        route = present[0][0] if present else default_route(task)
    if route not in ROUTES:
        raise MvlptError(f"unknown route {route!r}; routes are: auto, {', '.join(ROUTES)}.")
    if route == "local":
        return fetch_local(task, data_dir, source)
    if route == "hub":
        return fetch_hub(task, data_dir, source, revision)
    if route == "torchvision":
        return fetch_torchvision(task, data_dir)
    if "manual" not in spec:
        raise MvlptError(f"task {task} needs no manual step; use `--route {default_route(task)}`.")
    return fetch_manual(task, data_dir)


def route_rows() -> list[dict]:
    """One row per task for the routes table (CLI and docs)."""
    rows = []
    for task, spec in routes_table()["tasks"].items():
        auto = spec.get("routes", [])
        first = spec.get(auto[0]) if auto else spec.get("manual")
        rows.append(
            {
                "task": task,
                "routes": auto or ["manual"],
                "default": auto[0] if auto else "manual",
                "source": first.get("repo") or (f"torchvision.datasets.{first['class']}" if "class" in first else "by hand"),
                "disk_gb": first.get("disk_gb"),
                "disk_source": first.get("disk_source", ""),
                "split_note": first.get("split_note", ""),
                "alt": {r: spec[r].get("split_note", "") for r in auto[1:]},
            }
        )
    for task in coop.task_names():
        s = coop.route_spec(task)
        rows.append(
            {
                "task": task,
                "routes": [coop.route(task)],
                "default": coop.route(task),
                "source": f"torchvision.datasets.{s['class']}" if "class" in s else "by hand",
                "disk_gb": s.get("disk_gb"),
                "disk_source": s.get("disk_source", ""),
                "split_note": s.get("split_note", ""),
                "alt": {},
            }
        )
    return rows
