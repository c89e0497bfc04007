"""The printed summary of a benchmark report."""

from __future__ import annotations

from .common import H100_SXM_BF16_DENSE_TFLOPS, log


def print_summary(r: dict) -> None:
    gpu = r["device"].startswith("cuda")
    log(
        f"\n== {r['model']} on {r['device_name']} ({r['precision']['ours']} ours, {r['precision']['reference']} reference style); "
        f"pair {'+'.join(r['pair']['like'])} ({r['pair']['classes']} classes), {r['seeds_stacked']} seeds stacked"
    )
    head = "| method | step ours (all seeds) | step ours / seed | step ref | step ratio | job ours | job ref | job ratio |"
    log(head)
    log("| --- " * 8 + "|")
    for m, x in r["methods"].items():
        if "error" in x:
            log(f"| {m} | failed: {x['error']} |")
            continue
        o, f = x["ours"], x["ref"]
        log(
            f"| {m} | {o['step_s'] * 1e3:.1f} ms | {o['step_per_seed_s'] * 1e3:.1f} ms | {f['step_s'] * 1e3:.1f} ms | "
            f"{x['step_ratio_per_seed']:.1f}x | {o['per_transfer_job_s_paper_epochs']:.1f} s | {f['per_transfer_job_s_paper_epochs']:.1f} s | "
            f"{x['transfer_job_ratio_paper_epochs']:.1f}x |"
        )
    log("(job = one transfer job, one direction and one seed, at the paper's 200 epochs)")
    rows = [
        (m, mode, x["ours"], c)
        for m, x in r["methods"].items()
        if "error" not in x
        for mode, c in x.get("ours_compiled", {}).items()
    ]
    if rows:  # train option compile against eager ours, same run
        log(
            "| method | ours | compile time (graphs) | a later job's compile | step (all seeds) | step eager | speed-up | MFU | MFU eager |"
        )
        log("| --- " * 9 + "|")
        for m, mode, eager, c in rows:
            if "error" in c:
                log(f"| {m} | compiled ({mode}) | failed: {c['error']} |")
                continue
            mfu = (f"{100 * c['mfu']:.1f}% | {100 * eager['mfu']:.1f}%") if gpu else "- | -"
            w = c.get("warm")
            later = f"{w['compile_s']:.1f} s ({w['cache_hits']}/{w['cache_hits'] + w['cache_misses']} loaded)" if w else "-"
            log(
                f"| {m} | compiled ({mode}) | {c['compile_s']:.1f} s ({c['compile_graphs']}) | {later} | {c['step_s'] * 1e3:.1f} ms | "
                f"{eager['step_s'] * 1e3:.1f} ms | {c['step_speedup_vs_eager']:.2f}x | {mfu} |"
            )
        log(
            "(a later job's compile: a new run's graphs after the compiled run, dynamo's caches dropped, inductor's "
            "kernel cache kept: what the study's later jobs of the same shapes pay)"
        )
    if gpu:
        log("| method | path | train images/s | peak GPU memory | TFLOP/step | achieved TFLOP/s | MFU |")
        log("| --- " * 7 + "|")
        for m, x in r["methods"].items():
            if "error" in x:
                continue
            for path in ("ours", "ref"):
                y = x[path]
                log(
                    f"| {m} | {path} | {y['train_samples_per_s']:.0f} | {y.get('peak_gpu_memory_mb', 0) / 1024:.1f} GiB | "
                    f"{y['flops_per_step'] / 1e12:.2f} | {y['achieved_tflops']:.0f} | {100 * y['mfu']:.1f}% |"
                )
        log(
            f"(MFU against {next(iter(r['methods'].values())).get('mfu_peak_tflops', H100_SXM_BF16_DENSE_TFLOPS)} TFLOP/s, H100 SXM dense bf16)"
        )
    s = r.get("study")
    if s:
        log(
            f"whole study ({s['tasks']} tasks, {s['seeds']} seeds, {s['epochs']} epochs): ours {s['ours_gpu_h']:.1f} h, "
            f"reference style {s['ref_gpu_h']:.1f} h, ratio {s['ratio']:.1f}x"
        )
        for m, y in s["per_method"].items():
            log(
                f"  {m}: ours {y['ours_gpu_h']:.1f} h ({y['jobs']['ours']} jobs), reference style {y['ref_gpu_h']:.1f} h "
                f"({y['jobs']['ref']} runs), {y['ratio']:.1f}x"
            )
    for mode, sc in (r.get("study_compiled") or {}).items():
        if not sc.get("per_method"):
            continue
        lo, hi = sc["ours_gpu_h_range"]
        log(
            f"whole study, ours compiled ({mode}): {lo:.1f} to {hi:.1f} h with compile time (every later job loads "
            f"all its graphs from the kernel cache .. every job compiles all of them), {sc['ours_gpu_h']:.1f} h without"
        )
        for m, y in sc["per_method"].items():
            log(
                f"  {m}: {y['ours_gpu_h_range'][0]:.1f} to {y['ours_gpu_h_range'][1]:.1f} h (compile {y['compile_h'][0]:.1f} "
                f"to {y['compile_h'][1]:.1f} h over {y['training_jobs']} training jobs)"
            )
    fm = r.get("flop_model")
    if fm and "error" not in fm:
        log(
            f"FLOP model, {fm['model']} (paper's model class; FLOPs, not time), pair {'+'.join(fm['pair'])} ({fm['classes']} classes):"
        )
        log("| method | step GFLOP/seed ours | ref | ratio | transfer job PFLOP ours | ref | ratio |")
        log("| --- " * 7 + "|")
        for m, y in fm["per_method"].items():
            log(
                f"| {m} | {y['ours']['step_flops_per_seed'] / 1e9:.0f} | {y['ref']['step_flops_per_seed'] / 1e9:.0f} | {y['step_ratio_per_seed']:.1f}x | "
                f"{y['ours']['transfer_job_flops'] / 1e15:.1f} | {y['ref']['transfer_job_flops'] / 1e15:.1f} | {y['transfer_job_ratio']:.1f}x |"
            )
        st = fm["study"]
        log(
            f"  whole study: ours {st['ours_eflop']:.1f} EFLOP, reference style {st['ref_eflop']:.1f} EFLOP, ratio {st['ratio']:.1f}x "
            f"({', '.join(f'{m} {v:.1f}x' for m, v in st['per_method_ratio'].items())}); at 100% of "
            f"{H100_SXM_BF16_DENSE_TFLOPS} TFLOP/s: {st['ours_h100_hours_at_peak']:.0f} vs {st['ref_h100_hours_at_peak']:.0f} H100-hours"
        )
    elif fm:
        log(f"FLOP model: {fm}")
    o = r.get("workflow_overhead") or {}
    if "mvlpt_train_overhead_s" in o:
        log(
            f"per-job overhead: python {o['python_start_s']:.2f} s, +torch {o['import_torch_s']:.2f} s, +mvlpt {o['import_mvlpt_train_s']:.2f} s, "
            f"+device {o['process_start_import_device_s']:.2f} s; model load {o['model_load_in_process_s']:.2f} s; "
            f"`mvlpt train` {o['mvlpt_train_process_s']:.2f} s of which training {o['mvlpt_train_reported_training_s']:.2f} s "
            f"-> overhead {o['mvlpt_train_overhead_s']:.2f} s"
        )
    elif o:
        log(f"per-job overhead: {o}")
