"""The benchmark's cost model: a run's step, validation and test seconds from the towers' measured
component times (:func:`model_costs`), calibrated on the measured pair (:func:`calibrate`), summed
over the paper's job list (:func:`study_estimate`). ``mvlpt.running.cost`` (the preflight's estimate)
follows the same ideas."""

from __future__ import annotations

import math

import numpy as np

from mvlpt.study import vocabulary
from mvlpt.tasks import get_task

from .common import prompt_length, steady


def fit_line(xs, ys) -> dict:
    """Least-squares ``y = a + b x`` (a >= 0), with the largest relative residual."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"a": float(y.mean()), "b": 0.0, "max_rel_err": 0.0, "points": [[float(u), float(v)] for u, v in zip(x, y)]}
    b, a = np.polyfit(x, y, 1)
    if a < 0:  # no negative intercept: refit through the origin
        a, b = 0.0, float((x @ y) / (x @ x))
    pred = a + b * x
    return {"a": float(a), "b": float(b), "max_rel_err": float(np.max(np.abs(pred - y) / y)),
            "points": [[float(u), float(v)] for u, v in zip(x, y)]}


def line(fit: dict, x: float) -> float:
    return fit["a"] + fit["b"] * x


def fit_text(points, ys) -> dict:
    """Non-negative least squares ``t = a + b n L + c n L^2`` over (sequences n, length L) points:
    per-token work plus attention's per-token cost growing with the length."""
    from scipy.optimize import nnls

    n, L = np.asarray(points, float).T
    y = np.asarray(ys, float)
    X = np.stack([np.ones_like(n), n * L, n * L * L], 1)
    w = 1 / y  # relative errors
    coef, _ = nnls(X * w[:, None], y * w)
    pred = X @ coef
    return {"a": float(coef[0]), "b": float(coef[1]), "c": float(coef[2]), "max_rel_err": float(np.max(np.abs(pred - y) / y)),
            "points": [[int(a), int(b), float(v)] for a, b, v in zip(n, L, y)]}


def text_time(fit: dict, n: int, L: int) -> float:
    return fit["a"] + fit["b"] * n * L + fit["c"] * n * L * L



def model_costs(method: str, path: str, comp: dict, C: int, L: int, K: int, bs: int, n_train: int,
                val_sizes: list[int], test_sizes: list[int], eval_bs: int) -> dict:
    """Predicted seconds of one training step, one validation pass and the test passes of one run.

    ours: K stacked seeds, cut text length L, cached image features (CoOp) / text features (VPT);
    ref: one seed, 77 tokens, both towers on every step and every evaluation batch."""
    text, img = comp["text"], comp["image"]
    learns_text, learns_image = vocabulary.method(method).learns_text, vocabulary.method(method).learns_image
    img_train = f"{method}_fwd_bwd" if learns_image else "plain_fwd"  # components measured per prompted method
    img_eval = f"{method}_fwd" if learns_image else "plain_fwd"
    if path == "ours":
        step = (text_time(text["fwd_bwd"], K * C, L) if learns_text else 0.0) + (line(img[img_train], K * bs) if learns_image else 0.0)

        def eval_pass(sizes, text_passes):  # per task, batches of eval_bs, all members stacked in each batch;
            # class features once per validation / per test (Trainer.validate, Trainer.test)
            t = text_passes * text_time(text["fwd"], K * C, L) if learns_text else 0.0
            for n in sizes:
                if learns_image:
                    t += math.ceil(n / eval_bs) * img[img_eval]["a"] + img[img_eval]["b"] * K * n
            return t
    else:
        step = text_time(text["fwd_bwd" if learns_text else "fwd"], C, 77) + line(img[img_train], bs)

        def eval_pass(sizes, text_passes=None):  # batches of eval_bs over the given images; both towers every batch
            n = sum(sizes)
            nb = math.ceil(n / eval_bs)
            return nb * (text_time(text["fwd"], C, 77) + img[img_eval]["a"]) + img[img_eval]["b"] * n

    return {"step": step, "steps": math.ceil(n_train / bs), "val": eval_pass(val_sizes, 1), "test": eval_pass(test_sizes, len(test_sizes))}


# ---------------------------------------------------------------------------- the whole study
def study_estimate(ctx, comps: dict, calib: dict, setup: dict, overhead: dict, feature_job: dict) -> dict:
    """GPU-hours of the paper's study, both ways, from the job list and the calibrated cost model."""
    from mvlpt.datasets import catalog

    paper = ctx["paper"]
    tasks = paper["tasks"]
    shots, K, E = paper["shots"], len(paper["seeds"]), paper["train"]["epochs"]
    n_val_pc = max(1, round(0.2 * shots))
    n_tr_pc = shots - n_val_pc
    bs1, bs2, ebs = paper["train"]["batch_size"], paper["train"]["batch_size_multitask"], paper["train"]["eval_batch_size"]
    info = {}
    for t in tasks:
        task = get_task(t)
        try:
            n_test = int(catalog.manifest_entry(t)["test"]["num_images"])
        except Exception:  # noqa: BLE001
            n_test = 0
        info[t] = {"C": task.num_classes, "n_test": n_test,
                   "L": {m: prompt_length(ctx["tokenizer"], task.classnames, paper["method_options"][m]["n_ctx"])
                         for m in paper["methods"] if vocabulary.method(m).learns_text}}
    proc = overhead.get("process_start_import_device_s", 0.0)
    out = {"tasks": len(tasks), "seeds": K, "epochs": E, "shots": shots, "per_method": {}, "assumptions": []}
    total_ours = total_ref = 0.0
    for method in paper["methods"]:
        if method not in calib:
            continue
        comp_o, comp_r = comps["ours"], comps["ref"]

        def job(path, run_tasks, targets, bs, k):
            C = sum(info[t]["C"] for t in run_tasks)
            L = max(info[t]["L"][method] for t in run_tasks) if vocabulary.method(method).learns_text else 0
            costs = model_costs(method, path, comp_o if path == "ours" else comp_r, C, L, k, bs,
                                n_train=n_tr_pc * C, val_sizes=[n_val_pc * info[t]["C"] for t in run_tasks],
                                test_sizes=[info[t]["n_test"] for t in targets], eval_bs=ebs)
            c = calib[method][path]
            train = E * costs["steps"] * costs["step"] * c["train"]
            val = E * costs["val"] * c["val"]
            test = costs["test"] * c["test"]
            return setup[method][path] + proc + train + val + test, {"train": train, "validation": val, "test": test,
                                                                    "setup": setup[method][path] + proc}

        acc = {"ours": {"train": 0.0, "validation": 0.0, "test": 0.0, "setup": 0.0, "features": 0.0},
               "ref": {"train": 0.0, "validation": 0.0, "test": 0.0, "setup": 0.0}}
        n_jobs = {"ours": 0, "ref": 0}
        for i, a in enumerate(tasks):
            _, parts = job("ours", [a], [a], bs1, K)
            n_jobs["ours"] += 1
            for k, v in parts.items():
                acc["ours"][k] += v
            _, parts = job("ref", [a], [a], bs1, 1)
            n_jobs["ref"] += K
            for k, v in parts.items():
                acc["ref"][k] += K * v
            for b in tasks[i + 1:]:
                _, parts = job("ours", [a, b], [a, b], bs2, K)
                n_jobs["ours"] += 1
                for k, v in parts.items():
                    acc["ours"][k] += v
                for target in (a, b):
                    _, parts = job("ref", [a, b], [target], bs2, 1)
                    n_jobs["ref"] += K
                    for k, v in parts.items():
                        acc["ref"][k] += K * v
        if vocabulary.method(method).caches_image_features:  # one frozen-feature job per task: test split + every seed's few-shot images
            fit = comp_o["image"]["plain_fwd"]
            for t in tasks:
                n = info[t]["n_test"] + K * shots * info[t]["C"]
                acc["ours"]["features"] += proc + feature_job["load_s"] + math.ceil(n / 256) * fit["a"] + fit["b"] * n
            n_jobs["ours"] += len(tasks)
        o, r = sum(acc["ours"].values()), sum(acc["ref"].values())
        total_ours += o
        total_ref += r
        out["per_method"][method] = {
            "jobs": n_jobs, "ours_gpu_h": o / 3600, "ref_gpu_h": r / 3600, "ratio": r / o,
            "ours_breakdown_h": {k: v / 3600 for k, v in acc["ours"].items()},
            "ref_breakdown_h": {k: v / 3600 for k, v in acc["ref"].items()},
        }
    out["ours_gpu_h"], out["ref_gpu_h"] = total_ours / 3600, total_ref / 3600
    out["ratio"] = total_ref / total_ours if total_ours else None
    out["assumptions"] = [
        f"{n_tr_pc} train + {n_val_pc} val images per class ({shots} shots); test sets from the ELEVATER manifest",
        "set-up per job (model load, few-shot data, caches) as measured on the benchmark pair; real JPEG decoding not included",
        "step, validation and test costs from the component model, scaled by the calibration measured on the benchmark pair",
        f"per process: {proc:.2f} s (interpreter, imports, device init), added to every job of both paths",
    ]
    return out


def compiled_study(ctx, comps: dict, calib: dict, setup: dict, overhead: dict, feature_job: dict, measured: dict,
                   mode: str) -> dict:
    """The study with train option compile = ``mode``: training steps and validations at the speed of
    the benchmark's compiled run (its measured over the component model's times), tests at eager's
    (the compiled run's test time holds its compilation), plus each training job's compile time,
    between two bounds: every later job loads all its graphs from the shared kernel cache (the
    measured later job's compile) and every job compiles all of them (the compiled run's). VPT's
    image graphs are the same for most pairs (near the first bound); CoOp's and UPT's text graphs
    differ between pairs with different class sets (toward the second)."""
    cal, compile_s = {}, {}
    for m, r in measured.items():
        c = (r.get("ours_compiled") or {}).get(mode) or {}
        if "error" in c or "warm" not in c or m not in calib:
            continue
        pred = r["calibration"]["ours"]["predicted"]
        cal[m] = {"ours": {"train": c["step_s"] / pred["step"], "val": steady(c["val_s"], ctx["steady"]) / pred["val"],
                           "test": calib[m]["ours"]["test"]}, "ref": calib[m]["ref"]}
        compile_s[m] = (c["compile_s"], c["warm"]["compile_s"])
    out = study_estimate(ctx, comps, cal, setup, overhead, feature_job)
    n = out["tasks"]
    jobs = n + n * (n - 1) // 2  # the baselines and the joint runs (CoOp's feature jobs run eager)
    lo_total = hi_total = 0.0
    for m, (cold, warm) in compile_s.items():
        pm = out["per_method"][m]
        lo, hi = (cold + (jobs - 1) * warm) / 3600, jobs * cold / 3600
        pm.update(training_jobs=jobs, compile_h=[lo, hi], ours_gpu_h_range=[pm["ours_gpu_h"] + lo, pm["ours_gpu_h"] + hi])
        lo_total, hi_total = lo_total + lo, hi_total + hi
    out["compile_h"] = [lo_total, hi_total]
    out["ours_gpu_h_range"] = [out["ours_gpu_h"] + lo_total, out["ours_gpu_h"] + hi_total]
    out["assumptions"].append(f"train option compile = {mode}: steps and validations at the compiled run's speed, tests "
                              f"at eager's; compile time per training job between the two bounds above")
    return out


# ---------------------------------------------------------------------------- calibration on the measured pair
def calibrate(method: str, ctx, comps: dict, ours: dict, ref: dict) -> dict:
    """Measured / predicted step, validation and test times of the benchmark pair, per path: the
    factors :func:`study_estimate` scales the component model with."""
    pair, shots, train_cfg = ctx["pair"], ctx["shots"], ctx["train_cfg"]
    C = ctx["pair_classes"]
    cal = {}
    for path, meas in (("ours", ours), ("ref", ref)):
        K = len(ctx["seeds"]) if path == "ours" else 1
        L = ctx["cut_length"].get(method, 0) if path == "ours" else 77
        tgt = pair if path == "ours" else [ref["runs"][-1]["target"]]
        pred = model_costs(method, path, comps[path], C, L, K, train_cfg.batch_size_multitask,
                           n_train=sum((shots - round(0.2 * shots)) * get_task(n).num_classes for n in pair),
                           val_sizes=[round(0.2 * shots) * get_task(n).num_classes for n in pair],
                           test_sizes=[len(get_task(n).load("test")) for n in tgt], eval_bs=train_cfg.eval_batch_size)
        m_step = meas["step_s"]
        m_val = steady(meas["val_s"], ctx["steady"]) if path == "ours" else meas["val_s"]
        m_test = sum(meas["test_s"]) if path == "ours" else meas["test_s"]
        cal[path] = {"train": m_step / pred["step"], "val": m_val / pred["val"], "test": m_test / pred["test"],
                     "predicted": pred, "measured": {"step": m_step, "val": m_val, "test": m_test}}
    return cal
