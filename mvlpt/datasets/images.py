"""Robust image decoding: any stored image -> 8-bit RGB ``PIL.Image``, or a clear error.

Real data sets hold odd files: grayscale and 1-bit images, CMYK JPEGs, palette PNGs with a
transparent colour, 16-bit PNGs, RGBA, and now and then a truncated or otherwise broken file.
:func:`decode_image` turns every readable one into an 8-bit RGB image and raises
:class:`CorruptImageError` (naming the file) for the others; it never returns a placeholder, so a
broken file can never silently become a sample with a wrong image.

What happens to a corrupt image is a policy, ``on_corrupt``:

* ``"fail"`` (default): the task stops with one sentence naming the file;
* ``"skip"``: the sample is dropped, reported (logged with its path) and listed in the return value.

Use :func:`check_split` to apply the policy to a split (or to a subset of it, e.g. the few-shot
samples), which returns a :class:`SubsetSplit` without the corrupt samples.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from mvlpt.errors import MvlptError

log = logging.getLogger(__name__)

ON_CORRUPT = ("fail", "skip")

# A truncated file must be an error, not a half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class CorruptImageError(MvlptError):
    """An image that cannot be decoded; ``.path`` names it (``archive.zip@member`` for archives)."""

    def __init__(self, path: str, reason: str, task: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.task = task
        where = f"task {task}: " if task else ""
        super().__init__(
            f"{where}corrupt image {self.path} ({reason}); replace the file (e.g. fetch the task's data again); "
            f"`mvlpt data check --images` lists every corrupt image of a task."
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited on white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        # Palette images with a transparent colour: go through RGBA so transparency is honoured.
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        else:
            # 16-bit (or 32-bit integer) samples: scale the full 16-bit range to 8 bits.
            maxval = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
            arr = arr * (255.0 / maxval)
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        return img.convert("RGB")
    if mode.startswith("I;16") or mode in ("1", "L", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    return img.convert("RGB")


def decode_image(source: bytes | str | Path | Callable[[], bytes], *, name: str | None = None) -> Image.Image:
    """Decode ``source`` (bytes, a path, or a callable returning bytes) to an 8-bit RGB image.

    ``name`` is how the image is named in errors (defaults to the path). Raises
    :class:`CorruptImageError` for anything that cannot be decoded completely.
    """
    label = name if name is not None else (str(source) if isinstance(source, (str, Path)) else "<bytes>")
    try:
        if callable(source):
            source = source()
        if isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise CorruptImageError(label, "empty file")
            fp = io.BytesIO(bytes(source))
        else:
            fp = open(source, "rb")
        with fp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Palette images with Transparency" notes
                with Image.open(fp) as img:
                    img.load()  # forces full decoding: truncated data raises here
                    out = to_rgb(img)
                    if out is img:
                        out = img.copy()
            out.load()
            return out
    except CorruptImageError:
        raise
    except FileNotFoundError as e:
        raise CorruptImageError(label, f"file not found: {e.filename or e}") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError, KeyError) as e:
        raise CorruptImageError(label, f"{type(e).__name__}: {e}") from e


@dataclass
class SubsetSplit:
    """A view on some samples of another split (same interface as a task split)."""

    base: object
    indices: np.ndarray
    ids: list[str] = field(init=False)
    labels: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        base_ids = self.base.ids
        self.ids = [base_ids[int(i)] for i in self.indices]
        self.labels = np.asarray(self.base.labels)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> Image.Image:
        return self.base.image(int(self.indices[i]))


@dataclass
class CorruptReport:
    """The samples a :func:`check_split` call left out: ``(index, id, path, reason)`` each."""

    skipped: list[tuple[int, str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.skipped)

    def summary(self) -> str:
        if not self.skipped:
            return "no corrupt images"
        lines = [f"{len(self.skipped)} corrupt image(s) left out:"]
        lines += [f"  {path} ({reason})" for _, _, path, reason in self.skipped]
        return "\n".join(lines)


def check_split(
    split,
    on_corrupt: str = "fail",
    indices: Iterable[int] | None = None,
    *,
    task: str | None = None,
    progress: bool = False,
) -> tuple[SubsetSplit, CorruptReport]:
    """Decode the images of ``split`` (all, or ``indices``) and apply the ``on_corrupt`` policy.

    Returns the samples that decode as a :class:`SubsetSplit` and a :class:`CorruptReport`. With
    ``on_corrupt="fail"`` the first corrupt image raises :class:`CorruptImageError`.
    """
    if on_corrupt not in ON_CORRUPT:
        raise MvlptError(f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, not {on_corrupt!r}.")
    idx: Sequence[int] = list(range(len(split))) if indices is None else [int(i) for i in indices]
    keep: list[int] = []
    report = CorruptReport()
    it = idx
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(idx, desc=f"checking images{' of ' + task if task else ''}", unit="img")
    for i in it:
        try:
            split.image(i)
        except CorruptImageError as e:
            if on_corrupt == "fail":
                if task and not e.task:
                    raise CorruptImageError(e.path, e.reason, task=task) from e
                raise
            log.warning("%sskipping corrupt image %s (%s)", f"task {task}: " if task else "", e.path, e.reason)
            report.skipped.append((i, split.ids[i], e.path, e.reason))
            continue
        keep.append(i)
    return SubsetSplit(split, np.asarray(keep, dtype=np.int64)), report
