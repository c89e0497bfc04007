"""The offline task suite: eight small image-classification tasks generated on the fly.

No file is downloaded: images are drawn procedurally (shapes, textures, line segments, glyphs
rendered with Pillow's default font) or built from scikit-learn's bundled 8x8 ``load_digits``
images. Every task is generated deterministically from a fixed seed per (task, split), so two
runs, two processes or two machines with the same library versions see the same pixels. Images
are 32x32 RGB uint8 (the model transform resizes them), held in memory and cached per
(task, split) for the life of the process.

Each task's label is a function of one attribute of the image; the other attributes (position,
size, rotation, colour, background noise, the other label question) vary at random, so the tasks
are learnable but not trivial.

The suite is designed to give the transfer study some structure to find:

================  ==========================  ==================  ==============  ===================
task              label question              classes             visual domain   metric
================  ==========================  ==================  ==============  ===================
shapes            which shape                 circle..heart (6)   shapes          accuracy
shape-colours     colour of the shape         red..orange (6)     shapes          accuracy
textures          which surface pattern       striped..plain (5)  textures        accuracy
texture-colours   which colours are present   red..orange (6)     textures        map_11point (multi-label)
glyph-digits      printed digit               zero..nine (10)     glyphs          accuracy
sklearn-digits    handwritten digit           zero..nine (10)     handwriting     accuracy
glyph-letters     printed letter              A..X (8)            glyphs          accuracy
orientation       orientation of a bar        horizontal.. (4)    lines           mean_per_class_accuracy
================  ==========================  ==================  ==============  ===================

Designed relationships (declared in the metadata: ``Task.domain`` and ``Task.classnames``):

* same visual domain, different label question: shapes / shape-colours (one shape renderer, same
  image distribution), textures / texture-colours (one texture renderer), glyph-digits /
  glyph-letters (one glyph renderer and colouring);
* same label names, different visual domain: glyph-digits / sklearn-digits ("zero".."nine"),
  shape-colours / texture-colours (the six colour names; single-label vs multi-label);
* neither: e.g. orientation with every other task, shapes / glyph-digits, textures / sklearn-digits.

``orientation`` has imbalanced classes (train 96/64/40/28, test 48/32/24/16) and is scored with
mean per-class accuracy. ``texture-colours`` is multi-label: ``labels`` is ``(N, 6)`` uint8
multi-hot (one or two colours per image). All other tasks are balanced (train 48, test 24 per
class). There is no "val" split: the few-shot protocol carves val out of train.

A linear probe on downsampled pixels plus the grey-level amplitude spectrum (trained on train,
scored on test; see tests/tasks/test_synthetic.py) sits well between chance and perfect on every task,
from ~0.5 (shapes, textures) to ~0.95 (glyph-letters). Glyphs come from Pillow's default
FreeType font, so their pixels can differ across Pillow/FreeType versions; everything else
depends only on numpy's ``Generator`` streams and Pillow's polygon filling.

Besides the tasks (:func:`generate`, ``TASKS``), the renderers are public so that other image
streams can be drawn from the same distributions (``mvlpt.models.pretrain_tiny`` does, on seeds of
its own): :func:`shape_images`, :func:`texture_images` (colours from ``TEXTURE_POOL``),
:func:`glyph_images`, :func:`sklearn_digit_images` (with :func:`spare_sklearn_digits`, the digits
no task split uses) and :func:`orientation_images`. Each takes a ``numpy.random.Generator`` and
draws from it in a fixed order, so a task's pixels depend only on its seed.
"""

from __future__ import annotations

import functools
import math
import types

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mvlpt.tasks.registry import Task, generated_loader, register

SIZE = 32  # image side in pixels
_SS = 2  # supersampling factor for anti-aliased masks

TRAIN_PER_CLASS = 48
TEST_PER_CLASS = 24
_SPLIT_INDEX = {"train": 0, "test": 1}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 215, 35),
    "purple": (140, 50, 175),
    "orange": (245, 130, 20),
}
_NEUTRALS: tuple[tuple[int, int, int], ...] = ((245, 245, 245), (20, 20, 20), (128, 128, 128))
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32)
# The colours a texture is drawn in: the palette (indices 0..5, COLOUR_NAMES order), then the neutrals.
TEXTURE_POOL = np.concatenate([_PALETTE, np.array(_NEUTRALS, np.float32)])
TEXTURE_POOL.setflags(write=False)

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart")
TEXTURES = ("striped", "checkered", "dotted", "zigzagged", "plain")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LETTERS = ("A", "E", "H", "K", "M", "R", "S", "X")
ORIENTATIONS = ("horizontal", "vertical", "rising diagonal", "falling diagonal")
_ORIENTATION_ANGLE = (0.0, 90.0, 45.0, 135.0)  # degrees, counter-clockwise as seen on screen
_ORIENTATION_COUNTS = {"train": (96, 64, 40, 28), "test": (48, 32, 24, 16)}
_MULTILABEL_COUNTS = {"train": 150, "test": 72}

# One fixed seed per task; the split index is appended, so train and test never share a stream.
_TASK_SEEDS = {
    "shapes": 1101,
    "shape-colours": 1102,
    "textures": 1201,
    "texture-colours": 1202,
    "glyph-digits": 1301,
    "sklearn-digits": 1302,
    "glyph-letters": 1303,
    "orientation": 1401,
}


# --------------------------------------------------------------------------------------------
# building blocks (vectorised over the images of a split; only mask drawing loops in Python)
# --------------------------------------------------------------------------------------------

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_XN, _YN = _XX / (SIZE - 1) - 0.5, _YY / (SIZE - 1) - 0.5


def _rng(task: str, split: str) -> np.random.Generator:
    return np.random.default_rng([_TASK_SEEDS[task], _SPLIT_INDEX[split]])


def _per_class(split: str) -> int:
    return TRAIN_PER_CLASS if split == "train" else TEST_PER_CLASS


def _balanced_labels(rng: np.random.Generator, counts) -> np.ndarray:
    labels = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return labels[rng.permutation(len(labels))]


def _jitter(rng: np.random.Generator, rgb: np.ndarray, amount: float = 22.0) -> np.ndarray:
    """Colours ``(n, 3)`` moved by up to ``amount`` per channel."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return np.clip(rgb + rng.uniform(-amount, amount, rgb.shape), 0, 255).astype(np.float32)


def _noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Uniform pixel noise with standard deviation ``sigma`` (uniform: 5x cheaper than Gaussian)."""
    noise = rng.random((n, SIZE, SIZE, 3), dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(sigma * math.sqrt(12.0))
    return noise


def _shading(rng: np.random.Generator, n: int, amount: float) -> np.ndarray:
    """A random linear brightness gradient per image, ``(n, S, S, 1)``."""
    g = rng.uniform(-amount, amount, (n, 2)).astype(np.float32)
    return (g[:, 0, None, None] * _XN + g[:, 1, None, None] * _YN)[..., None]


def _noisy_backgrounds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Dark, slightly tinted grey backgrounds with a gradient and pixel noise: ``(n, S, S, 3)``."""
    base = (rng.uniform(25, 95, (n, 1, 1, 1)) + rng.uniform(-15, 15, (n, 1, 1, 3))).astype(np.float32)
    images = _noise(rng, n, 12)
    images += base
    images += _shading(rng, n, 40)
    return images


def _compose(background: np.ndarray, masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Blend ``colours`` (n, 3) onto ``background`` (n, S, S, 3) or (n, 1, 1, 3) through ``masks`` (n, S, S)."""
    m = masks[..., None]
    out = m * (colours[:, None, None, :] - background)  # background + m * (colour - background)
    out += background
    return out


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Round and clip float images (modified in place) to uint8."""
    images += np.float32(0.5)
    np.clip(images, 0, 255.5, out=images)
    return images.astype(np.uint8)  # truncation of x + 0.5 >= 0 rounds half up


_GUTTER = 8  # pixels around each tile of the drawing canvas, so that shapes never bleed into a neighbour


def _draw_masks(n: int, draw_one) -> np.ndarray:
    """Anti-aliased masks ``(n, S, S)`` in [0, 1]: ``draw_one(draw, i, ox, oy, ss)`` draws mask ``i``
    with ImageDraw on a shared canvas, its image's (0, 0) at ``(ox, oy)``, coordinates scaled by ``ss``."""
    cols = 16
    rows = max(1, -(-n // cols))
    tile = (SIZE + 2 * _GUTTER) * _SS
    canvas = Image.new("L", (cols * tile, rows * tile), 0)
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, cols)
        draw_one(draw, i, c * tile + _GUTTER * _SS, r * tile + _GUTTER * _SS, _SS)
    a = np.asarray(canvas).reshape(rows, tile, cols, tile)
    lo, hi = _GUTTER * _SS, (_GUTTER + SIZE) * _SS
    a = a[:, lo:hi, :, lo:hi].reshape(rows, SIZE, _SS, cols, SIZE, _SS).mean(axis=(2, 5), dtype=np.float32)
    return (a.transpose(0, 2, 1, 3).reshape(rows * cols, SIZE, SIZE)[:n] / 255.0).astype(np.float32)


def _warp(atlas: np.ndarray, which: np.ndarray, scale, angle, centre) -> np.ndarray:
    """Place ``atlas[which[i]]`` (a stack of float tiles whose content is centred in the tile) at
    ``centre[i]`` (pixels), scaled by ``scale[i]`` and rotated by ``angle[i]`` (radians); bilinear,
    zero outside the tile. Returns ``(n, S, S)``."""
    _, h, w = atlas.shape
    pad = np.pad(atlas.astype(np.float32), ((0, 0), (2, 2), (2, 2)))
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    inv = (1.0 / np.asarray(scale, np.float32))[:, None, None]
    dx = _XX + 0.5 - np.asarray(centre, np.float32)[:, 0, None, None]
    dy = _YY + 0.5 - np.asarray(centre, np.float32)[:, 1, None, None]
    u = np.clip((cos * dx + sin * dy) * inv + w / 2 - 0.5 + 2, 0, w + 2)
    v = np.clip((-sin * dx + cos * dy) * inv + h / 2 - 0.5 + 2, 0, h + 2)
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    wp = w + 4
    flat = pad.ravel()
    base = np.asarray(which, np.intp)[:, None, None] * ((h + 4) * wp) + v0.astype(np.intp) * wp + u0.astype(np.intp)
    a, b = flat.take(base), flat.take(base + 1)
    c, d = flat.take(base + wp), flat.take(base + wp + 1)
    top = a + fu * (b - a)
    bottom = c + fu * (d - c)
    return np.clip(top + fv * (bottom - top), 0.0, 1.0)


def _ink_and_paper(rng: np.random.Generator, n: int, dark_ink: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tinted ink and paper colours ``(n, 3)`` with a luminance contrast of 90..170."""
    bright = rng.uniform(175, 250, (n, 1))
    dark = bright - rng.uniform(90, 170, (n, 1))
    tint = rng.uniform(-30, 30, (2, n, 3))
    ink, paper = (dark, bright) if dark_ink else (bright, dark)
    return (np.clip(ink + tint[0], 0, 255).astype(np.float32), np.clip(paper + tint[1], 0, 255).astype(np.float32))


# --- shapes -----------------------------------------------------------------------------------


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    a = np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.1, 1.1 * inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, y + 2.5], 1) / 15.0


def _cross(w: float = 0.34, length: float = 1.0) -> np.ndarray:
    return np.array(
        [
            (w, w),
            (w, length),
            (-w, length),
            (-w, w),
            (-length, w),
            (-length, -w),
            (-w, -w),
            (-w, -length),
            (w, -length),
            (w, -w),
            (length, -w),
            (length, w),
        ]
    )


_TRIANGLE_ANGLES = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
_SHAPE_POLYGONS = {  # unit-radius outlines, y pointing up
    "square": np.array([(0.8, 0.8), (-0.8, 0.8), (-0.8, -0.8), (0.8, -0.8)]),
    "triangle": np.stack([1.15 * np.cos(_TRIANGLE_ANGLES), 1.15 * np.sin(_TRIANGLE_ANGLES) - 0.2], 1),
    "star": _star(),
    "cross": _cross(),
    "heart": _heart(),
}


def shape_images(rng: np.random.Generator, shapes: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A shape (index into SHAPES) of a colour (index into COLOUR_NAMES) per image, near the centre,
    on a noisy background: ``(n, S, S, 3)`` uint8."""
    n = len(shapes)
    radius = rng.uniform(7.0, 11.0, n)
    angle = rng.uniform(-np.pi / 6, np.pi / 6, n)  # shapes stay roughly upright (+-30 degrees)
    centre = SIZE / 2 + rng.uniform(-4.0, 4.0, (n, 2))
    fg = _jitter(rng, _PALETTE[colours])
    background = _noisy_backgrounds(rng, n)

    def draw_one(draw, i, ox, oy, ss):
        cx, cy, r = ox + centre[i, 0] * ss, oy + centre[i, 1] * ss, radius[i] * ss
        shape = SHAPES[shapes[i]]
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            return
        c, s = math.cos(angle[i]), math.sin(angle[i])
        pts = _SHAPE_POLYGONS[shape]
        x = pts[:, 0] * c - pts[:, 1] * s
        y = pts[:, 0] * s + pts[:, 1] * c
        draw.polygon([(cx + r * a, cy - r * b) for a, b in zip(x.tolist(), y.tolist())], fill=255)

    return _to_uint8(_compose(background, _draw_masks(n, draw_one), fg))


def _gen_shapes(split: str):
    rng = _rng("shapes", split)
    labels = _balanced_labels(rng, [_per_class(split)] * len(SHAPES))
    colours = rng.integers(0, len(COLOURS), len(labels))
    return labels, shape_images(rng, labels, colours)


def _gen_shape_colours(split: str):
    rng = _rng("shape-colours", split)
    labels = _balanced_labels(rng, [_per_class(split)] * len(COLOURS))
    shapes = rng.integers(0, len(SHAPES), len(labels))
    return labels, shape_images(rng, shapes, labels)


# --- textures ---------------------------------------------------------------------------------


def _texture_masks(rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
    """Pattern masks ``(n, S, S)`` in [0, 1] of the given kinds (indices into TEXTURES), soft-edged,
    with random orientation, scale and phase."""
    n = len(kinds)
    phi = rng.uniform(0, np.pi, n).astype(np.float32)[:, None, None]
    p = rng.uniform(0, 1, (n, 6)).astype(np.float32)[:, :, None, None]
    u = _XX * np.cos(phi) + _YY * np.sin(phi)
    v = -_XX * np.sin(phi) + _YY * np.cos(phi)
    phase = 2 * np.pi * p[:, 0]
    out = np.zeros((n, SIZE, SIZE), np.float32)  # "plain": no pattern at all
    for k, kind in enumerate(TEXTURES):
        sel = kinds == k
        if not sel.any() or kind == "plain":
            continue
        us, vs, q, ph = u[sel], v[sel], p[sel], phase[sel]
        if kind == "striped":
            m = np.sin(2 * np.pi * us / (5.0 + 4.0 * q[:, 1]) + ph)
        elif kind == "checkered":
            cell = 3.5 + 3.5 * q[:, 1]
            m = ((np.floor((us + cell * q[:, 2]) / cell) + np.floor((vs + cell * q[:, 3]) / cell)) % 2) * 2 - 1
        elif kind == "dotted":
            step = 6.0 + 3.0 * q[:, 1]
            du = (us + step * q[:, 2]) % step - step / 2
            dv = (vs + step * q[:, 3]) % step - step / 2
            m = (1.4 + 0.9 * q[:, 4]) - np.sqrt(du**2 + dv**2)
        elif kind == "zigzagged":
            tri = np.abs(((vs / (5.0 + 4.0 * q[:, 4])) % 1.0) - 0.5) * 2  # triangle wave in [0, 1]
            m = np.sin(2 * np.pi * (us + (2.0 + 1.5 * q[:, 5]) * tri) / (6.0 + 3.0 * q[:, 1]) + ph)
        else:  # pragma: no cover - TEXTURES and this function change together
            raise ValueError(kind)
        out[sel] = np.clip(m * 2.0 + 0.5, 0.0, 1.0)
    return out


def _texture_images(rng: np.random.Generator, kinds: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    n = len(kinds)
    images = _compose(bg[:, None, None, :], _texture_masks(rng, kinds), fg)
    images += _shading(rng, n, 25)
    images += _noise(rng, n, 10)
    return _to_uint8(images)


def texture_images(rng: np.random.Generator, kinds: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """A pattern (index into TEXTURES) per image in two colours, ``fg`` on ``bg`` (indices into
    TEXTURE_POOL, each jittered), with shading and noise: ``(n, S, S, 3)`` uint8."""
    return _texture_images(rng, kinds, _jitter(rng, TEXTURE_POOL[fg]), _jitter(rng, TEXTURE_POOL[bg]))


def _gen_textures(split: str):
    rng = _rng("textures", split)
    labels = _balanced_labels(rng, [_per_class(split)] * len(TEXTURES))
    n = len(labels)
    a = rng.integers(0, len(TEXTURE_POOL), n)
    b = (a + rng.integers(1, len(TEXTURE_POOL), n)) % len(TEXTURE_POOL)  # a different colour
    return labels, texture_images(rng, labels, a, b)


def _gen_texture_colours(split: str):
    rng = _rng("texture-colours", split)
    n, k = _MULTILABEL_COUNTS[split], len(COLOURS)
    kinds = rng.integers(0, len(TEXTURES), n)
    plain = kinds == TEXTURES.index("plain")
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    second = ~plain & (rng.random(n) < 0.7)  # a second labelled colour, else a neutral background
    fg = _jitter(rng, _PALETTE[a])
    bg = _jitter(rng, _PALETTE[b])
    neutral = _jitter(rng, np.array(_NEUTRALS, np.float32)[rng.integers(0, len(_NEUTRALS), n)])
    bg = np.where(second[:, None], bg, np.where(plain[:, None], fg, neutral))  # plain: one colour only
    labels = np.zeros((n, k), np.uint8)
    labels[np.arange(n), a] = 1
    labels[np.flatnonzero(second), b[second]] = 1
    return labels, _texture_images(rng, kinds, fg, bg)


# --- glyphs -----------------------------------------------------------------------------------

_GLYPH_FONT_SIZE = 26
_GLYPH_TILE = 40


def _render_glyph(char: str) -> np.ndarray:
    """``char`` in Pillow's default font, its ink centred in a square float tile."""
    t, size = _GLYPH_TILE, _GLYPH_FONT_SIZE
    try:
        font = ImageFont.load_default(size=size)
        bitmap = False
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType: the small bitmap font
        font = ImageFont.load_default()
        bitmap = True
    canvas = Image.new("L", (3 * t, 3 * t), 0)
    ImageDraw.Draw(canvas).text((t // 2, t // 2), char, fill=255, font=font)
    glyph = canvas.crop(canvas.getbbox())
    if bitmap:  # upscale to the cap height of the FreeType rendering
        w, h = glyph.size
        glyph = glyph.resize((max(1, round(w * 19 / h)), 19), Image.BILINEAR)
    tile = Image.new("L", (t, t), 0)
    tile.paste(glyph, ((t - glyph.size[0]) // 2, (t - glyph.size[1]) // 2))
    return np.asarray(tile, np.float32) / 255.0


@functools.cache
def _glyph_atlas(chars: tuple[str, ...]) -> np.ndarray:
    return np.stack([_render_glyph(c) for c in chars])


def glyph_images(rng: np.random.Generator, chars: tuple[str, ...], labels: np.ndarray) -> np.ndarray:
    """Printed characters ``chars[labels[i]]`` (dark ink on light paper, Pillow's default font): size,
    rotation (+-15 deg), position and colours vary. ``(n, S, S, 3)`` uint8."""
    n = len(labels)
    scale = rng.uniform(0.7, 1.15, n)
    angle = np.deg2rad(rng.uniform(-15, 15, n))
    centre = SIZE / 2 + rng.uniform(-4, 4, (n, 2))
    masks = _warp(_glyph_atlas(tuple(chars)), labels, scale, angle, centre)
    ink, paper = _ink_and_paper(rng, n, dark_ink=True)
    images = _compose(paper[:, None, None, :], masks, ink)
    images += _noise(rng, n, 10)
    return _to_uint8(images)


def _gen_glyph_digits(split: str):
    rng = _rng("glyph-digits", split)
    labels = _balanced_labels(rng, [_per_class(split)] * len(DIGITS))
    return labels, glyph_images(rng, tuple("0123456789"), labels)


def _gen_glyph_letters(split: str):
    rng = _rng("glyph-letters", split)
    labels = _balanced_labels(rng, [_per_class(split)] * len(LETTERS))
    return labels, glyph_images(rng, LETTERS, labels)


# --- scikit-learn's handwritten digits --------------------------------------------------------


def _read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 images (8x8, values 0..16) and targets of ``sklearn.datasets.load_digits``.

    The CSV shipped inside scikit-learn is read directly, which skips the ~1 s import of
    ``sklearn.datasets``; ``load_digits`` is the fallback should the file ever move.
    """
    import gzip
    import importlib.util
    import os

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _sklearn_digits():
    """``load_digits`` images (as [0, 1] floats) and targets, with disjoint per-class train/test indices."""
    images, target = _read_sklearn_digits()
    rng = np.random.default_rng(_TASK_SEEDS["sklearn-digits"])
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(target == c))
        train.append(idx[:TRAIN_PER_CLASS])
        test.append(idx[TRAIN_PER_CLASS : TRAIN_PER_CLASS + TEST_PER_CLASS])
    indices = {"train": np.concatenate(train), "test": np.concatenate(test)}
    return (images / 16.0).astype(np.float32), target, indices


def spare_sklearn_digits() -> np.ndarray:
    """Indices (into ``load_digits``) of the digits that neither split of ``sklearn-digits`` uses."""
    _, target, indices = _sklearn_digits()
    return np.setdiff1d(np.arange(len(target)), np.concatenate([indices["train"], indices["test"]]))


def sklearn_digit_images(rng: np.random.Generator, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` int64 and images ``(n, S, S, 3)`` uint8 of the ``load_digits`` digits ``idx``:
    upscaled to 20..28 px, rotated (+-12 deg), shifted, tinted, light strokes on a dark ground."""
    raw, target, _ = _sklearn_digits()
    n = len(idx)
    scale = rng.uniform(20, 28, n) / 8.0  # 8x8 -> 20..28 px
    angle = np.deg2rad(rng.uniform(-12, 12, n))
    centre = SIZE / 2 + rng.uniform(-4, 4, (n, 2))
    masks = _warp(raw, idx, scale, angle, centre)
    ink, paper = _ink_and_paper(rng, n, dark_ink=False)  # light strokes on a dark ground, as in the source
    images = _compose(paper[:, None, None, :], masks, ink)
    images += _noise(rng, n, 10)
    return target[idx].astype(np.int64), _to_uint8(images)


def _gen_sklearn_digits(split: str):
    rng = _rng("sklearn-digits", split)
    _, _, indices = _sklearn_digits()
    idx = indices[split][rng.permutation(len(indices[split]))]
    return sklearn_digit_images(rng, idx)


# --- orientation ------------------------------------------------------------------------------


def orientation_images(rng: np.random.Generator, counts) -> tuple[np.ndarray, np.ndarray]:
    """``counts[k]`` bars of each orientation (index into ORIENTATIONS), shuffled, each with a
    distractor blob: labels ``(n,)`` int64 and images ``(n, S, S, 3)`` uint8."""
    labels = _balanced_labels(rng, counts)
    n = len(labels)
    angle = np.deg2rad(np.asarray(_ORIENTATION_ANGLE)[labels] + rng.uniform(-12, 12, n))
    length = rng.uniform(14, 26, n)
    width = rng.uniform(2.0, 4.0, n)
    centre = SIZE / 2 + rng.uniform(-5, 5, (n, 2))
    pool = np.concatenate([_PALETTE, np.array(_NEUTRALS[:1], np.float32)])  # visible on a dark ground
    bar_colour = _jitter(rng, pool[rng.integers(0, len(pool), n)])
    blob_colour = _jitter(rng, pool[rng.integers(0, len(pool), n)])
    blob_centre = rng.uniform(3, SIZE - 3, (n, 2)).astype(np.float32)
    background = _noisy_backgrounds(rng, n)

    def draw_one(draw, i, ox, oy, ss):
        dx, dy = math.cos(angle[i]) * length[i] / 2, -math.sin(angle[i]) * length[i] / 2  # screen y is down
        nx, ny = -dy / (length[i] / 2) * width[i] / 2, dx / (length[i] / 2) * width[i] / 2
        cx, cy = centre[i]
        pts = [
            (cx + dx + nx, cy + dy + ny),
            (cx + dx - nx, cy + dy - ny),
            (cx - dx - nx, cy - dy - ny),
            (cx - dx + nx, cy - dy + ny),
        ]
        draw.polygon([(ox + x * ss, oy + y * ss) for x, y in pts], fill=255)

    images = _compose(background, _draw_masks(n, draw_one), bar_colour)
    # a distractor: a small blob of another colour somewhere
    d = np.sqrt((_XX - blob_centre[:, 0, None, None]) ** 2 + (_YY - blob_centre[:, 1, None, None]) ** 2)
    images = _compose(images, np.clip(2.2 - d, 0, 1), blob_colour)
    return labels, _to_uint8(images)


def _gen_orientation(split: str):
    return orientation_images(_rng("orientation", split), _ORIENTATION_COUNTS[split])


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------

_GENERATORS = {
    "shapes": _gen_shapes,
    "shape-colours": _gen_shape_colours,
    "textures": _gen_textures,
    "texture-colours": _gen_texture_colours,
    "glyph-digits": _gen_glyph_digits,
    "sklearn-digits": _gen_sklearn_digits,
    "glyph-letters": _gen_glyph_letters,
    "orientation": _gen_orientation,
}


@functools.cache
def generate(task: str, split: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """``(ids, labels, images)`` of one split, generated once per process; the arrays are read-only."""
    if split not in _SPLIT_INDEX:
        raise ValueError(f"synthetic task {task!r} has no {split!r} split")
    labels, images = _GENERATORS[task](split)
    labels = np.ascontiguousarray(labels)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels.setflags(write=False)
    images.setflags(write=False)
    ids = tuple(f"{split}/{i:06d}" for i in range(len(labels)))
    return ids, labels, images


def _loader(name: str):
    return generated_loader(generate, name)


_COLOUR_TEMPLATES = ("a {} shape.", "a drawing of a {} object.", "something coloured {}.", "the colour {}.")
_TASKS = (
    Task(
        name="shapes",
        classnames=SHAPES,
        templates=("a drawing of a {}.", "a {} shape.", "a picture of a {}.", "a coloured {} on a dark background."),
        metric="accuracy",
        loader=_loader("shapes"),
        domain="shapes",
        description="Which shape is drawn; colour, size, position and rotation vary at random.",
    ),
    Task(
        name="shape-colours",
        classnames=COLOUR_NAMES,
        templates=_COLOUR_TEMPLATES,
        metric="accuracy",
        loader=_loader("shape-colours"),
        domain="shapes",
        description="The colour of a drawn shape; the shape, size, position and rotation vary at random.",
    ),
    Task(
        name="textures",
        classnames=TEXTURES,
        templates=("a {} texture.", "a {} pattern.", "a close-up photo of a {} surface.", "a {} fabric."),
        metric="accuracy",
        loader=_loader("textures"),
        domain="textures",
        description="Which surface pattern fills the image; colours, scale, phase and orientation vary.",
    ),
    Task(
        name="texture-colours",
        classnames=COLOUR_NAMES,
        templates=("a {} texture.", "a pattern with {} in it.", "a surface coloured {}.", "the colour {}."),
        metric="map_11point",
        loader=_loader("texture-colours"),
        multilabel=True,
        domain="textures",
        description="Which colours are present in a patterned surface (multi-label: one or two of six).",
    ),
    Task(
        name="glyph-digits",
        classnames=DIGITS,
        templates=('a photo of the number: "{}".', "a printed digit {}.", "the number {} in a typeface."),
        metric="accuracy",
        loader=_loader("glyph-digits"),
        domain="glyphs",
        description="A printed digit (Pillow's default font); size, rotation, position and ink/paper colours vary.",
    ),
    Task(
        name="sklearn-digits",
        classnames=DIGITS,
        templates=('a photo of the number: "{}".', "a handwritten digit {}.", "a blurry scan of the number {}."),
        metric="accuracy",
        loader=_loader("sklearn-digits"),
        domain="handwriting",
        description="Handwritten 8x8 digits from scikit-learn's load_digits, upscaled, rotated, shifted and tinted.",
    ),
    Task(
        name="glyph-letters",
        classnames=LETTERS,
        templates=('the letter "{}".', "a printed letter {}.", "a picture of the capital letter {}."),
        metric="accuracy",
        loader=_loader("glyph-letters"),
        domain="glyphs",
        description="A printed capital letter (the glyph-digits renderer); size, rotation, position and colours vary.",
    ),
    Task(
        name="orientation",
        classnames=ORIENTATIONS,
        templates=("a {} line.", "a drawing of a {} bar.", "a {} stroke on a dark background."),
        metric="mean_per_class_accuracy",
        loader=_loader("orientation"),
        domain="lines",
        description="The orientation of a bar (+-12 degrees) with a distractor blob; classes are imbalanced.",
    ),
)

SUITE: tuple[str, ...] = tuple(t.name for t in _TASKS)
TASKS: types.MappingProxyType = types.MappingProxyType({t.name: t for t in _TASKS})  # name -> Task, read-only

for _task in _TASKS:
    register(_task)
