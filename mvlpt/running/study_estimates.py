"""Preflight, the estimates of a checked study (its tasks' :class:`~mvlpt.running.task_check.TaskRow` s): its
GPU-hours (:func:`study_cost`: the study's shape priced by :mod:`mvlpt.running.cost` with the calibration
of :mod:`mvlpt.running.calibration`; with a ``budget`` section, the budgeted study's too) and the gains its seeds can resolve (:func:`study_power`)."""

from __future__ import annotations

import dataclasses
import os

from mvlpt.errors import MvlptError
from mvlpt.running.multitask_check import multitask_problems
from mvlpt.study import vocabulary


def study_cost(cfg: dict, rows: list, warnings: list, *, pairs: bool = True) -> dict:
    """The study's GPU-hours (:func:`mvlpt.running.cost.estimate`) and, with a valid ``multitask`` section,
    its multitask study's (:func:`mvlpt.running.cost.estimate_multitask`). ``pairs`` False: no (source,
    target) pair, and baselines only of the multitask study's targets (the Table 1 study, which trains
    no pair: :func:`table1_cost`)."""
    from mvlpt.running import cost
    from mvlpt.running.calibration import load_calibration
    from mvlpt.running.prompt_shapes import prompt_shapes, task_prompt_lengths
    from mvlpt.tasks import get_task

    model = cfg["model"]["name"]
    cal, note = load_calibration(model)
    if note:
        warnings.append(f"cost: {note}.")
    text_options = {
        m: (cfg.get("method_options") or {}).get(m) or {} for m, meth in vocabulary.METHODS.items() if meth.learns_text
    }
    from mvlpt.training.config import TrainConfig

    train = {**dataclasses.asdict(TrainConfig()), **cfg["train"]}
    priced = [r for r in rows if r.fewshot_train is not None]
    multitask = isinstance(cfg.get("multitask"), dict) and not multitask_problems(cfg)
    mt = vocabulary.multitask_settings(cfg.get("multitask"), cfg["methods"]) if multitask else None
    task_prompt = {}
    conditioned = [m for m in (mt["methods"] if mt is not None else []) if vocabulary.METHODS[m].task_conditioned]
    if conditioned:  # SoftCPT's task prompts
        opts = vocabulary.full_options(conditioned[0], (cfg.get("method_options") or {}).get(conditioned[0]))
        task_prompt = task_prompt_lengths([r.task for r in priced], model, int(opts["n_task_ctx"]), opts.get("descriptions"))
    tasks = []
    for r in priced:
        try:
            names = tuple(get_task(r.task).classnames)
        except MvlptError:  # names read from data that are not there yet (mvlpt.tasks.coop): priced at one token
            names = ()
            warnings.append(
                f"cost: {r.task}'s class names come from its data, which are not there yet; its text prompts are priced "
                f"at one token per name (a lower bound)."
            )
        lengths, prefix = prompt_shapes(names, model, text_options)
        tasks.append(
            cost.TaskCost(
                r.task, r.classes, r.fewshot_train, r.fewshot_val, r.test_images or 0, lengths, task_prompt.get(r.task, 0), prefix
            )
        )
    shape = cost.StudyShape(
        tuple(tasks),
        tuple(cfg["methods"]),
        len(cfg["seeds"]),
        cfg["mode"],
        bool(cfg["stack_seeds"]),
        int(train["epochs"]),
        int(train["batch_size"]),
        int(train["batch_size_multitask"]),
        int(train["eval_batch_size"]),
        int(cfg["shots"]),
    )
    fixed = set((mt or {}).get("sources") or ())
    est = cost.estimate(shape, cal, pairs=pairs, baselines=None if pairs else [t.name for t in tasks if t.name not in fixed])
    warnings.extend(f"cost: {a}." for a in est["assumptions"])  # a method priced from another's figures says so
    if mt is not None and len(tasks) >= 2:
        est["multitask"] = m = cost.estimate_multitask(shape, mt, cal)
        est["with_multitask"] = {
            "gpu_hours": est["gpu_hours"] + m["gpu_hours"]["total"],
            "jobs": est["jobs"] + m["jobs"]["total"],
        }
    if isinstance(cfg.get("budget"), dict):
        from mvlpt.study import budget

        if not budget.budget_problems(cfg):  # a section that cannot run is a config problem already
            est["budget"] = cost.estimate_budget(est, budget.plan(cfg))
    est["calibration_file"] = cal.path
    est["calibration_describes"] = cal.describes()
    est["note"] = note
    return est


def table1_cost(cfg: dict, rows: list, warnings: list) -> dict:
    """GPU-hours of the paper's Table 1 study (``cfg``: :func:`mvlpt.study.settings.table1_study`'s config, its
    tasks' rows): the targets' single-task baselines, the source prompt on the sources and every target
    fine-tuned from it, per method and in total."""
    est = study_cost(cfg, rows, warnings, pairs=False)
    mt = est.get("multitask") or {"gpu_hours": {"total": 0.0}, "jobs": {"total": 0}}
    return {
        "baselines": {"gpu_hours": est["gpu_hours"], "jobs": est["jobs"]},
        "multitask": mt,
        "gpu_hours": est["gpu_hours"] + mt["gpu_hours"]["total"],
        "jobs": est["jobs"] + mt["jobs"]["total"],
        "shots": int(cfg["shots"]),
        "calibration_describes": est["calibration_describes"],
    }


def study_power(cfg: dict, rows: list, noise_from: str | os.PathLike | None = None) -> dict:
    """What the study can resolve (:func:`mvlpt.analysis.gainstats.power_table`): per method, the smallest gain a cell
    detects (two-sided test at 1 - level, power 0.8) with the config's seeds and the median test set of its
    tasks, and the seeds that gains of 1, 2 and 5 points need. The noise is a collected study's (``noise_from``:
    its tables folder) or the figures mvlpt ships (:data:`mvlpt.analysis.gainstats.SHIPPED_NOISE`)."""
    import numpy as np

    from mvlpt.analysis import gainstats, tables
    from mvlpt.study import layout

    if noise_from is not None:
        pairs, runs = (tables.read_table(layout.TABLE.path(noise_from, name, "parquet")) for name in ("pairs", "runs"))
        noises = gainstats.noise_from(pairs, runs)
    else:
        noises = gainstats.SHIPPED_NOISE
    methods = [m for m in cfg["methods"] if m in noises]
    sizes = [r.test_images for r in rows if r.test_images]
    if not methods or not sizes:
        return {}
    n_test = float(np.median(sizes))
    level = float(vocabulary.analysis_settings(cfg.get("analysis"))["level"])
    table = gainstats.power_table({m: noises[m] for m in methods}, len(cfg["seeds"]), n_test, alpha=1 - level)
    return {
        "seeds": len(cfg["seeds"]),
        "n_test": n_test,
        "alpha": 1 - level,
        "noise_from": noises[methods[0]].source,
        "per_method": table.set_index("method")
        .drop(columns=["seeds", "n_test", "alpha", "noise_from"])
        .replace({np.nan: None})
        .to_dict(orient="index"),
    }
