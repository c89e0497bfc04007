"""Timings: "ours" (the real :class:`mvlpt.training.train.Trainer`, phase by phase), the frozen towers as
functions of their work (the cost model's components), and a workflow job's per-process overhead."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from mvlpt.models.clip import compile_account, compile_errors, load_clip
from mvlpt.models.prompts.text import encode_prompted_text
from mvlpt.models.prompts.vision import encode_prompted_image
from mvlpt.training.config import RunSpec
from mvlpt.training.train import Trainer

from .common import REPO, autocast, log, median_time, now, steady, sync
from .estimate import fit_line, fit_text


# ---------------------------------------------------------------------------- ours: the real Trainer
def ours_spec(method: str, ctx: dict, tmp: Path, compile: str = "none") -> RunSpec:
    a, b = ctx["pair"]
    return RunSpec(
        method=method,
        tasks=[a, b],
        seeds=ctx["seeds"],
        shots=ctx["shots"],
        method_options=ctx["method_options"][method],
        train=dataclasses.replace(ctx["train_cfg"], compile=compile),
        model=ctx["model"],
        pretrained=ctx["pretrained"],
        cache_dir=str(tmp / "cache"),
        device=ctx["device"],
        outputs={t: str(tmp / f"ours-{method}-{compile}" / f"{t}_{{seed}}.json") for t in (a, b)},
    )


def warm_compile(method: str, ctx: dict, tmp: Path, compile: str) -> dict:
    """What a later job of a study pays to compile the same graphs: dynamo's in-process caches
    dropped (as in a new process), then a new run's graphs (an epoch, a validation, the tests: all a
    run compiles) compiled again, with inductor's on-disk cache that the compiled run just filled (the
    workflow's jobs share one)."""
    import torch._dynamo

    torch._dynamo.reset()
    trainer = Trainer(ours_spec(method, ctx, tmp, compile))
    start = compile_account()
    with compile_errors(compile):
        trainer.train_epoch(0)
        trainer.validate()
        for k in range(len(trainer.tasks)):
            trainer.test(k)
    sync(ctx["device"])
    return compile_account(since=start)


class TimedTrainer(Trainer):
    """The real Trainer, with wall-clock timings of its phases (synchronised on a GPU)."""

    def __init__(self, spec: RunSpec):
        t = now()
        super().__init__(spec)
        sync(self.device)
        self.t_init = now() - t
        self.t_train, self.t_val, self.t_test = [], [], []

    def _timed(self, bucket, fn, *a, **k):
        sync(self.device)
        t = now()
        out = fn(*a, **k)
        sync(self.device)
        bucket.append(now() - t)
        return out

    def train_epoch(self, epoch):
        return self._timed(self.t_train, super().train_epoch, epoch)

    def validation(self):
        return self._timed(self.t_val, super().validation)

    def test(self, k, members=None, replicates=False):
        return self._timed(self.t_test, super().test, k, members, replicates)

    def steps_per_epoch(self) -> int:
        bs = self.cfg.batch_size if len(self.tasks) == 1 else self.cfg.batch_size_multitask
        return max(math.ceil(sum(len(td.train_idx) for td in m.data) / bs) for m in self.members)


def run_ours(method, ctx, tmp: Path, compile: str = "none") -> tuple[dict, TimedTrainer]:
    """Our joint run of the pair; ``compile``: the train option (a torch.compile mode or "none")."""
    a, b = ctx["pair"]
    spec = ours_spec(method, ctx, tmp, compile)
    if ctx["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = now()
    trainer = TimedTrainer(spec)
    results = trainer.run()
    sync(ctx["device"])
    total = now() - t0
    E = ctx["train_cfg"].epochs
    K = len(ctx["seeds"])
    steps = trainer.steps_per_epoch()
    epoch, val = steady(trainer.t_train, ctx["steady"]), steady(trainer.t_val, ctx["steady"])
    test = sum(trainer.t_test)
    other = total - trainer.t_init - sum(trainer.t_train) - sum(trainer.t_val) - test
    paper_E = ctx["paper"]["train"]["epochs"]
    job_paper = trainer.t_init + paper_E * (epoch + val) + test + other
    out = {
        "tasks": [a, b],
        "seeds": ctx["seeds"],
        "epochs": E,
        "steps_per_epoch": steps,
        "batch_per_member": ctx["train_cfg"].batch_size_multitask,
        "samples_per_step": K * ctx["train_cfg"].batch_size_multitask,
        "init_s": trainer.t_init,
        "train_epochs_s": trainer.t_train,
        "val_s": trainer.t_val,
        "test_s": trainer.t_test,
        "other_s": other,
        "total_s": total,
        "step_s": epoch / steps,
        "step_per_seed_s": epoch / steps / K,
        "train_samples_per_s": sum(len(td.train_idx) for m in trainer.members for td in m.data) / epoch,
        "transfer_jobs": 2 * K,
        "per_transfer_job_s_measured": total / (2 * K),
        "job_s_paper_epochs": job_paper,
        "per_transfer_job_s_paper_epochs": job_paper / (2 * K),
        "job_breakdown_paper_epochs": {
            "setup": trainer.t_init / job_paper,
            "train": paper_E * epoch / job_paper,
            "validation": paper_E * val / job_paper,
            "test": test / job_paper,
            "other": other / job_paper,
        },
        "results": [{k: r[k] for k in ("target", "seed", "test", "val", "best_epoch")} for r in results],
        "compile": compile,
    }
    if compile != "none":  # dynamo's account of the run's compilation (in the first epoch's and the test's times)
        c = results[0]["compile"]
        out["compile_s"], out["compile_graphs"] = c["compile_s"], c["graphs"]
        out["compile_cache"] = {"hits": c["cache_hits"], "misses": c["cache_misses"]}
    if ctx["device"].startswith("cuda"):
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out, trainer


# ---------------------------------------------------------------------------- component cost model
def measure_components(ctx, clip, precision: str) -> dict:
    """Times of the frozen towers as functions of their work, on this device and precision:
    text tower forward / forward+backward (to the prompt inputs) against tokens = sequences x length;
    image tower forward (no prompts, VPT's 16 deep prompts, UPT's 4) and forward+backward against images."""
    device, model = ctx["device"], clip.model
    W_t = model.token_embedding.weight.shape[1]
    visual = model.visual
    W_v, layers, S = visual.conv1.weight.shape[0], len(visual.transformer.resblocks), clip.image_size
    reps = ctx["component_reps"]
    gen = torch.Generator().manual_seed(0)

    def text_fn(n, L, backward):
        x = torch.randn(n, L, W_t, generator=gen).mul_(0.02).to(device).requires_grad_(backward)
        eot = torch.full((n,), L - 1, device=device)

        def f():
            with autocast(device, precision), torch.set_grad_enabled(backward):
                out = encode_prompted_text(model, x, eot)
            if backward:
                out.float().square().sum().backward()

        return f

    def image_fn(B, n_prompt, backward):
        x = torch.randn(B, 3, S, S, generator=gen).to(device)
        p = torch.randn(layers, n_prompt, W_v, generator=gen).mul_(0.02).to(device).requires_grad_(backward) if n_prompt else None

        def f():
            with autocast(device, precision), torch.set_grad_enabled(backward):
                out = encode_prompted_image(visual, x, p, True)
            if backward:
                out.float().square().sum().backward()

        return f

    C = ctx["pair_classes"]
    lengths = sorted({ctx["cut_length"]["coop"], ctx["cut_length"]["upt"], 77})
    sizes = (max(8, C // 4), 3 * C, 8 * C) if device.startswith("cuda") else (max(8, C // 4), 3 * C)
    text_pts = [(n, L) for L in lengths for n in sizes]
    out = {"precision": precision, "text": {}, "image": {}}
    for mode, bwd in (("fwd", False), ("fwd_bwd", True)):
        ys = [median_time(text_fn(n, L, bwd), device, reps=reps) for n, L in text_pts]
        out["text"][mode] = fit_text(text_pts, ys)
    sizes = ctx["image_sizes"]  # images
    n_vpt, n_upt = ctx["method_options"]["vpt"]["n_ctx"], ctx["method_options"]["upt"]["n_ctx"]
    for name, n_prompt, bwd in (
        ("plain_fwd", 0, False),
        ("vpt_fwd", n_vpt, False),
        ("vpt_fwd_bwd", n_vpt, True),
        ("upt_fwd", n_upt, False),
        ("upt_fwd_bwd", n_upt, True),
    ):
        ys = [median_time(image_fn(B, n_prompt, bwd), device, reps=reps) for B in sizes]
        out["image"][name] = fit_line(sizes, ys)
        if ctx["device"].startswith("cuda"):
            torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------------------- workflow overhead
def measure_overhead(ctx, tmp: Path) -> dict:
    """What a workflow job pays before and around its training: a fresh process's interpreter start,
    imports and device init, the model load, and a whole `mvlpt train` of a tiny run against the
    training time the run reports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # A private lock directory, always: with the user's (MVLPT_GPU_LOCK_DIR, or the default one) the
    # child's `mvlpt train` would wait, without a limit, for a GPU that a running workflow job holds.
    env["MVLPT_GPU_LOCK_DIR"] = str(tmp / "locks")
    env.pop("MVLPT_NO_LEASE", None)
    py = sys.executable
    dev = ctx["device"]
    limit = float(ctx.get("subprocess_timeout", 180))

    def wall(args):
        t = now()
        try:
            p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired as e:
            tail = (e.stderr or b"")[-2000:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            raise RuntimeError(f"{' '.join(args[:6])}... did not finish within {limit:g} s; its stderr ended: {tail}") from None
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:4])}... failed: {p.stderr[-2000:]}")
        log(f"  {now() - t:6.2f} s  {' '.join(a if len(a) < 60 else a[:57] + '...' for a in args[1:])}")
        return now() - t

    out = {}
    out["python_start_s"] = min(wall([py, "-c", "pass"]) for _ in range(2))
    out["import_torch_s"] = min(wall([py, "-c", "import torch"]) for _ in range(2))
    out["import_mvlpt_train_s"] = min(wall([py, "-c", "import mvlpt.training.train, mvlpt.cli"]) for _ in range(2))
    init = f"import torch, mvlpt.training.train; torch.zeros(1, device={dev!r}); torch.cuda.synchronize() if {dev!r}.startswith('cuda') else None"
    out["process_start_import_device_s"] = min(wall([py, "-c", init]) for _ in range(2))
    t = now()
    load_clip(ctx["model"], ctx["pretrained"], device=dev)
    sync(dev)
    out["model_load_in_process_s"] = now() - t
    # a whole workflow-style job: `mvlpt train`, one task, 1 epoch, with this benchmark's model and device
    res = tmp / "overhead" / "r.json"
    args = [
        py,
        "-m",
        "mvlpt.cli",
        "train",
        "--method",
        "coop",
        "--task",
        "shapes",
        "--seed",
        "1",
        "--shots",
        "5",
        "--train-options",
        json.dumps({"epochs": 1, "warmup_epochs": 0}),
        "--output",
        f"shapes={res}",
        "--model",
        ctx["model"],
        "--device",
        dev,
    ]
    args += ["--pretrained", ctx["pretrained"] or "none"]
    total = wall(args)
    trained = json.loads(res.read_text())["wall_time_s"]
    out.update(
        {
            "mvlpt_train_process_s": total,
            "mvlpt_train_reported_training_s": trained,
            "mvlpt_train_overhead_s": total - trained,
            "mvlpt_train_job": f"coop on shapes, 5 shots, 1 epoch, {ctx['model']} on {dev}",
        }
    )
    return out
