"""Tasks read through torchvision's data set classes (and fetched with their downloaders).

The routes table gives, per task, the torchvision class, the keyword arguments of each ELEVATER
split (``{"split": "trainval"}``, ``{"train": false}``, ...) and how labels map to ELEVATER's order
(by class name, or by position where torchvision's names are codes or absent).

Data sit in ``<data_dir>/<task>/torchvision`` (torchvision's own sub-folders below it). Images that
are files on disk are decoded with :func:`mvlpt.datasets.images.decode_image` (robust to odd formats, errors
name the file); in-memory ones (CIFAR, MNIST) come from the arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mvlpt.datasets.images import CorruptImageError, decode_image, to_rgb
from mvlpt.datasets.labels import map_by_name, map_by_position
from mvlpt.errors import MvlptError


def _dataset_class(name: str):
    import torchvision.datasets as tvd

    try:
        return getattr(tvd, name)
    except AttributeError:
        raise MvlptError(f"this torchvision has no data set class {name!r}; upgrade torchvision or use another route.") from None


def open_dataset(task: str, root: Path, spec: dict, split: str, download: bool = False):
    cls = _dataset_class(spec["class"])
    if split not in spec["splits"]:
        raise MvlptError(
            f"task {task}: torchvision's {spec['class']} has no split matching ELEVATER's {split!r} "
            f"(it provides: {', '.join(spec['splits'])}); use the hub route for it."
        )
    kwargs = {**spec.get("kwargs", {}), **spec["splits"][split]}
    try:
        return cls(root=str(root), download=download, **kwargs)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        if download:
            raise
        raise MvlptError(
            f"task {task}: torchvision's {spec['class']} data are not complete under {root} ({e}); "
            f"run `mvlpt data fetch {task} --route torchvision`."
        ) from None


def _paths(ds) -> list[str] | None:
    for attr in ("_image_files", "_images", "_samples", "samples", "imgs"):
        v = getattr(ds, attr, None)
        if v is None or len(v) == 0:
            continue
        first = v[0]
        if isinstance(first, (tuple, list)):
            if isinstance(first[0], (str, Path)):
                return [str(x[0]) for x in v]
            return None
        if isinstance(first, (str, Path)):
            return [str(x) for x in v]
    return None


def _labels(ds) -> np.ndarray:
    for attr in ("targets", "_labels", "labels", "y"):
        v = getattr(ds, attr, None)
        if v is not None and len(v) == len(ds):
            return np.asarray([int(x) for x in v], dtype=np.int64)
    for attr in ("_samples", "samples"):
        v = getattr(ds, attr, None)
        if v is not None and len(v) == len(ds) and isinstance(v[0], (tuple, list)):
            return np.asarray([int(x[1]) for x in v], dtype=np.int64)
    return np.asarray([int(ds[i][1]) for i in range(len(ds))], dtype=np.int64)  # slow fallback


class TorchvisionSplit:
    def __init__(self, task: str, root: Path, spec: dict, split: str, classnames: Sequence[str], synonyms=None):
        self.task, self.root, self.split = task, Path(root), split
        ds = open_dataset(task, self.root, spec, split)
        self._ds = ds
        self._paths = _paths(ds)
        raw = _labels(ds)
        if spec.get("label_from_folder_number") and self._paths is not None:
            # ImageFolder-style numbering is by the folders found; the folder *name* is the class id.
            parents = [Path(p).parent.name for p in self._paths]
            if parents and all(n.isdigit() for n in parents):
                raw = np.asarray([int(n) for n in parents], dtype=np.int64)
        names = getattr(ds, "classes", None)
        if spec.get("label_map", "name") == "position" or not names:
            n_src = len(names) if names else int(spec.get("num_classes", len(classnames)))
            mapping = map_by_position(n_src, len(classnames), what=f"torchvision {spec['class']}", task=task)
        else:
            mapping = map_by_name(
                list(names),
                classnames,
                synonyms=synonyms,
                aliases=spec.get("aliases"),
                what=f"torchvision {spec['class']} class list",
                task=task,
            )
        if raw.size and (raw.min() < 0 or raw.max() >= len(mapping)):
            raise MvlptError(f"task {task}: torchvision {spec['class']} gives a label outside its {len(mapping)} classes.")
        self.labels = mapping[raw]
        if self._paths is not None:
            base = self.root.resolve()
            ids = []
            for p in self._paths:
                try:
                    ids.append(str(Path(p).resolve().relative_to(base)))
                except ValueError:
                    ids.append(str(p))
            self.ids = ids
        else:
            self.ids = [f"{split}/{i}" for i in range(len(ds))]

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, i: int) -> Image.Image:
        if self._paths is not None:
            try:
                return decode_image(self._paths[i])
            except CorruptImageError as e:
                raise CorruptImageError(e.path, e.reason, task=self.task) from None
        data = getattr(self._ds, "data", None)
        try:
            if data is not None and len(data) == len(self.ids):
                arr = np.asarray(data[i])
                return to_rgb(Image.fromarray(arr.astype(np.uint8)))
            img = self._ds[i][0]
            return to_rgb(img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img)))
        except Exception as e:
            raise CorruptImageError(f"{self.root} ({self.split} #{i})", f"{type(e).__name__}: {e}", task=self.task) from None
