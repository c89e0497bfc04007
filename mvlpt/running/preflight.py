"""Preflight: will a study run through, and what will it cost? Answered in seconds, before any job.

:func:`run` reads a study config (the workflow's format, its defaults filled in) and checks, per
task and for the study (each check in its own module):

* **data** (:mod:`mvlpt.running.task_check`): present and intact by the lock file's sizes (``deep``: sha256), by which route;
  ELEVATER tasks that are not on disk are named with the command that fetches them;
* **few-shot**: images per class in the train split against the configured shots and the few-shot
  policy (config key ``fewshot_policy``: ``available`` (default, ELEVATER's: a class with fewer
  than k images gives all it has) or ``strict`` (such a class stops the study here)); few-shot
  train / val images per seed, test size;
* **model weights** (:mod:`mvlpt.running.model_check`) resolvable offline (the shipped tiny weights, a file, or the Hugging Face
  cache), never downloading;
* **devices** (:mod:`mvlpt.running.device_check`): CUDA GPUs visible, the GPU lease directory writable; the SLURM profile's partition
  and GPU request read back;
* **disk** (:mod:`mvlpt.running.disk_check`): what the study writes (caches, states, results; data still to fetch) against the free
  space of each location;
* **cost**: GPU-hours per method and in total (:mod:`mvlpt.running.cost`, priced by
  :mod:`mvlpt.running.study_estimates`), naming the GPU it is for; and the **power** the seeds give;
* **budget** (when the config has a ``budget`` section, or the workflow's run asks for `snakemake budgeted`):
  its settings (:func:`mvlpt.study.budget.budget_problems`) and the jobs and GPU-hours at the budget
  (:func:`mvlpt.running.cost.estimate_budget`);
* **multitask** (when the config has a ``multitask`` section, even an empty one): its settings
  (:func:`mvlpt.running.multitask_check.multitask_problems`) and the jobs and GPU-hours it adds, by kind
  (:func:`mvlpt.running.cost.estimate_multitask`);
* **studies inside the study** (docs/shots.md): with ``shots`` a list, every shot count's study is checked
  and priced as its own (:func:`mvlpt.study.settings.shot_study`; its tasks' few-shot images per shot
  count) and the report sums them; ``table1``: the paper's Table 1 study too
  (:func:`mvlpt.study.settings.table1_study`: its data, and its price by
  :func:`mvlpt.running.study_estimates.table1_cost`).

Every problem is one sentence naming the task (or the item) and what to do. :func:`problems` is the
same check as a list of sentences, for the workflow to call before it schedules anything.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from mvlpt.errors import MvlptError
from mvlpt.running.device_check import check_compile, check_devices
from mvlpt.running.disk_check import check_disk
from mvlpt.running.model_check import check_weights, model_dims
from mvlpt.running.multitask_check import multitask_problems
from mvlpt.running.study_estimates import study_cost, study_power, table1_cost
from mvlpt.running.task_check import TaskRow, check_task
from mvlpt.study import settings

SKIP_KEY = "preflight"  # `preflight: false` in a config: the workflow skips the check


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
    """``cfg`` over the config schema's defaults (:func:`mvlpt.study.settings.fill_defaults`; a copy), but
    ``multitask`` and ``budget`` only where the config has the section (the schema's default {} is not one;
    None otherwise)."""
    import copy

    out = settings.fill_defaults(copy.deepcopy(cfg))
    out["multitask"] = copy.deepcopy(cfg.get("multitask"))
    if "budget" not in cfg:
        out["budget"] = None
    return out


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


def results_dir_problems(results_dir: str | os.PathLike) -> list[str]:
    """What only preflight sees (issue 24, class 5): the results folder is a folder this user can write
    in, or can be made in a writable folder."""
    d = Path(results_dir)
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return [
            f"config: the results folder {d} {'is' if probe == d else 'lies under'} a file ({probe}), not a folder; "
            f"move the file or set `results_dir` to a folder."
        ]
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return [
            f"config: the results folder {d} cannot be written ({probe} is read-only for this user); set "
            f"`results_dir` to a writable folder."
        ]
    return []


def run(
    cfg: dict,
    *,
    config_path: str = "",
    deep: bool = False,
    profile: str | None = None,
    multitask: bool | None = None,
    noise_from: str | os.PathLike | None = None,
    gpu_rules=None,
    table1: bool = False,
    pairs: bool = True,
    budget: bool | None = None,
) -> Report:
    """Check the study ``cfg`` (a config dict as the workflow reads it) and estimate its cost.
    ``multitask``: check and price its multitask study too (None: when ``cfg`` has a ``multitask``
    section, even an empty one; False: never); ``budget`` likewise its budgeted study (``budget`` section).
    ``profile``: a SLURM profile (folder or config.yaml) to read back, for ``gpu_rules``
    (:func:`mvlpt.running.device_check.slurm_profile`). A list of ``shots``: every shot count's study, summed
    (:func:`_studies_report`). ``table1``: the paper's Table 1 study too (``pairs`` False: price a study that
    trains no pair, as the Table 1 study)."""
    t0 = time.perf_counter()
    budget = "budget" in cfg if budget is None else budget
    # the workflow's own rules first (mvlpt.study.settings: one rule set), then what only preflight sees
    ruled = [f"config: {p}." for p in settings.problems(cfg, budget=budget)]
    if any(p.endswith("(see config/README.md).") and not p.startswith("config: train: ") for p in ruled):
        # the schema: nothing else is safe to read
        return Report(config_path, [], ruled, [], {}, {}, [], {}, seconds=round(time.perf_counter() - t0, 2))
    kw = {"deep": deep, "profile": profile, "multitask": multitask, "noise_from": noise_from, "gpu_rules": gpu_rules}
    kw["budget"] = budget
    if settings.shot_axis(cfg):
        from mvlpt.study import layout

        subs = {
            layout.SHOT_STUDY.relative(shots=n): run(settings.shot_study(cfg, n), config_path=config_path, **kw)
            for n in settings.shot_counts(cfg)
        }
        rep = _studies_report(config_path, subs)
    else:
        rep = _run_one(cfg, ruled, config_path=config_path, pairs=pairs, **kw)
    if table1:
        _add_table1(rep, cfg, config_path=config_path, **{**kw, "multitask": True, "budget": False})
    rep.seconds = round(time.perf_counter() - t0, 2)
    return rep


def _run_one(cfg, ruled, *, config_path, deep, profile, multitask, noise_from, gpu_rules, pairs, budget) -> Report:
    """:func:`run` for one study (a scalar ``shots``)."""
    cfg = with_defaults(cfg)
    if multitask is False:
        cfg["multitask"] = None
    elif multitask and cfg["multitask"] is None:
        cfg["multitask"] = {}
    if not budget:
        cfg["budget"] = None
    elif cfg["budget"] is None:
        cfg["budget"] = dict(settings.BUDGET_DEFAULTS)
    problems: list[str] = []
    warnings: list[str] = []
    rows: list[TaskRow] = []
    problems.extend(ruled)
    problems.extend(multitask_problems(cfg))
    problems.extend(results_dir_problems(cfg.get("results_dir") or "results"))
    # the schema passed (shots and the policy valid): every task mvlpt knows is checked, so its data problems
    # (with the fetch command) are named beside a config problem such as an unknown task
    from mvlpt.tasks import list_tasks

    known = set(list_tasks())
    for name in dict.fromkeys(cfg["tasks"]):
        if name in known:
            rows.append(check_task(name, cfg, deep=deep, problems=problems, warnings=warnings))
    model = check_weights(cfg["model"], problems)
    devices = check_devices(cfg, problems, warnings, profile, gpu_rules)
    devices["compile"] = check_compile(cfg, devices, problems, warnings, on_slurm=bool(profile))
    disk, est = [], {}
    if rows and model.get("name") and not ruled:  # a study the config rules refuse has no price
        try:  # the estimate first: the disk check counts the multitask study's outputs from its jobs
            est = study_cost(cfg, rows, warnings) if pairs else table1_cost(cfg, rows, warnings)
        except MvlptError as e:
            problems.append(str(e))
        try:
            slurm = devices.get("slurm") or {}
            concurrent = int(slurm.get("jobs") or 0) if profile else len(devices.get("cuda_gpus") or [])
            disk = check_disk(cfg, rows, problems, model_dims(cfg["model"]["name"]), concurrent, est.get("multitask"))
        except MvlptError as e:
            problems.append(str(e))
    power = {}
    if rows and not ruled:
        try:
            power = study_power(cfg, rows, noise_from)
        except MvlptError as e:
            problems.append(str(e))
    return Report(
        config_path,
        [dataclasses.asdict(r) for r in rows],
        problems,
        warnings,
        model,
        devices,
        disk,
        est,
        power=power,
    )


def _studies_report(config_path: str, subs: dict) -> Report:
    """One report of the studies ``subs`` (name -> :class:`Report`, e.g. one per shot count): their task rows
    (each naming its study and shots), problems and notes once each, the largest need of each disk
    location, and their cost summed (per method and in total, and per study under ``by_study``)."""
    reps = list(subs.values())
    first = reps[0]
    tasks = [{**r, "study": name} for name, rep in subs.items() for r in rep.tasks]
    disk: dict = {}
    for rep in reps:
        for x in rep.disk:
            key = (x["location"], x["path"])
            if key not in disk or x["need_bytes"] > disk[key]["need_bytes"]:
                disk[key] = x
    cost: dict = {}
    if all(rep.cost for rep in reps):
        cost = {k: v for k, v in first.cost.items() if k not in ("per_method", "multitask", "with_multitask", "assumptions")}
        cost["per_method"], cost["gpu_hours"], cost["jobs"] = {}, 0.0, 0
        cost["by_study"] = {}
        for name, rep in subs.items():
            c = rep.cost
            together = c.get("with_multitask") or {"gpu_hours": c["gpu_hours"], "jobs": c["jobs"]}
            cost["by_study"][name] = {**together, "shots": rep.tasks[0]["shots"] if rep.tasks else None}
            cost["gpu_hours"] += together["gpu_hours"]
            cost["jobs"] += together["jobs"]
            for method, v in c["per_method"].items():
                m = cost["per_method"].setdefault(method, {"gpu_hours": 0.0, "jobs": 0})
                m["gpu_hours"] += v["gpu_hours"]
                m["jobs"] += v["jobs"]
            if c.get("multitask"):
                m = cost["per_method"].setdefault("multitask", {"gpu_hours": 0.0, "jobs": 0})
                m["gpu_hours"] += c["multitask"]["gpu_hours"]["total"]
                m["jobs"] += c["multitask"]["jobs"]["total"]
    return Report(
        config_path,
        tasks,
        list(dict.fromkeys(p for rep in reps for p in rep.problems)),
        list(dict.fromkeys(w for rep in reps for w in rep.warnings)),
        first.model,
        first.devices,
        list(disk.values()),
        cost,
        power=first.power,
    )


def _add_table1(rep: Report, cfg: dict, *, config_path: str, **kw) -> None:
    """The paper's Table 1 study (:func:`mvlpt.study.settings.table1_study`) checked and priced into ``rep``:
    its tasks' rows (study ``table1``), its problems and notes (``table1: ...``), its cost under
    ``cost["table1"]``."""
    from mvlpt.study import layout

    name = layout.TABLE1_STUDY.relative()
    try:
        sub = settings.table1_study(with_defaults(cfg))
        sub.pop("budget", None)  # the Table 1 study is never budgeted (with_defaults' None is not a section)
    except MvlptError as e:
        rep.problems.append(str(e))
        return
    t1 = run(sub, config_path=config_path, pairs=False, **kw)
    rep.tasks.extend({**r, "study": name} for r in t1.tasks)
    rep.problems.extend(f"{name}: {p}" for p in t1.problems if p not in rep.problems)
    rep.warnings.extend(f"{name}: {w}" for w in t1.warnings if w not in rep.warnings)
    if t1.cost:
        rep.cost["table1"] = t1.cost


def problems(
    cfg: dict,
    *,
    deep: bool = False,
    report_path: str | os.PathLike | None = None,
    multitask: bool = False,
    profile: str | os.PathLike | None = None,
    gpu_rules=None,
    table1: bool = False,
    budget: bool = False,
) -> list[str]:
    """For the workflow: the sentences that stop ``cfg``'s study (empty: it can run through), and the
    whole report written to ``report_path`` if given. Skipped (empty list) when the config says
    ``preflight: false``. ``multitask``: the run's targets include the multitask study, so check and
    price it too (a validated config always has a ``multitask`` section: the schema's default fills it
    in, so its presence says nothing there); ``budget`` likewise for the budgeted study. ``profile``,
    ``gpu_rules``: the run's SLURM profile and the workflow's GPU rules (:func:`mvlpt.running.device_check.slurm_profile`)."""
    if cfg.get(SKIP_KEY) is False:
        return []
    rep = run(cfg, deep=deep, multitask=multitask, profile=profile, gpu_rules=gpu_rules, table1=table1, budget=budget)
    if report_path is not None:
        from mvlpt.io import write_json

        write_json(rep.to_dict(), report_path)
    return rep.problems


def _gb(b: float) -> str:
    return f"{b / 1e9:.1f} GB" if b >= 1e8 else f"{b / 1e6:.0f} MB"


def format_report(rep: Report, cfg_shots: int | None = None, policy: str = "") -> str:
    lines = []
    studies = any(r.get("study") for r in rep.tasks)  # shot counts, or the Table 1 study: a column naming each
    head = ("task", "data", "route", "classes", "train", "img/class", "short", "fs train", "fs val", "test")
    head = (*head, "study", "shots") if studies else head
    rows = [head]
    for r in rep.tasks:
        pc = (
            "-"
            if r["per_class_min"] is None
            else (
                f"{r['per_class_min']}"
                if r["per_class_min"] == r["per_class_max"]
                else f"{r['per_class_min']}-{r['per_class_max']}"
            )
        )
        if r["per_class_from"].startswith("manifest") and r["per_class_min"] is not None:
            pc = f"~{pc}"
        rows.append(
            (
                r["task"],
                r["data"],
                r["route"] or "-",
                str(r["classes"]),
                _n(r["train_images"]),
                pc,
                str(r["short_classes"]) if r["short_classes"] else "-",
                _n(r["fewshot_train"]),
                _n(r["fewshot_val"]),
                _n(r["test_images"]),
                *((r.get("study") or "-", _n(r.get("shots"))) if studies else ()),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    at = " at the row's shots" if studies else f" at {cfg_shots} shots" if cfg_shots else ""
    lines.append(
        f"(img/class: training images per class, ~ = ELEVATER's manifest mean where the data are not here; "
        f"fs train / fs val: few-shot images per seed{at}"
        f"{f', policy {policy}' if policy else ''})"
    )
    m = rep.model
    lines.append("")
    lines.append(f"model: {m.get('name')} / {m.get('pretrained')}: " + (m.get("weights") or "not resolvable offline"))
    d = rep.devices
    gpus = d.get("cuda_gpus") or []
    lines.append(
        f"devices: {len(gpus)} CUDA GPU(s){': ' + ', '.join(gpus) if gpus else ''}; lease directory "
        f"{d.get('lease_dir')} ({'writable' if d.get('lease_dir_writable') else 'NOT writable'})"
    )
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
        lines.append(f"SLURM profile {s['profile']}: " + "; ".join(f"partition {p}, {g}" for p, g in parts) + " (GPU rules)")
    for x in rep.disk:
        lines.append(f"disk: {x['location']} {x['path']}: needs ~{_gb(x['need_bytes'])}, {_gb(x['free_bytes'])} free")
    c = rep.cost
    if c:
        lines.append("")
        lines.append(f"cost estimate for {c['calibration_describes']}:")
        for method, v in c["per_method"].items():
            lines.append(f"  {method:5s} {v['gpu_hours']:9.1f} GPU-hours  ({v['jobs']} jobs)")
        lines.append(f"  total {c['gpu_hours']:9.1f} GPU-hours  ({c['jobs']} jobs; calibration {c['calibration_file']})")
        for name, v in (c.get("by_study") or {}).items():
            lines.append(f"  {name}: {v['gpu_hours']:.1f} GPU-hours ({v['jobs']} jobs) at {v['shots']} shots")
        if c.get("budget"):
            lines.extend(_budget_lines(c["budget"]))
        if c.get("multitask"):
            lines.extend(_multitask_lines(c["multitask"], c["with_multitask"]))
    t1 = (c or {}).get("table1")
    if t1:
        lines.append("")
        lines.append(
            f"table1 (the paper's Table 1 setting, {t1['shots']} shots): {t1['gpu_hours']:.1f} GPU-hours ({t1['jobs']} jobs: "
            f"{t1['baselines']['jobs']} target baseline and feature jobs, {t1['multitask']['jobs']['total']} source and target runs)"
        )
    if rep.power:
        pw = rep.power
        lines.append("")
        lines.append(
            f"power (a cell's gain, two-sided test at {pw['alpha']:.2g}, power 0.8; {pw['seeds']} seeds, "
            f"median test set {pw['n_test']:.0f} images; noise: {pw['noise_from']}):"
        )
        for method, v in pw["per_method"].items():
            need = ", ".join(
                f"{k.removeprefix('seeds_for_')}: {'no number of seeds' if n is None else f'{n:.0f} seeds'}"
                for k, n in v.items()
                if k.startswith("seeds_for_")
            )
            lines.append(
                f"  {method:5s} smallest detectable gain {100 * v['min_detectable_gain']:.1f} points "
                f"({100 * v['min_detectable_gain_any_seeds']:.1f} with unlimited seeds); {need}"
            )
    lines.append("")
    for w in rep.warnings:
        lines.append(f"note: {w}")
    for p in rep.problems:
        lines.append(f"problem: {p}")
    verdict = (
        "preflight passed: the study can run through"
        if rep.ok
        else f"preflight found {len(rep.problems)} problem(s): the study cannot run through"
    )
    lines.append(f"{verdict} ({rep.seconds:.1f} s).")
    return "\n".join(lines)


def _budget_lines(b: dict) -> list[str]:
    lines = [
        "",
        f"budgeted study (`snakemake budgeted`): {b['pairs']} of {b['total_pairs']} {b['unit']} ({100 * b['share']:.0f} %) "
        f"in {b['rounds']} round(s) of {', '.join(map(str, b['sizes']))}, rule {b['rule']}:",
    ]
    for method, v in [*b["per_method"].items(), ("total", b)]:
        lines.append(f"  {method:5s} {v['gpu_hours']:9.1f} GPU-hours  ({v['jobs']} jobs)")
    lines.append(
        f"  (the full study: {b['full_gpu_hours']:.1f} GPU-hours, {b['full_jobs']} jobs; baselines and feature jobs as "
        f"there, the pairs at their mean cost: the rounds choose them as results come in)"
    )
    return lines


def _multitask_lines(mt: dict, together: dict) -> list[str]:
    bound = "" if mt["exact"] else ", an upper bound"
    lines = [
        "",
        f"multitask study (modes {', '.join(mt['modes'])}; strategies {', '.join(mt['strategies'])}; k = {mt['k']}{bound}):",
    ]
    width = max(5, *(len(m) for m in mt["per_method"]))
    for method, v in [*mt["per_method"].items(), ("total", mt)]:
        j = v["jobs"]
        lines.append(
            f"  {method:{width}s} {v['gpu_hours']['total']:9.1f} GPU-hours  ({j['total']} job{'' if j['total'] == 1 else 's'}: {j['source']} group "
            f"source, {j['target']} target, {j['joint']} joint)"
        )
    lines.append(f"  pairwise and multitask studies together: {together['gpu_hours']:.1f} GPU-hours ({together['jobs']} jobs)")
    lines.extend(f"  ({a})" for a in mt["assumptions"])
    return lines


def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def default_json_path() -> str:
    return os.path.join("logs", "preflight.json")
