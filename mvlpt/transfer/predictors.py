"""Transferability predictors of a study: one source x target matrix per predictor (docs/predictors.md),
and its files (:func:`write_predictor`, :func:`read_predictor`).

Inputs, all from the frozen CLIP (nothing is trained):

* per task, its labelled few-shot *train* images (the study's pinned split files, every seed),
  encoded once: a ``{task}.fewshot.npz`` (:mod:`mvlpt.transfer.fewshot_features`), with the
  model's logit scale;
* per task, its class-name embeddings (``{task}.labels.npz`` of ``mvlpt embed --kind labels``): the
  task's zero-shot classifier;
* for the similarity predictors, the embeddings their measure is computed from.

A ``zeroshot`` predictor of :data:`mvlpt.study.vocabulary.PREDICTORS` scores the pair (source, target) on the
target's few-shot images ``x`` with labels ``y`` through the source's zero-shot classifier: logits
``logit_scale * x @ W_source^T`` (``W_source``: the source's L2-normalised class-name embeddings),
probabilities their softmax. The estimator reads the view its registry line names: the
probabilities (LEEP), the predicted source class (NCE) or the logits as the target's features
(LogME, H-score, GBC). The logits are the source-specific representation: the frozen image tower
is the same for every source, so its features alone would give every source the same score. Each
seed's split is scored on its own and the scores are averaged over seeds. A multi-label target
image counts once per class it carries.

A ``similarity`` predictor is its measure's matrix, negated for a distance (larger = more similar).

A ``prompt`` predictor reads a method's trained prompts (:mod:`mvlpt.transfer.prompt_views`).

Every matrix is oriented "larger = more gain expected". :mod:`mvlpt.transfer.predictor_scores` compares it
with each method's measured gains.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mvlpt.analysis import tables
from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary
from mvlpt.transfer.fewshot_features import FewShot


def zero_shot_logits(features: np.ndarray, classifier: np.ndarray, logit_scale: float) -> np.ndarray:
    """``logit_scale * x @ W^T``: the zero-shot CLIP logits of images ``x`` over the classes of ``W``."""
    return logit_scale * np.asarray(features, np.float64) @ np.asarray(classifier, np.float64).T


def source_view(logits: np.ndarray, reads: str) -> np.ndarray:
    """What an estimator reads of the source classifier's logits (:data:`mvlpt.study.vocabulary.PREDICTOR_VIEWS`)."""
    if reads == "logits":
        return logits
    if reads == "predictions":
        return logits.argmax(1)
    if reads == "probabilities":
        z = logits - logits.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)
    raise MvlptError(f"unknown source view {reads!r}; use one of {', '.join(vocabulary.PREDICTOR_VIEWS)}.")


def zeroshot_matrix(pred: vocabulary.Predictor, fewshot: Sequence[FewShot], classifiers: Sequence) -> np.ndarray:
    """``pred`` for every (source, target): rows are the sources (``classifiers``, the tasks'
    label :class:`~mvlpt.analysis.similarity.Embeddings`), columns the targets (``fewshot``), same task order;
    each target's seeds are scored apart and averaged."""
    fn = pred.estimator()
    out = np.zeros((len(classifiers), len(fewshot)))
    for j, target in enumerate(fewshot):
        seeds = np.unique(target.seeds)
        for i, source in enumerate(classifiers):
            values = []
            for s in seeds:
                rows = target.seeds == s
                logits = zero_shot_logits(target.features[rows], source.features, target.logit_scale)
                values.append(fn(source_view(logits, pred.reads), target.labels[rows]))
            out[i, j] = float(np.mean(values))
    return out


def _ordered(items, tasks: Sequence[str] | None, what: str) -> list:
    if tasks is None:
        return list(items)
    by = {x.task: x for x in items}
    missing = [t for t in tasks if t not in by]
    if missing:
        raise MvlptError(f"no {what} given for task(s) {', '.join(missing)}; pass their files.")
    return [by[t] for t in tasks]


def predictor_matrix(
    name: str,
    *,
    fewshot: Sequence[FewShot] = (),
    labels: Sequence = (),
    embeddings: Sequence = (),
    tasks: Sequence[str] | None = None,
    **options,
) -> tuple[pd.DataFrame, float]:
    """The source x target matrix of predictor ``name`` (larger = more gain expected) and the seconds its
    computation took (from the loaded embeddings: encoding is not counted)."""
    pred = vocabulary.predictor(name)
    if pred.family == "prompt":
        raise MvlptError(f"predictor {name} is computed from a method's trained prompts (prompt_views, prompt_matrix).")
    if pred.family == "zeroshot":
        fewshot = _ordered(fewshot, tasks, "few-shot embeddings")
        labels = _ordered(labels, tasks, "class-name embeddings")
        if not fewshot or [f.task for f in fewshot] != [e.task for e in labels]:
            raise MvlptError(
                f"predictor {name} needs the few-shot and the class-name embeddings of the same tasks, in one order."
            )
        models = {f.meta.get("model") for f in fewshot} | {e.meta.get("model") for e in labels}
        if len(models) > 1:
            raise MvlptError(
                f"the embeddings come from different models ({', '.join(map(str, models))}); re-encode them with one model."
            )
        names = [f.task for f in fewshot]
        start = time.perf_counter()
        values = zeroshot_matrix(pred, fewshot, labels)
    else:
        from mvlpt.analysis.similarity import similarity_matrix

        embs = _ordered(embeddings, tasks, f"{pred.reads} embeddings")
        names = [e.task for e in embs]
        start = time.perf_counter()
        values = vocabulary.measure(name).oriented(similarity_matrix(embs, name, **options).to_numpy())
    seconds = time.perf_counter() - start
    m = pd.DataFrame(values, index=pd.Index(names, name="source"), columns=pd.Index(names, name="target"))
    return m, seconds


def write_predictor(
    matrix: pd.DataFrame, name: str, seconds: float, out: str | os.PathLike, method: str | None = None
) -> list[Path]:
    """``out`` as CSV + parquet (the matrix) and ``.json`` (what it is, its ``method`` for a per-method
    predictor, and its cost), all or none."""
    from mvlpt.io import write_json, write_together

    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".csv", ".parquet") else out
    pred = vocabulary.predictor(name)
    info = {
        "predictor": name,
        "family": pred.family,
        "reads": pred.reads,
        "seconds": round(float(seconds), 6),
        "tasks": list(matrix.index),
    }
    if pred.per_method != (method is not None):
        raise MvlptError(f"predictor {name} is {'per method: give its method' if pred.per_method else 'not per method'}.")
    if method is not None:
        info["method"] = method
    with write_together():
        written = tables.write_table(matrix, stem, index=True)
        write_json(info, stem.with_suffix(".json"))
    return [*written, stem.with_suffix(".json")]


def read_predictor(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """A predictor matrix (csv or parquet) and its ``.json`` (name, family, seconds)."""
    from mvlpt.io import read_json

    path = Path(path)
    m = tables.read_matrix(path)
    info = read_json(path.with_suffix(".json"), "predictor cost file")
    if not isinstance(info, dict) or "predictor" not in info or "seconds" not in info:
        raise MvlptError(f"predictor cost file {path.with_suffix('.json')} is not one of mvlpt's; rerun `mvlpt predict compute`.")
    return m, info
