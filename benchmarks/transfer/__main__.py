"""The benchmark's command line: ``python benchmarks/bench_transfer.py`` (or ``python -m benchmarks.transfer``)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import socket
import sys
import tempfile
from pathlib import Path

import torch

from mvlpt.models.clip import load_clip
from mvlpt.running.prompt_shapes import prompt_shapes
from mvlpt.study import vocabulary
from mvlpt.tasks import get_task
from mvlpt.tasks.fewshot import indices_of, make_split
from mvlpt.training.config import TrainConfig
from mvlpt.training.features import image_features

from . import __doc__ as _package_doc
from .common import (
    H100_SXM_BF16_DENSE_TFLOPS,
    PRESETS,
    REPO,
    StageTimeout,
    device_name,
    load_paper_config,
    log,
    now,
    register_bench_task,
    stage,
    steady,
    steady_statistic,
    sync,
)
from .estimate import calibrate, compiled_study, study_estimate
from .flops import count_flops, flop_components, flop_report
from .profiling import profile_steps
from .reference import every_row, run_reference
from .summary import print_summary
from .timing import measure_components, measure_overhead, run_ours, warm_compile


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_transfer.py", description=_package_doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="cpu: tiny model on the CPU (quick); gpu: ViT-B-16 on CUDA"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the preset's, else cuda if available)")
    p.add_argument("--model", default=None, help="open_clip model name (default: the preset's)")
    p.add_argument("--pretrained", default=None, help="pretrained tag; 'none' for random weights (default: the preset's)")
    p.add_argument("--methods", default="coop,vpt,upt")
    p.add_argument(
        "--pair",
        default=None,
        help="two ELEVATER tasks whose class names and counts the benchmark pair takes "
        "(default: the preset's; gpu: dtd,cifar-100, cpu: eurosat_clip,dtd)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the preset's; cpu: 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs measured per run (extrapolated to the paper's 200)")
    p.add_argument("--seeds", type=int, default=3, help="seeds stacked in our joint run (reference style: one per run)")
    p.add_argument("--test-size", type=int, default=None, help="test images per benchmark task")
    p.add_argument("--ref-runs", type=int, default=None, help="reference-style runs measured per method (direction x seed)")
    p.add_argument(
        "--ref-precision",
        choices=["same", "fp32"],
        default="same",
        help="same: the reference style uses our precision (bf16 autocast on a GPU, as the reference's fp16); fp32: full precision",
    )
    p.add_argument(
        "--peak-tflops", type=float, default=H100_SXM_BF16_DENSE_TFLOPS, help="peak for MFU (default: H100 SXM dense bf16)"
    )
    p.add_argument("--no-overhead", action="store_true", help="skip the subprocess measurements of per-job overhead")
    p.add_argument(
        "--flop-model",
        default=None,
        help="also count the FLOPs of this model's study (on the CPU; default: the "
        "preset's; cpu: ViT-B-16, the paper's model class; 'none' to skip)",
    )
    p.add_argument("--no-profile", action="store_true")
    p.add_argument(
        "--compile",
        default="",
        metavar="MODE[,MODE]",
        help="also run ours with train option compile = each torch.compile MODE (default, reduce-overhead, "
        "max-autotune, max-autotune-no-cudagraphs): an 'ours, compiled (MODE)' row per method next to "
        "eager ours, with its compile time, step time and MFU (same FLOPs as eager)",
    )
    p.add_argument("--profile-steps", type=int, default=5, help="training steps profiled per method (after a warm-up step)")
    p.add_argument(
        "--stage-timeout",
        type=float,
        default=300.0,
        help="seconds a stage may take (a method's run, its profile, the per-job overhead...) before it is "
        "stopped and recorded as an error; 0: no limit (default: %(default)s)",
    )
    p.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/<host>-<device>-<date>.json)")
    args = p.parse_args(argv)
    args.error = p.error
    args.compile = [m for m in args.compile.split(",") if m]
    from mvlpt.training.config import COMPILE_MODES

    bad = [m for m in args.compile if m not in COMPILE_MODES or m == "none"]
    if bad:
        p.error(f"--compile takes torch.compile modes ({', '.join(COMPILE_MODES[1:])}), got {', '.join(bad)}")
    return args


def resolve_settings(args) -> dict:
    """Device, model, weights, epochs, threads, methods and precisions from the options over the preset."""
    preset = PRESETS[args.preset] if args.preset else PRESETS["gpu" if torch.cuda.is_available() else "cpu"]
    device = args.device or preset["device"]
    if device == "cuda":
        device = "cuda:0"
    if device.startswith("cuda") and not torch.cuda.is_available():
        args.error("CUDA is not available here; use --preset cpu")
    model = args.model or preset["model"]
    pretrained = preset["pretrained"] if args.pretrained is None and args.model is None else args.pretrained
    if pretrained in ("none", "None", ""):
        pretrained = None
    epochs = args.epochs or preset["epochs"]
    if epochs < 2:
        args.error("--epochs must be at least 2 (the first epoch is the warm-up, left out of the steady-state times)")
    precision = "bf16" if device.startswith("cuda") else "fp32"
    return {
        "preset": preset,
        "device": device,
        "model": model,
        "pretrained": pretrained,
        "epochs": epochs,
        "threads": args.threads or preset["threads"],
        "methods": [m for m in args.methods.split(",") if m],
        "precision": precision,
        "ref_precision": precision if args.ref_precision == "same" else "fp32",
        "test_size": args.test_size or preset["test_size"],
    }


def make_context(s: dict, args, probe) -> dict:
    """Register the benchmark pair and gather what every part needs (``ctx``)."""
    device, paper = s["device"], load_paper_config()
    like = (args.pair or s["preset"]["pair"]).split(",")
    shots = paper["shots"]
    pair = []
    for i, name in enumerate(like):
        t = register_bench_task(f"bench-{name}", name, shots, s["test_size"], probe.image_size, seed=100 + i)
        pair.append(t.name)
    C = sum(get_task(n).num_classes for n in pair)
    train_cfg = TrainConfig(
        epochs=s["epochs"],
        warmup_epochs=1,
        batch_size=paper["train"]["batch_size"],
        batch_size_multitask=paper["train"]["batch_size_multitask"],
        eval_batch_size=paper["train"]["eval_batch_size"],
        precision="auto",
        checkpoint_every=0,
    )
    ctx = {
        "device": device,
        "model": s["model"],
        "pretrained": s["pretrained"],
        "pair": pair,
        "pair_like": like,
        "pair_classes": C,
        "seeds": list(range(1, args.seeds + 1)),
        "shots": shots,
        "train_cfg": train_cfg,
        "paper": paper,
        "method_options": {m: dict(o) for m, o in paper["method_options"].items()},
        "ref_runs": args.ref_runs or s["preset"]["ref_runs"],
        "ref_precision": s["ref_precision"],
        "tokenizer": probe.tokenizer,
        "component_reps": 5 if device.startswith("cuda") else 2,
        "image_sizes": [32, 96, 192] if device.startswith("cuda") else [16, 96],
        "steady": steady_statistic(device),
        "peak_tflops": args.peak_tflops,
    }
    names = [c for n in pair for c in get_task(n).classnames]
    # the text prompts' cut length and shared prefix, as the package's cost model reads them
    ctx["cut_length"], ctx["prefix"] = prompt_shapes(names, s["model"], {m: ctx["method_options"][m] for m in ("coop", "upt")})
    return ctx


def new_report(ctx: dict, s: dict, argv) -> dict:
    device, paper = ctx["device"], ctx["paper"]
    return {
        "format": 1,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "device": device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": ctx["model"],
        "pretrained": ctx["pretrained"],
        "precision": {"ours": s["precision"], "reference": s["ref_precision"]},
        "pair": {
            "tasks": ctx["pair"],
            "like": ctx["pair_like"],
            "classes": ctx["pair_classes"],
            "shots": ctx["shots"],
            "test_size": s["test_size"],
        },
        "epochs_measured": s["epochs"],
        "seeds_stacked": len(ctx["seeds"]),
        "paper_config": {k: paper[k] for k in ("source", "seeds", "shots", "train", "method_options")},
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "timing_statistic": "steady state = median of the epochs after the first (GPU); best of them (CPU, shared)",
        "flops_note": "FlopCounterMode with the MHA fast path off; on the CPU the attention kernel is not counted "
        "(a few % of a step); on a GPU it is",
        "methods": {},
    }


def build_feature_cache(ctx: dict, tmp: Path) -> dict:
    """CoOp's frozen features, as the workflow's frozen_features job writes them (one job per task)."""
    device = ctx["device"]
    sync(device)
    t = now()
    clip = load_clip(ctx["model"], ctx["pretrained"], device=device)
    sync(device)
    job = {"load_s": now() - t}
    t = now()
    n_images = 0
    for name in ctx["pair"]:
        task = get_task(name)
        train, test = task.load("train"), task.load("test")
        image_features(clip, name, test, None, "test", str(tmp / "cache"), write=True)
        n_images += len(test)
        for seed in ctx["seeds"]:
            sp = make_split(task, seed, ctx["shots"], split_data=train)
            for part in ("train", "val"):
                idx = indices_of(train, sp[part])
                image_features(clip, name, train, idx, f"shots{ctx['shots']}_seed{seed}_{part}", str(tmp / "cache"), write=True)
                n_images += len(idx)
    sync(device)
    job.update({"encode_s": now() - t, "images": n_images, "images_per_s": n_images / (now() - t)})
    log(f"feature cache (workflow job frozen_features) for the pair: {n_images} images in {job['encode_s']:.1f} s")
    return job


def empty_cache(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def bench_method(method: str, ctx: dict, comps: dict, profile: bool) -> dict:
    """Both paths of one method on the pair, their FLOPs per step, the cost model's calibration and
    (on a GPU) model-FLOPs utilisation."""
    device, epochs = ctx["device"], ctx["train_cfg"].epochs
    limit = ctx["stage_timeout"]
    with stage(f"{method}: our joint run", limit):
        ours, trainer = run_ours(method, ctx, ctx["tmp"])
    log(
        f"ours: init {ours['init_s']:.2f} s, step {ours['step_s'] * 1e3:.1f} ms ({len(ctx['seeds'])} seeds), "
        f"val {steady(ours['val_s'], ctx['steady']):.2f} s, test {sum(ours['test_s']):.2f} s, run {ours['total_s']:.1f} s"
    )
    with stage(f"{method}: FLOPs of an epoch (FlopCounterMode)", limit):
        ours["flops_per_step"] = count_flops(lambda: trainer.train_epoch(epochs)) / ours["steps_per_epoch"]
    if profile:
        try:
            with stage(f"{method}: profile of {ctx['profile_steps']} training steps", limit):
                ours["profile_steps"] = profile_steps(trainer, device, ctx["profile_steps"])
        except StageTimeout as e:
            ours["profile_steps"] = {"error": str(e)}
    trainer = None  # free the run before the next one
    empty_cache(device)
    compiled = {}
    for mode in ctx["compile"]:
        try:
            with stage(f"{method}: our joint run, compiled ({mode})", limit):
                c, _ = run_ours(method, ctx, ctx["tmp"], compile=mode)
            c["flops_per_step"] = ours["flops_per_step"]  # the same computation as eager
            c["step_speedup_vs_eager"] = ours["step_s"] / c["step_s"]
            log(
                f"ours, compiled ({mode}): compile {c['compile_s']:.1f} s ({c['compile_graphs']} graphs), step "
                f"{c['step_s'] * 1e3:.1f} ms ({c['step_speedup_vs_eager']:.2f}x eager), val {steady(c['val_s'], ctx['steady']):.2f} s"
            )
            with stage(f"{method}: a later job's compile ({mode}), from the kernel cache", limit):
                c["warm"] = w = warm_compile(method, ctx, ctx["tmp"], mode)
            log(
                f"ours, compiled ({mode}), a later job: compile {w['compile_s']:.1f} s, "
                f"{w['cache_hits']} of {w['cache_hits'] + w['cache_misses']} graphs loaded from the cache"
            )
            compiled[mode] = c
        except Exception as e:  # noqa: BLE001 - a failed mode is recorded; eager and the others go on
            log(f"ours, compiled ({mode}) failed: {type(e).__name__}: {e}")
            compiled[mode] = {"error": f"{type(e).__name__}: {e}"}
        empty_cache(device)
    with stage(f"{method}: reference-style runs", limit):
        ref, last = run_reference(method, ctx)
    log(
        f"reference style: setup {ref['setup_s']:.2f} s, step {ref['step_s'] * 1e3:.1f} ms, val {ref['val_s']:.2f} s, "
        f"test {ref['test_s']:.2f} s, run {ref['per_transfer_job_s_measured']:.1f} s (x{len(ref['runs'])})"
    )
    idx = torch.arange(last.bs)
    ref["flops_per_step"] = count_flops(lambda: last.step(idx))
    last = None
    empty_cache(device)
    res = {"ours": ours, "ref": ref, "calibration": calibrate(method, ctx, comps, ours, ref)}
    if compiled:
        res["ours_compiled"] = compiled
    res["step_ratio_per_seed"] = ref["step_per_seed_s"] / ours["step_per_seed_s"]
    res["transfer_job_ratio_paper_epochs"] = ref["per_transfer_job_s_paper_epochs"] / ours["per_transfer_job_s_paper_epochs"]
    res["transfer_job_ratio_measured"] = ref["per_transfer_job_s_measured"] / ours["per_transfer_job_s_measured"]
    if device.startswith("cuda"):
        peak = ctx["peak_tflops"] * 1e12
        for meas in (ours, ref, *(c for c in compiled.values() if "error" not in c)):
            meas["achieved_tflops"] = meas["flops_per_step"] / meas["step_s"] / 1e12
            meas["mfu"] = meas["flops_per_step"] / meas["step_s"] / peak
        res["mfu_peak_tflops"] = ctx["peak_tflops"]
    log(
        f"{method}: step ratio (per seed) {res['step_ratio_per_seed']:.1f}x, transfer job ratio at "
        f"{ctx['paper']['train']['epochs']} epochs {res['transfer_job_ratio_paper_epochs']:.1f}x (measured short runs "
        f"{res['transfer_job_ratio_measured']:.1f}x)"
    )
    return res


def bench_methods(methods: list[str], ctx: dict, comps: dict, profile: bool, save=None) -> dict:
    """Each method's figures; a method that fails is recorded with its error and the others go on.
    ``save(out)`` after each method: a run stopped from outside keeps the methods it finished."""
    out = {}
    for method in methods:
        log(f"--- {method}")
        try:
            out[method] = bench_method(method, ctx, comps, profile)
        except Exception as e:  # noqa: BLE001 - keep the other methods' figures
            import traceback

            traceback.print_exc()
            out[method] = {"error": f"{type(e).__name__}: {e}"}
        if save:
            save(out)
    return out


def flop_model_report(ctx: dict, model: str) -> dict:
    try:
        with stage(f"FLOP model of {model} (on the CPU)", ctx["stage_timeout"]):
            comps = {"ours": flop_components(model, ctx["method_options"])}
            with every_row():  # the reference style's towers: every row of every block
                comps["ref"] = flop_components(model, ctx["method_options"])
            return flop_report(ctx, comps, PRESETS["gpu"]["pair"].split(","))
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def overhead_report(ctx: dict, tmp: Path) -> dict:
    try:
        with stage("per-job overhead (fresh processes, one `mvlpt train`)", ctx["stage_timeout"]):
            return measure_overhead(ctx, tmp)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def main(argv=None) -> int:
    args = parse_args(argv)
    s = resolve_settings(args)
    device = s["device"]
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        torch.zeros(1, device=device)  # CUDA context outside the timings (the overhead section measures it)

    t_start = now()
    log(
        f"bench_transfer: {s['model']} ({s['pretrained'] or 'random weights'}) on {device} [{device_name(device)}], torch {torch.__version__}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="mvlpt-bench-"))
    probe = load_clip(s["model"], s["pretrained"], device=device)
    ctx = make_context(s, args, probe)
    ctx["tmp"] = tmp
    ctx["stage_timeout"] = args.stage_timeout or None
    ctx["profile_steps"] = max(1, args.profile_steps)
    ctx["compile"] = args.compile
    if args.compile:  # an empty kernel cache: compile times are what a study's first job pays (later jobs load)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp / "torch-compile")
    pair = ctx["pair"]
    log(
        f"pair: {pair[0]} ({get_task(pair[0]).num_classes} classes) + {pair[1]} ({get_task(pair[1]).num_classes}), "
        f"{ctx['shots']} shots, {s['epochs']} epochs measured, {len(ctx['seeds'])} seeds stacked; cut text length "
        f"coop {ctx['cut_length']['coop']}, upt {ctx['cut_length']['upt']} (reference 77)"
    )
    report = new_report(ctx, s, argv)

    with stage("feature cache", ctx["stage_timeout"]):
        cached = any(vocabulary.method(m).caches_image_features for m in s["methods"])  # CoOp's frozen image features
        report["feature_cache"] = build_feature_cache(ctx, tmp) if cached else {"load_s": 0.0}

    # component cost model (same process, same device)
    with stage("component timings (cost model)", ctx["stage_timeout"]):
        comps = {"ours": measure_components(ctx, probe, s["precision"])}
        comps["ref"] = (
            comps["ours"] if s["ref_precision"] == s["precision"] else measure_components(ctx, probe, s["ref_precision"])
        )
    report["components"] = comps
    del probe
    empty_cache(device)

    out = (
        Path(args.out)
        if args.out
        else REPO
        / "benchmarks"
        / "results"
        / (f"{socket.gethostname()}-{'cuda' if device.startswith('cuda') else 'cpu'}-{_dt.date.today().isoformat()}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)

    def save_partial(methods: dict) -> None:
        out.write_text(
            json.dumps({**report, "methods": methods, "partial": "the benchmark did not finish"}, indent=1, default=str)
        )

    report["methods"] = bench_methods(s["methods"], ctx, comps, profile=not args.no_profile, save=save_partial)
    measured = {m: r for m, r in report["methods"].items() if "error" not in r}
    calib = {
        m: {path: {k: r["calibration"][path][k] for k in ("train", "val", "test")} for path in r["calibration"]}
        for m, r in measured.items()
    }
    setup = {m: {"ours": r["ours"]["init_s"], "ref": r["ref"]["setup_s"]} for m, r in measured.items()}

    report["workflow_overhead"] = {} if args.no_overhead else overhead_report(ctx, tmp)
    flop_model = args.flop_model or s["preset"].get("flop_model")
    if flop_model and flop_model != "none":
        report["flop_model"] = flop_model_report(ctx, flop_model)
    if calib:
        overhead = report["workflow_overhead"]
        overhead = overhead if "error" not in overhead else {}
        report["study"] = study_estimate(ctx, comps, calib, setup, overhead, report["feature_cache"])
        report["study_compiled"] = {
            mode: compiled_study(ctx, comps, calib, setup, overhead, report["feature_cache"], measured, mode)
            for mode in ctx["compile"]
        }
    report["bench_wall_s"] = now() - t_start

    out.write_text(json.dumps(report, indent=1, default=str))
    print_summary(report)
    log(f"\nwritten: {out}  ({report['bench_wall_s']:.0f} s)")
    return 0 if all("error" not in r for r in report["methods"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
