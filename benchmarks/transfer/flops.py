"""FLOPs: counted with ``torch.utils.flop_counter.FlopCounterMode``, per training step of a run and,
for the paper's model class, per unit of tower work (the cost model's components in FLOPs), priced
over a transfer job and the whole study."""

from __future__ import annotations

import contextlib

import torch

from mvlpt.models.clip import load_clip
from mvlpt.models.prompts.text import encode_prompted_text
from mvlpt.models.prompts.vision import encode_prompted_image
from mvlpt.study import vocabulary
from mvlpt.tasks import get_task

from .common import H100_SXM_BF16_DENSE_TFLOPS, prompt_length
from .estimate import model_costs, study_estimate


@contextlib.contextmanager
def counting_flops():
    """FlopCounterMode with nn.MultiheadAttention's inference fast path off: the fused kernel it
    calls under no_grad is not counted by FlopCounterMode (its projections would go missing)."""
    from torch.utils.flop_counter import FlopCounterMode

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def count_flops(fn) -> int:
    with counting_flops() as counter:
        fn()
    return int(counter.get_total_flops())


def flop_components(model_name: str, method_options: dict) -> dict:
    """FLOPs of the frozen towers per unit of work, for ``model_name`` (random weights, on the CPU):
    matrix products counted by FlopCounterMode on one sequence / one image, attention added
    analytically (4 L^2 W per layer forward, twice that backward; the CPU attention kernel is not
    counted by FlopCounterMode). Same structure as :func:`measure_components`, in FLOPs instead of s."""
    clip = load_clip(model_name, None, device="cpu")
    model, visual = clip.model, clip.model.visual
    W_t, W_v = model.token_embedding.weight.shape[1], visual.conv1.weight.shape[0]
    layers_t, layers_v = len(model.transformer.resblocks), len(visual.transformer.resblocks)
    S, patch = clip.image_size, visual.conv1.weight.shape[-1]
    n_patches = (S // patch) ** 2

    def count(fn):
        return count_flops(fn)

    def text(L, backward):
        x = torch.randn(1, L, W_t).requires_grad_(backward)

        def f():
            with torch.set_grad_enabled(backward):
                out = encode_prompted_text(model, x, torch.tensor([L - 1]))
            if backward:
                out.sum().backward()

        return count(f)

    def image(n_prompt, backward):
        x = torch.randn(1, 3, S, S)
        p = torch.randn(layers_v, n_prompt, W_v).requires_grad_(backward) if n_prompt else None

        def f():
            with torch.set_grad_enabled(backward):
                out = encode_prompted_image(visual, x, p, True)
            if backward:
                out.sum().backward()

        return count(f) + (3 if backward else 1) * layers_v * 4 * (1 + n_patches + n_prompt) ** 2 * W_v

    out = {"model": model_name, "text": {}, "image": {}}
    L1, L2 = 20, 77
    for mode, bwd in (("fwd", False), ("fwd_bwd", True)):
        f1, f2 = text(L1, bwd), text(L2, bwd)
        b = (f2 - f1) / (L2 - L1)  # matrix products: linear in the length (plus a per-sequence constant)
        const = f1 - b * L1
        out["text"][mode] = {
            "a": 0.0,
            "b": b + const / L1,
            "c": (3 if bwd else 1) * layers_t * 4 * W_t,
            "per_sequence_const": const,
        }
    n_vpt, n_upt = method_options["vpt"]["n_ctx"], method_options["upt"]["n_ctx"]
    for name, n_prompt, bwd in (
        ("plain_fwd", 0, False),
        ("vpt_fwd", n_vpt, False),
        ("vpt_fwd_bwd", n_vpt, True),
        ("upt_fwd", n_upt, False),
        ("upt_fwd_bwd", n_upt, True),
    ):
        out["image"][name] = {"a": 0.0, "b": float(image(n_prompt, bwd))}
    return out


def flop_report(ctx, comps: dict, pair_like: list[str]) -> dict:
    """Per transfer job of a pair and the whole study, in FLOPs, ours against the reference style
    (``comps``: path -> :func:`flop_components`; the text prompts' shared prefix is not in the
    component model, so ours is counted high for the methods that learn text)."""
    paper = ctx["paper"]
    K, E = len(paper["seeds"]), paper["train"]["epochs"]
    shots = paper["shots"]
    n_val_pc = max(1, round(0.2 * shots))
    tasks = [get_task(n) for n in pair_like]
    C = sum(t.num_classes for t in tasks)
    from mvlpt.datasets import catalog

    n_test = [int(catalog.manifest_entry(t.name)["test"]["num_images"]) for t in tasks]
    out = {"model": comps["ours"]["model"], "pair": pair_like, "classes": C, "per_method": {}}
    for method in paper["methods"]:
        L = (
            max(prompt_length(ctx["tokenizer"], t.classnames, paper["method_options"][method]["n_ctx"]) for t in tasks)
            if vocabulary.method(method).learns_text
            else 0
        )
        r = {}
        for path, k, targets in (("ours", K, n_test), ("ref", 1, n_test[1:])):
            c = model_costs(
                method,
                path,
                comps[path],
                C,
                L,
                k,
                paper["train"]["batch_size_multitask"],
                n_train=(shots - n_val_pc) * C,
                val_sizes=[n_val_pc * t.num_classes for t in tasks],
                test_sizes=targets,
                eval_bs=paper["train"]["eval_batch_size"],
            )
            job = E * (c["steps"] * c["step"] + c["val"]) + c["test"]
            r[path] = {
                "step_flops_per_seed": c["step"] / k,
                "transfer_job_flops": job / (2 * K if path == "ours" else 1),
                "train_share": E * c["steps"] * c["step"] / job,
            }
        r["step_ratio_per_seed"] = r["ref"]["step_flops_per_seed"] / r["ours"]["step_flops_per_seed"]
        r["transfer_job_ratio"] = r["ref"]["transfer_job_flops"] / r["ours"]["transfer_job_flops"]
        out["per_method"][method] = r
    methods = paper["methods"]
    one = {m: {p: {"train": 1.0, "val": 1.0, "test": 1.0} for p in ("ours", "ref")} for m in methods}
    zero = {m: {"ours": 0.0, "ref": 0.0} for m in methods}
    whole = study_estimate(ctx, comps, one, zero, {}, {"load_s": 0.0})
    # study_estimate sums "seconds"; here they are FLOPs (its *_gpu_h fields are FLOPs / 3600)
    peak = ctx.get("peak_tflops", H100_SXM_BF16_DENSE_TFLOPS) * 1e12
    out["study"] = {
        "ours_eflop": whole["ours_gpu_h"] * 3600 / 1e18,
        "ref_eflop": whole["ref_gpu_h"] * 3600 / 1e18,
        "ratio": whole["ratio"],
        "ours_h100_hours_at_peak": whole["ours_gpu_h"] / peak,
        "ref_h100_hours_at_peak": whole["ref_gpu_h"] / peak,
        "per_method_ratio": {m: y["ratio"] for m, y in whole["per_method"].items()},
        "per_method_eflop": {
            m: {"ours": y["ours_gpu_h"] * 3600 / 1e18, "ref": y["ref_gpu_h"] * 3600 / 1e18}
            for m, y in whole["per_method"].items()
        },
    }
    return out
