"""What a study costs: GPU-hours per method from its job list and a calibrated per-step cost model.

The model (the ideas of the speed benchmark's ``model_costs`` / ``study_estimate`` in
``benchmarks/transfer/estimate.py``,
reduced to what a calibration file can carry):

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

The calibration (:class:`Calibration`) holds the coefficients and says which device and model they
describe. Shipped: an NVIDIA H100, ViT-B-16, bf16, derived from the step times measured for the
speed work (``mvlpt/tasks/data/cost_calibration.json``, with its assumptions).
:func:`calibrate` measures the coefficients on this machine's GPU (or CPU) in a minute or two and
:func:`save_user_calibration` stores them in ``~/.cache/mvlpt/cost_calibration.json`` (``$MVLPT_COST_CALIBRATION``
overrides the path); :func:`load_calibration` prefers that file when it describes the same model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import Iterable

from mvlpt.study import vocabulary
from mvlpt.errors import MvlptError

FORMAT = 1
SHIPPED = "cost_calibration.json"  # in mvlpt/tasks/data (package data)
USER_ENV = "MVLPT_COST_CALIBRATION"
COEFFS = ("fixed_ms", "text_us_per_token", "image_ms_per_image")
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


# ------------------------------------------------------------------------------------------ calibration
@dataclasses.dataclass
class Calibration:
    device: str
    model: str
    precision: str
    origin: str  # "shipped" or "measured"
    methods: dict  # method -> {"step": {...}, "forward": {...}} (COEFFS)
    features_ms_per_image: float
    job_setup_s: float
    decode_images_per_s: float
    path: str = ""
    measured_at: str = ""
    assumptions: list = dataclasses.field(default_factory=list)

    def step_s(self, method: str, *, seeds: int, classes: int, length: int, batch: int, prefix: int = 0,
               task_tokens: int = 0) -> float:
        """``prefix``: the leading tokens all classes' prompts share (see :func:`text_rows`);
        ``task_tokens``: tokens of the task prompts a task-conditioned method (SoftCPT) sends through the
        text tower on top of its class prompts, per seed. An image-conditioned method sends a set of
        class prompts per image of the batch."""
        sets = batch if _image_conditioned(method) else 1
        return self._cost(method, "step", seeds * sets * text_rows(classes, length, prefix, task_tokens), seeds * batch)

    def forward_s(self, method: str, *, text_tokens: int, images: int) -> float:
        return self._cost(method, "forward", text_tokens, images)

    def _cost(self, method: str, kind: str, tokens: int, images: int) -> float:
        c = self.coefficients(method)[kind]
        t = c["fixed_ms"] / 1e3
        text, image = _learns(method)
        if text:
            t += c["text_us_per_token"] * tokens / 1e6
        if image:
            t += c["image_ms_per_image"] * images / 1e3
        return t

    def coefficients(self, method: str) -> dict:
        """The method's coefficients, or those of its registry entry's ``priced_as`` method when it has none."""
        if method not in self.methods and _priced_as(method) in self.methods:
            return self.methods[_priced_as(method)]
        try:
            return self.methods[method]
        except KeyError:
            fix = (f"name a calibrated method ({', '.join(self.methods)}) as its `priced_as` in mvlpt.study.vocabulary.METHODS"
                   if method in vocabulary.METHODS else "run `mvlpt preflight --calibrate`")
            raise MvlptError(f"the cost calibration {self.path or '(in memory)'} has no figures for method {method!r}; "
                             f"{fix}.") from None

    def borrows(self, method: str) -> str | None:
        """The method whose coefficients price ``method`` when the calibration has none of its own, else None."""
        return _priced_as(method) if method not in self.methods and _priced_as(method) in self.methods else None

    def describes(self) -> str:
        how = "measured here" if self.origin == "measured" else "shipped with mvlpt"
        return f"{self.device}, {self.model}, {self.precision} ({how})"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        return {"format": FORMAT, **d}


def _priced_as(method: str) -> str | None:
    m = vocabulary.METHODS.get(method)
    return m.priced_as if m is not None else None


def _image_conditioned(method: str) -> bool:
    m = vocabulary.METHODS.get(method)
    return m is not None and m.image_conditioned


def _task_conditioned(method: str) -> bool:
    m = vocabulary.METHODS.get(method)
    return m is not None and m.task_conditioned


def pricing_note(method: str, cal: Calibration) -> str | None:
    """What the estimate assumes of a method ``cal`` has no figures of (None: it has its own): the
    coefficients it borrows and how its passes are scaled from them."""
    base = cal.borrows(method)
    if base is None:
        return None
    extra = []
    if _task_conditioned(method):
        extra.append("plus its task-prompt pass (every task's prompt through the text tower at the same per-token rate, "
                     "each step and each evaluation; the meta network not counted)")
    if _image_conditioned(method):
        extra.append("and its text tower pass scaled by FLOPs to one set of class prompts per image (batch x classes "
                     "prompts per step, classes prompts per evaluated image; the meta network not counted)")
    return (f"{method}: the calibration has no figures of its own: priced with {base}'s coefficients"
            + (" " + "; ".join(extra) if extra else ""))


def _learns(method: str) -> tuple[bool, bool]:
    """(learns the text prompt, learns image prompts) by the study's vocabulary; a method it does not
    know (a calibration of a method added later) is priced with both terms."""
    m = vocabulary.METHODS.get(method)
    return (True, True) if m is None else (m.learns_text, m.learns_image)


def _from_dict(d: dict, path: str) -> Calibration:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise MvlptError(f"cost calibration {path} is not a format-{FORMAT} mvlpt calibration; delete it and run "
                         f"`mvlpt preflight --calibrate` again.")
    try:
        methods = {m: {k: {c: float(v[k][c]) for c in COEFFS} for k in ("step", "forward")} for m, v in d["methods"].items()}
        return Calibration(device=str(d["device"]), model=str(d["model"]), precision=str(d.get("precision", "")),
                           origin=str(d.get("origin", "measured")), methods=methods,
                           features_ms_per_image=float(d["features_ms_per_image"]), job_setup_s=float(d["job_setup_s"]),
                           decode_images_per_s=float(d["decode_images_per_s"]), path=path,
                           measured_at=str(d.get("measured_at", "")), assumptions=list(d.get("assumptions", [])))
    except (KeyError, TypeError, ValueError) as e:
        raise MvlptError(f"cost calibration {path} lacks or garbles {e}; delete it and run `mvlpt preflight --calibrate` again.") from None


def shipped_calibration() -> Calibration:
    ref = resources.files("mvlpt.tasks").joinpath("data", SHIPPED)
    return _from_dict(json.loads(ref.read_text(encoding="utf-8")), f"mvlpt/tasks/data/{SHIPPED}")


def user_calibration_path() -> Path:
    env = os.environ.get(USER_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
    return Path(base).expanduser() / "mvlpt" / "cost_calibration.json"


def load_calibration(model: str | None = None) -> tuple[Calibration, str | None]:
    """The calibration to price a study of ``model`` with, and a note when it does not describe that model.

    The user's own (``--calibrate``) wins when it was measured with ``model``; else the shipped H100 one."""
    p = user_calibration_path()
    shipped = shipped_calibration()
    if p.is_file():
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise MvlptError(f"cost calibration {p} cannot be read; delete it and run `mvlpt preflight --calibrate` again.") from None
        user = _from_dict(d, str(p))
        if model is None or _same_model(user.model, model):
            return user, None
        if _same_model(shipped.model, model):
            return shipped, f"your calibration {p} was measured with {user.model}, not {model}: using the shipped one"
        return user, (f"your calibration {p} was measured with {user.model}, the config trains {model}: "
                      f"run `mvlpt preflight --calibrate` with this config")
    if model is not None and not _same_model(shipped.model, model):
        return shipped, (f"the shipped calibration describes {shipped.model}, the config trains {model}: "
                         f"run `mvlpt preflight --calibrate` for an estimate of this model")
    return shipped, None


def _same_model(a: str, b: str) -> bool:
    norm = lambda s: s.replace("-quickgelu", "")  # noqa: E731 - QuickGELU costs what GELU costs
    return norm(a) == norm(b)


def save_user_calibration(cal: Calibration) -> Path:
    from mvlpt.io import write_json

    p = user_calibration_path()
    write_json(cal.to_dict(), p)
    return p


# ------------------------------------------------------------------------------------------ the study's jobs
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
    mode: str  # joint | sequential
    stack_seeds: bool
    epochs: int
    batch_size: int
    batch_size_multitask: int
    eval_batch_size: int
    shots: int


def _job(cal: Calibration, method: str, run: list[TaskCost], targets: list[TaskCost], batch: int, k: int,
         epochs: int, eval_bs: int) -> dict:
    C = sum(t.classes for t in run)
    L = max(t.length.get(method, 0) for t in run)
    P = min(t.prefix.get(method, 0) for t in run)  # the run's classes share at most what each task's share
    # a task-conditioned method (SoftCPT) also sends every task's prompt through the text tower
    T = sum(t.task_prompt for t in run) if _task_conditioned(method) else 0
    per_image = _image_conditioned(method)  # class prompts per image (CoCoOp): text rows scale with the images
    n_train = sum(t.train_per_seed for t in run)
    steps = math.ceil(n_train / batch) if n_train else 0
    train = epochs * steps * cal.step_s(method, seeds=k, classes=C, length=L, batch=batch, prefix=P, task_tokens=T)
    img_eval = _learns(method)[1]
    val_imgs = sum(t.val_per_seed for t in run)
    val_batches = sum(math.ceil(t.val_per_seed / eval_bs) for t in run)
    fwd = cal.coefficients(method)["forward"]
    per_val = cal.forward_s(method, text_tokens=k * text_rows(C, L, P, T) * (val_imgs if per_image else 1),
                            images=k * val_imgs if img_eval else 0) \
        + val_batches * fwd["fixed_ms"] / 1e3
    validation = epochs * per_val
    test = decode = 0.0
    for t in targets:
        test += cal.forward_s(method, text_tokens=k * text_rows(C, L, P, T) * (t.test if per_image else 1),
                              images=k * t.test if img_eval else 0) \
            + math.ceil(t.test / eval_bs) * fwd["fixed_ms"] / 1e3
        if img_eval:
            decode += t.test / cal.decode_images_per_s
    few = k * sum(t.train_per_seed + t.val_per_seed for t in run)
    setup = cal.job_setup_s + (few / cal.decode_images_per_s if img_eval else 0.0)
    test = max(test, decode)  # decoding workers feed the GPU while it evaluates
    return {"train": train, "validation": validation, "test": test, "setup": setup}


def estimate(shape: StudyShape, cal: Calibration) -> dict:
    """GPU-hours per method and in total, with the job counts and a breakdown (hours)."""
    tasks = list(shape.tasks)
    K = shape.seeds if shape.stack_seeds else 1
    copies = 1 if shape.stack_seeds else shape.seeds  # jobs per (method, run) when seeds are not stacked
    out = {"gpu": cal.device, "model": cal.model, "precision": cal.precision, "calibration": cal.origin,
           "per_method": {}, "gpu_hours": 0.0, "jobs": 0, "assumptions": []}
    features_priced = False  # the frozen image features are computed once per task for every method reading them
    for method in shape.methods:
        acc = {"train": 0.0, "validation": 0.0, "test": 0.0, "setup": 0.0, "features": 0.0}
        jobs = 0

        def add(parts, n=1):
            for key, v in parts.items():
                acc[key] += n * v

        for i, a in enumerate(tasks):
            add(_job(cal, method, [a], [a], shape.batch_size, K, shape.epochs, shape.eval_batch_size), copies)
            jobs += copies
            others = tasks[i + 1:] if shape.mode == "joint" else [b for b in tasks if b is not a]
            for b in others:
                if shape.mode == "joint":
                    add(_job(cal, method, [a, b], [a, b], shape.batch_size_multitask, K, shape.epochs,
                             shape.eval_batch_size), copies)
                else:  # sequential: a source prompt (the baseline's) fine-tuned on target b
                    add(_job(cal, method, [b], [b], shape.batch_size, K, shape.epochs, shape.eval_batch_size), copies)
                jobs += copies
        if vocabulary.METHODS.get(method) and vocabulary.METHODS[method].caches_image_features and not features_priced:
            features_priced = True  # one frozen-feature job per task: test split + every seed's few-shot images
            for t in tasks:
                n = t.test + shape.seeds * (t.train_per_seed + t.val_per_seed)
                gpu = n * cal.features_ms_per_image / 1e3
                acc["features"] += cal.job_setup_s + max(gpu, n / cal.decode_images_per_s)
            jobs += len(tasks)
        hours = {k: v / 3600 for k, v in acc.items()}
        total = sum(hours.values())
        out["per_method"][method] = {"gpu_hours": total, "jobs": jobs, "breakdown_h": hours}
        out["gpu_hours"] += total
        out["jobs"] += jobs
        note = pricing_note(method, cal)
        if note:
            out["assumptions"].append(note)
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
    out = {"gpu": cal.device, "model": cal.model, "calibration": cal.origin, "methods": list(settings["methods"]),
           "modes": list(settings["modes"]), "strategies": list(settings["strategies"]), "k": k,
           "exact": bool(counts["exact"]), "per_method": {},
           "jobs": {**dict.fromkeys(MULTITASK_KINDS, 0), "total": 0},
           "gpu_hours": {**dict.fromkeys(MULTITASK_KINDS, 0.0), "total": 0.0}, "assumptions": []}
    for method in settings["methods"]:
        jobs = dict.fromkeys(MULTITASK_KINDS, 0)
        gpu_h = dict.fromkeys(MULTITASK_KINDS, 0.0)
        by_run = {}
        for mode, strategy in vocabulary.multitask_runs(method, settings):
            size = n - 1 if strategy == "all" else k
            before = (sum(jobs.values()), sum(gpu_h.values()))
            if mode == "init":
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
            by_run[f"{mode}/{strategy}"] = {"jobs": sum(jobs.values()) - before[0],
                                            "gpu_hours": sum(gpu_h.values()) - before[1]}
        out["per_method"][method] = {"jobs": {**jobs, "total": sum(jobs.values())},
                                     "gpu_hours": {**gpu_h, "total": sum(gpu_h.values())}, "by_run": by_run}
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
            f"next {k} tasks after the target in config order)")
    return out


def task_prompt_lengths(tasks: Iterable[str], model: str, n_task_ctx: int, descriptions: dict | None = None) -> dict:
    """SoftCPT's task prompt length (tokens) per task: ``[SOS] [task ctx] <task text> . [EOS]``, the task
    text cut as its learner cuts it (:mod:`mvlpt.models.prompts.softcpt`)."""
    from mvlpt.models.clip import _open_clip
    from mvlpt.models.prompts.softcpt import MAX_TASK_TOKENS, SoftCPT, fit_text
    from mvlpt.models.prompts.text import _word_tokens

    tok = _open_clip().get_tokenizer(model)
    budget = min(MAX_TASK_TOKENS, int(tok(["x"]).shape[1]) - 3 - int(n_task_ctx))
    out = {}
    for name in tasks:
        text = fit_text(tok, SoftCPT._task_text(name, descriptions), budget, name)
        out[name] = int(n_task_ctx) + 3 + len(_word_tokens(tok, text))
    return out


def prompt_shapes(classnames: Iterable[str], model: str, options: dict) -> tuple[dict, dict]:
    """Per text-learning method (``options``: method -> its options, the learner's defaults filling the
    rest): the text prompt length (tokens, cut as training cuts it) and the leading tokens every class
    shares when one context serves all classes (0 for class-specific or task-conditioned contexts), both
    from the token layout training builds (:func:`mvlpt.models.prompts.text.prompt_tokens`)."""
    from mvlpt.models.clip import _open_clip
    from mvlpt.models.prompts.text import common_prefix, prompt_tokens

    tok = _open_clip().get_tokenizer(model)
    names = list(classnames) or ["x"]
    lengths, prefixes = {}, {}
    for m, opts in options.items():
        o = vocabulary.full_options(m, opts)
        seqs, ctx_pos = prompt_tokens(tok, names, int(o["n_ctx"]), o.get("position", "end"))
        lengths[m] = max(map(len, seqs))
        shared = not o.get("csc") and not vocabulary.method(m).task_conditioned  # an image-conditioned context is shared too
        prefixes[m] = common_prefix(seqs, ctx_pos) if shared else 0
    return lengths, prefixes


# ------------------------------------------------------------------------------------------ --calibrate
def _timer(device: str):
    """Seconds per call of ``fn``: calls repeated for at least 50 ms, the fastest of ``reps`` rounds
    (on a shared machine interference only adds time)."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(fn, reps: int) -> float:
        fn()  # warm-up
        sync()
        best = math.inf
        for _ in range(reps):
            n, t0 = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                sync()
                dt = time.perf_counter() - t0
                if dt >= 0.05:
                    break
            best = min(best, dt / n)
        return best
    return run


def _affine(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """(intercept, slope) through two points; proportional through the larger one when noise makes
    the slope or the intercept negative."""
    slope = (y2 - y1) / (x2 - x1)
    if slope <= 0 or y1 - slope * x1 < 0:
        return 0.0, y2 / x2
    return y1 - slope * x1, slope


def calibrate(model: str = "ViT-B-16", device: str | None = None, *, workers: int = 3, n_ctx: int = 16,
              vpt_tokens: int = 16, upt_tokens: int = 4, say=print) -> Calibration:
    """Measure the cost coefficients of ``model`` (random weights: timing only) on ``device``
    (default: the first CUDA GPU, else the CPU). Takes a minute or two."""
    import numpy as np
    import torch
    from PIL import Image

    from mvlpt.models.clip import load_clip
    from mvlpt.models.prompts.text import encode_prompted_text
    from mvlpt.models.prompts.vision import encode_prompted_image

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(torch.device(device)) if cuda else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    precision = "bf16" if cuda else "fp32"
    t0 = time.perf_counter()
    clip = load_clip(model, None, device=device)
    load_s = time.perf_counter() - t0
    net, visual = clip.model, clip.model.visual
    W_t = net.token_embedding.weight.shape[1]
    W_v, layers, S = visual.conv1.weight.shape[0], len(visual.transformer.resblocks), clip.image_size
    timed = _timer(device)
    reps = 3
    gen = torch.Generator().manual_seed(0)

    def ac():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    L = n_ctx + 6

    def text(n: int, backward: bool):
        x = torch.randn(n, L, W_t, generator=gen).mul_(0.02).to(device).requires_grad_(backward)
        eot = torch.full((n,), L - 1, device=device)

        def f():
            with ac(), torch.set_grad_enabled(backward):
                out = encode_prompted_text(net, x, eot)
            if backward:
                out.float().square().sum().backward()
        return f

    def image(B: int, n_prompt: int, backward: bool):
        x = torch.randn(B, 3, S, S, generator=gen).to(device)
        p = torch.randn(layers, n_prompt, W_v, generator=gen).mul_(0.02).to(device).requires_grad_(backward) if n_prompt else None

        def f():
            with ac(), torch.set_grad_enabled(backward):
                out = encode_prompted_image(visual, x, p, True)
            if backward:
                out.float().square().sum().backward()
        return f

    n_small, n_large = (32, 512) if cuda else (4, 16)
    b_small, b_large = (16, 128) if cuda else (1, 3)
    say(f"calibrating {model} on {name} ({precision}) ...")
    fit = {}
    for key, mk, (lo, hi), per in (
        ("text_fwd_bwd", lambda n: text(n, True), (n_small, n_large), L),
        ("text_fwd", lambda n: text(n, False), (n_small, n_large), L),
        ("vpt_fwd_bwd", lambda b: image(b, vpt_tokens, True), (b_small, b_large), 1),
        ("vpt_fwd", lambda b: image(b, vpt_tokens, False), (b_small, b_large), 1),
        ("upt_fwd_bwd", lambda b: image(b, upt_tokens, True), (b_small, b_large), 1),
        ("upt_fwd", lambda b: image(b, upt_tokens, False), (b_small, b_large), 1),
        ("plain_fwd", lambda b: image(b, 0, False), (b_small, b_large), 1),
    ):
        y1 = timed(mk(lo), reps)
        if y1 < 0.05:  # a small model: a wider span keeps the slope above the noise
            hi = lo * 8
        y2 = timed(mk(hi), reps)
        fit[key] = _affine(lo * per, y1, hi * per, y2)  # seconds, seconds per token / image
        say(f"  {key}: {y1 * 1e3:.1f} ms at {lo}, {y2 * 1e3:.1f} ms at {hi}")
        if cuda:
            torch.cuda.empty_cache()

    def coeffs(text_key, image_key):
        a_t, b_t = fit[text_key] if text_key else (0.0, 0.0)
        a_i, b_i = fit[image_key] if image_key else (0.0, 0.0)
        return {"fixed_ms": (a_t + a_i) * 1e3, "text_us_per_token": b_t * 1e6, "image_ms_per_image": b_i * 1e3}

    methods = {
        "coop": {"step": coeffs("text_fwd_bwd", None), "forward": coeffs("text_fwd", "plain_fwd")},
        "vpt": {"step": coeffs(None, "vpt_fwd_bwd"), "forward": coeffs("text_fwd", "vpt_fwd")},
        "upt": {"step": coeffs("text_fwd_bwd", "upt_fwd_bwd"), "forward": coeffs("text_fwd", "upt_fwd")},
    }
    # image decoding: a photo-sized JPEG to 224 x 224, in this process; the workers multiply it
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    t1, n = time.perf_counter(), 0
    while time.perf_counter() - t1 < 1.0:
        Image.open(io.BytesIO(data)).convert("RGB").resize((S, S), Image.BICUBIC)
        n += 1
    decode = n / (time.perf_counter() - t1) * max(1, workers)
    return Calibration(
        device=name, model=model, precision=precision, origin="measured", methods=methods,
        features_ms_per_image=fit["plain_fwd"][1] * 1e3, job_setup_s=round(load_s + 10.0, 1),
        decode_images_per_s=round(decode, 1), measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        assumptions=[f"per job: the model load measured here ({load_s:.1f} s) + 10 s of process start, imports and few-shot data",
                     f"image decoding measured in one process, times {max(1, workers)} workers"],
    )
