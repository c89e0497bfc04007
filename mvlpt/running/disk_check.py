"""Preflight, the disk: the bytes the study writes (caches, states, results; data still to fetch) against
the free space of each file system (:func:`check_disk`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary

RESULT_BYTES = 1500  # one result JSON
TABLES_BYTES = 50e6  # tables, matrices, similarity tables, figures, reports (all together)


def prompt_params(method: str, opts: dict, text_w: int, vis_w: int, layers: int, embed_dim: int = 512) -> int:
    """The numbers a prompt file of ``method`` holds: its learner's own count (``parameter_count``)."""
    dims = {"embed_dim": embed_dim, "text_width": text_w, "vision_width": vis_w, "layers": layers}
    try:
        return int(vocabulary.method(method).learner_class().parameter_count(vocabulary.full_options(method, opts), dims))
    except NotImplementedError:
        raise MvlptError(
            f"method {method!r}'s learner does not say how many parameters it has, so the preflight cannot "
            f"size its prompt files; give its class a parameter_count classmethod."
        ) from None


def _free_bytes(path: Path) -> tuple[Path, int, int]:
    p = path.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.stat(p)
    return p, shutil.disk_usage(p).free, st.st_dev


def check_disk(
    cfg: dict, rows: list, problems: list, model_info: dict, concurrent: int = 1, multitask: dict | None = None
) -> list:
    """Bytes the study writes per location against the free space of each file system; ``multitask``:
    the multitask study's job estimate (:func:`mvlpt.running.cost.estimate_multitask`), whose group prompts and
    results are added."""
    from mvlpt.datasets.paths import resolve_data_dir

    m = model_info
    seeds, tasks = len(cfg["seeds"]), len(rows)
    methods = list(cfg["methods"])
    results_b = len(methods) * tasks * tasks * seeds * RESULT_BYTES + TABLES_BYTES
    states_b = 0
    for method in methods:
        params = prompt_params(
            method, (cfg.get("method_options") or {}).get(method), m["text_width"], m["vision_width"], m["layers"], m["embed_dim"]
        )
        results_b += tasks * seeds * params * 4  # single-task prompts (safetensors, fp32)
        states_b = max(states_b, params * 4 * 3 * seeds)  # a state: prompts + momentum + best, per seed
    if multitask:  # group source prompts, target and joint results; each job writes every seed it trains
        per_job = seeds if cfg["stack_seeds"] else 1
        for method, est in multitask["per_method"].items():
            jobs = est["jobs"]
            params = prompt_params(
                method,
                (cfg.get("method_options") or {}).get(method),
                m["text_width"],
                m["vision_width"],
                m["layers"],
                m["embed_dim"],
            )
            # a joint job writes a result per member and seed: at most every task's
            results_b += per_job * (jobs["source"] * params * 4 + (jobs["target"] + jobs["joint"] * tasks) * RESULT_BYTES)
    cache_b = tasks * seeds * 20e3  # split files
    if any(vocabulary.method(x).caches_image_features for x in methods):
        for r in rows:  # the frozen image features (CoOp's), one set per task for every method that reads them: test split + few-shot images, float32
            n = (r.test_images or 0) + seeds * ((r.fewshot_train or 0) + (r.fewshot_val or 0))
            cache_b += n * m["embed_dim"] * 4
    sim = vocabulary.similarity_settings(cfg.get("similarity"))
    cache_b += sum(
        (int(sim["sample_size"]) + seeds * (r.fewshot_train or 0)) * m["embed_dim"] * 4 + r.classes * m["embed_dim"] * 4
        for r in rows
    )
    cache_b += states_b * max(1, concurrent)  # resumable states of the jobs running at once
    need = [("results", Path(cfg["results_dir"]), results_b), ("cache", Path(cfg["cache_dir"]), cache_b)]
    if any(r.suite in ("elevater", "coop") for r in rows):
        from mvlpt.datasets import coop, routes

        data_dir = resolve_data_dir(cfg.get("data_dir"))
        to_fetch = 0.0
        for r in rows:
            if r.suite == coop.SOURCE and r.data == "missing":
                to_fetch += float(coop.route_spec(r.task).get("disk_gb") or 0) * 1e9
            elif r.suite == "elevater" and r.data == "missing":
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
            problems.append(
                f"disk: {', '.join(g['what'])} need about {g['need'] / 1e9:.1f} GB but only "
                f"{g['free'] / 1e9:.1f} GB are free there; free space or point `results_dir` / `cache_dir` / "
                f"`data_dir` elsewhere."
            )
    return out
