"""The designed world: six offline tasks whose transfer structure is fixed by construction.

Each task is described by three designed parameters (:class:`Design`): its **classes** (one label
question, "which shape" or "which pattern"), its **renderer** (the offline suite's
:func:`~mvlpt.tasks.synthetic.shape_images` or :func:`~mvlpt.tasks.synthetic.texture_images`) and its
**shift** ``sigma``: the fraction of its images, exactly ``round(sigma * n_c)`` of the ``n_c`` images of
every class, drawn as photographic negatives (``255 - image``: the same geometry, a light background,
the complementary colour). ``sigma`` is a mixture weight, so two tasks of one renderer share a
fraction ``1 - |sigma_s - sigma_t|`` of their image distribution.

=================  ============================  =========  =====  ==================================
task               classes                       renderer   shift  role
=================  ============================  =========  =====  ==================================
gt-shapes          the six shapes                shapes     0      the reference target
gt-twin            the six shapes                shapes     0      an independent draw of gt-shapes
gt-half-labels     circle, square, triangle      shapes     0      partial label overlap
gt-shift-50        the six shapes                shapes     0.5    graded domain shift (half negatives)
gt-shift-100       the six shapes                shapes     1      full domain shift (all negatives)
gt-textures        the five patterns             textures   0      no shared label, another renderer
=================  ============================  =========  =====  ==================================

:func:`relatedness` is the designed transfer relation of an ordered pair (source -> target)::

    rel(s -> t) = overlap(s, t) * share(s, t)
    overlap     = |C_s ∩ C_t| / |C_t|                        (the target's classes the source also has)
    share       = 1 - |sigma_s - sigma_t| / 2 on one renderer, 0 across renderers

(docs/groundtruth.md: why, the expected ordering, and what the study measured on it.)

Every split is generated from its own seed (train: 48 images per class, test: 100), so the tasks are
independent draws even where their designs agree (``gt-shapes`` and ``gt-twin``). Nothing in the
offline suite changes: its renderers are called with generators of this module's own seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import types

import numpy as np

from mvlpt.errors import MvlptError
from mvlpt.tasks import synthetic
from mvlpt.tasks.registry import Task, generated_loader, register

SOURCE = "designed"  # Task.source of every task here (`mvlpt tasks --source designed`)
RENDERERS = ("shapes", "textures")
TRAIN_PER_CLASS = 48
TEST_PER_CLASS = 100
_SPLIT_INDEX = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class Design:
    """What a designed task is made of: the parameters that set its relation to the others."""

    name: str
    classes: tuple[str, ...]  # class names, a subset of the renderer's vocabulary
    renderer: str  # "shapes" or "textures"
    shift: float  # fraction of images drawn as negatives, per class
    seed: int
    role: str

    def __post_init__(self) -> None:
        vocabulary = synthetic.SHAPES if self.renderer == "shapes" else synthetic.TEXTURES
        if self.renderer not in RENDERERS or not set(self.classes) <= set(vocabulary) or not 0 <= self.shift <= 1:
            raise ValueError(f"designed task {self.name!r}: inconsistent design")


_SHAPES3 = synthetic.SHAPES[:3]  # circle, square, triangle
DESIGNS: types.MappingProxyType = types.MappingProxyType(
    {
        d.name: d
        for d in (
            Design("gt-shapes", synthetic.SHAPES, "shapes", 0.0, 2101, "the reference target"),
            Design("gt-twin", synthetic.SHAPES, "shapes", 0.0, 2102, "an independent draw of gt-shapes's distribution"),
            Design("gt-half-labels", _SHAPES3, "shapes", 0.0, 2103, "half of gt-shapes's classes"),
            Design("gt-shift-50", synthetic.SHAPES, "shapes", 0.5, 2104, "gt-shapes with half of its images as negatives"),
            Design("gt-shift-100", synthetic.SHAPES, "shapes", 1.0, 2105, "gt-shapes with every image as a negative"),
            Design("gt-textures", synthetic.TEXTURES, "textures", 0.0, 2106, "other classes, another renderer"),
        )
    }
)
SUITE: tuple[str, ...] = tuple(DESIGNS)

# The second designed world (docs/groundtruth.md, "A second world"; config/groundtruth2.yaml): three
# families of two independent draws each, every task in the model's domain (no negatives). Each task's
# twin is its one fully related partner; the two shape families share half of their classes (two of
# four), the texture family shares nothing with them. `mvlpt tasks --source designed2`.
SOURCE2 = "designed2"
_SHAPES_A = ("circle", "square", "triangle", "star")
_SHAPES_B = ("triangle", "star", "cross", "heart")
DESIGNS2: types.MappingProxyType = types.MappingProxyType(
    {
        d.name: d
        for d in (
            Design("gw2-shapes-a1", _SHAPES_A, "shapes", 0.0, 2201, "shape family A (circle, square, triangle, star), draw 1"),
            Design("gw2-shapes-a2", _SHAPES_A, "shapes", 0.0, 2202, "shape family A, draw 2 (gw2-shapes-a1's twin)"),
            Design("gw2-shapes-b1", _SHAPES_B, "shapes", 0.0, 2203, "shape family B (triangle, star, cross, heart), draw 1"),
            Design("gw2-shapes-b2", _SHAPES_B, "shapes", 0.0, 2204, "shape family B, draw 2 (gw2-shapes-b1's twin)"),
            Design("gw2-textures-1", synthetic.TEXTURES, "textures", 0.0, 2205, "the texture family, draw 1"),
            Design(
                "gw2-textures-2", synthetic.TEXTURES, "textures", 0.0, 2206, "the texture family, draw 2 (gw2-textures-1's twin)"
            ),
        )
    }
)
SUITE2: tuple[str, ...] = tuple(DESIGNS2)
ALL_DESIGNS: types.MappingProxyType = types.MappingProxyType({**DESIGNS, **DESIGNS2})
WORLDS: types.MappingProxyType = types.MappingProxyType({"groundtruth": SUITE, "groundtruth2": SUITE2})


def design(name: str) -> Design:
    try:
        return ALL_DESIGNS[name]
    except KeyError:
        raise MvlptError(f"{name!r} is not a task of a designed world; their tasks are: {', '.join(ALL_DESIGNS)}.") from None


def world_of(tasks) -> str:
    """The designed world (a key of :data:`WORLDS`) all of ``tasks`` belong to; one sentence otherwise."""
    tasks = set(tasks)
    for world, suite in WORLDS.items():
        if tasks and tasks <= set(suite):
            return world
    raise MvlptError(
        f"the tasks {', '.join(sorted(tasks)) or '(none)'} are not all of one designed world "
        f"({'; '.join(f'{w}: {chr(44).join(s)}' for w, s in WORLDS.items())})."
    )


def label_overlap(source: str, target: str) -> float:
    """The fraction of the target's classes that the source also has (same label question)."""
    s, t = design(source), design(target)
    if s.renderer != t.renderer:  # the two vocabularies are disjoint
        return 0.0
    return len(set(s.classes) & set(t.classes)) / len(t.classes)


def generator_share(source: str, target: str) -> float:
    """1 - |shift_s - shift_t| / 2 on one renderer (a negative keeps the geometry), 0 across renderers."""
    s, t = design(source), design(target)
    return 0.0 if s.renderer != t.renderer else 1.0 - abs(s.shift - t.shift) / 2


def relatedness(source: str, target: str) -> float:
    """The designed relatedness of the ordered pair source -> target, in [0, 1]."""
    return label_overlap(source, target) * generator_share(source, target)


# --------------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------------
def negatives(rng: np.random.Generator, labels: np.ndarray, shift: float) -> np.ndarray:
    """Boolean mask: ``round(shift * n_c)`` images of every class ``c``, chosen at random."""
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        mask[rng.permutation(idx)[: int(round(shift * len(idx)))]] = True
    return mask


def draw(d: Design, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, images, negative mask)`` of one split of ``d``, from the seed ``[d.seed, split]``."""
    rng = np.random.default_rng([d.seed, _SPLIT_INDEX[split]])
    per = TRAIN_PER_CLASS if split == "train" else TEST_PER_CLASS
    labels = np.repeat(np.arange(len(d.classes), dtype=np.int64), per)
    labels = labels[rng.permutation(len(labels))]
    n = len(labels)
    if d.renderer == "shapes":
        kinds = np.array([synthetic.SHAPES.index(c) for c in d.classes])[labels]
        images = synthetic.shape_images(rng, kinds, rng.integers(0, len(synthetic.COLOURS), n))
    else:
        kinds = np.array([synthetic.TEXTURES.index(c) for c in d.classes])[labels]
        a = rng.integers(0, len(synthetic.TEXTURE_POOL), n)
        b = (a + rng.integers(1, len(synthetic.TEXTURE_POOL), n)) % len(synthetic.TEXTURE_POOL)
        images = synthetic.texture_images(rng, kinds, a, b)
    neg = negatives(rng, labels, d.shift)
    images = np.where(neg[:, None, None, None], 255 - images, images).astype(np.uint8)
    return labels, images, neg


@functools.cache
def generate(name: str, split: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """``(ids, labels, images)`` of one split, generated once per process; the arrays are read-only."""
    if split not in _SPLIT_INDEX:
        raise ValueError(f"designed task {name!r} has no {split!r} split")
    labels, images, _ = draw(design(name), split)
    labels.setflags(write=False)
    images.setflags(write=False)
    return tuple(f"{split}/{i:06d}" for i in range(len(labels))), labels, images


def _loader(name: str):
    return generated_loader(generate, name)


_TEMPLATES = {
    "shapes": ("a drawing of a {}.", "a {} shape.", "a picture of a {}.", "a coloured {} on a dark background."),
    "textures": ("a {} texture.", "a {} pattern.", "a close-up photo of a {} surface.", "a {} fabric."),
}

TASKS: types.MappingProxyType = types.MappingProxyType(
    {
        d.name: Task(
            name=d.name,
            classnames=d.classes,
            templates=_TEMPLATES[d.renderer],
            metric="accuracy",
            loader=_loader(d.name),
            domain=f"{d.renderer}, {round(100 * d.shift)}% negatives",
            description=f"Designed world: {d.role} ({d.renderer} renderer, {round(100 * d.shift)}% negatives).",
            source=SOURCE if d.name in DESIGNS else SOURCE2,
        )
        for d in ALL_DESIGNS.values()
    }
)

for _task in TASKS.values():
    register(_task)
