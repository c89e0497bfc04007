"""The data of the three CoOp data sets that are not ELEVATER tasks (the paper's Table 1 sources): ImageNet,
SUN397 and UCF-101 (their tasks: :mod:`mvlpt.tasks.coop`; their routes: ``mvlpt/tasks/data/coop_tasks.json``).

Each has one route, in ``<data_dir>/<task>/<route>`` as the ELEVATER routes (:mod:`mvlpt.datasets.paths`):

* ``imagenet``, by hand (``manual``; its licence must be accepted, as hateful-memes'): the three ILSVRC-2012
  archives of torchvision's ``ImageNet`` layout, checked against the MD5s torchvision's source carries and
  read with ``torchvision.datasets.ImageNet`` (train = ILSVRC2012 train, test = its 50,000 val images);
* ``sun397``, torchvision's ``SUN397`` downloader (its URL and MD5): ``SUN397/ClassName.txt`` and
  ``SUN397/<letter>/<class>[/<sub>]/sun_*.jpg``;
* ``ucf101``, by hand (``manual``): CoOp's ``UCF-101-midframes/<Class_Name>/<video>.jpg`` (a Google Drive
  file: no checksum is published, so only the sha256 of what was put there is recorded).

The splits are CoOp's ``split_zhou_<name>.json`` when one lies in the folder (train = its train + val),
else the rule the route's ``split_note`` states. Labels follow the class names' order, taken from each
image's class folder (never from a split file's numbers).
"""

from __future__ import annotations

import functools
import hashlib
import json
import socket
import sys
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from mvlpt.datasets import lock
from mvlpt.datasets.images import CorruptImageError, decode_image
from mvlpt.datasets.paths import resolve_data_dir, route_dir
from mvlpt.errors import MvlptError

SOURCE = "coop"
_SPLIT_FILES = {"sun397": "split_zhou_SUN397.json", "ucf101": "split_zhou_UCF101.json"}
_UCF_TEST_GROUPS = {f"g{g:02d}" for g in range(1, 8)}  # UCF-101's split 1: groups 1-7 are its test videos


@functools.cache
def table() -> dict:
    return json.loads(resources.files("mvlpt.tasks").joinpath("data", "coop_tasks.json").read_text(encoding="utf-8"))


def task_names() -> list[str]:
    return list(table()["tasks"])


def is_coop(task: str) -> bool:
    return task in table()["tasks"]


def spec(task: str) -> dict:
    if not is_coop(task):
        raise MvlptError(f"{task!r} is not a CoOp data set of mvlpt; they are: {', '.join(task_names())}.")
    return table()["tasks"][task]


def route(task: str) -> str:
    return spec(task)["route"]


def route_spec(task: str) -> dict:
    return spec(task)[route(task)]


def folder(task: str, data_dir: str | Path | None = None) -> Path:
    return route_dir(resolve_data_dir(data_dir), task, route(task))


def image_root(task: str, data_dir: str | Path | None = None) -> Path:
    """The folder the images (and CoOp's split file) lie in."""
    base = folder(task, data_dir)
    return {"sun397": base / "SUN397", "ucf101": base / "UCF-101-midframes"}.get(task, base)


def present(task: str, data_dir: str | Path | None = None) -> bool:
    base = folder(task, data_dir)
    if task == "imagenet":
        return all((base / f).is_file() for f in route_spec(task)["files"])
    if task == "sun397":
        return (image_root(task, data_dir) / "ClassName.txt").is_file()
    root = image_root(task, data_dir)
    return root.is_dir() and any(p.is_dir() for p in root.iterdir())


def fetch_command(task: str) -> str:
    return f"`mvlpt data fetch {task}`"


def instructions(task: str, data_dir: str | Path | None = None) -> str:
    s = route_spec(task)
    if "instructions" in s:
        return s["instructions"].format(dir=folder(task, data_dir))
    return f"run {fetch_command(task)} (torchvision's {s['class']} downloader, {s['url']}, MD5 {s['md5']}, ~{s['disk_gb']} GB)"


# ----------------------------------------------------------------------------------------- class names
def _sun397_name(line: str) -> str:
    # "/a/apartment_building/outdoor" -> "outdoor apartment building" (CoOp's datasets/sun397.py, '_' as space)
    parts = line.strip()[3:].split("/")
    return " ".join(reversed(parts)).replace("_", " ")


def _class_folders(task: str, root: Path) -> list[str]:
    """The class folders (relative to ``root``) in label order."""
    if task == "sun397":
        with open(root / "ClassName.txt", encoding="utf-8") as fh:
            return [ln.strip()[1:] for ln in fh if ln.strip()]
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def classnames(task: str, data_dir: str | Path | None = None) -> tuple[str, ...]:
    """The class names, read from the data; one sentence naming the fetch command when they are not there."""
    if not present(task, data_dir):
        raise MvlptError(
            f"task {task}: its class names are read from its data, which are not under {folder(task, data_dir)}; "
            f"run {fetch_command(task)}."
        )
    root = image_root(task, data_dir)
    if task == "sun397":
        with open(root / "ClassName.txt", encoding="utf-8") as fh:
            names = tuple(_sun397_name(ln) for ln in fh if ln.strip())
    else:
        names = tuple(n.replace("_", " ") for n in _class_folders(task, root))
    expected = int(spec(task)["num_classes"])
    if len(set(names)) != len(names):
        raise MvlptError(
            f"task {task}: the class names read from {root} are not unique; delete {folder(task, data_dir)} and run {fetch_command(task)}."
        )
    if len(names) != expected:
        raise MvlptError(
            f"task {task}: {root} names {len(names)} classes, not {expected}; the data are incomplete or another "
            f"data set's: delete {folder(task, data_dir)} and run {fetch_command(task)}."
        )
    return names


# ---------------------------------------------------------------------------------------------- splits
class FileSplit:
    """A split of image files: ``ids`` relative to the image folder, labels, images decoded on demand."""

    def __init__(self, task: str, root: Path, ids: list[str], labels: np.ndarray):
        self.task, self.root, self.ids, self.labels = task, Path(root), ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, i: int) -> Image.Image:
        try:
            return decode_image(self.root / self.ids[i])
        except CorruptImageError as e:
            raise CorruptImageError(e.path, e.reason, task=self.task) from None


def _in_test(task: str, rel: str) -> bool:
    if task == "ucf101":  # v_ApplyEyeMakeup_g08_c01.jpg
        return any(part in _UCF_TEST_GROUPS for part in Path(rel).stem.split("_"))
    return int(hashlib.md5(rel.encode("utf-8")).hexdigest(), 16) % 2 == 1


def _images(task: str, root: Path, class_dirs: list[str]) -> list[tuple[str, int]]:
    out = []
    for label, d in enumerate(class_dirs):
        for p in sorted((root / d).glob("*")):
            if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                out.append((p.relative_to(root).as_posix(), label))
    return out


def _file_split(task: str, split: str, data_dir) -> FileSplit:
    root = image_root(task, data_dir)
    classnames(task, data_dir)  # the data hold the task's classes, each once
    class_dirs = _class_folders(task, root)
    index = {d: i for i, d in enumerate(class_dirs)}
    split_file = root / _SPLIT_FILES[task]
    if split_file.is_file():  # CoOp's split: train = its train + val
        try:
            records = json.loads(split_file.read_text(encoding="utf-8"))
            wanted = ("train", "val") if split == "train" else ("test",)
            rels = [str(r[0]) for s in wanted for r in records[s]]
        except (ValueError, KeyError, TypeError, IndexError):
            raise MvlptError(
                f"task {task}: {split_file} is not CoOp's split file; delete it or replace it with CoOp's."
            ) from None
        items = []
        for rel in rels:
            d = str(Path(rel).parent.as_posix())
            if d not in index:
                raise MvlptError(
                    f"task {task}: {split_file} names {rel}, whose class folder {d!r} is not one of the data's classes."
                )
            items.append((rel, index[d]))
    else:
        items = [(rel, lab) for rel, lab in _images(task, root, class_dirs) if _in_test(task, rel) == (split == "test")]
    return FileSplit(task, root, [r for r, _ in items], np.asarray([lab for _, lab in items], dtype=np.int64))


def _imagenet_split(split: str, data_dir) -> FileSplit:
    from torchvision.datasets import ImageNet

    base = folder("imagenet", data_dir)
    try:
        ds = ImageNet(str(base), split="val" if split == "test" else "train")  # unpacks the archives on first use
    except RuntimeError as e:
        raise MvlptError(
            f"task imagenet: torchvision's ImageNet cannot read {base} ({e}); run {fetch_command('imagenet')}."
        ) from None
    ids = [Path(p).relative_to(base).as_posix() for p, _ in ds.samples]
    return FileSplit("imagenet", base, ids, np.asarray([int(t) for _, t in ds.samples], dtype=np.int64))


def load_split(task: str, split: str, data_dir: str | Path | None = None) -> FileSplit:
    if split not in ("train", "test"):
        raise MvlptError(f"task {task} has no {split!r} split (it has: train, test).")
    if not present(task, data_dir):
        raise MvlptError(f"task {task}: no data under {folder(task, data_dir)}; run {fetch_command(task)}.")
    if task == "imagenet":
        return _imagenet_split(split, data_dir)
    return _file_split(task, split, data_dir)


# ----------------------------------------------------------------------------------------------- fetch
def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _lock_files(base: Path) -> list[str]:
    # archives, lists and split files; the images unpacked from an archive are covered by its sum
    return sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if p.is_file() and p.suffix.lower() not in (".jpg", ".jpeg", ".png")
    )


def fetch(task: str, data_dir: str | Path | None = None) -> dict:
    """Bring ``task``'s data onto disk by its route (or check what was put there by hand) and record
    sha256 sums in the lock file; return the lock entry."""
    data_dir = resolve_data_dir(data_dir)
    s, base = route_spec(task), folder(task, data_dir)
    if route(task) == "manual":
        if not present(task, data_dir):
            raise MvlptError(f"task {task}: {instructions(task, data_dir)}.")
        for name, md5 in s.get("files", {}).items():
            print(f"{task}: checking the MD5 of {name}", file=sys.stderr)
            if _md5(base / name) != md5:
                raise MvlptError(
                    f"task {task}: {base / name} does not have torchvision's MD5 {md5}; the download is incomplete or "
                    f"another file: download it again."
                )
        # ImageNet: its archives; the mid-frames: every file (no archive, no published checksum)
        files = (
            list(s["files"]) if "files" in s else sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        )
        source = "by hand"
    else:
        from mvlpt.datasets import routes

        todo = f"connect to the internet (or set HTTPS_PROXY), or unpack {s['url']} into {base} by hand"
        for host in s.get("hosts", []):
            routes.check_reachable(f"http://{host}", task=task, route="torchvision", what_to_do=todo)
        base.mkdir(parents=True, exist_ok=True)
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(60)
        try:
            import torchvision.datasets as tvd

            print(f"{task}: torchvision {s['class']} into {base}", file=sys.stderr)
            getattr(tvd, s["class"])(root=str(base), download=True)  # checks the archive's MD5
        except Exception as e:
            raise MvlptError(
                f"task {task}: route torchvision failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                f"run the same command again, or {todo.split(', or ', 1)[1]}."
            ) from None
        finally:
            socket.setdefaulttimeout(old)
        files, source = _lock_files(base), f"torchvision.datasets.{s['class']}"
    return lock.record(data_dir, task, route=route(task), folder=base, files=files, source=source, notes=s.get("split_note", ""))
