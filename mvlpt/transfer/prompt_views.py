"""The ``prompt`` transferability predictors (docs/predictors.md): what one method's trained prompts give on
the tasks' few-shot splits (:func:`prompt_views`, one :class:`PromptViews`), and the source x target matrix of
each such predictor from them (:func:`prompt_matrix`)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary
from mvlpt.transfer.fewshot_features import fewshot_rows
from mvlpt.transfer.predictors import source_view


@dataclasses.dataclass
class PromptViews:
    """What one method's trained prompts give on the tasks' few-shot splits, per seed ``s``, source
    ``S`` and target ``T`` (S's prompt of seed s on T's split of seed s):

    * ``logits[s][S][T]``: (rows, |C_S|) logits of T's few-shot *train* images over S's classes, through
      S's prompt as S was trained (S's prompted text and image towers); ``labels[s][T]`` their T classes
      (one row per class a multi-label image carries, as for the zero-shot predictors);
    * ``metric[s][S][T]``: T's own metric on T's few-shot *val* images, with S's prompt and T's class
      names, nothing trained on T (the sequential transfer's starting point);
    * ``seconds``: the prompted forward passes of each part (``estimators``, ``metric``), model loading
      and image decoding not counted;
    * ``target_logits[s][S][T]``: (rows, |C_T|) logits of T's few-shot *train* images over *T's* classes,
      through T's learner holding S's prompt (what a sequential run from S's prompt starts with): features
      of one size for every source (issue #22).
    """

    method: str
    tasks: list[str]
    seeds: list[int]
    logits: dict
    labels: dict
    metric: dict
    seconds: dict
    target_logits: dict = dataclasses.field(default_factory=dict)


def _prompt_options(path, method: str, task: str, seed: int) -> dict:
    """The method options a prompt file was trained with, after checking it is ``task``'s prompt of ``seed``."""
    from mvlpt.training.checkpoints import read_prompt_meta

    meta, prov = read_prompt_meta(path)
    if meta.get("method") != method:
        raise MvlptError(f"prompt checkpoint {path} is for method {meta.get('method')!r}, not {method!r}.")
    if prov["tasks"] != [task] or prov["seed"] != seed:
        raise MvlptError(
            f"prompt checkpoint {path} was trained on {'+'.join(prov['tasks'])} with seed {prov['seed']}, "
            f"not on {task} alone with seed {seed}; give each task's baseline prompt of each seed."
        )
    options = json.loads(meta.get("options") or "{}")
    if options.get("csc"):
        raise MvlptError(
            f"prompt checkpoint {path} has a class-specific CoOp context (csc), which fits no other "
            f"task's classes; the prompt predictors need a shared context."
        )
    return options


def prompt_views(
    clip,
    method: str,
    tasks: Sequence[str],
    prompt_files: Mapping[tuple[str, int], str | os.PathLike],
    split_files: Mapping[tuple[str, int], str | os.PathLike],
    *,
    data_dir: str | None = None,
    batch_size: int = 128,
) -> PromptViews:
    """Run every source's trained prompt (``prompt_files[(task, seed)]``, the baseline runs') over every
    target's few-shot split (``split_files[(task, seed)]``): see :class:`PromptViews`. One learner per
    task, built with the options the prompt files record; for source S every learner loads S's prompt
    (:func:`mvlpt.training.checkpoints.load_prompt`, as a sequential run does), so S's learner gives S's classifier
    and T's learner S's prompt with T's class names."""
    import torch

    from mvlpt.models.prompts import build_prompt_learner
    from mvlpt.tasks import get_task
    from mvlpt.tasks.fewshot import indices_of, read_split
    from mvlpt.training.checkpoints import load_prompt
    from mvlpt.training.data import labels_of, load_images
    from mvlpt.training.metrics import compute_metric

    seeds = sorted({s for _, s in prompt_files})
    missing = [f"{t} seed {s}" for t in tasks for s in seeds if (t, s) not in prompt_files or (t, s) not in split_files]
    if missing:
        raise MvlptError(
            f"the prompt predictors need a prompt and a split file of every task and seed; missing: {', '.join(missing)}."
        )
    task_of = {t: get_task(t) for t in tasks}
    options = {(t, s): _prompt_options(prompt_files[(t, s)], method, t, s) for t in tasks for s in seeds}
    if len({_options_key(o) for o in options.values()}) > 1:
        raise MvlptError(f"the {method} prompt files were trained with different options; use the prompts of one study.")
    opts = next(iter(options.values()))
    conditioned = vocabulary.method(method).task_conditioned  # SoftCPT: told the task of its classes

    def learner(t):
        return build_prompt_learner(
            method, clip, list(task_of[t].classnames), opts, **({"tasks": [(t, task_of[t].num_classes)]} if conditioned else {})
        )

    learners = {t: learner(t) for t in tasks}
    for lr in learners.values():
        lr.eval()
    frozen_images = not learners[tasks[0]].learns_image
    seconds = {"estimators": 0.0, "metric": 0.0}
    logits, labels, metric, target_logits = {}, {}, {}, {}

    def features(learner, images):  # (N, D) image features under the learner's current prompts
        return (
            torch.cat([learner.image_features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
            if len(images)
            else torch.zeros(0, clip.model.visual.output_dim)
        )

    with torch.no_grad():
        for s in seeds:
            data = {}
            for t in tasks:
                train = task_of[t].load("train", data_dir)
                split = read_split(split_files[(t, s)], t)
                if split.get("seed") != s:
                    raise MvlptError(
                        f"few-shot split file {split_files[(t, s)]} was sampled with seed {split.get('seed')}, not {s}."
                    )
                tr, va = indices_of(train, split["train"]), indices_of(train, split["val"])
                rows, classes = fewshot_rows(labels_of(train, tr), range(len(tr)))
                data[t] = {
                    "train": load_images(clip, train, tr)[rows],
                    "val": load_images(clip, train, va),
                    "val_y": labels_of(train, va),
                }
                labels.setdefault(s, {})[t] = np.asarray(classes, np.int64)
            frozen = {t: {} for t in tasks}
            if frozen_images:  # the image tower does not learn (CoOp): every source sees the same features
                for part, k in (("estimators", "train"), ("metric", "val")):
                    start = time.perf_counter()
                    for t in tasks:
                        frozen[t][k] = features(learners[t], data[t][k])
                    seconds[part] += time.perf_counter() - start
            logits[s], metric[s], target_logits[s] = {}, {}, {}
            for src in tasks:
                for lr in learners.values():
                    load_prompt(lr, prompt_files[(src, s)])
                logits[s][src], metric[s][src], target_logits[s][src] = {}, {}, {}
                start = time.perf_counter()
                text_src = learners[src].text_features_once()  # None: the class text depends on the image
                for t in tasks:
                    f = frozen[t]["train"] if frozen_images else features(learners[src], data[t]["train"])
                    logits[s][src][t] = learners[src].logits(feats=f, text=text_src).double().cpu().numpy()
                    ft = frozen[t]["train"] if frozen_images else features(learners[t], data[t]["train"])
                    target_logits[s][src][t] = learners[t].logits(feats=ft).double().cpu().numpy()
                mid = time.perf_counter()
                for t in tasks:
                    f = frozen[t]["val"] if frozen_images else features(learners[t], data[t]["val"])
                    scores = learners[t].logits(feats=f).float().cpu().numpy()
                    metric[s][src][t] = compute_metric(task_of[t].metric, scores, data[t]["val_y"])
                end = time.perf_counter()
                seconds["estimators"] += mid - start
                seconds["metric"] += end - mid
    return PromptViews(method, list(tasks), seeds, logits, labels, metric, seconds, target_logits)


def _options_key(options: dict) -> str:
    return json.dumps(options, sort_keys=True)


def prompt_matrix(name: str, views: PromptViews) -> tuple[pd.DataFrame, float]:
    """The source x target matrix of the ``prompt`` predictor ``name`` from one method's
    :class:`PromptViews`, averaged over seeds, and its seconds (its share of the forward passes plus
    the estimator's own time)."""
    pred = vocabulary.predictor(name)
    if pred.family != "prompt":
        raise MvlptError(f"predictor {name} is not computed from trained prompts; use `mvlpt predict compute`.")
    tasks, n = views.tasks, len(views.tasks)
    start = time.perf_counter()
    out = np.zeros((n, n))
    for i, src in enumerate(tasks):
        for j, t in enumerate(tasks):
            if pred.reads == "target_metric":
                values = [views.metric[s][src][t] for s in views.seeds]
            elif pred.reads == "target_logits":  # T's classes under S's prompt: one size for every source
                if not views.target_logits:
                    raise MvlptError(f"predictor {name} reads the target-class logits, which these prompt views lack.")
                fn = pred.estimator()
                values = [fn(views.target_logits[s][src][t], views.labels[s][t]) for s in views.seeds]
            else:
                fn = pred.estimator()
                values = [fn(source_view(views.logits[s][src][t], pred.reads), views.labels[s][t]) for s in views.seeds]
            out[i, j] = float(np.mean(values))
    seconds = time.perf_counter() - start + views.seconds["metric" if pred.reads == "target_metric" else "estimators"]
    m = pd.DataFrame(out, index=pd.Index(tasks, name="source"), columns=pd.Index(tasks, name="target"))
    return m, seconds
