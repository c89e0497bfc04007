"""What a study costs: GPU-hours per method from its job list and a calibrated per-step cost model.

The model (the one cost model: ``mvlpt preflight`` prices a study with it, and the speed benchmark,
``benchmarks/transfer/estimate.py``, prices the paper's study with it from its measured components):

* one training step of a run with ``K`` stacked seeds, ``C`` classes (all its tasks), text prompts
  of ``L`` tokens and batch ``B`` costs, per method, ``fixed + t x K*R + i x K*B`` (``t`` only for
  methods that learn the text prompt, ``i`` only for those that learn image prompts: CoOp's image
  features and VPT's class text features are computed once), where ``R`` (:func:`text_rows`) is
  ``C*L`` less what the prompts' shared prefix of ``P`` tokens saves: ``C*(L-P) + P + C*P*2/12``
  (the towers' skipping rows whose outputs are not used, :mod:`mvlpt.models.prompts.blocks`, is in
  the coefficients as measured, not in ``R``: the shipped ones were measured before that change);
* steps per epoch: ``ceil(train images of one seed / B)``; a validation pass every epoch and one
  test pass per target at the end, priced with the forward-only coefficients (images of every
  stacked seed for methods with image prompts; CoOp reads cached features);
* per job: a fixed set-up (process start, imports, model load, few-shot data) and image decoding
  (test images of methods with image prompts), decoding overlapping the GPU work of the test;
* CoOp: one frozen-feature job per task (test split + every seed's few-shot images).
* the budgeted study (:func:`estimate_budget`): the baselines and feature jobs, and the pairs' share;
* the multitask study (:func:`estimate_multitask`): its jobs by kind (group source prompts, targets
  fine-tuned from them, joint group runs), each group priced with stand-in tasks of its size.

What a method learns (text, image prompts), whether it reads cached image features, whether its
class text depends on the image and which calibrated method prices it are its properties in
:data:`mvlpt.study.vocabulary.METHODS` (``learns_text``, ``learns_image``, ``caches_image_features``,
``image_conditioned``, ``task_conditioned``, ``priced_as``); nothing here tests a method by name. A
method the calibration has no figures of is priced with the coefficients of its ``priced_as`` method,
scaled by what it sends through the towers (:func:`pricing_note`: SoftCPT adds its task prompts; an
image-conditioned method such as CoCoOp sends every image's class prompts through the text tower,
batch x classes prompt rows per step, and per evaluated image), and the estimate says so (its
``assumptions``, warning lines of the preflight report); one with neither is refused in one sentence.

The coefficients are a calibration's (:class:`mvlpt.running.calibration.Calibration`: shipped, or measured
on this machine); the prompt lengths and shared prefixes of a study's tasks come from
:mod:`mvlpt.running.prompt_shapes`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from mvlpt.errors import MvlptError
from mvlpt.study import budget, vocabulary

if TYPE_CHECKING:
    from mvlpt.running.calibration import Calibration

# the kinds of a pairwise study's jobs (estimate's ``by_kind``): the single-task baselines, the pairs' runs,
# the frozen-feature jobs
JOB_KINDS = ("baselines", "pairs", "features")

# the text prompts' shared prefix (mvlpt.models.prompts.text) runs once per prompt set, but every class
# still projects its keys and values: 2 of a text block's 12 W^2 matrix products per token (q, k, v,
# out: 4; MLP: 8)
PREFIX_KV_SHARE = 2 / 12


def text_rows(classes: int, length: int, prefix: int = 0, task_tokens: int = 0) -> float:
    """Token rows one prompt set sends through the text tower, in units of a whole token: the classes'
    prompts after their shared ``prefix``, the prefix once plus its keys and values per class, and the
    task prompts of a task-conditioned method. A prefix of one token is not shared (as in training)."""
    prefix = prefix if prefix > 1 else 0
    return classes * (length - prefix) + prefix + classes * prefix * PREFIX_KV_SHARE + task_tokens


def method_priced_as(method: str) -> str | None:
    m = vocabulary.METHODS.get(method)
    return m.priced_as if m is not None else None


def method_image_conditioned(method: str) -> bool:
    m = vocabulary.METHODS.get(method)
    return m is not None and m.image_conditioned


def method_task_conditioned(method: str) -> bool:
    m = vocabulary.METHODS.get(method)
    return m is not None and m.task_conditioned


def method_learns(method: str) -> tuple[bool, bool]:
    """(learns the text prompt, learns image prompts) by the study's vocabulary; a method it does not
    know (a calibration of a method added later) is priced with both terms."""
    m = vocabulary.METHODS.get(method)
    return (True, True) if m is None else (m.learns_text, m.learns_image)


def pricing_note(method: str, cal: Calibration) -> str | None:
    """What the estimate assumes of a method ``cal`` has no figures of (None: it has its own): the
    coefficients it borrows and how its passes are scaled from them."""
    base = cal.borrows(method)
    if base is None:
        return None
    extra = []
    if method_task_conditioned(method):
        extra.append(
            "plus its task-prompt pass (every task's prompt through the text tower at the same per-token rate, "
            "each step and each evaluation; the meta network not counted)"
        )
    if method_image_conditioned(method):
        extra.append(
            "and its text tower pass scaled by FLOPs to one set of class prompts per image (batch x classes "
            "prompts per step, classes prompts per evaluated image; the meta network not counted)"
        )
    return f"{method}: the calibration has no figures of its own: priced with {base}'s coefficients" + (
        " " + "; ".join(extra) if extra else ""
    )


@dataclasses.dataclass(frozen=True)
class TaskCost:
    """What the model needs to know of one task."""

    name: str
    classes: int
    train_per_seed: int  # few-shot train images of one seed
    val_per_seed: int
    test: int
    length: dict  # method -> text prompt length (tokens) of this task's classes
    task_prompt: int = 0  # tokens of its SoftCPT task prompt ([SOS] task ctx <task text> . [EOS]), 0: not known
    prefix: dict = dataclasses.field(default_factory=dict)  # method -> leading tokens all its classes' prompts share


@dataclasses.dataclass(frozen=True)
class StudyShape:
    tasks: tuple  # TaskCost, config order
    methods: tuple
    seeds: int
    mode: str  # joint | sequential | zero_epoch
    stack_seeds: bool
    epochs: int
    batch_size: int
    batch_size_multitask: int
    eval_batch_size: int
    shots: int


def _job(
    cal: Calibration, method: str, run: list[TaskCost], targets: list[TaskCost], batch: int, k: int, epochs: int, eval_bs: int
) -> dict:
    C = sum(t.classes for t in run)
    L = max(t.length.get(method, 0) for t in run)
    P = min(t.prefix.get(method, 0) for t in run)  # the run's classes share at most what each task's share
    # a task-conditioned method (SoftCPT) also sends every task's prompt through the text tower
    T = sum(t.task_prompt for t in run) if method_task_conditioned(method) else 0
    per_image = method_image_conditioned(method)  # class prompts per image (CoCoOp): text rows scale with the images
    n_train = sum(t.train_per_seed for t in run)
    steps = math.ceil(n_train / batch) if n_train else 0
    train = epochs * steps * cal.step_s(method, seeds=k, classes=C, length=L, batch=batch, prefix=P, task_tokens=T)
    img_eval = method_learns(method)[1]
    val_imgs = sum(t.val_per_seed for t in run)
    val_batches = sum(math.ceil(t.val_per_seed / eval_bs) for t in run)
    fwd = cal.coefficients(method)["forward"]
    per_val = (
        cal.forward_s(
            method, text_tokens=k * text_rows(C, L, P, T) * (val_imgs if per_image else 1), images=k * val_imgs if img_eval else 0
        )
        + val_batches * fwd["fixed_ms"] / 1e3
    )
    validation = epochs * per_val
    test = decode = 0.0
    for t in targets:
        test += (
            cal.forward_s(
                method, text_tokens=k * text_rows(C, L, P, T) * (t.test if per_image else 1), images=k * t.test if img_eval else 0
            )
            + math.ceil(t.test / eval_bs) * fwd["fixed_ms"] / 1e3
        )
        if img_eval:
            decode += t.test / cal.decode_images_per_s
    few = k * sum(t.train_per_seed + t.val_per_seed for t in run)
    setup = cal.job_setup_s + (few / cal.decode_images_per_s if img_eval else 0.0)
    test = max(test, decode)  # decoding workers feed the GPU while it evaluates
    return {"train": train, "validation": validation, "test": test, "setup": setup}


def estimate(shape: StudyShape, cal: Calibration, *, pairs: bool = True, baselines=None) -> dict:
    """GPU-hours per method and in total, with the job counts and a breakdown (hours). ``pairs`` False: the
    single-task baselines (and frozen features) only, no (source, target) pair (the Table 1 study's part);
    ``baselines``: the tasks whose baseline is trained (None: every one)."""
    tasks = list(shape.tasks)
    K = shape.seeds if shape.stack_seeds else 1
    copies = 1 if shape.stack_seeds else shape.seeds  # jobs per (method, run) when seeds are not stacked
    out = {
        "gpu": cal.device,
        "model": cal.model,
        "precision": cal.precision,
        "calibration": cal.origin,
        "per_method": {},
        "gpu_hours": 0.0,
        "jobs": 0,
        "assumptions": [],
    }
    features_priced = False  # the frozen image features are computed once per task for every method reading them
    for method in shape.methods:
        acc = {"train": 0.0, "validation": 0.0, "test": 0.0, "setup": 0.0, "features": 0.0}
        jobs = 0
        kinds = {k: {"gpu_hours": 0.0, "jobs": 0} for k in JOB_KINDS}  # the same sums, by kind of job

        def add(parts, n=1, kind="pairs", acc=acc, kinds=kinds):  # this method's sums (bound now: the loop rebinds them)
            for key, v in parts.items():
                acc[key] += n * v
            kinds[kind]["gpu_hours"] += n * sum(parts.values()) / 3600
            kinds[kind]["jobs"] += n

        for i, a in enumerate(tasks):
            if baselines is None or a.name in baselines:
                add(_job(cal, method, [a], [a], shape.batch_size, K, shape.epochs, shape.eval_batch_size), copies, "baselines")
                jobs += copies
            if shape.mode == "zero_epoch":
                continue  # priced below: nothing trains
            others = [] if not pairs else tasks[i + 1 :] if shape.mode == "joint" else [b for b in tasks if b is not a]
            for b in others:
                if shape.mode == "joint":
                    add(
                        _job(cal, method, [a, b], [a, b], shape.batch_size_multitask, K, shape.epochs, shape.eval_batch_size),
                        copies,
                    )
                else:  # sequential: a source prompt (the baseline's) fine-tuned on target b
                    add(_job(cal, method, [b], [b], shape.batch_size, K, shape.epochs, shape.eval_batch_size), copies)
                jobs += copies
        if shape.mode == "zero_epoch" and pairs and len(tasks) > 1:  # one job per method (seed copy) evaluates every cell
            for b in tasks:  # each of b's n-1 cells: one validation and one test pass of b with a source's prompt
                cell = _job(cal, method, [b], [b], shape.batch_size, K, 1, shape.eval_batch_size)
                add({"validation": cell["validation"], "test": cell["test"]}, (len(tasks) - 1) * copies)
            add({"setup": cal.job_setup_s}, copies)
            jobs += copies
        if vocabulary.METHODS.get(method) and vocabulary.METHODS[method].caches_image_features and not features_priced:
            features_priced = True  # one frozen-feature job per task: test split + every seed's few-shot images
            for t in tasks:
                n = t.test + shape.seeds * (t.train_per_seed + t.val_per_seed)
                gpu = n * cal.features_ms_per_image / 1e3
                add({"features": cal.job_setup_s + max(gpu, n / cal.decode_images_per_s)}, 1, "features")
            jobs += len(tasks)
        hours = {k: v / 3600 for k, v in acc.items()}
        total = sum(hours.values())
        out["per_method"][method] = {"gpu_hours": total, "jobs": jobs, "breakdown_h": hours, "by_kind": kinds}
        out["gpu_hours"] += total
        out["jobs"] += jobs
        note = pricing_note(method, cal)
        if note:
            out["assumptions"].append(note)
    return out


def estimate_budget(est: dict, plan: budget.BudgetPlan) -> dict:
    """GPU-hours and training jobs of the budgeted study (``plan``: :func:`mvlpt.study.budget.plan`) from the
    full study's estimate ``est`` (:func:`estimate`): per method its baselines and frozen-feature jobs as in
    the full study, and its pairs' part scaled by the share of pairs the budget trains. Which pairs the rounds
    choose is known only as they run, so the pairs are priced at their mean cost. The rounds' choices are
    local CPU jobs of seconds (one per method and round), not priced."""
    share = plan.pairs / plan.total if plan.total else 0.0
    out = {
        "pairs": plan.pairs,
        "total_pairs": plan.total,
        "unit": plan.unit(),
        "share": share,
        "rounds": plan.rounds,
        "sizes": list(plan.sizes),
        "rule": plan.rule,
        "per_method": {},
        "gpu_hours": 0.0,
        "jobs": 0,
        "full_gpu_hours": est["gpu_hours"],
        "full_jobs": est["jobs"],
    }
    for method, v in est["per_method"].items():
        kinds = v["by_kind"]
        pair_jobs = round(kinds["pairs"]["jobs"] * share)  # copies x pairs: whole jobs
        hours = kinds["baselines"]["gpu_hours"] + kinds["features"]["gpu_hours"] + kinds["pairs"]["gpu_hours"] * share
        jobs = kinds["baselines"]["jobs"] + kinds["features"]["jobs"] + pair_jobs
        out["per_method"][method] = {"gpu_hours": hours, "jobs": jobs, "pair_jobs": pair_jobs}
        out["gpu_hours"] += hours
        out["jobs"] += jobs
    return out


MULTITASK_KINDS = ("source", "target", "joint")


def stand_in_sources(tasks: list, i: int, size: int) -> list:
    """The stand-in source group of target ``tasks[i]`` with ``size`` sources: the next ``size`` tasks
    after it in config order, cyclically (``size`` = all others: every other task)."""
    n = len(tasks)
    return [tasks[(i + j) % n] for j in range(1, min(size, n - 1) + 1)]


def estimate_multitask(shape: StudyShape, settings: dict, cal: Calibration) -> dict:
    """GPU-hours and training jobs the multitask study adds (``settings``: :func:`mvlpt.study.vocabulary.multitask_settings`),
    per method and kind, and in total.

    Kinds (:func:`mvlpt.study.vocabulary.multitask_job_counts` counts the same jobs): ``source``, a group's prompt
    trained on the union of its sources (mode init; priced as a run that saves its prompt, no test
    pass); ``target``, the target fine-tuned from it (a single-task run); ``joint``, the target trained
    with its group, one process for all seeds (stacked) with a test pass per member. SoftCPT trains
    once, joint over all the tasks. The epochs and batch sizes are the config's ``train`` section's
    (``batch_size_multitask`` for a run of several tasks, as the trainer chooses). No feature jobs:
    CoOp's cached image features are the pairwise study's (SoftCPT reads them too).

    The groups of the strategies other than ``all`` are chosen from the pairwise results (``random``:
    drawn by seed), so they are unknown here: each group is priced with stand-in tasks of its size,
    the next k tasks after the target in config order, cyclically (:func:`stand_in_sources`). The job
    count is then an upper bound (targets whose groups coincide share a job), and ``exact`` is False.
    """
    tasks = list(shape.tasks)
    n = len(tasks)
    if n < 2:
        raise MvlptError(f"the multitask study needs at least 2 tasks, the config has {n}.")
    K = shape.seeds if shape.stack_seeds else 1
    copies = 1 if shape.stack_seeds else shape.seeds  # processes per (method, run) when seeds are not stacked
    k = min(int(settings["k"]), n - 1)

    def hours(method, run, targets, seeds):
        batch = shape.batch_size if len(run) == 1 else shape.batch_size_multitask
        return sum(_job(cal, method, run, targets, batch, seeds, shape.epochs, shape.eval_batch_size).values()) / 3600

    counts = vocabulary.multitask_job_counts(n, settings, shape.seeds, shape.stack_seeds)
    out = {
        "gpu": cal.device,
        "model": cal.model,
        "calibration": cal.origin,
        "methods": list(settings["methods"]),
        "modes": list(settings["modes"]),
        "strategies": list(settings["strategies"]),
        "k": k,
        "exact": bool(counts["exact"]),
        "per_method": {},
        "jobs": {**dict.fromkeys(MULTITASK_KINDS, 0), "total": 0},
        "gpu_hours": {**dict.fromkeys(MULTITASK_KINDS, 0.0), "total": 0.0},
        "assumptions": [],
    }
    for method in settings["methods"]:
        jobs = dict.fromkeys(MULTITASK_KINDS, 0)
        gpu_h = dict.fromkeys(MULTITASK_KINDS, 0.0)
        by_run = {}
        fixed = set(settings.get("sources") or ())  # strategy fixed: one source group, the other tasks its targets
        sources = [t for t in tasks if t.name in fixed]
        for mode, strategy in vocabulary.multitask_runs(method, settings):
            size = n - 1 if strategy == "all" else k
            before = (sum(jobs.values()), sum(gpu_h.values()))
            if strategy == "fixed":
                targets = [t for t in tasks if t.name not in fixed]
                if mode == "init":  # one source prompt, then every target fine-tuned from it
                    gpu_h["source"] += copies * hours(method, sources, [], K)
                    jobs["source"] += copies
                    for target in targets:
                        gpu_h["target"] += copies * hours(method, [target], [target], K)
                        jobs["target"] += copies
                else:  # every target trained with the sources
                    for target in targets:
                        gpu_h["joint"] += hours(method, [target, *sources], [target, *sources], shape.seeds)
                        jobs["joint"] += 1
            elif mode == "init":
                for i, target in enumerate(tasks):
                    gpu_h["source"] += copies * hours(method, stand_in_sources(tasks, i, size), [], K)
                    gpu_h["target"] += copies * hours(method, [target], [target], K)
                    jobs["source"] += copies
                    jobs["target"] += copies
            elif size >= n - 1:  # every target's group is all the tasks: one run serves them all
                gpu_h["joint"] += hours(method, tasks, tasks, shape.seeds)
                jobs["joint"] += 1
            else:
                for i, target in enumerate(tasks):
                    run = [target, *stand_in_sources(tasks, i, size)]
                    gpu_h["joint"] += hours(method, run, run, shape.seeds)
                    jobs["joint"] += 1
            by_run[f"{mode}/{strategy}"] = {"jobs": sum(jobs.values()) - before[0], "gpu_hours": sum(gpu_h.values()) - before[1]}
        out["per_method"][method] = {
            "jobs": {**jobs, "total": sum(jobs.values())},
            "gpu_hours": {**gpu_h, "total": sum(gpu_h.values())},
            "by_run": by_run,
        }
        for kind in MULTITASK_KINDS:
            out["jobs"][kind] += jobs[kind]
            out["gpu_hours"][kind] += gpu_h[kind]
        note = pricing_note(method, cal)
        if note:
            out["assumptions"].append(note)
    out["jobs"]["total"] = sum(out["jobs"][kind] for kind in MULTITASK_KINDS)
    out["gpu_hours"]["total"] = sum(out["gpu_hours"][kind] for kind in MULTITASK_KINDS)
    if not out["exact"]:
        out["assumptions"].append(
            f"an upper bound: the groups of strategies other than all are chosen from the pairwise results (random: by "
            f"seed), targets whose groups coincide share a job; each group priced with stand-in tasks of its size (the "
            f"next {k} tasks after the target in config order)"
        )
    return out
