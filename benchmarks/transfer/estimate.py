"""The benchmark's estimates: a run's step, validation and test seconds from the towers' measured
component times (:func:`model_costs`), calibrated on the measured pair (:func:`calibrate`). The paper's
study (:func:`study_estimate`) is priced by the package's cost model (``mvlpt.running.cost``, the
preflight's estimate) from those calibrated components (:func:`package_calibration`); only the
reference code's way (one seed per process, 77 tokens, both towers every step), which the package does
not model, is summed here over its job list."""

from __future__ import annotations

import math

import numpy as np

from mvlpt.study import vocabulary
from mvlpt.tasks import get_task

from .common import steady


def fit_line(xs, ys) -> dict:
    """Least-squares ``y = a + b x`` (a >= 0), with the largest relative residual."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"a": float(y.mean()), "b": 0.0, "max_rel_err": 0.0, "points": [[float(u), float(v)] for u, v in zip(x, y)]}
    b, a = np.polyfit(x, y, 1)
    if a < 0:  # no negative intercept: refit through the origin
        a, b = 0.0, float((x @ y) / (x @ x))
    pred = a + b * x
    return {
        "a": float(a),
        "b": float(b),
        "max_rel_err": float(np.max(np.abs(pred - y) / y)),
        "points": [[float(u), float(v)] for u, v in zip(x, y)],
    }


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
    return {
        "a": float(coef[0]),
        "b": float(coef[1]),
        "c": float(coef[2]),
        "max_rel_err": float(np.max(np.abs(pred - y) / y)),
        "points": [[int(a), int(b), float(v)] for a, b, v in zip(n, L, y)],
    }


def text_time(fit: dict, n: int, L: int) -> float:
    return fit["a"] + fit["b"] * n * L + fit["c"] * n * L * L


def text_rows_time(fit: dict, rows: float, L: int) -> float:
    """:func:`text_time` of ``rows`` token rows (:func:`mvlpt.running.cost.text_rows`: the prompts' shared prefix
    counted as the package's cost model counts it) of prompts of length ``L``."""
    return fit["a"] + (fit["b"] + fit["c"] * L) * rows


def model_costs(
    method: str,
    path: str,
    comp: dict,
    C: int,
    L: int,
    K: int,
    bs: int,
    n_train: int,
    val_sizes: list[int],
    test_sizes: list[int],
    eval_bs: int,
    prefix: int = 0,
) -> dict:
    """Predicted seconds of one training step, one validation pass and the test passes of one run.

    ours: K stacked seeds, cut text length L whose first ``prefix`` tokens all classes share (text rows as
    :func:`mvlpt.running.cost.text_rows` counts them), cached image features (CoOp) / text features (VPT);
    ref: one seed, 77 tokens, both towers on every step and every evaluation batch."""
    from mvlpt.running.cost import text_rows

    text, img = comp["text"], comp["image"]
    learns_text, learns_image = vocabulary.method(method).learns_text, vocabulary.method(method).learns_image
    img_train = f"{method}_fwd_bwd" if learns_image else "plain_fwd"  # components measured per prompted method
    img_eval = f"{method}_fwd" if learns_image else "plain_fwd"
    if path == "ours":
        rows = K * text_rows(C, L, prefix)
        step = (text_rows_time(text["fwd_bwd"], rows, L) if learns_text else 0.0) + (
            line(img[img_train], K * bs) if learns_image else 0.0
        )

        def eval_pass(sizes, text_passes):  # per task, batches of eval_bs, all members stacked in each batch;
            # class features once per validation / per test (Trainer.validate, Trainer.test)
            t = text_passes * text_rows_time(text["fwd"], rows, L) if learns_text else 0.0
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

    return {
        "step": step,
        "steps": math.ceil(n_train / bs),
        "val": eval_pass(val_sizes, 1),
        "test": eval_pass(test_sizes, len(test_sizes)),
    }


# ---------------------------------------------------------------------------- the whole study
def package_calibration(method: str, comps: dict, calib: dict, job_setup_s: float, length: float):
    """The benchmark's measured components of ``method`` (its path ``ours``), scaled by the factors measured on
    the benchmark pair (:func:`calibrate`), as a calibration of the package's cost model
    (:class:`mvlpt.running.calibration.Calibration`): step coefficients from the training components, forward
    ones from the evaluation components (scaled by the validation factor: validation and test passes share
    them there). The text tower's attention term (``c n L^2``) becomes a per-token cost at the method's mean
    prompt length ``length``; image decoding is not priced (as before: random pixels, no JPEG)."""
    from mvlpt.running.calibration import Calibration

    text, img = comps["text"], comps["image"]
    meth = vocabulary.method(method)
    img_train = f"{method}_fwd_bwd" if meth.learns_image else "plain_fwd"  # components measured per prompted method
    img_eval = f"{method}_fwd" if meth.learns_image else "plain_fwd"
    c = calib[method]["ours"]

    def coeffs(text_fit, image_fit, factor):
        fixed = (text_fit["a"] if meth.learns_text else 0.0) + (image_fit["a"] if meth.learns_image else 0.0)
        return {
            "fixed_ms": factor * fixed * 1e3,
            "text_us_per_token": factor * (text_fit["b"] + text_fit["c"] * length) * 1e6,
            "image_ms_per_image": factor * image_fit["b"] * 1e3,
        }

    step = coeffs(text["fwd_bwd"], img[img_train], c["train"])
    forward = coeffs(text["fwd"], img[img_eval], c["val"])
    forward["fixed_ms"] = c["val"] * img[img_eval]["a"] * 1e3  # per evaluation batch; the class text once per pass
    return Calibration(
        device="benchmark",
        model=str(comps.get("model", "")),
        precision=str(comps.get("precision", "")),
        origin="measured",
        methods={method: {"step": step, "forward": forward}},
        features_ms_per_image=img["plain_fwd"]["b"] * 1e3,
        job_setup_s=job_setup_s,
        decode_images_per_s=math.inf,
    )


def study_estimate(ctx, comps: dict, calib: dict, setup: dict, overhead: dict, feature_job: dict) -> dict:
    """GPU-hours of the paper's study, both ways: ``ours`` by the package's cost model
    (:func:`mvlpt.running.cost.estimate`, the preflight's) with the benchmark's calibrated components
    (:func:`package_calibration`), ``ref`` (the reference code's way: one seed per process, 77 tokens, both
    towers every step) by the component model (:func:`model_costs`) over the reference's job list."""
    from mvlpt.datasets import catalog
    from mvlpt.running import cost
    from mvlpt.running.prompt_shapes import prompt_shapes

    paper = ctx["paper"]
    tasks = paper["tasks"]
    shots, K, E = paper["shots"], len(paper["seeds"]), paper["train"]["epochs"]
    n_val_pc = max(1, round(0.2 * shots))
    n_tr_pc = shots - n_val_pc
    bs1, bs2, ebs = paper["train"]["batch_size"], paper["train"]["batch_size_multitask"], paper["train"]["eval_batch_size"]
    text_options = {m: paper["method_options"][m] for m in paper["methods"] if vocabulary.method(m).learns_text}
    info = {}
    for t in tasks:
        task = get_task(t)
        try:
            n_test = int(catalog.manifest_entry(t)["test"]["num_images"])
        except Exception:  # noqa: BLE001
            n_test = 0
        lengths, prefixes = prompt_shapes(task.classnames, ctx["model"], text_options)
        info[t] = cost.TaskCost(
            t, task.num_classes, n_tr_pc * task.num_classes, n_val_pc * task.num_classes, n_test, lengths, 0, prefixes
        )
    proc = overhead.get("process_start_import_device_s", 0.0)
    out = {"tasks": len(tasks), "seeds": K, "epochs": E, "shots": shots, "per_method": {}, "assumptions": []}
    total_ours = total_ref = 0.0
    for method in paper["methods"]:
        if method not in calib:
            continue
        comp_r = comps["ref"]

        def ref_job(run_tasks, targets, bs):
            C = sum(info[t].classes for t in run_tasks)
            costs = model_costs(
                method,
                "ref",
                comp_r,
                C,
                77,
                1,
                bs,
                n_train=n_tr_pc * C,
                val_sizes=[n_val_pc * info[t].classes for t in run_tasks],
                test_sizes=[info[t].test for t in targets],
                eval_bs=ebs,
            )
            c = calib[method]["ref"]
            return {
                "train": E * costs["steps"] * costs["step"] * c["train"],
                "validation": E * costs["val"] * c["val"],
                "test": costs["test"] * c["test"],
                "setup": setup[method]["ref"] + proc,
            }

        length = [info[t].length[method] for t in tasks if method in info[t].length]
        cal = package_calibration(
            method, comps["ours"], calib, setup[method]["ours"] + proc, sum(length) / len(length) if length else 0.0
        )
        shape = cost.StudyShape(tuple(info[t] for t in tasks), (method,), K, "joint", True, E, bs1, bs2, ebs, shots)
        ours = cost.estimate(shape, cal)["per_method"][method]
        acc = {"train": 0.0, "validation": 0.0, "test": 0.0, "setup": 0.0}
        n_ref = 0
        for i, a in enumerate(tasks):  # the reference: a process per seed, a joint pair tested on one target at a time
            for key, v in ref_job([a], [a], bs1).items():
                acc[key] += K * v
            n_ref += K
            for b in tasks[i + 1 :]:
                for target in (a, b):
                    for key, v in ref_job([a, b], [target], bs2).items():
                        acc[key] += K * v
                    n_ref += K
        o, r = ours["gpu_hours"] * 3600, sum(acc.values())
        total_ours += o
        total_ref += r
        out["per_method"][method] = {
            "jobs": {"ours": ours["jobs"], "ref": n_ref},
            "ours_gpu_h": o / 3600,
            "ref_gpu_h": r / 3600,
            "ratio": r / o,
            "ours_breakdown_h": dict(ours["breakdown_h"]),
            "ref_breakdown_h": {k: v / 3600 for k, v in acc.items()},
        }
    out["ours_gpu_h"], out["ref_gpu_h"] = total_ours / 3600, total_ref / 3600
    out["ratio"] = total_ref / total_ours if total_ours else None
    out["assumptions"] = [
        f"{n_tr_pc} train + {n_val_pc} val images per class ({shots} shots); test sets from the ELEVATER manifest",
        "set-up per job (model load, few-shot data, caches) as measured on the benchmark pair; real JPEG decoding not included",
        "ours: the package's cost model (mvlpt.running.cost, the preflight's estimate) with coefficients from the component "
        "model scaled by the calibration measured on the benchmark pair (the text tower's attention term at each method's "
        "mean prompt length; validation and test passes at the validation factor)",
        "ref: the component model over the reference's job list, scaled by the calibration measured on the benchmark pair",
        f"per process: {proc:.2f} s (interpreter, imports, device init), added to every job of both paths",
    ]
    return out


def compiled_study(
    ctx, comps: dict, calib: dict, setup: dict, overhead: dict, feature_job: dict, measured: dict, mode: str
) -> dict:
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
        cal[m] = {
            "ours": {
                "train": c["step_s"] / pred["step"],
                "val": steady(c["val_s"], ctx["steady"]) / pred["val"],
                "test": calib[m]["ours"]["test"],
            },
            "ref": calib[m]["ref"],
        }
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
    out["assumptions"].append(
        f"train option compile = {mode}: steps and validations at the compiled run's speed, tests "
        f"at eager's; compile time per training job between the two bounds above"
    )
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
        P = ctx.get("prefix", {}).get(method, 0) if path == "ours" else 0
        tgt = pair if path == "ours" else [ref["runs"][-1]["target"]]
        pred = model_costs(
            method,
            path,
            comps[path],
            C,
            L,
            K,
            train_cfg.batch_size_multitask,
            n_train=sum((shots - round(0.2 * shots)) * get_task(n).num_classes for n in pair),
            val_sizes=[round(0.2 * shots) * get_task(n).num_classes for n in pair],
            test_sizes=[len(get_task(n).load("test")) for n in tgt],
            eval_bs=train_cfg.eval_batch_size,
            prefix=P,
        )
        m_step = meas["step_s"]
        m_val = steady(meas["val_s"], ctx["steady"]) if path == "ours" else meas["val_s"]
        m_test = sum(meas["test_s"]) if path == "ours" else meas["test_s"]
        cal[path] = {
            "train": m_step / pred["step"],
            "val": m_val / pred["val"],
            "test": m_test / pred["test"],
            "predicted": pred,
            "measured": {"step": m_step, "val": m_val, "test": m_test},
        }
    return cal
