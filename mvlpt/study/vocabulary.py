"""The study's vocabulary: one place that names what the package, the workflow, the analysis, the
plots and the benchmark speak about.

* **Methods** (:data:`METHODS`): the prompt methods, their learner class and the properties the
  workflow, the training loop, the cost model and the preflight decide on (does the image side learn?
  then image features cannot be cached; does the class text depend on the image? then it is computed
  per image, not once per pass; which calibrated method prices it). Nothing outside this module and
  the learners tests a method by its name. Adding a method = its module under
  ``mvlpt/models/prompts/`` + one line here (``tests/models/test_method_contract.py`` registers one from a
  test module and runs it through training, the cost model and the preflight).
* **Measures** (:data:`MEASURES`): task-similarity measures (and, later, transferability
  predictors): name, what they are computed from, the function that computes them, whether they
  are distances, their options. Adding a measure = its function + one line here.
* **Result record schema** (:data:`RESULT_FORMAT`, :data:`RESULT_FIELDS`, :func:`check_record`):
  one JSON per run and target; where it lies is :mod:`mvlpt.study.layout`'s.
* **Settings** of the analysis, task similarity, predictors and the multitask study
  (:func:`analysis_settings`, ...): a config section over its defaults, which only the config schema
  states (:mod:`mvlpt.study.settings`).

This module imports neither torch nor numpy: ``workflow/rules/common.smk`` imports it on every
Snakemake start (and on every cluster job).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from mvlpt.errors import MvlptError
from mvlpt.study import names, settings
from mvlpt.study.layout import parse_result_path


def _load(ref: str) -> Any:
    """``"package.module:attribute"`` -> the attribute (imported on first use)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


# --------------------------------------------------------------------------------------------------
# Prompt methods
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Method:
    """A prompt method: what learns, and where its learner lives."""

    name: str
    learner: str  # "module:Class" of its PromptLearner subclass (imported on use: it needs torch)
    learns_text: bool
    learns_image: bool
    label: str  # for figures and tables
    option_aliases: tuple[tuple[str, str], ...] = ()  # deprecated option names still accepted: (old, current)
    # its learner is told which task each class belongs to (``tasks=[(name, n_classes), ...]``): SoftCPT
    task_conditioned: bool = False
    # the single-task baseline its multitask results are compared with (None: its own)
    baseline: str | None = None
    # trained on several tasks at once only (a multitask study method, not one of the pairwise study)
    multitask_only: bool = False
    # its class text depends on each image (CoCoOp): the learner's ``current_prompts(image_features)``
    # gives one text context per image, and the class features are computed per image, never once per pass
    image_conditioned: bool = False
    # the calibrated method whose cost coefficients price it when a calibration has none of its own
    # (mvlpt.running.cost: scaled by what it sends through the towers, and the estimate says so); None: refused
    priced_as: str | None = None

    @property
    def caches_image_features(self) -> bool:
        """The frozen image tower's output does not depend on the prompts: compute it once per task."""
        return not self.learns_image

    def learner_class(self) -> type:
        return _load(self.learner)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("coop", "mvlpt.models.prompts.coop:CoOp", learns_text=True, learns_image=False, label="CoOp"),
        Method(
            "vpt",
            "mvlpt.models.prompts.vpt:VPT",
            learns_text=False,
            learns_image=True,
            label="VPT",
            option_aliases=(("n_tokens", "n_ctx"),),
        ),
        Method("upt", "mvlpt.models.prompts.upt:UPT", learns_text=True, learns_image=True, label="UPT"),
        # SoftCPT (Ding et al.): a task-shared meta network turns each task's description (through the
        # frozen text encoder, after a learned task context) into that task's text context; trained on
        # the union of the configured tasks, compared with CoOp's single-task baseline as in its paper
        Method(
            "softcpt",
            "mvlpt.models.prompts.softcpt:SoftCPT",
            learns_text=True,
            learns_image=False,
            label="SoftCPT",
            task_conditioned=True,
            baseline="coop",
            multitask_only=True,
            priced_as="coop",
        ),
        # CoCoOp (Zhou et al., CVPR 2022): a meta network shifts the shared context per image (docs/cocoop.md); opt-in
        Method(
            "cocoop",
            "mvlpt.models.prompts.cocoop:CoCoOp",
            learns_text=True,
            learns_image=False,
            label="CoCoOp",
            image_conditioned=True,
            priced_as="coop",
        ),
    )
}
PAIRWISE_METHODS = tuple(m for m in METHODS.values() if not m.multitask_only)


def register_method(entry: Method) -> Method:
    """Add ``entry`` to :data:`METHODS` (a plug-in, or a test's throwaway method; the study's own methods
    are the lines above). One sentence if its name is taken or not a valid name."""
    problem = names.name_problem(entry.name)
    if problem:
        raise MvlptError(f"method name {entry.name!r} {problem}.")
    if entry.name in METHODS:
        raise MvlptError(f"a method named {entry.name!r} is registered already; choose another name.")
    METHODS[entry.name] = entry
    global PAIRWISE_METHODS
    PAIRWISE_METHODS = tuple(m for m in METHODS.values() if not m.multitask_only)
    return entry


def unregister_method(name: str) -> None:
    """Remove a method :func:`register_method` added."""
    METHODS.pop(name, None)
    global PAIRWISE_METHODS
    PAIRWISE_METHODS = tuple(m for m in METHODS.values() if not m.multitask_only)


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise MvlptError(f"unknown prompt method {name!r}; known methods are: {', '.join(METHODS)}.") from None


def canonical_options(name: str, options: dict | None) -> tuple[dict, list[tuple[str, str]]]:
    """``options`` of method ``name`` with deprecated names replaced by the current ones, and the
    (old, current) names that were replaced. Giving both names with different values is an error."""
    options, renamed = dict(options or {}), []
    for old, new in method(name).option_aliases:
        if old not in options:
            continue
        if new in options and options[new] != options[old]:
            raise MvlptError(f"method {name!r} got both {new!r} and its old name {old!r}; give {new!r} only.")
        options = {new if k == old else k: v for k, v in options.items() if k != new}  # same place, new name
        renamed.append((old, new))
    return options, renamed


def full_options(name: str, options: dict | None = None) -> dict:
    """Every option method ``name``'s learner takes: ``options`` (canonical names) over the learner's
    own defaults (its constructor's), so nothing states those defaults a second time."""
    import inspect

    params = inspect.signature(method(name).learner_class().__init__).parameters
    defaults = {
        k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty and k not in ("generator", "tasks")
    }
    return {**defaults, **canonical_options(name, options)[0]}


def method_order(names: Iterable[str]) -> list[str]:
    """Known methods in registry order, then any others sorted."""
    names = list(dict.fromkeys(names))
    return [m for m in METHODS if m in names] + sorted(m for m in names if m not in METHODS)


# --------------------------------------------------------------------------------------------------
# Task similarity measures (and transferability predictors)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Measure:
    """A task x task measure.

    ``kind``: what it is computed from, ``"images"`` or ``"labels"`` (the frozen CLIP's embeddings of
    a task's images or class names; the workflow feeds the rule the matching embedding files).
    ``function``: ``"module:function"`` taking the tasks' :class:`~mvlpt.analysis.similarity.Embeddings` (in
    order) and the measure's options, returning the N x N matrix as a numpy array.
    ``distance``: lower means more similar (correlations and plots negate / reverse it).
    ``options``: the option names the function takes, read from the config's ``similarity`` section.
    """

    name: str
    kind: str
    function: str
    distance: bool
    label: str
    options: tuple[str, ...] = ()

    def compute(self, embeddings: list, **options) -> Any:
        return _load(self.function)(embeddings, **{k: v for k, v in options.items() if k in self.options})

    def oriented(self, value: float) -> float:
        """The value with "larger = more similar" for every measure."""
        return -value if self.distance else value


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "visual_cosine",
            "images",
            "mvlpt.analysis.similarity:mean_cosine_matrix",
            False,
            "visual similarity (cosine of mean image embeddings)",
        ),
        Measure(
            "visual_frechet",
            "images",
            "mvlpt.analysis.similarity:frechet_matrix",
            True,
            "visual Frechet distance (lower = more similar)",
            options=("shrinkage", "ridge"),
        ),
        Measure(
            "label_match",
            "labels",
            "mvlpt.analysis.similarity:label_match_matrix",
            False,
            "label similarity (best class match, symmetrised)",
        ),
        Measure(
            "label_cosine",
            "labels",
            "mvlpt.analysis.similarity:mean_cosine_matrix",
            False,
            "label similarity (cosine of mean class-name embeddings)",
        ),
    )
}
EMBEDDING_KINDS = ("images", "labels")


def measure(name: str) -> Measure:
    try:
        return MEASURES[name]
    except KeyError:
        raise MvlptError(f"unknown similarity measure {name!r}; choose one of {', '.join(MEASURES)}.") from None


def measure_order(names: Iterable[str]) -> list[str]:
    """Known measures in registry order, then any others sorted."""
    names = list(dict.fromkeys(names))
    return [m for m in MEASURES if m in names] + sorted(m for m in names if m not in MEASURES)


def is_distance(name: str) -> bool:
    return name in MEASURES and MEASURES[name].distance


# --------------------------------------------------------------------------------------------------
# Transferability predictors (docs/predictors.md)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Predictor:
    """A predictor of the gain of a (source, target) pair, from the frozen model alone (no training).

    ``family``: ``"zeroshot"``: the source's zero-shot CLIP classifier (its class-name embeddings)
    applied to the target's labelled few-shot train images (:mod:`mvlpt.transfer.predictors`); ``"similarity"``:
    a task-similarity measure of :data:`MEASURES`, oriented so that larger = more similar; ``"prompt"``:
    the source's *trained* prompt of one method (the baseline run's prompt file) on the target's few-shot
    images, so one matrix per method (:attr:`per_method`).
    ``function``: ``"module:function"``; for ``zeroshot`` an estimator ``f(view, target_labels) -> float``
    (larger = better transfer) of :mod:`mvlpt.transfer.transferability`; for ``similarity`` the measure's own.
    ``reads``: for ``zeroshot`` and ``prompt`` the view of the source classifier the estimator takes (one of
    :data:`PREDICTOR_VIEWS`; ``target_metric``: the target's own metric with the source's prompt and the
    target's class names); for ``similarity`` the measure's embedding kind.
    Adding a predictor = its function + one line in :data:`PREDICTORS`.
    """

    name: str
    family: str
    function: str
    reads: str
    label: str
    reference: str

    def estimator(self) -> Callable:
        return _load(self.function)

    @property
    def embedding_kinds(self) -> tuple[str, ...]:
        """The per-task embedding files (``{task}.{kind}.npz``) it is computed from."""
        if self.family == "prompt":
            return ()  # read from the study's prompt and split files, not from embeddings
        return ("fewshot", "labels") if self.family == "zeroshot" else (self.reads,)

    @property
    def per_method(self) -> bool:
        """Its matrix depends on the prompt method (it reads the method's trained prompts)."""
        return self.family == "prompt"


PREDICTOR_FAMILIES = ("zeroshot", "prompt", "similarity")
# (name, function of mvlpt.transfer.transferability, view, label, reference) of the estimators where their assumptions hold
_FIXED_ESTIMATORS = (
    ("leep_xfit", "leep_crossfit", "probabilities", "LEEP (cross-fitted)", "Nguyen et al., LEEP, ICML 2020; cross-fitted here"),
    (
        "nce_xfit",
        "nce_crossfit",
        "predictions",
        "NCE (predicted source labels, cross-fitted)",
        "Tran et al., ICCV 2019, the LEEP paper's predicted-label variant; cross-fitted here",
    ),
    ("logme_eep", "logme_eep", "probabilities", "LogME (target-class EEP features)", "You et al., LogME, ICML 2021"),
    ("h_score_eep", "h_score_eep", "probabilities", "H-score (target-class EEP features)", "Bao et al., ICIP 2019"),
    ("gbc_eep", "gbc_eep", "probabilities", "GBC (target-class EEP features, diagonal)", "Pandy et al., CVPR 2022"),
    (
        "gbc_spherical",
        "gbc_spherical_eep",
        "probabilities",
        "GBC (authors' setting: PCA 64, spherical; EEP features)",
        "Pandy et al., CVPR 2022, their code's setting",
    ),
)
# what the source's zero-shot classifier gives an estimator, per target image: its class probabilities
# (softmax of the logits), its predicted class (argmax), or its logits as features (the source's view);
# target_metric: the prompt-specific predictor, the target's metric with the source's trained prompt;
# target_logits: the logits over the target's classes of the target's learner holding the source's prompt
PREDICTOR_VIEWS = ("probabilities", "predictions", "logits", "target_metric", "target_logits")
PREDICTORS: dict[str, Predictor] = {
    p.name: p
    for p in (
        Predictor(
            "leep",
            "zeroshot",
            "mvlpt.transfer.transferability:leep",
            "probabilities",
            "LEEP (in-sample)",
            "Nguyen et al., LEEP, ICML 2020",
        ),
        Predictor(
            "nce",
            "zeroshot",
            "mvlpt.transfer.transferability:nce",
            "predictions",
            "NCE (predicted source labels, in-sample)",
            "Tran et al., Transferability and Hardness of Supervised Classification Tasks, ICCV 2019",
        ),
        Predictor(
            "logme",
            "zeroshot",
            "mvlpt.transfer.transferability:logme",
            "logits",
            "LogME (source-class logits)",
            "You et al., LogME, ICML 2021",
        ),
        Predictor(
            "h_score",
            "zeroshot",
            "mvlpt.transfer.transferability:h_score",
            "logits",
            "H-score (source-class logits)",
            "Bao et al., An Information-Theoretic Approach to Transferability, ICIP 2019",
        ),
        Predictor(
            "gbc",
            "zeroshot",
            "mvlpt.transfer.transferability:gbc",
            "logits",
            "GBC (source-class logits, diagonal)",
            "Pandy et al., Transferability Estimation using Bhattacharyya Class Separability, CVPR 2022",
        ),
        # the same estimators with the source's trained prompt (per method) in place of its zero-shot classifier
        *(
            Predictor(
                f"{name}_prompt", "prompt", f"mvlpt.transfer.transferability:{name}", reads, f"{label} (trained prompt)", ref
            )
            for name, reads, label, ref in (
                ("leep", "probabilities", "LEEP (in-sample)", "Nguyen et al., LEEP, ICML 2020"),
                (
                    "nce",
                    "predictions",
                    "NCE (predicted source labels, in-sample)",
                    "Tran et al., Transferability and Hardness of Supervised Classification Tasks, ICCV 2019",
                ),
                ("logme", "logits", "LogME (source-class logits)", "You et al., LogME, ICML 2021"),
                (
                    "h_score",
                    "logits",
                    "H-score (source-class logits)",
                    "Bao et al., An Information-Theoretic Approach to Transferability, ICIP 2019",
                ),
                (
                    "gbc",
                    "logits",
                    "GBC (source-class logits, diagonal)",
                    "Pandy et al., Transferability Estimation using Bhattacharyya Class Separability, CVPR 2022",
                ),
            )
        ),
        # the estimators where their assumptions hold (issue #22, docs/predictors.md): LEEP and NCE cross-fitted
        # on class-stratified halves, LogME / H-score / GBC on features of one size for every source (the
        # cross-fitted EEP probabilities over the target's classes), GBC also in its authors' setting
        *(
            Predictor(f"{name}{suffix}", family, f"mvlpt.transfer.transferability:{fn}", reads, label + tail, ref)
            for family, suffix, tail in (("zeroshot", "", ""), ("prompt", "_prompt", " (trained prompt)"))
            for name, fn, reads, label, ref in _FIXED_ESTIMATORS
        ),
        # the feature estimators on the target-class logits under the source's trained prompt (T's learner
        # holding S's prompt): |C_T| dimensions for every source, no cross-fitting needed (no label is read)
        *(
            Predictor(
                f"{name}_tlogits_prompt",
                "prompt",
                f"mvlpt.transfer.transferability:{fn}",
                "target_logits",
                f"{label} (target-class logits, trained prompt)",
                ref,
            )
            for name, fn, label, ref in (
                ("logme", "logme", "LogME", "You et al., LogME, ICML 2021"),
                ("h_score", "h_score", "H-score", "Bao et al., ICIP 2019"),
                ("gbc", "gbc", "GBC (diagonal)", "Pandy et al., CVPR 2022"),
                (
                    "gbc_spherical",
                    "gbc_spherical",
                    "GBC (authors' setting: PCA 64, spherical)",
                    "Pandy et al., CVPR 2022, their code's setting",
                ),
            )
        ),
        Predictor(
            "prompt_accuracy",
            "prompt",
            "mvlpt.training.metrics:compute_metric",
            "target_metric",
            "target metric with the source prompt",
            "prompt-specific: the source's prompt on the target, untrained",
        ),
        *(
            Predictor(m.name, "similarity", m.function, m.kind, m.label, "task similarity (mvlpt.analysis.similarity)")
            for m in MEASURES.values()
        ),
    )
}


def predictor(name: str) -> Predictor:
    try:
        return PREDICTORS[name]
    except KeyError:
        raise MvlptError(f"unknown transferability predictor {name!r}; choose one of {', '.join(PREDICTORS)}.") from None


def predictor_settings(cfg: dict | None) -> dict:
    """The config's ``predictors`` section over the defaults, with ``names`` resolved and checked."""
    out = {**settings.PREDICTOR_DEFAULTS, **(cfg or {})}  # names None: every predictor of PREDICTORS
    names = list(PREDICTORS) if out["names"] is None else list(dict.fromkeys(out["names"]))
    for n in names:
        predictor(n)
    out["names"] = names
    return out


# --------------------------------------------------------------------------------------------------
# Multitask study: source groups, grouping strategies, result layout (docs/multitask.md)
# --------------------------------------------------------------------------------------------------
# init:  the paper's (i): one prompt trained on the union of a source group (best mean validation
#        metric over the group) initialises the target's prompt, which is then fine-tuned on the target;
# joint: the paper's (ii): the target trained together with its group, best checkpoint per task, so
#        one run serves every member of the group.
MULTITASK_MODES = ("init", "joint")
# how a target's source group is chosen: every other task; the top-k sources by measured pairwise gain
# (of the same method); by a similarity measure; by a transferability predictor; k random sources
GROUPING_STRATEGIES = ("all", "gain", "similarity", "predictor", "random", "fixed")


def multitask_settings(cfg: dict | None, study_methods: Iterable[str] = ()) -> dict:
    """The config's ``multitask`` section over the defaults (``methods`` None: the study's methods, and
    SoftCPT when CoOp, the baseline it is compared with, is among them)."""
    out = {**settings.MULTITASK_DEFAULTS, **(cfg or {})}
    if out["methods"] is None:
        study_methods = list(study_methods)
        softcpt = [m for m, entry in METHODS.items() if entry.multitask_only and entry.baseline in study_methods]
        out["methods"] = [*study_methods, *softcpt]
    return out


def multitask_runs(method: str, settings: dict) -> list[tuple[str, str]]:
    """The (mode, strategy) combinations of ``method`` in the multitask study: SoftCPT trains once,
    multitask over all the configured tasks (mode joint, strategy all); the other methods every
    configured mode x strategy."""
    if METHODS[method].multitask_only:
        return [("joint", "all")]
    return [(mode, strategy) for mode in settings["modes"] for strategy in settings["strategies"]]


def multitask_job_counts(n_tasks: int, settings: dict, seeds: int = 1, stack_seeds: bool = True) -> dict:
    """Training jobs the multitask study adds, per kind, before its groups are known: exact for the
    strategy ``all`` and SoftCPT, an upper bound otherwise (targets whose groups coincide share a
    job). Kinds: ``source`` (a group's source prompt, mode init), ``target`` (a target fine-tuned from
    it), ``joint`` (a group trained together; always one process for all seeds)."""
    copies = 1 if stack_seeds else seeds
    k = min(int(settings["k"]), max(n_tasks - 1, 0))
    counts = {"source": 0, "target": 0, "joint": 0}
    fixed = settings.get("sources") or []  # strategy fixed: one source group; the other tasks are the targets
    n_targets = n_tasks - len(fixed)
    for method in settings["methods"]:
        for mode, strategy in multitask_runs(method, settings):
            if strategy == "fixed":
                if mode == "init":
                    counts["source"] += copies
                    counts["target"] += n_targets * copies
                else:
                    counts["joint"] += n_targets  # each target with the sources
            elif mode == "init":
                counts["source"] += n_tasks * copies  # one group per target (leave-one-out, or its k sources)
                counts["target"] += n_tasks * copies
            elif strategy == "all" or k >= n_tasks - 1:
                counts["joint"] += 1  # every target's group is all tasks: one run
            else:
                counts["joint"] += n_tasks
    counts["total"] = sum(counts.values())
    # with k >= n - 1 every strategy's group is every other task: the count is exact then too
    counts["exact"] = all(
        s in ("all", "fixed") or k >= n_tasks - 1 for m in settings["methods"] for _, s in multitask_runs(m, settings)
    )
    return counts


def multitask_plan_message(n_tasks: int, settings: dict, seeds: int = 1, stack_seeds: bool = True) -> str:
    """How many training jobs the multitask study adds (:func:`multitask_job_counts`), in one line: what
    `snakemake multitask` says first, since Snakemake's own job table lists them only once its groups exist."""
    c = multitask_job_counts(n_tasks, settings, seeds, stack_seeds)
    bound = "" if c["exact"] else "up to "
    fixed = len(settings.get("sources") or ())
    over = f"{n_tasks - fixed} targets of {fixed} fixed sources" if fixed else f"{n_tasks} tasks"
    return (
        f"multitask study: {bound}{c['total']} training jobs ({c['source']} group source prompts, {c['target']} targets "
        f"fine-tuned from them, {c['joint']} joint group runs) for {', '.join(settings['methods'])} x {over}"
        + ("" if c["exact"] else "; the groups are chosen from the pairwise tables, which the DAG shows once they exist")
        + "; GPU-hours: mvlpt preflight."
    )


def group_id(tasks: Iterable[str]) -> str:
    """A short, stable name of a set of tasks (order does not matter): ``g`` + 10 hex digits."""
    import hashlib

    names = sorted(set(tasks))
    return "g" + hashlib.sha256("+".join(names).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------------------------
# Analysis and similarity settings (defaults: the config schema's, mvlpt.study.settings)
# --------------------------------------------------------------------------------------------------
SHRINKAGES = ("ledoit_wolf", "ridge", "none")


def analysis_settings(cfg: dict | None) -> dict:
    """The config's ``analysis`` section over the defaults."""
    return {**settings.ANALYSIS_DEFAULTS, **(cfg or {})}


def similarity_settings(cfg: dict | None) -> dict:
    """The config's ``similarity`` section over the defaults (None: the study's seeds, shots, device)."""
    return {**settings.SIMILARITY_DEFAULTS, **(cfg or {})}


# --------------------------------------------------------------------------------------------------
# Tables of the analysis
# --------------------------------------------------------------------------------------------------
MATRIX_STATS = ("mean", "std", "gain", "gain_rel", "gain_ci_low", "gain_ci_high", "gain_q", "interaction", "interaction_q")
TABLE_NAMES = ("runs", "pairs", "best_source", "source_gain", "target_gain", "gain_summary", "decomposition", "selection")
REFERENCE_TABLE_NAMES = ("reference", "baselines")  # mvlpt.analysis.reference: written by `mvlpt collect` too


# --------------------------------------------------------------------------------------------------
# Result files: record schema (their places: mvlpt.study.layout)
# --------------------------------------------------------------------------------------------------
RESULT_FORMAT = 1


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    check: Callable[[Any], bool]
    what: str  # what a valid value is, for the error sentence
    required: bool = True


def _metric_value(v) -> bool:
    return _is_num(v) and math.isfinite(v) and 0.0 <= v <= 1.0


def _name(v) -> bool:
    return isinstance(v, str) and bool(v)


def _opt_str(v) -> bool:
    return v is None or isinstance(v, str)


RESULT_FIELDS: tuple[Field, ...] = (
    Field("format", lambda v: v == RESULT_FORMAT, f"{RESULT_FORMAT}"),
    Field("method", lambda v: names.name_problem(v) is None, "a method name (mvlpt.study.names)"),
    Field("source", lambda v: names.name_problem(v, names.JOINED_MAX) is None, "a task name (mvlpt.study.names)"),
    Field("target", lambda v: names.name_problem(v) is None, "a task name (mvlpt.study.names)"),
    Field("mode", lambda v: v in ("single", "joint", "sequential", "zero_epoch"), "single, joint, sequential or zero_epoch"),
    Field("seed", names.seed_ok, f"an integer from 0 to {names.SEED_LIMIT - 1}"),
    Field("shots", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    Field("metric", _name, "a metric name"),
    Field("test", _metric_value, "a finite fraction in [0, 1] (not a percentage)"),
    Field("val", _metric_value, "a finite fraction in [0, 1] (not a percentage)"),
    Field("best_epoch", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    Field("epochs", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    Field("wall_time_s", lambda v: _is_num(v) and v >= 0, "a number of seconds"),
    Field("device", _name, "a device name"),
    Field("model", _name, "a model name"),
    Field("pretrained", _opt_str, "a weights tag, file or null"),
    Field("mvlpt_version", _name, "a version string"),
    Field("config_hash", _name, "a hash string"),
    Field("setting_hash", _name, "a hash string", required=False),  # mvlpt.training.config.RunSpec.setting_hash
    Field("n_train", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    Field("n_val", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    Field("n_test", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    # the test metric on bootstrap resamples of the test set, the same resamples for every run of a target
    # (mvlpt.training.metrics.bootstrap_record): the test set's sampling error of a gain, paired
    Field(
        "test_bootstrap",
        lambda v: (
            isinstance(v, dict)
            and _is_int(v.get("n"))
            and isinstance(v.get("values"), list)
            and len(v["values"]) == v["n"]
            and all(x is None or _is_num(x) for x in v["values"])
            and _name(v.get("test_set"))
        ),
        "an object with n, test_set and n values",
        required=False,
    ),
    Field("seeds_in_process", lambda v: _is_int(v) and v >= 1, "an integer >= 1", required=False),
    Field("method_options", lambda v: isinstance(v, dict), "an object", required=False),
    Field("peak_gpu_memory_mb", _is_num, "a number", required=False),
    # train option compile (not "none"): torch.compile's mode, the graphs dynamo compiled and the seconds
    # it spent (tracing, forward and backward compilation; included in wall_time_s), and how many of the
    # generated forward/backward graphs came from inductor's on-disk cache (cache_hits) or were generated
    Field(
        "compile",
        lambda v: isinstance(v, dict) and _name(v.get("mode")) and _is_num(v.get("compile_s")),
        "an object with the torch.compile mode and compile_s",
        required=False,
    ),
    # classes with fewer than `shots` training images ({"min", "max", "short": {class: images}}), when any
    Field("shots_taken", lambda v: isinstance(v, dict) and "short" in v, "an object with a 'short' entry", required=False),
    # provenance: the few-shot split of every task trained on (task -> mvlpt.io.content_hash of its
    # train/val ids), and for a sequential run the source prompt it started from
    Field(
        "splits",
        lambda v: isinstance(v, dict) and all(_name(k) and _name(h) for k, h in v.items()),
        "an object of task -> split hash",
        required=False,
    ),
    Field(
        "init_prompt",
        lambda v: isinstance(v, dict) and _name(v.get("task")) and _name(v.get("config_hash")),
        "an object with the source prompt's task and config_hash",
        required=False,
    ),
    # train option select: the checkpoint reported (best validation metric, or the last epoch's), and the
    # validation loss of its epoch (mean cross-entropy; multi-label: mean binary cross-entropy), the
    # tie-break of "best" (mvlpt.training.train.better); null when it was not finite
    Field("select", lambda v: v in ("best", "last"), "best or last", required=False),
    # the study's named protocol (mvlpt.study.protocol; absent in older records: corrected, the only one then), and
    # the joint-run points of the reference protocol where a run used them: the one checkpoint best on the mean
    # validation metric of its tasks, and few-shot images sampled anew from the union of its tasks
    Field("protocol", lambda v: v in ("corrected", "reference"), "corrected or reference", required=False),
    Field("joint_checkpoint", lambda v: v == "mean_val", "mean_val", required=False),
    Field("joint_fewshot", lambda v: v == "union", "union", required=False),
    Field(
        "val_loss",
        lambda v: v is None or (_is_num(v) and math.isfinite(v) and v >= 0),
        "a finite number >= 0 or null",
        required=False,
    ),
)
# The fields that define a cell's setting: seeds of one (method, source, target) are averaged only
# when these agree (besides the seed itself).
SETTING_FIELDS = ("mode", "shots", "metric", "epochs", "model", "pretrained", "method_options", "setting_hash")


def record_problem(rec: Any) -> str | None:
    """What is wrong with a result record, as a clause (None: nothing)."""
    if not isinstance(rec, dict) or "format" not in rec:
        return "is not an mvlpt result (no 'format' field)"
    if rec["format"] != RESULT_FORMAT:
        return (
            f"has format {rec['format']!r}, this mvlpt reads format {RESULT_FORMAT} "
            f"(use the mvlpt version that wrote it, or rerun its job)"
        )
    missing = [f.name for f in RESULT_FIELDS if f.required and f.name not in rec]
    if missing:
        return f"lacks the field(s) {', '.join(missing)}"
    for f in RESULT_FIELDS:
        if f.name in rec and not f.check(rec[f.name]):
            return f"has {f.name} = {rec[f.name]!r}, which is not {f.what}"
    if "splits" in rec and rec["target"] not in rec["splits"]:  # the record against itself
        return f"records the few-shot splits of {', '.join(sorted(rec['splits'])) or 'no task'} but not of its target {rec['target']!r}"
    return None


def check_record(rec: Any, path: str | os.PathLike | None = None) -> dict:
    """``rec`` if it is a valid result record (and, given its ``path``, one that sits where it belongs);
    otherwise one sentence: :class:`MvlptError`."""
    where = f"result file {path}" if path is not None else "result record"
    problem = record_problem(rec)
    if problem:
        raise MvlptError(f"{where} {problem}; delete it and rerun its training job.")
    if path is not None:
        placed = parse_result_path(path)
        if placed is not None:
            got = (rec["method"], rec["source"], rec["target"], int(rec["seed"]))
            if placed != got:
                raise MvlptError(
                    f"{where} holds method/source/target/seed {got} but its path says {placed}; "
                    f"move or delete the misplaced file."
                )
    return rec
