"""Task similarity with the study's frozen CLIP: visual (image embeddings) and label (class-name embeddings).

Inputs per task
---------------
* images: the union of the few-shot *train* ids of ``fewshot_seeds`` (same protocol and shots as the
  study, :func:`mvlpt.tasks.fewshot.make_split`, or the split files themselves) plus a fixed-size
  random sample (``sample_size`` ids, ``sample_seed``) of the task's whole train split;
* labels: the class names put into a template (default ``"a photo of a {}."``; ``templates="task"``
  averages the task's own templates, CLIP zero-shot style, then re-normalises).

Each task is encoded once (:func:`encode_task_images`, :func:`encode_task_labels`) and the
embeddings are cached as ``.npz`` files, so N tasks cost N encodings; every pairwise measure is
then computed from the cached arrays.

Measures (all symmetric)
------------------------
Each is registered, with its kind and matrix function, in :data:`mvlpt.study.vocabulary.MEASURES`.

``visual_cosine``   cosine of the mean image embeddings of the two tasks (1 for a task with itself).
``visual_frechet``  Frechet distance between Gaussian fits of the image embeddings (a *distance*: 0
                    for identical fits, larger = less similar). Covariances are Ledoit-Wolf shrunk
                    (scikit-learn), which keeps them well conditioned with few images; ``ridge``
                    instead adds ``ridge * trace(S)/D`` to the diagonal of the sample covariance;
                    ``none`` uses the sample covariance. The matrix square root term is computed as
                    ``Tr sqrt(S1^1/2 S2 S1^1/2)`` from symmetric eigendecompositions (eigenvalues
                    clipped at 0), which is real and stable where ``scipy.linalg.sqrtm`` of the
                    non-symmetric product can return complex noise. For correlations the distance is
                    negated (see :mod:`mvlpt.analysis.stats`).
``label_match``     for each class of task A the best (max cosine) class of task B, averaged over A's
                    classes; symmetrised as the mean of both directions. 1 for identical class names.
``label_cosine``    cosine of the mean class-name embeddings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mvlpt.errors import MvlptError
from mvlpt.study import settings, vocabulary

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {}."
EMBEDDING_FORMAT = 1


# --------------------------------------------------------------------------------------------------
# Embeddings of one task
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Embeddings:
    """L2-normalised embeddings of one task: images ``(N, D)`` (ids) or class names ``(C, D)`` (names)."""

    task: str
    kind: str  # "images" | "labels"
    features: np.ndarray
    names: tuple[str, ...]  # image ids, or class names
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        if self.features.ndim != 2 or len(self.features) != len(self.names):
            raise ValueError(f"embeddings of {self.task}: features {self.features.shape} do not match {len(self.names)} names")


def save_embeddings(emb: Embeddings, path: str | os.PathLike) -> Path:
    """Write ``emb`` to ``path`` (.npz, atomically)."""
    from mvlpt.io import write_npz

    meta = dict(emb.meta, task=emb.task, kind=emb.kind, format=EMBEDDING_FORMAT)
    return write_npz(path, meta, features=emb.features, names=np.asarray(emb.names, dtype=str))


def load_embeddings(path: str | os.PathLike) -> Embeddings:
    from mvlpt.io import check_npz, read_npz

    path = Path(path)
    meta, z = read_npz(path, "embedding file", "mvlpt embed")
    check_npz(path, "embedding file", "mvlpt embed", meta, z, rows=("names",), kinds=("images", "labels"))
    try:
        feats, names = z["features"], tuple(str(s) for s in z["names"])
    except KeyError as e:
        raise MvlptError(f"embedding file {path} cannot be read ({e}); delete it and rerun `mvlpt embed`.") from None
    if meta.get("format") != EMBEDDING_FORMAT:
        raise MvlptError(f"embedding file {path} has an unknown format; delete it and rerun `mvlpt embed`.")
    return Embeddings(meta["task"], meta["kind"], feats, names, meta)


@dataclasses.dataclass(frozen=True)
class ImageSelection:
    """Which train images of a task represent it (see the module docstring)."""

    fewshot_seeds: tuple[int, ...] = (1,)
    shots: int = 5
    sample_size: int = 256
    sample_seed: int = 0
    split_files: tuple[str, ...] = ()  # few-shot split files to use instead of recomputing the splits

    def settings(self) -> dict:
        d = dataclasses.asdict(self)
        d["split_files"] = [Path(p).name for p in self.split_files]
        d["fewshot_seeds"] = list(self.fewshot_seeds)
        return d


def select_images(task, selection: ImageSelection, data_dir: str | None = None, train=None) -> list[int]:
    """Sorted positions, in the task's train split, of the images that represent ``task``."""
    from mvlpt.tasks.fewshot import indices_of, make_split, read_split

    train = train if train is not None else task.load("train", data_dir)
    n = len(train)
    chosen: set[int] = set()
    if selection.split_files:
        for p in selection.split_files:
            chosen.update(indices_of(train, read_split(p, task.name)["train"]))
    else:
        for s in selection.fewshot_seeds:
            split = make_split(task, int(s), int(selection.shots), data_dir, split_data=train)
            chosen.update(indices_of(train, split["train"]))
    k = min(int(selection.sample_size), n)
    if k > 0:
        chosen.update(int(i) for i in np.random.default_rng(selection.sample_seed).choice(n, size=k, replace=False))
    if not chosen:
        raise MvlptError(f"no images selected for task {task.name!r}; raise sample_size or give few-shot seeds.")
    return sorted(chosen)


def _encode_images(clip, split, indices: Sequence[int], batch_size: int) -> np.ndarray:
    try:  # the project's shared encoder, where it exists
        from mvlpt.training.data import encode_split_images  # type: ignore

        feats = encode_split_images(clip, split, list(indices), batch_size=batch_size)
        feats = feats.detach().cpu().numpy() if hasattr(feats, "detach") else feats
        return np.asarray(feats, dtype=np.float32)
    except ImportError:
        pass
    import torch

    out = []
    for start in range(0, len(indices), batch_size):
        batch = torch.stack([clip.transform(split.image(int(i))) for i in indices[start : start + batch_size]])
        out.append(clip.encode_images(batch).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def encode_task_images(
    clip, task, selection: ImageSelection = ImageSelection(), *, data_dir: str | None = None, batch_size: int = 128
) -> Embeddings:
    """Encode the selected train images of ``task`` (a :class:`mvlpt.tasks.Task`) with ``clip``."""
    train = task.load("train", data_dir)
    idx = select_images(task, selection, data_dir, train=train)
    feats = _encode_images(clip, train, idx, batch_size)
    meta = {"model": clip.key, "selection": selection.settings(), "n_train": len(train)}
    return Embeddings(task.name, "images", feats, tuple(str(train.ids[i]) for i in idx), meta)


def resolve_templates(task, templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None``/``"default"``: ``("a photo of a {}.",)``; ``"task"``: the task's templates; else the given ones."""
    if templates is None or templates == "default":
        out = (DEFAULT_TEMPLATE,)
    elif templates == "task":
        out = tuple(task.templates)
    elif isinstance(templates, str):
        out = (templates,)
    else:
        out = tuple(templates)
    bad = [t for t in out if "{}" not in t]
    if not out or bad:
        raise MvlptError(f"every label template needs a '{{}}' for the class name (got {bad or out!r}).")
    return out


def encode_task_labels(clip, task, templates: str | Sequence[str] | None = None) -> Embeddings:
    """Encode ``task``'s class names; several templates are averaged per class and re-normalised."""
    tmpl = resolve_templates(task, templates)
    texts = [t.format(c) for c in task.classnames for t in tmpl]
    feats = np.asarray(clip.encode_texts(texts).cpu().numpy(), dtype=np.float64)
    feats = feats.reshape(len(task.classnames), len(tmpl), -1).mean(axis=1)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    meta = {"model": clip.key, "templates": list(tmpl)}
    return Embeddings(task.name, "labels", feats.astype(np.float32), tuple(task.classnames), meta)


def _settings_hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def cached_embeddings(
    clip,
    task,
    kind: str,
    *,
    cache_dir: str | os.PathLike,
    selection: ImageSelection = ImageSelection(),
    templates: str | Sequence[str] | None = None,
    data_dir: str | None = None,
    batch_size: int = 128,
) -> Embeddings:
    """Embeddings of ``task`` from ``cache_dir/similarity/<model>/``, encoding them on the first call."""
    if kind == "images":
        settings = {"selection": selection.settings()}
    elif kind == "labels":
        settings = {"templates": list(resolve_templates(task, templates))}
    else:
        raise MvlptError(f"unknown embedding kind {kind!r}; use images or labels.")
    key = _settings_hash(dict(settings, task=task.name, kind=kind, model=clip.key))
    path = Path(cache_dir) / "similarity" / clip.key / f"{task.name}.{kind}.{key}.npz"
    if path.exists():
        return load_embeddings(path)
    emb = (
        encode_task_images(clip, task, selection, data_dir=data_dir, batch_size=batch_size)
        if kind == "images"
        else encode_task_labels(clip, task, templates)
    )
    save_embeddings(emb, path)
    return emb


# --------------------------------------------------------------------------------------------------
# Pairwise measures on arrays
# --------------------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def cosine_of_means(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine between the mean rows of ``a`` and ``b``."""
    ma, mb = _unit(np.asarray(a, np.float64).mean(0)), _unit(np.asarray(b, np.float64).mean(0))
    return float(np.clip(ma @ mb, -1.0, 1.0))


def label_match_directed(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the rows of ``a`` of their best cosine with a row of ``b`` (rows L2-normalised)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.clip((a @ b.T).max(axis=1), -1.0, 1.0).mean())


def label_match(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetrised best-match label similarity: mean of both directions."""
    return 0.5 * (label_match_directed(a, b) + label_match_directed(b, a))


@dataclasses.dataclass
class GaussianFit:
    mean: np.ndarray
    cov: np.ndarray
    sqrt_cov: np.ndarray
    n: int


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fit_gaussian(
    x: np.ndarray,
    shrinkage: str = settings.SIMILARITY_DEFAULTS["shrinkage"],
    ridge: float = settings.SIMILARITY_DEFAULTS["ridge"],
) -> GaussianFit:
    """Mean and (regularised) covariance of the rows of ``x``, in float64.

    ``ledoit_wolf``: scikit-learn's Ledoit-Wolf shrinkage towards a scaled identity (the shrinkage
    intensity is estimated from the data). ``ridge``: sample covariance + ``ridge * trace/D * I``.
    ``none``: sample covariance. With a single sample the covariance is 0 (a point mass).
    """
    x = np.asarray(x, np.float64)
    n, d = x.shape
    mu = x.mean(0)
    if shrinkage not in vocabulary.SHRINKAGES:
        raise MvlptError(f"unknown covariance shrinkage {shrinkage!r}; choose one of {', '.join(vocabulary.SHRINKAGES)}.")
    if n < 2:
        cov = np.zeros((d, d))
    elif shrinkage == "ledoit_wolf":
        from sklearn.covariance import LedoitWolf

        cov = LedoitWolf(assume_centered=False).fit(x).covariance_
    else:
        cov = np.cov(x, rowvar=False, ddof=1).reshape(d, d)
        if shrinkage == "ridge":
            cov = cov + ridge * np.trace(cov) / d * np.eye(d)
    cov = (cov + cov.T) / 2
    return GaussianFit(mu, cov, _sqrtm_psd(cov), n)


def frechet_distance(f1: GaussianFit, f2: GaussianFit) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), clipped at 0."""
    m = f1.sqrt_cov @ f2.cov @ f1.sqrt_cov
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(ev, 0, None)).sum())
    diff = f1.mean - f2.mean
    d = float(diff @ diff + np.trace(f1.cov) + np.trace(f2.cov) - 2 * tr_covmean)
    return max(d, 0.0)


def frechet_distance_samples(
    a: np.ndarray,
    b: np.ndarray,
    shrinkage: str = settings.SIMILARITY_DEFAULTS["shrinkage"],
    ridge: float = settings.SIMILARITY_DEFAULTS["ridge"],
) -> float:
    return frechet_distance(fit_gaussian(a, shrinkage, ridge), fit_gaussian(b, shrinkage, ridge))


# --------------------------------------------------------------------------------------------------
# Matrices and tables
# --------------------------------------------------------------------------------------------------
def _symmetric(n: int, pair) -> np.ndarray:
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = pair(i, j)
    return out


def mean_cosine_matrix(embeddings: Sequence[Embeddings]) -> np.ndarray:
    """Cosine of the tasks' mean embeddings (``visual_cosine`` on images, ``label_cosine`` on labels)."""
    means = [_unit(e.features.astype(np.float64).mean(0)) for e in embeddings]
    return _symmetric(len(means), lambda i, j: float(np.clip(means[i] @ means[j], -1, 1)))


def frechet_matrix(
    embeddings: Sequence[Embeddings],
    shrinkage: str = settings.SIMILARITY_DEFAULTS["shrinkage"],
    ridge: float = settings.SIMILARITY_DEFAULTS["ridge"],
) -> np.ndarray:
    """Frechet distance between Gaussian fits of the tasks' embeddings (0 on the diagonal)."""
    fits = [fit_gaussian(e.features, shrinkage, ridge) for e in embeddings]
    out = _symmetric(len(fits), lambda i, j: frechet_distance(fits[i], fits[j]))
    np.fill_diagonal(out, 0.0)
    return out


def label_match_matrix(embeddings: Sequence[Embeddings]) -> np.ndarray:
    """Symmetrised best-match label similarity (:func:`label_match`) between the tasks' class names."""
    embs = list(embeddings)
    return _symmetric(len(embs), lambda i, j: label_match(embs[i].features, embs[j].features))


def similarity_matrix(embeddings: Sequence[Embeddings] | Mapping[str, Embeddings], measure: str, **options) -> pd.DataFrame:
    """Symmetric N x N matrix of ``measure`` between the tasks of ``embeddings`` (in the given order).

    The measure's function and kind come from :data:`mvlpt.study.vocabulary.MEASURES`; ``options`` (e.g.
    ``shrinkage``, ``ridge``) reach the measures that take them.
    """
    meas = vocabulary.measure(measure)
    embs = list(embeddings.values()) if isinstance(embeddings, Mapping) else list(embeddings)
    names = [e.task for e in embs]
    if len(set(names)) != len(names):
        raise MvlptError(f"a task appears twice among the embeddings ({', '.join(names)}); pass each task once.")
    wrong = [e.task for e in embs if e.kind != meas.kind]
    if wrong:
        raise MvlptError(
            f"{measure} needs {meas.kind} embeddings but {', '.join(wrong)} have {embs[0].kind if embs else '?'}"
            f" ones; pass the .{meas.kind}.npz files."
        )
    models = {e.meta.get("model") for e in embs}
    if len(models) > 1:
        raise MvlptError(
            f"the embeddings come from different models ({', '.join(map(str, models))}); re-encode them with one model."
        )
    out = np.asarray(meas.compute(embs, **options), dtype=np.float64)
    return pd.DataFrame(out, index=pd.Index(names, name="task_a"), columns=pd.Index(names, name="task_b"))


def matrix_to_long(m: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Long table task_a, task_b, measure, value (every ordered pair, diagonal included)."""
    long = m.stack().rename("value").reset_index()
    long.columns = ["task_a", "task_b", "value"]
    long.insert(2, "measure", measure)
    return long


def long_to_matrix(long: pd.DataFrame, measure: str | None = None, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Back from a long table to the N x N matrix of one measure."""
    if measure is None:
        ms = long["measure"].unique()
        if len(ms) != 1:
            raise MvlptError(f"the similarity table holds several measures ({', '.join(ms)}); say which one.")
        measure = ms[0]
    sub = long[long["measure"] == measure]
    if sub.empty:
        raise MvlptError(f"the similarity table has no {measure!r} values.")
    order = list(tasks) if tasks is not None else list(dict.fromkeys(sub["task_a"]))
    m = sub.pivot(index="task_a", columns="task_b", values="value").reindex(index=order, columns=order)
    return m.astype("float64")


def similarity_tables(
    embeddings: Iterable[Embeddings], measures: Sequence[str] = tuple(vocabulary.MEASURES), **kw
) -> pd.DataFrame:
    """Long table of several measures at once (images and labels embeddings may be mixed)."""
    embs = list(embeddings)
    parts = []
    for m in measures:
        kind = vocabulary.measure(m).kind
        parts.append(matrix_to_long(similarity_matrix([e for e in embs if e.kind == kind], m, **kw), m))
    return pd.concat(parts, ignore_index=True)
