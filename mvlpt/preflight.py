"""Preflight: will a study run through, and what will it cost? Answered in seconds, before any job.

:func:`run` reads a study config (the workflow's format, its defaults filled in) and checks, per
task and for the study:

* **data**: present and intact by the lock file's sizes (``deep``: sha256), by which route;
  ELEVATER tasks that are not on disk are named with the command that fetches them;
* **few-shot**: images per class in the train split against the configured shots and the few-shot
  policy (config key ``fewshot_policy``: ``available`` (default, ELEVATER's: a class with fewer
  than k images gives all it has) or ``strict`` (such a class stops the study here)); few-shot
  train / val images per seed, test size;
* **model weights** resolvable offline (the shipped tiny weights, a file, or the Hugging Face
  cache), never downloading;
* **devices**: CUDA GPUs visible, the GPU lease directory writable; the SLURM profile's partition
  and GPU request read back;
* **disk**: what the study writes (caches, states, results; data still to fetch) against the free
  space of each location;
* **cost**: GPU-hours per method and in total (:mod:`mvlpt.cost`), naming the GPU it is for;
* **multitask** (when the config has a ``multitask`` section, even an empty one): its settings
  (:func:`multitask_problems`) and the jobs and GPU-hours it adds, by kind
  (:func:`mvlpt.cost.estimate_multitask`).

Every problem is one sentence naming the task (or the item) and what to do. :func:`problems` is the
same check as a list of sentences, for the workflow to call before it schedules anything.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import study
from .errors import MvlptError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
POLICY_KEY = "fewshot_policy"
SKIP_KEY = "preflight"  # `preflight: false` in a config: the workflow skips the check
GPU_RULES = ("train_single", "train_joint", "train_sequential", "transfer_zero_epoch", "frozen_features", "embed_task_images",
             "reference_zeroshot", "reference_linear_probe")
# Defaults of the keys preflight reads, used when the workflow's schema is not next to the package.
FALLBACK_DEFAULTS = {"methods": ["coop", "vpt", "upt"], "seeds": [1, 2, 3], "shots": 5, "mode": "joint",
                     "stack_seeds": True, "model": {}, "train": {}, "method_options": {}, "device": "auto",
                     "data_dir": None, "results_dir": "results", "cache_dir": "resources/cache"}
RESULT_BYTES = 1500  # one result JSON
TABLES_BYTES = 50e6  # tables, matrices, similarity tables, figures, reports (all together)


# ------------------------------------------------------------------------------------------ config
def config_defaults() -> dict:
    """The workflow schema's top-level defaults (the same values the workflow fills in)."""
    try:
        import yaml

        schema = yaml.safe_load(SCHEMA.read_text())
        return {k: v["default"] for k, v in schema["properties"].items() if isinstance(v, dict) and "default" in v}
    except (OSError, KeyError, TypeError, ImportError):
        return dict(FALLBACK_DEFAULTS)


def load_config(path: str | os.PathLike) -> dict:
    import yaml

    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text())
    except OSError as e:
        raise MvlptError(f"cannot read the config {p} ({e.strerror or e}).") from None
    except UnicodeDecodeError:
        raise MvlptError(f"the config {p} is not UTF-8 text; give the study's YAML config.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MvlptError(f"the config {p}{where} is not valid YAML ({what}).") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("tasks"), list) or not cfg["tasks"]:
        raise MvlptError(f"the config {p} has no `tasks` list; see config/README.md.")
    return cfg


def with_defaults(cfg: dict) -> dict:
    out = {**config_defaults(), **cfg}
    out["model"] = {"name": "mvlpt-tiny", "pretrained": None, "init_seed": 0, **(cfg.get("model") or {})}
    out["train"] = dict(cfg.get("train") or {})
    out.setdefault(POLICY_KEY, "available")
    # a multitask study only where the config has the section (the schema's default {} is not one)
    out["multitask"] = cfg.get("multitask")
    return out


RANKED_STRATEGIES = ("gain", "similarity", "predictor")  # rank the other tasks: need at least 3 tasks


def multitask_problems(cfg: dict) -> list[str]:
    """What is wrong with ``cfg``'s ``multitask`` section, one sentence each (empty: nothing, or no
    section). Reads the config only (no torch, no data): the workflow's config check calls it too.

    A method must be known; one of the pairwise study must be among the study's ``methods`` (its pairwise
    results choose strategy gain's groups and give its baseline); a multitask-only one (SoftCPT) needs its
    baseline method there; ``k`` >= 1; ``similarity`` a measure, ``predictor`` a predictor and, when
    strategy predictor is used, one the study computes (``predictors.names``); the strategies that
    rank the other tasks (gain, similarity, predictor) need at least 3 tasks, any multitask study 2."""
    section = cfg.get("multitask")
    if section is None:
        return []
    if not isinstance(section, dict):
        return [f"multitask: the section must be a mapping of settings (docs/multitask.md), got {section!r}."]
    out = []
    unknown = [str(key) for key in section if key not in study.MULTITASK_DEFAULTS]
    if unknown:
        out.append(f"multitask: unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(study.MULTITASK_DEFAULTS)}.")
    study_methods = cfg["methods"] if "methods" in cfg else config_defaults().get("methods", FALLBACK_DEFAULTS["methods"])
    study_methods = list(study_methods or [])
    tasks = cfg.get("tasks") if isinstance(cfg.get("tasks"), list) else []
    s = study.multitask_settings(section, study_methods)

    def names(key, known, what):
        v = s[key]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            out.append(f"multitask: `{key}` must be a non-empty list of {what} ({', '.join(known)}), got {v!r}.")
            return []
        bad = [x for x in v if x not in known]
        if bad:
            out.append(f"multitask: unknown {what} {', '.join(bad)} in `{key}`; choose from {', '.join(known)}.")
        return [x for x in v if x in known]

    methods = names("methods", list(study.METHODS), "method(s)")
    names("modes", study.MULTITASK_MODES, "mode(s)")
    strategies = names("strategies", study.GROUPING_STRATEGIES, "strategy(ies)")
    for m in methods:
        meth = study.METHODS[m]
        if meth.multitask_only:
            if meth.baseline and meth.baseline not in study_methods:
                out.append(f"multitask: method {m} is compared with {meth.baseline}'s single-task results, so the study's "
                           f"`methods` must include {meth.baseline}.")
        elif m not in study_methods:
            out.append(f"multitask: method {m} is not among the study's `methods` ({', '.join(map(str, study_methods))}), "
                       f"whose pairwise results it needs (strategy gain and its baseline); add it there or drop it here.")
    k = s["k"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        out.append(f"multitask: `k` (sources per group) must be an integer >= 1, got {k!r}.")
    if s["similarity"] not in study.MEASURES:
        out.append(f"multitask: `similarity` must be a similarity measure ({', '.join(study.MEASURES)}), got {s['similarity']!r}.")
    if s["predictor"] not in study.PREDICTORS:
        out.append(f"multitask: `predictor` must be a transferability predictor ({', '.join(study.PREDICTORS)}), "
                   f"got {s['predictor']!r}.")
    elif "predictor" in strategies:
        computed = (cfg.get("predictors") or {}).get("names")
        if computed is not None and s["predictor"] not in computed:
            out.append(f"multitask: strategy predictor reads predictor {s['predictor']}, which the study does not compute; "
                       f"add it to `predictors.names` or choose one of {', '.join(map(str, computed))}.")
    seed = s["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        out.append(f"multitask: `seed` (of strategy random) must be an integer, got {seed!r}.")
    ranked = [x for x in strategies if x in RANKED_STRATEGIES]
    pairwise = any(not study.METHODS[m].multitask_only for m in methods)
    if len(tasks) < 2:
        out.append(f"multitask: the multitask study needs at least 2 tasks, the config has {len(tasks)}.")
    elif ranked and pairwise and len(tasks) < 3:
        many = len(ranked) > 1
        out.append(f"multitask: strateg{'ies' if many else 'y'} {', '.join(ranked)} rank{'' if many else 's'} the other tasks, "
                   f"which needs at least 3 tasks (the config has {len(tasks)}); add tasks or drop {'them' if many else 'it'}.")
    return out


# ------------------------------------------------------------------------------------------ report
@dataclasses.dataclass
class TaskRow:
    task: str
    suite: str
    classes: int
    data: str = ""  # built-in | present | missing | corrupt | unreadable
    route: str = ""
    folder: str = ""
    train_images: int | None = None
    per_class_min: int | None = None
    per_class_max: int | None = None
    per_class_from: str = ""  # "data" | "manifest (mean)"
    short_classes: int = 0
    shots_taken_min: int | None = None
    fewshot_train: int | None = None  # per seed
    fewshot_val: int | None = None
    test_images: int | None = None
    notes: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Report:
    config: str
    tasks: list
    problems: list  # sentences that stop the study
    warnings: list  # sentences worth reading
    model: dict
    devices: dict
    disk: list
    cost: dict
    seconds: float = 0.0
    power: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        return d


# ------------------------------------------------------------------------------------------ data
def _fetch_cmd(task: str, data_dir: Path, explicit: bool) -> str:
    return f"`mvlpt data fetch {task}" + (f" --data-dir {data_dir}`" if explicit else "`")


def _split_plan(counts, shots: int) -> tuple[int, int, int]:
    """(few-shot train, val images per seed, smallest shots taken) for per-class image counts."""
    train = val = 0
    for n in counts:
        k = min(int(n), shots)
        if shots == 1:
            train += k
            val += 1 if n >= 2 else 0
            continue
        nv = (max(1, round(0.2 * k)) if k >= 2 else 0)
        train += k - nv
        val += nv
    return train, val, min((min(int(n), shots) for n in counts), default=0)


def check_task(name: str, cfg: dict, *, deep: bool, problems: list, warnings: list) -> TaskRow:
    import numpy as np

    from .tasks import get_task
    from .tasks.fewshot import class_counts

    task = get_task(name)
    shots, policy = int(cfg["shots"]), cfg[POLICY_KEY]
    row = TaskRow(name, task.source, task.num_classes)
    data_dir_cfg = cfg.get("data_dir")
    train = test = None
    if task.source == "elevater":
        from .datasets import catalog, lock, routes
        from .datasets.paths import resolve_data_dir

        data_dir = resolve_data_dir(data_dir_cfg)
        fetch = _fetch_cmd(name, data_dir, bool(data_dir_cfg))
        present = routes.present_routes(name, data_dir)
        try:
            verdict = lock.verify(data_dir, name, quick=not deep)
        except MvlptError as e:
            verdict = None
            problems.append(f"task {name}: {e}")
        if not present:
            row.data = "missing"
            how = (" (its licence must be accepted first: the command says what to download and where to put it)"
                   if routes.default_route(name) == "manual" else "")
            problems.append(f"task {name}: no data under {data_dir}; run {fetch}{how}.")
        elif verdict is not None and verdict.status in ("corrupt", "missing"):
            row.data, row.route = verdict.status, verdict.route
            problems.append(f"task {name}: the data fetched by route {verdict.route} is {verdict.status} "
                            f"({verdict.problems[0]}); delete the damaged files and run {fetch}.")
        else:
            row.data = "present"
            route, folder = present[0]
            if verdict is not None and verdict.status == "present":
                route = verdict.route or route
                folder = next((f for r, f in present if r == route), folder)
            else:
                warnings.append(f"task {name}: data present (route {route}, {folder}) but not in the lock file; run "
                                f"`mvlpt data fetch {name} --route {route}` to record its checksums.")
            row.route, row.folder = route, str(folder)
        entry = catalog.manifest_entry(name)
        if row.data != "present":
            n = int(entry["train"]["num_images"])
            per = n // task.num_classes
            row.train_images, row.per_class_min, row.per_class_max = n, per, per
            row.per_class_from = "manifest (mean)"
            row.test_images = int(entry["test"]["num_images"])
            counts = [per] * task.num_classes if not task.multilabel else [n] * task.num_classes
        else:
            try:
                train = task.load("train", data_dir_cfg)
                test = task.load("test", data_dir_cfg)
            except MvlptError as e:
                row.data = "unreadable"
                problems.append(str(e) if str(e).startswith(f"task {name}") else f"task {name}: {e}")
    else:
        row.data, row.route = "built-in", "synthetic"
        train, test = task.load("train"), task.load("test")
    if train is not None:
        counts = class_counts(np.asarray(train.labels), task.num_classes)
        row.train_images, row.test_images = len(train), len(test)
        row.per_class_min, row.per_class_max, row.per_class_from = int(counts.min()), int(counts.max()), "data"
    if row.train_images is None:
        return row
    short = {task.classnames[c]: int(n) for c, n in enumerate(counts) if n < shots}
    row.short_classes = len(short)
    empty = [c for c, n in short.items() if n == 0]
    if empty:
        problems.append(f"task {name}: {len(empty)} class(es) have no training image (e.g. {empty[0]!r}), so they "
                        f"cannot be learned; check the task's data (`mvlpt data check {name} --images`).")
    row.fewshot_train, row.fewshot_val, row.shots_taken_min = _split_plan(counts, shots)
    if short:
        worst = min(short, key=short.get)
        where = "" if row.per_class_from == "data" else " by ELEVATER's manifest"
        if policy == "strict":
            problems.append(f"task {name}: {len(short)} of {task.num_classes} classes have fewer than shots={shots} "
                            f"training images{where} (class {worst!r}: {short[worst]}), which the strict few-shot policy "
                            f"refuses; lower `shots`, drop the task, or set `{POLICY_KEY}: available`.")
        else:
            row.notes.append(f"{len(short)} classes short of {shots} shots: all their images are taken "
                             f"(smallest {row.shots_taken_min})")
            warnings.append(f"task {name}: {len(short)} of {task.num_classes} classes have fewer than {shots} training "
                            f"images{where} (smallest: {short[worst]}); policy available takes all they have "
                            f"(recorded as shots_taken in the split files).")
    if row.fewshot_val == 0:
        problems.append(f"task {name}: no class has a validation image at shots={shots}; raise `shots`.")
    return row


def manifest_shortfall(shots: int) -> dict[str, dict]:
    """ELEVATER tasks whose train split, by the shipped manifest, cannot give ``shots`` images per class:
    ``{task: {"train": n, "classes": C, "per_class": n // C}}`` (multi-label tasks excluded: a mean says
    nothing about them)."""
    from .datasets import catalog

    out = {}
    for name in catalog.task_names():
        e = catalog.manifest_entry(name)
        if e["type"] == "classification_multilabel":
            continue
        n, C = int(e["train"]["num_images"]), int(e["num_classes"])
        if n // C < shots:
            out[name] = {"train": n, "classes": C, "per_class": n // C}
    return out


# ------------------------------------------------------------------------------------------ model
def check_weights(model: dict, problems: list) -> dict:
    """Where the weights come from, without downloading anything."""
    name, pretrained = model.get("name", "mvlpt-tiny"), model.get("pretrained")
    out = {"name": name, "pretrained": pretrained, "weights": None, "resolved": True}
    from .models.clip import _open_clip, local_weights, weights_cache_dir

    if name not in _open_clip().list_models():
        problems.append(f"model {name!r} is not an open_clip model; set `model.name` (the paper: ViT-B-16-quickgelu).")
        out["resolved"] = False
        return out
    if pretrained in (None, "", "none", "None"):
        out["weights"] = f"random init (seed {model.get('init_seed', 0)})"
        return out
    try:
        src = local_weights(name, str(pretrained))
    except MvlptError as e:
        problems.append(f"model weights: {str(e).rstrip('.')}; set `model.pretrained`.")
        out["resolved"] = False
        return out
    if src.path:
        out["weights"] = src.path
        return out
    out["resolved"] = False
    if not src.hub_repo:
        problems.append(f"model weights {name}/{pretrained}: only downloadable from {src.url or '?'}, which mvlpt does "
                        f"not do; download the file and set `model.pretrained` to its path.")
        return out
    repo_id, where = src.hub_repo, weights_cache_dir()
    problems.append(f"model weights {name}/{pretrained} are not in the Hugging Face cache ({where}); run "
                    f"`hf download {repo_id}` (on a machine with network, into that cache), or set `model.pretrained` "
                    f"to a weights file.")
    return out


# ------------------------------------------------------------------------------------------ devices
def slurm_profile(path: str | os.PathLike | None = None) -> dict | None:
    """Partition and GPU request of the SLURM profile's GPU rules, as the executor plugin will submit them."""
    import yaml

    p = Path(path) if path else SLURM_PROFILE
    if p.is_dir():
        p = p / "config.yaml"
    if not p.is_file():
        if path:  # asked for by name: its absence is a problem, not "no profile" (issue 24, class 5)
            raise MvlptError(f"the SLURM profile {path} does not exist (no {p}); give --profile a profile folder or "
                             f"its config.yaml (default: {SLURM_PROFILE.parent}).")
        return None
    try:
        prof = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise MvlptError(f"the SLURM profile {p} cannot be read ({e}).") from None
    default = prof.get("default-resources") or {}
    rules = {}
    for rule in GPU_RULES:
        r = {**default, **((prof.get("set-resources") or {}).get(rule) or {})}
        gpu = r.get("gpu", 1)
        if r.get("gres"):
            request = f"--gres={r['gres']}"
        elif not gpu:
            request = "no GPU (CPU job)"
        else:
            request = f"--gpus={r['gpu_model'] + ':' if r.get('gpu_model') else ''}{gpu}"
        rules[rule] = {"partition": r.get("slurm_partition") or "cluster default (not set)", "gpu_request": request,
                       "account": r.get("slurm_account")}
    return {"profile": str(p), "executor": prof.get("executor"), "jobs": prof.get("jobs"), "rules": rules}


def check_devices(cfg: dict, problems: list, warnings: list, profile: str | None = None) -> dict:
    from .devices import NO_LEASE_ENV, default_lock_dir

    out: dict[str, Any] = {"cuda_gpus": [], "lease_dir": default_lock_dir(), "lease_dir_writable": None, "slurm": None}
    try:
        import torch

        out["cuda_gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as e:  # noqa: BLE001 - a broken driver is reported, not raised
        warnings.append(f"devices: CUDA cannot be queried ({type(e).__name__}: {e}).")
    d = Path(out["lease_dir"])
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    out["lease_dir_writable"] = os.access(probe, os.W_OK | os.X_OK)
    requested = str(cfg.get("device", "auto"))
    if out["cuda_gpus"] and not out["lease_dir_writable"] and os.environ.get(NO_LEASE_ENV, "") in ("", "0"):
        problems.append(f"devices: the GPU lease directory {d} is not writable, so no job can lease a GPU; set "
                        f"MVLPT_GPU_LOCK_DIR to a writable folder.")
    if not out["cuda_gpus"]:
        msg = "devices: no CUDA GPU is visible here"
        if requested.startswith("cuda"):
            warnings.append(f"{msg} but the config asks for device {requested}; run the jobs where GPUs are "
                            f"(a SLURM profile submits them to GPU nodes).")
        else:
            warnings.append(f"{msg}: jobs run on the CPU unless they are submitted to GPU nodes (SLURM profile).")
    out["slurm"] = slurm_profile(profile)
    return out


def check_compile(cfg: dict, devices: dict, problems: list, warnings: list, on_slurm: bool = False) -> dict:
    """``train.compile``: what torch.compile needs where the jobs run, looked up in this environment:
    Triton for GPU jobs, a C++ compiler for CPU jobs. Without it every job stops at its first step, so
    it is a problem where the jobs surely run on that kind of device (GPUs visible here, ``device:
    cuda``, a SLURM profile; ``device: cpu``), else a warning. The cost estimate prices eager steps,
    which a warning says."""
    from .config import COMPILE_CACHE, COMPILE_MODES

    mode = str((cfg.get("train") or {}).get("compile", "none"))
    if mode == "none" or mode not in COMPILE_MODES:  # an unknown mode is a config problem (_check_config)
        return {"mode": mode}
    # the workflow's (a TORCHINDUCTOR_CACHE_DIR in the jobs' environment wins; torch sets that variable
    # itself in a process that compiled, so this one's says nothing about the jobs')
    out: dict[str, Any] = {"mode": mode, "kernel_cache": str(Path(cfg["cache_dir"]) / COMPILE_CACHE)}
    requested = str(cfg.get("device", "auto"))
    on_gpu = bool(devices.get("cuda_gpus")) or on_slurm or requested.startswith("cuda")
    on_cpu = requested == "cpu"
    if not on_cpu:
        import torch
        from torch.utils._triton import has_triton_package

        out["triton"] = has_triton_package()
        if not out["triton"]:
            (problems if on_gpu else warnings).append(
                f"train.compile: {mode} compiles the GPU jobs' towers with Triton, which this environment lacks; "
                f"install the `triton` package that matches torch {torch.__version__}, or set `train: {{compile: none}}`.")
    if not on_gpu:
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            out["cxx"] = get_cpp_compiler()
        except Exception as e:  # noqa: BLE001 - torch's InvalidCxxCompiler, or a broken installation
            out["cxx"] = None
            (problems if on_cpu else warnings).append(
                f"train.compile: {mode} compiles CPU jobs with a C++ compiler, and none works here "
                f"({str(e).splitlines()[0][:200]}); install one (g++) or set `train: {{compile: none}}`.")
    warnings.append(f"cost: train.compile is {mode}: the estimate prices eager steps and leaves out compile time "
                    f"(paid in each job's first epoch, mostly by the first job of each shape: the jobs share the "
                    f"kernel cache {out['kernel_cache']}); the training log and each result's `compile` field record it.")
    return out


# ------------------------------------------------------------------------------------------ disk
def _prompt_params(method: str, opts: dict, text_w: int, vis_w: int, layers: int, embed_dim: int = 512) -> int:
    o = study.full_options(method, opts)
    if method == "coop":
        return int(o["n_ctx"]) * text_w
    if method == "softcpt":  # the shared task context and the meta network (feature -> class context)
        return int(o["n_task_ctx"]) * text_w + (embed_dim + 1) * int(o["n_ctx"]) * text_w
    if method == "vpt":
        return (layers if o.get("deep", True) else 1) * int(o["n_ctx"]) * vis_w
    h, n = int(o.get("hidden", 128)), int(o["n_ctx"])
    # shared tokens (text + every visual layer), projections in and out, one width-h attention block
    return (layers + 1) * n * h + 2 * (text_w * h + vis_w * h) + 12 * h * h


def _free_bytes(path: Path) -> tuple[Path, int, int]:
    p = path.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.stat(p)
    return p, shutil.disk_usage(p).free, st.st_dev


def check_disk(cfg: dict, rows: list, problems: list, model_info: dict, concurrent: int = 1,
               multitask: dict | None = None) -> list:
    """Bytes the study writes per location against the free space of each file system; ``multitask``:
    the multitask study's job estimate (:func:`mvlpt.cost.estimate_multitask`), whose group prompts and
    results are added."""
    from .datasets.paths import resolve_data_dir

    m = model_info
    seeds, tasks = len(cfg["seeds"]), len(rows)
    methods = list(cfg["methods"])
    results_b = len(methods) * tasks * tasks * seeds * RESULT_BYTES + TABLES_BYTES
    states_b = 0
    for method in methods:
        params = _prompt_params(method, (cfg.get("method_options") or {}).get(method), m["text_width"], m["vision_width"], m["layers"])
        results_b += tasks * seeds * params * 4  # single-task prompts (safetensors, fp32)
        states_b = max(states_b, params * 4 * 3 * seeds)  # a state: prompts + momentum + best, per seed
    if multitask:  # group source prompts, target and joint results; each job writes every seed it trains
        per_job = seeds if cfg["stack_seeds"] else 1
        for method, est in multitask["per_method"].items():
            jobs = est["jobs"]
            params = _prompt_params(method, (cfg.get("method_options") or {}).get(method), m["text_width"],
                                    m["vision_width"], m["layers"], m["embed_dim"])
            # a joint job writes a result per member and seed: at most every task's
            results_b += per_job * (jobs["source"] * params * 4 + (jobs["target"] + jobs["joint"] * tasks) * RESULT_BYTES)
    cache_b = tasks * seeds * 20e3  # split files
    if "coop" in methods:
        for r in rows:  # CoOp's frozen image features: test split + few-shot images, float32
            n = (r.test_images or 0) + seeds * ((r.fewshot_train or 0) + (r.fewshot_val or 0))
            cache_b += n * m["embed_dim"] * 4
    sim = {"sample_size": 256, **(cfg.get("similarity") or {})}
    cache_b += sum((int(sim["sample_size"]) + seeds * ((r.fewshot_train or 0))) * m["embed_dim"] * 4 + r.classes * m["embed_dim"] * 4
                   for r in rows)
    cache_b += states_b * max(1, concurrent)  # resumable states of the jobs running at once
    need = [("results", Path(cfg["results_dir"]), results_b), ("cache", Path(cfg["cache_dir"]), cache_b)]
    if any(r.suite == "elevater" for r in rows):
        from .datasets import routes

        data_dir = resolve_data_dir(cfg.get("data_dir"))
        to_fetch = 0.0
        for r in rows:
            if r.suite == "elevater" and r.data == "missing":
                spec = routes.route_spec(r.task)
                first = spec.get(spec["routes"][0]) if spec.get("routes") else spec.get("manual")
                to_fetch += float((first or {}).get("disk_gb") or 0) * 1e9
        need.append(("data (still to fetch)", data_dir, to_fetch))
    by_dev: dict[int, dict] = {}
    out = []
    for what, path, b in need:
        where, free, dev = _free_bytes(path)
        out.append({"location": what, "path": str(path), "need_bytes": int(b), "free_bytes": int(free), "filesystem": str(where)})
        g = by_dev.setdefault(dev, {"need": 0, "free": free, "what": []})
        g["need"] += b
        g["what"].append(f"{what} ({path})")
    for g in by_dev.values():
        if g["need"] > g["free"]:
            problems.append(f"disk: {', '.join(g['what'])} need about {g['need'] / 1e9:.1f} GB but only "
                            f"{g['free'] / 1e9:.1f} GB are free there; free space or point `results_dir` / `cache_dir` / "
                            f"`data_dir` elsewhere.")
    return out


# ------------------------------------------------------------------------------------------ cost
def model_dims(name: str) -> dict:
    from .models.clip import _open_clip

    mc = _open_clip().get_model_config(name) or {}
    v, t = mc.get("vision_cfg", {}), mc.get("text_cfg", {})
    return {"embed_dim": int(mc.get("embed_dim", 512)), "text_width": int(t.get("width", 512)),
            "vision_width": int(v.get("width", 768)), "layers": int(v.get("layers", 12))}


def study_cost(cfg: dict, rows: list, warnings: list) -> dict:
    from . import cost
    from .tasks import get_task

    model = cfg["model"]["name"]
    cal, note = cost.load_calibration(model)
    if note:
        warnings.append(f"cost: {note}.")
    text_options = {m: (cfg.get("method_options") or {}).get(m) or {} for m, meth in study.METHODS.items() if meth.learns_text}
    from .config import TrainConfig

    train = {**dataclasses.asdict(TrainConfig()), **cfg["train"]}
    priced = [r for r in rows if r.fewshot_train is not None]
    multitask = isinstance(cfg.get("multitask"), dict) and not multitask_problems(cfg)
    mt = study.multitask_settings(cfg.get("multitask"), cfg["methods"]) if multitask else None
    task_prompt = {}
    if mt is not None and any(study.METHODS[m].task_conditioned for m in mt["methods"]):  # SoftCPT's task prompts
        opts = study.full_options("softcpt", (cfg.get("method_options") or {}).get("softcpt"))
        task_prompt = cost.task_prompt_lengths([r.task for r in priced], model, int(opts["n_task_ctx"]), opts.get("descriptions"))
    tasks = []
    for r in priced:
        lengths, prefix = cost.prompt_shapes(get_task(r.task).classnames, model, text_options)
        tasks.append(cost.TaskCost(r.task, r.classes, r.fewshot_train, r.fewshot_val, r.test_images or 0, lengths,
                                   task_prompt.get(r.task, 0), prefix))
    shape = cost.StudyShape(tuple(tasks), tuple(cfg["methods"]), len(cfg["seeds"]), cfg["mode"], bool(cfg["stack_seeds"]),
                            int(train["epochs"]), int(train["batch_size"]), int(train["batch_size_multitask"]),
                            int(train["eval_batch_size"]), int(cfg["shots"]))
    est = cost.estimate(shape, cal)
    if mt is not None and len(tasks) >= 2:
        est["multitask"] = m = cost.estimate_multitask(shape, mt, cal)
        est["with_multitask"] = {"gpu_hours": est["gpu_hours"] + m["gpu_hours"]["total"],
                                 "jobs": est["jobs"] + m["jobs"]["total"]}
    est["calibration_file"] = cal.path
    est["calibration_describes"] = cal.describes()
    est["note"] = note
    return est


# ------------------------------------------------------------------------------------------ run
def _check_config(cfg: dict, problems: list) -> bool:
    from .tasks import list_tasks
    from .tasks.fewshot import POLICIES

    ok = True
    known = set(list_tasks())
    unknown = [t for t in cfg["tasks"] if t not in known]
    if unknown:
        problems.append(f"config: unknown task(s) {', '.join(map(str, unknown))}; `mvlpt tasks` lists the known ones.")
        ok = False
    if cfg[POLICY_KEY] not in POLICIES:
        problems.append(f"config: `{POLICY_KEY}` must be one of {', '.join(POLICIES)}, got {cfg[POLICY_KEY]!r}.")
        ok = False
    shots = cfg.get("shots")
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        problems.append(f"config: `shots` must be an integer >= 1, got {shots!r}.")
        ok = False
    from .config import TrainConfig

    try:
        TrainConfig.from_dict(cfg.get("train"))  # what every training job would refuse
    except MvlptError as e:
        problems.append(f"config: train: {e}")
        ok = False
    return ok


def results_dir_problems(results_dir: str | os.PathLike) -> list[str]:
    """What only preflight sees (issue 24, class 5): the results folder is a folder this user can write
    in, or can be made in a writable folder."""
    d = Path(results_dir)
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return [f"config: the results folder {d} {'is' if probe == d else 'lies under'} a file ({probe}), not a folder; "
                f"move the file or set `results_dir` to a folder."]
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return [f"config: the results folder {d} cannot be written ({probe} is read-only for this user); set "
                f"`results_dir` to a writable folder."]
    return []


def study_power(cfg: dict, rows: list, noise_from: str | os.PathLike | None = None) -> dict:
    """What the study can resolve (:func:`mvlpt.gainstats.power_table`): per method, the smallest gain a cell
    detects (two-sided test at 1 - level, power 0.8) with the config's seeds and the median test set of its
    tasks, and the seeds that gains of 1, 2 and 5 points need. The noise is a collected study's (``noise_from``:
    its tables folder) or the figures mvlpt ships (:data:`mvlpt.gainstats.SHIPPED_NOISE`)."""
    import numpy as np

    from . import gainstats, tables

    if noise_from is not None:
        d = Path(noise_from)
        noises = gainstats.noise_from(tables.read_table(d / "pairs.parquet"), tables.read_table(d / "runs.parquet"))
    else:
        noises = gainstats.SHIPPED_NOISE
    methods = [m for m in cfg["methods"] if m in noises]
    sizes = [r.test_images for r in rows if r.test_images]
    if not methods or not sizes:
        return {}
    n_test = float(np.median(sizes))
    level = float(study.analysis_settings(cfg.get("analysis"))["level"])
    table = gainstats.power_table({m: noises[m] for m in methods}, len(cfg["seeds"]), n_test, alpha=1 - level)
    return {"seeds": len(cfg["seeds"]), "n_test": n_test, "alpha": 1 - level, "noise_from": noises[methods[0]].source,
            "per_method": table.set_index("method").drop(columns=["seeds", "n_test", "alpha", "noise_from"])
            .replace({np.nan: None}).to_dict(orient="index")}


def run(cfg: dict, *, config_path: str = "", deep: bool = False, profile: str | None = None,
        multitask: bool | None = None, noise_from: str | os.PathLike | None = None) -> Report:
    """Check the study ``cfg`` (a config dict as the workflow reads it) and estimate its cost.
    ``multitask``: check and price its multitask study too (None: when ``cfg`` has a ``multitask``
    section, even an empty one; False: never)."""
    t0 = time.perf_counter()
    import copy

    from .configcheck import rule_problems

    # the workflow's own rules first (mvlpt.configcheck: one rule set), then what only preflight sees
    ruled = [f"config: {p}." for p in rule_problems(copy.deepcopy(cfg))]
    if any(p.endswith("(see config/README.md).") and not p.startswith("config: train: ") for p in ruled):
        # the schema: nothing else is safe to read
        return Report(config_path, [], ruled, [], {}, {}, [], {}, seconds=round(time.perf_counter() - t0, 2))
    cfg = with_defaults(cfg)
    if multitask is False:
        cfg["multitask"] = None
    elif multitask and cfg["multitask"] is None:
        cfg["multitask"] = {}
    problems: list[str] = []
    warnings: list[str] = []
    rows: list[TaskRow] = []
    problems.extend(ruled)
    problems.extend(multitask_problems(cfg))
    problems.extend(results_dir_problems(cfg.get("results_dir") or "results"))
    if not ruled and _check_config(cfg, problems):
        for name in cfg["tasks"]:
            rows.append(check_task(name, cfg, deep=deep, problems=problems, warnings=warnings))
    model = check_weights(cfg["model"], problems)
    devices = check_devices(cfg, problems, warnings, profile)
    devices["compile"] = check_compile(cfg, devices, problems, warnings, on_slurm=bool(profile))
    disk, est = [], {}
    if rows and model.get("name"):
        try:  # the estimate first: the disk check counts the multitask study's outputs from its jobs
            est = study_cost(cfg, rows, warnings)
        except MvlptError as e:
            problems.append(str(e))
        try:
            slurm = devices.get("slurm") or {}
            concurrent = int(slurm.get("jobs") or 0) if profile else len(devices.get("cuda_gpus") or [])
            disk = check_disk(cfg, rows, problems, model_dims(cfg["model"]["name"]), concurrent, est.get("multitask"))
        except MvlptError as e:
            problems.append(str(e))
    power = {}
    if rows:
        try:
            power = study_power(cfg, rows, noise_from)
        except MvlptError as e:
            problems.append(str(e))
    return Report(config_path, [dataclasses.asdict(r) for r in rows], problems, warnings, model, devices, disk, est,
                  seconds=round(time.perf_counter() - t0, 2), power=power)


def problems(cfg: dict, *, deep: bool = False, report_path: str | os.PathLike | None = None,
             multitask: bool = False) -> list[str]:
    """For the workflow: the sentences that stop ``cfg``'s study (empty: it can run through), and the
    whole report written to ``report_path`` if given. Skipped (empty list) when the config says
    ``preflight: false``. ``multitask``: the run's targets include the multitask study, so check and
    price it too (a validated config always has a ``multitask`` section: the schema's default fills it
    in, so its presence says nothing there)."""
    if cfg.get(SKIP_KEY) is False:
        return []
    rep = run(cfg, deep=deep, multitask=multitask)
    if report_path is not None:
        from .io import write_json

        write_json(rep.to_dict(), report_path)
    return rep.problems


# ------------------------------------------------------------------------------------------ output
def _gb(b: float) -> str:
    return f"{b / 1e9:.1f} GB" if b >= 1e8 else f"{b / 1e6:.0f} MB"


def format_report(rep: Report, cfg_shots: int | None = None, policy: str = "") -> str:
    lines = []
    head = ("task", "data", "route", "classes", "train", "img/class", "short", "fs train", "fs val", "test")
    rows = [head]
    for r in rep.tasks:
        pc = "-" if r["per_class_min"] is None else (
            f"{r['per_class_min']}" if r["per_class_min"] == r["per_class_max"] else f"{r['per_class_min']}-{r['per_class_max']}")
        if r["per_class_from"].startswith("manifest") and r["per_class_min"] is not None:
            pc = f"~{pc}"
        rows.append((r["task"], r["data"], r["route"] or "-", str(r["classes"]), _n(r["train_images"]), pc,
                     str(r["short_classes"]) if r["short_classes"] else "-", _n(r["fewshot_train"]), _n(r["fewshot_val"]),
                     _n(r["test_images"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"(img/class: training images per class, ~ = ELEVATER's manifest mean where the data are not here; "
                 f"fs train / fs val: few-shot images per seed{f' at {cfg_shots} shots' if cfg_shots else ''}"
                 f"{f', policy {policy}' if policy else ''})")
    m = rep.model
    lines.append("")
    lines.append(f"model: {m.get('name')} / {m.get('pretrained')}: " + (m.get("weights") or "not resolvable offline"))
    d = rep.devices
    gpus = d.get("cuda_gpus") or []
    lines.append(f"devices: {len(gpus)} CUDA GPU(s){': ' + ', '.join(gpus) if gpus else ''}; lease directory "
                 f"{d.get('lease_dir')} ({'writable' if d.get('lease_dir_writable') else 'NOT writable'})")
    c = d.get("compile") or {}
    if "kernel_cache" in c:  # checked (not none, not an unknown mode, which is a config problem)
        needs = []
        if "triton" in c:
            needs.append(f"Triton {'present' if c['triton'] else 'MISSING'}")
        if "cxx" in c:
            needs.append(f"C++ compiler {c['cxx'] or 'MISSING'}")
        lines.append(f"torch.compile ({c['mode']}): {', '.join(needs)}; kernel cache {c['kernel_cache']}")
    if d.get("slurm"):
        s = d["slurm"]
        parts = sorted({(v["partition"], v["gpu_request"]) for v in s["rules"].values()})
        lines.append(f"SLURM profile {s['profile']}: " + "; ".join(f"partition {p}, {g}" for p, g in parts)
                     + " (GPU rules)")
    for x in rep.disk:
        lines.append(f"disk: {x['location']} {x['path']}: needs ~{_gb(x['need_bytes'])}, {_gb(x['free_bytes'])} free")
    c = rep.cost
    if c:
        lines.append("")
        lines.append(f"cost estimate for {c['calibration_describes']}:")
        for method, v in c["per_method"].items():
            lines.append(f"  {method:5s} {v['gpu_hours']:9.1f} GPU-hours  ({v['jobs']} jobs)")
        lines.append(f"  total {c['gpu_hours']:9.1f} GPU-hours  ({c['jobs']} jobs; calibration {c['calibration_file']})")
        if c.get("multitask"):
            lines.extend(_multitask_lines(c["multitask"], c["with_multitask"]))
    if rep.power:
        pw = rep.power
        lines.append("")
        lines.append(f"power (a cell's gain, two-sided test at {pw['alpha']:.2g}, power 0.8; {pw['seeds']} seeds, "
                     f"median test set {pw['n_test']:.0f} images; noise: {pw['noise_from']}):")
        for method, v in pw["per_method"].items():
            need = ", ".join(f"{k.removeprefix('seeds_for_')}: {'no number of seeds' if n is None else f'{n:.0f} seeds'}"
                             for k, n in v.items() if k.startswith("seeds_for_"))
            lines.append(f"  {method:5s} smallest detectable gain {100 * v['min_detectable_gain']:.1f} points "
                         f"({100 * v['min_detectable_gain_any_seeds']:.1f} with unlimited seeds); {need}")
    lines.append("")
    for w in rep.warnings:
        lines.append(f"note: {w}")
    for p in rep.problems:
        lines.append(f"problem: {p}")
    verdict = ("preflight passed: the study can run through" if rep.ok else
               f"preflight found {len(rep.problems)} problem(s): the study cannot run through")
    lines.append(f"{verdict} ({rep.seconds:.1f} s).")
    return "\n".join(lines)


def _multitask_lines(mt: dict, together: dict) -> list[str]:
    bound = "" if mt["exact"] else ", an upper bound"
    lines = ["", f"multitask study (modes {', '.join(mt['modes'])}; strategies {', '.join(mt['strategies'])}; k = {mt['k']}{bound}):"]
    width = max(5, *(len(m) for m in mt["per_method"]))
    for method, v in [*mt["per_method"].items(), ("total", mt)]:
        j = v["jobs"]
        lines.append(f"  {method:{width}s} {v['gpu_hours']['total']:9.1f} GPU-hours  ({j['total']} job{'' if j['total'] == 1 else 's'}: {j['source']} group "
                     f"source, {j['target']} target, {j['joint']} joint)")
    lines.append(f"  pairwise and multitask studies together: {together['gpu_hours']:.1f} GPU-hours ({together['jobs']} jobs)")
    lines.extend(f"  ({a})" for a in mt["assumptions"])
    return lines


def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def default_json_path() -> str:
    return os.path.join("logs", "preflight.json")


def measure_calibration(cfg: dict, say=print) -> str:
    """``--calibrate``: measure this machine's GPU (or CPU) for ``cfg``'s model and store it."""
    from . import cost

    cfg = with_defaults(cfg)
    opts = cfg.get("method_options") or {}
    cal = cost.calibrate(cfg["model"]["name"], None if str(cfg.get("device", "auto")) == "auto" else str(cfg["device"]),
                         workers=int(cfg["train"].get("workers", 3) or 1),
                         n_ctx=int((opts.get("coop") or {}).get("n_ctx", 16)),
                         vpt_tokens=int(study.canonical_options("vpt", opts.get("vpt"))[0].get("n_ctx", 16)),
                         upt_tokens=int((opts.get("upt") or {}).get("n_ctx", 4)), say=say)
    return str(cost.save_user_calibration(cal))
