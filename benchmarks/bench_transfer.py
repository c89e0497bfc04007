#!/usr/bin/env python
"""Speed benchmark: mvlpt's training path against a reference-style path (issues 6 and 8, part 3).

In one process, on one machine, for CoOp, VPT and UPT:

* **ours**: the real :class:`mvlpt.train.Trainer` (cut text context, CoOp image features read from
  the frozen-feature cache that the workflow's ``frozen_features`` rule writes, VPT class text
  features computed once, one joint run serving both directions, ``--seeds`` seeds stacked in one
  forward pass, bf16 autocast on a GPU);
* **reference style**: a plain loop written like the MVLPT reference code's trainer (the same
  prompt modules and frozen towers, but the image encoder runs on every step, the 77-token text
  sequence runs on every step and on every evaluation batch, one run per direction and per seed,
  one model load per run). Its images are held in memory as uint8, so it pays no JPEG decoding:
  the baseline is, if anything, flattered.

The task pair is synthetic (random pixels) but has the class names and class counts of two
ELEVATER tasks (``--pair``; default dtd (47 classes) + cifar-100 (100)), 20 shots per class
(16 train + 4 val), as in the paper's pairwise study. Each path trains ``--epochs`` epochs; the
times are extrapolated to the paper's 200 epochs (set-up + 200 x (train + val epoch) + test).

The whole-study estimate (GPU-hours) sums the paper's job list (20 ELEVATER tasks, 3 methods,
seeds 1-3, 200 epochs; ours: 20 baselines + 190 joint runs per method + one feature job per task
for CoOp; reference style: (20 + 380) x 3 runs per method), each job priced with a cost model of
its steps: text-tower and image-tower costs measured here as functions of tokens / images
(``components``), calibrated per method and path against the measured runs of the pair
(``calibration``), plus the measured set-up and per-process overhead. Class counts, class names
(cut lengths) and test-set sizes come from mvlpt's ELEVATER metadata.

Also measured: the per-job overhead of a workflow job (interpreter start, imports, device init,
model load, and ``mvlpt train`` of a tiny run against its in-process training time); FLOPs per
step with ``torch.utils.flop_counter.FlopCounterMode`` and, on a GPU, model-FLOPs utilisation
against the H100 SXM dense bf16 peak (989.4 TFLOP/s, ``--peak-tflops``); peak GPU memory; a
profile of one epoch (train + validation) of each method (torch.profiler on a GPU, cProfile on
the CPU).

Commands::

    # CPU, the tiny model (under 5 minutes on 2 cores)
    python benchmarks/bench_transfer.py --preset cpu
    # GPU, ViT-B-16 with random weights (timing only)
    python benchmarks/bench_transfer.py --preset gpu
    # anything else, e.g.
    python benchmarks/bench_transfer.py --device cuda --model ViT-B-16-quickgelu --epochs 4 --methods coop

Results: a JSON file (``--out``; default ``benchmarks/results/<host>-<device>-<date>.json``)
and a summary printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as _dt
import gc
import json
import math
import os
import platform
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mvlpt.config import RunSpec, TrainConfig  # noqa: E402
from mvlpt.data import iter_image_batches, labels_of, load_images  # noqa: E402
from mvlpt.features import image_features  # noqa: E402
from mvlpt.metrics import compute_metric  # noqa: E402
from mvlpt.models.clip import load_clip  # noqa: E402
from mvlpt.models.prompts import build_prompt_learner  # noqa: E402
from mvlpt.models.prompts.text import TokenLayout, _word_tokens, encode_prompted_text, normalize  # noqa: E402
from mvlpt.models.prompts.vision import encode_prompted_image  # noqa: E402
from mvlpt.tasks import get_task  # noqa: E402
from mvlpt.tasks.fewshot import indices_of, make_split  # noqa: E402
from mvlpt.tasks.registry import ArraySplit, Task, register  # noqa: E402
from mvlpt.train import Trainer, _targets, lr_at  # noqa: E402

H100_SXM_BF16_DENSE_TFLOPS = 989.4
METHODS = ("coop", "vpt", "upt")

# The paper's configuration, used when config/elevater.yaml cannot be read.
PAPER_DEFAULTS = {
    "tasks": [
        "caltech-101", "cifar-10", "cifar-100", "country211", "dtd", "eurosat_clip", "fer-2013",
        "fgvc-aircraft-2013b-variants102", "food-101", "gtsrb", "hateful-memes", "kitti-distance", "mnist",
        "oxford-flower-102", "oxford-iiit-pets", "patch-camelyon", "rendered-sst2", "resisc45_clip",
        "stanford-cars", "voc-2007-classification",
    ],
    "methods": list(METHODS),
    "seeds": [1, 2, 3],
    "shots": 20,
    "train": {"epochs": 200, "batch_size": 32, "batch_size_multitask": 64, "eval_batch_size": 100},
    "method_options": {
        "coop": {"n_ctx": 16, "position": "middle", "csc": False},
        "vpt": {"n_tokens": 16, "deep": True},
        "upt": {"n_ctx": 4, "hidden": 128, "mix": "all"},
    },
}

# cpu: a quick check (a smaller pair, 2 epochs, 1 torch thread: on a shared 2-core machine more threads
# spin against other processes and run several times slower); gpu: the paper's model class.
PRESETS = {
    "cpu": {"device": "cpu", "model": "mvlpt-tiny", "pretrained": "synthetic", "epochs": 3, "test_size": 100,
            "ref_runs": 2, "pair": "eurosat_clip,dtd", "threads": 1, "flop_model": "ViT-B-16"},
    "gpu": {"device": "cuda", "model": "ViT-B-16", "pretrained": None, "epochs": 3, "test_size": 500,
            "ref_runs": 2, "pair": "dtd,cifar-100", "threads": None, "flop_model": None},
}


# ---------------------------------------------------------------------------- small helpers
def log(*a):
    print(*a, flush=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def now() -> float:
    return time.perf_counter()


def median_time(fn, device: str, warmup: int = 1, reps: int = 5) -> float:
    """Median of ``reps`` timed calls on a GPU; on the CPU the best of them (a shared CPU's
    interference only ever adds time)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t = now()
        fn()
        sync(device)
        times.append(now() - t)
    return statistics.median(times) if device.startswith("cuda") else min(times)


def autocast(device: str, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def load_paper_config() -> dict:
    cfg = json.loads(json.dumps(PAPER_DEFAULTS))
    path = REPO / "config" / "elevater.yaml"
    try:
        import yaml

        y = yaml.safe_load(path.read_text())
        for key in ("tasks", "methods", "seeds", "shots"):
            if key in y:
                cfg[key] = y[key]
        cfg["train"].update({k: v for k, v in (y.get("train") or {}).items() if k in cfg["train"]})
        for m, o in (y.get("method_options") or {}).items():
            cfg["method_options"][m] = o
        cfg["source"] = str(path.relative_to(REPO))
    except Exception as e:  # noqa: BLE001 - fall back to the documented values
        cfg["source"] = f"built-in defaults ({path.name} not read: {e})"
    return cfg


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return (platform.processor() or platform.machine() or "cpu") + f" ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


# ---------------------------------------------------------------------------- benchmark tasks
def register_bench_task(name: str, like: str, shots: int, n_test: int, image_size: int, seed: int) -> Task:
    """A task with the class names of ELEVATER task ``like``, ``shots`` random-pixel images per class
    in train (exactly what the few-shot protocol samples) and ``n_test`` in test."""
    classnames = get_task(like).classnames
    C = len(classnames)
    rng = np.random.default_rng(seed)
    S = image_size

    def split(n, labels, tag):
        images = rng.integers(0, 256, size=(n, S, S, 3), dtype=np.uint8)
        return ArraySplit([f"{name}/{tag}/{i}" for i in range(n)], np.asarray(labels, dtype=np.int64), images)

    splits = {
        "train": split(C * shots, np.repeat(np.arange(C), shots), "train"),
        "test": split(n_test, rng.integers(0, C, n_test), "test"),
    }
    task = Task(name=name, classnames=tuple(classnames), templates=("a photo of a {}.",), metric="accuracy",
                loader=lambda s, data_dir=None: splits[s], splits=("train", "test"), source="benchmark",
                description=f"benchmark stand-in for {like}")
    return register(task, replace=True)


def prompt_length(tokenizer, classnames, n_ctx: int) -> int:
    """Cut text length of a CoOp-layout prompt: [SOS] ctx + name + '.' [EOS]."""
    period = len(_word_tokens(tokenizer, "."))
    return max(1 + n_ctx + len(_word_tokens(tokenizer, c)) + period + 1 for c in classnames)


# ---------------------------------------------------------------------------- ours: the real Trainer
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

    def validate(self):
        return self._timed(self.t_val, super().validate)

    def test(self, k, members=None):
        return self._timed(self.t_test, super().test, k, members)

    def steps_per_epoch(self) -> int:
        bs = self.cfg.batch_size if len(self.tasks) == 1 else self.cfg.batch_size_multitask
        return max(math.ceil(sum(len(td.train_idx) for td in m.data) / bs) for m in self.members)


STEADY = statistics.median  # the CPU preset switches to min (shared machine: interference only adds time)


def steady(values: list[float]) -> float:
    """Steady-state time of an epoch: the first (warm-up) epoch left out."""
    return STEADY(values[1:] if len(values) > 1 else values)


def run_ours(method, ctx, tmp: Path) -> tuple[dict, TimedTrainer]:
    a, b = ctx["pair"]
    spec = RunSpec(
        method=method, tasks=[a, b], seeds=ctx["seeds"], shots=ctx["shots"],
        method_options=ctx["method_options"][method], train=ctx["train_cfg"],
        model=ctx["model"], pretrained=ctx["pretrained"], cache_dir=str(tmp / "cache"), device=ctx["device"],
        outputs={t: str(tmp / f"ours-{method}" / f"{t}_{{seed}}.json") for t in (a, b)},
    )
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
    epoch, val = steady(trainer.t_train), steady(trainer.t_val)
    test = sum(trainer.t_test)
    other = total - trainer.t_init - sum(trainer.t_train) - sum(trainer.t_val) - test
    paper_E = ctx["paper"]["train"]["epochs"]
    job_paper = trainer.t_init + paper_E * (epoch + val) + test + other
    out = {
        "tasks": [a, b], "seeds": ctx["seeds"], "epochs": E, "steps_per_epoch": steps,
        "batch_per_member": ctx["train_cfg"].batch_size_multitask, "samples_per_step": K * ctx["train_cfg"].batch_size_multitask,
        "init_s": trainer.t_init, "train_epochs_s": trainer.t_train, "val_s": trainer.t_val, "test_s": trainer.t_test,
        "other_s": other, "total_s": total,
        "step_s": epoch / steps, "step_per_seed_s": epoch / steps / K,
        "train_samples_per_s": sum(len(td.train_idx) for m in trainer.members for td in m.data) / epoch,
        "transfer_jobs": 2 * K,
        "per_transfer_job_s_measured": total / (2 * K),
        "job_s_paper_epochs": job_paper,
        "per_transfer_job_s_paper_epochs": job_paper / (2 * K),
        "job_breakdown_paper_epochs": {
            "setup": trainer.t_init / job_paper, "train": paper_E * epoch / job_paper,
            "validation": paper_E * val / job_paper, "test": test / job_paper, "other": other / job_paper},
        "results": [{k: r[k] for k in ("target", "seed", "test", "val", "best_epoch")} for r in results],
    }
    if ctx["device"].startswith("cuda"):
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out, trainer


# ---------------------------------------------------------------------------- reference style
class ReferenceRun:
    """One run as the MVLPT reference code does it: its own model load, one seed, one target task;
    image tower on every step (no feature cache), the full 77-token text sequence on every step and
    on every evaluation batch (also VPT's fixed prompts), validation over the union of the run's
    tasks' val sets every epoch, the best checkpoint by the target's metric, tested at the end."""

    def __init__(self, method, ctx, target: str, seed: int):
        self.method, self.ctx, self.target, self.seed = method, ctx, target, seed
        self.device = ctx["device"]
        self.precision = ctx["ref_precision"]
        sync(self.device)
        t = now()
        self.clip = load_clip(ctx["model"], ctx["pretrained"], device=self.device, init_seed=0)
        self.tasks = [get_task(n) for n in ctx["pair"]]
        classnames = [c for tk in self.tasks for c in tk.classnames]
        self.C = len(classnames)
        opts = ctx["method_options"][method]
        self.learner = build_prompt_learner(method, self.clip, classnames, opts, generator=torch.Generator().manual_seed(seed))
        if self.learner.learns_text:  # switch the cut off: every class's prompt padded to the full context
            self.learner.layout = TokenLayout(self.clip, classnames, self.learner.layout.n_ctx,
                                              getattr(self.learner, "position", "end"), cut=False)
        else:  # VPT: the reference re-encodes its fixed prompts "a photo of a {c}." on every forward
            self.tokens = self.clip.tokenize([self.learner.template.format(c) for c in classnames]).to(self.device)
        xs, ts, self.val = [], [], []
        offset = 0
        for tk in self.tasks:
            train = tk.load("train")
            sp = make_split(tk, seed, ctx["shots"], split_data=train)
            tr, va = indices_of(train, sp["train"]), indices_of(train, sp["val"])
            xs.append(load_images(self.clip, train, tr))
            ts.append(_targets(labels_of(train, tr), offset, self.C, tk.multilabel))
            self.val.append((tk, slice(offset, offset + tk.num_classes), load_images(self.clip, train, va), labels_of(train, va)))
            offset += tk.num_classes
        self.x, self.t = torch.cat(xs), torch.cat(ts)
        cfg = ctx["train_cfg"]
        self.bs = cfg.batch_size_multitask
        params = [p for p in self.learner.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        sync(self.device)
        self.t_setup = now() - t

    def logits(self, x_uint8):
        model = self.clip.model
        with autocast(self.device, self.precision):
            prompts = self.learner.current_prompts()
            x = self.clip.normalize(x_uint8)
            img = encode_prompted_image(model.visual, x, prompts["visual"] if self.learner.learns_image else None, self.learner.deep)
            if self.learner.learns_text:
                txt = encode_prompted_text(model, self.learner.text_embeddings(prompts), self.learner.layout.eot_pos)
            else:
                txt = model.encode_text(self.tokens)
        return model.logit_scale.exp().float() * normalize(img) @ normalize(txt).t()

    def step(self, idx):
        logits = self.logits(self.x[idx])
        target = self.t[idx].to(logits.device)
        loss = -(target * F.log_softmax(logits, -1)).sum(1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.bs)

    def train_epoch(self, epoch):
        for g in self.opt.param_groups:
            g["lr"] = lr_at(epoch, self.ctx["train_cfg"])
        self.learner.train()
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        for s in range(self.steps_per_epoch()):
            self.step(order[s * self.bs:(s + 1) * self.bs])

    @torch.no_grad()
    def validate(self) -> float:
        """The target's metric; like the reference, the val loader covers every task of the run."""
        self.learner.eval()
        eb = self.ctx["train_cfg"].eval_batch_size
        xs = torch.cat([v[2] for v in self.val])
        scores = torch.cat([self.logits(xs[s:s + eb]).float().cpu() for s in range(0, len(xs), eb)])
        start, metric = 0, None
        for tk, cls, x, y in self.val:
            if tk.name == self.target:
                metric = compute_metric(tk.metric, scores[start:start + len(x), cls].numpy(), y)
            start += len(x)
        return metric

    @torch.no_grad()
    def test(self) -> float:
        self.learner.eval()
        k = [tk.name for tk in self.tasks].index(self.target)
        tk, cls = self.tasks[k], self.val[k][1]
        split = tk.load("test")
        scores = [self.logits(x)[:, cls].float().cpu() for x, _ in iter_image_batches(self.clip, split, None, self.ctx["train_cfg"].eval_batch_size)]
        return compute_metric(tk.metric, torch.cat(scores).numpy(), labels_of(split))

    def run(self) -> dict:
        E = self.ctx["train_cfg"].epochs
        t_train, t_val = [], []
        best, best_state = -math.inf, None
        for epoch in range(E):
            sync(self.device)
            t = now()
            self.train_epoch(epoch)
            sync(self.device)
            t_train.append(now() - t)
            t = now()
            metric = self.validate()
            sync(self.device)
            t_val.append(now() - t)
            if metric > best:
                best, best_state = metric, {k: v.detach().clone() for k, v in self.learner.state_dict().items()}
        self.learner.load_state_dict(best_state)
        t = now()
        test = self.test()
        sync(self.device)
        t_test = now() - t
        return {"t_train": t_train, "t_val": t_val, "t_test": t_test, "test": test, "val": best}


def run_reference(method, ctx) -> tuple[dict, ReferenceRun]:
    a, b = ctx["pair"]
    plan = [(b, s) if i % 2 == 0 else (a, s) for i, s in enumerate(ctx["seeds"] * 2)][: ctx["ref_runs"]]
    runs, last = [], None
    if ctx["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for target, seed in plan:
        last = r = None  # free the previous run's model first, as separate processes would
        gc.collect()
        if ctx["device"].startswith("cuda"):
            torch.cuda.empty_cache()
        t0 = now()
        r = ReferenceRun(method, ctx, target, seed)
        out = r.run()
        total = now() - t0
        out.update({"target": target, "seed": seed, "setup_s": r.t_setup, "total_s": total})
        runs.append(out)
        last = r
    steps = last.steps_per_epoch()
    epoch = STEADY([steady(r["t_train"]) for r in runs])
    val = STEADY([steady(r["t_val"]) for r in runs])
    setup = statistics.mean(r["setup_s"] for r in runs)
    test = statistics.mean(r["t_test"] for r in runs)
    paper_E = ctx["paper"]["train"]["epochs"]
    job_paper = setup + paper_E * (epoch + val) + test
    out = {
        "tasks": list(ctx["pair"]), "runs": runs, "epochs": ctx["train_cfg"].epochs, "steps_per_epoch": steps,
        "precision": ctx["ref_precision"], "text_length": int(last.learner.layout.tokens.shape[1]) if last.learner.learns_text else int(last.tokens.shape[1]),
        "setup_s": setup, "epoch_s": epoch, "val_s": val, "test_s": test,
        "step_s": epoch / steps, "step_per_seed_s": epoch / steps, "train_samples_per_s": len(last.x) / epoch,
        "per_transfer_job_s_measured": statistics.mean(r["total_s"] for r in runs),
        "job_s_paper_epochs": job_paper, "per_transfer_job_s_paper_epochs": job_paper,
        "job_breakdown_paper_epochs": {"setup": setup / job_paper, "train": paper_E * epoch / job_paper,
                                       "validation": paper_E * val / job_paper, "test": test / job_paper},
    }
    if ctx["device"].startswith("cuda"):
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out, last


# ---------------------------------------------------------------------------- FLOPs, profiles
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


def profile_epoch(trainer: TimedTrainer, device: str, top: int = 8) -> dict:
    """Where one epoch (train + validation) of a joint run spends its time."""
    epoch = trainer.cfg.epochs  # a further epoch, after the timed run
    if device.startswith("cuda"):
        from torch.profiler import ProfilerActivity, profile

        sync(device)
        t = now()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            trainer.train_epoch(epoch)
            trainer.validate()
            sync(device)
        wall = now() - t
        rows = []
        events = prof.key_averages()

        def dev_self(e):
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0

        busy = sum(dev_self(e) for e in events) / 1e6
        for e in sorted(events, key=dev_self, reverse=True)[:top]:
            rows.append({"op": e.key, "self_gpu_ms": dev_self(e) / 1e3, "calls": e.count,
                         "share_of_gpu_time": dev_self(e) / 1e6 / busy if busy else None})
        cpu_rows = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
                    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]]
        return {"tool": "torch.profiler", "wall_s": wall, "gpu_busy_s": busy,
                "gpu_busy_fraction": busy / wall if wall else None, "top_gpu_ops": rows, "top_cpu_ops": cpu_rows}
    pr = cProfile.Profile()
    t = now()
    pr.enable()
    trainer.train_epoch(epoch)
    trainer.validate()
    pr.disable()
    wall = now() - t
    stats = pstats.Stats(pr)
    rows = []
    for (file, lineno, func), (cc, nc, tt, ct, callers) in sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]:
        where = f"{Path(file).name}:{lineno}" if file != "~" else "builtin"
        rows.append({"function": f"{func} ({where})", "self_s": tt, "cumulative_s": ct, "calls": nc, "share_of_wall": tt / wall})
    return {"tool": "cProfile", "wall_s": wall, "top_functions_by_self_time": rows}


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
    n_vpt, n_upt = ctx["method_options"]["vpt"]["n_tokens"], ctx["method_options"]["upt"]["n_ctx"]
    for name, n_prompt, bwd in (("plain_fwd", 0, False), ("vpt_fwd", n_vpt, False), ("vpt_fwd_bwd", n_vpt, True),
                                ("upt_fwd", n_upt, False), ("upt_fwd_bwd", n_upt, True)):
        ys = [median_time(image_fn(B, n_prompt, bwd), device, reps=reps) for B in sizes]
        out["image"][name] = fit_line(sizes, ys)
        if ctx["device"].startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def model_costs(method: str, path: str, comp: dict, C: int, L: int, K: int, bs: int, n_train: int,
                val_sizes: list[int], test_sizes: list[int], eval_bs: int) -> dict:
    """Predicted seconds of one training step, one validation pass and the test passes of one run.

    ours: K stacked seeds, cut text length L, cached image features (CoOp) / text features (VPT);
    ref: one seed, 77 tokens, both towers on every step and every evaluation batch."""
    text, img = comp["text"], comp["image"]
    learns_text, learns_image = method in ("coop", "upt"), method in ("vpt", "upt")
    img_train = {"coop": "plain_fwd", "vpt": "vpt_fwd_bwd", "upt": "upt_fwd_bwd"}[method]
    img_eval = {"coop": "plain_fwd", "vpt": "vpt_fwd", "upt": "upt_fwd"}[method]
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
                   "L": {m: prompt_length(ctx["tokenizer"], task.classnames, paper["method_options"][m]["n_ctx"]) for m in ("coop", "upt")}}
    proc = overhead.get("process_start_import_device_s", 0.0)
    out = {"tasks": len(tasks), "seeds": K, "epochs": E, "shots": shots, "per_method": {}, "assumptions": []}
    total_ours = total_ref = 0.0
    for method in paper["methods"]:
        if method not in calib:
            continue
        comp_o, comp_r = comps["ours"], comps["ref"]

        def job(path, run_tasks, targets, bs, k):
            C = sum(info[t]["C"] for t in run_tasks)
            L = max(info[t]["L"][method] for t in run_tasks) if method in ("coop", "upt") else 0
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
        if method == "coop":  # one frozen-feature job per task: test split + every seed's few-shot images
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


# ---------------------------------------------------------------------------- FLOP model of the paper's model
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
        out["text"][mode] = {"a": 0.0, "b": b + const / L1, "c": (3 if bwd else 1) * layers_t * 4 * W_t, "per_sequence_const": const}
    n_vpt, n_upt = method_options["vpt"]["n_tokens"], method_options["upt"]["n_ctx"]
    for name, n_prompt, bwd in (("plain_fwd", 0, False), ("vpt_fwd", n_vpt, False), ("vpt_fwd_bwd", n_vpt, True),
                                ("upt_fwd", n_upt, False), ("upt_fwd_bwd", n_upt, True)):
        out["image"][name] = {"a": 0.0, "b": float(image(n_prompt, bwd))}
    return out


def flop_report(ctx, comps: dict, pair_like: list[str]) -> dict:
    """Per transfer job of a pair and the whole study, in FLOPs, ours against the reference style."""
    paper = ctx["paper"]
    K, E = len(paper["seeds"]), paper["train"]["epochs"]
    shots = paper["shots"]
    n_val_pc = max(1, round(0.2 * shots))
    tasks = [get_task(n) for n in pair_like]
    C = sum(t.num_classes for t in tasks)
    from mvlpt.datasets import catalog

    n_test = [int(catalog.manifest_entry(t.name)["test"]["num_images"]) for t in tasks]
    out = {"model": comps["model"], "pair": pair_like, "classes": C, "per_method": {}}
    for method in paper["methods"]:
        L = max(prompt_length(ctx["tokenizer"], t.classnames, paper["method_options"][method]["n_ctx"]) for t in tasks) if method != "vpt" else 0
        r = {}
        for path, k, targets in (("ours", K, n_test), ("ref", 1, n_test[1:])):
            c = model_costs(method, path, comps, C, L, k, paper["train"]["batch_size_multitask"],
                            n_train=(shots - n_val_pc) * C, val_sizes=[n_val_pc * t.num_classes for t in tasks],
                            test_sizes=targets, eval_bs=paper["train"]["eval_batch_size"])
            job = E * (c["steps"] * c["step"] + c["val"]) + c["test"]
            r[path] = {"step_flops_per_seed": c["step"] / k, "transfer_job_flops": job / (2 * K if path == "ours" else 1),
                       "train_share": E * c["steps"] * c["step"] / job}
        r["step_ratio_per_seed"] = r["ref"]["step_flops_per_seed"] / r["ours"]["step_flops_per_seed"]
        r["transfer_job_ratio"] = r["ref"]["transfer_job_flops"] / r["ours"]["transfer_job_flops"]
        out["per_method"][method] = r
    methods = paper["methods"]
    one = {m: {p: {"train": 1.0, "val": 1.0, "test": 1.0} for p in ("ours", "ref")} for m in methods}
    zero = {m: {"ours": 0.0, "ref": 0.0} for m in methods}
    study = study_estimate(ctx, {"ours": comps, "ref": comps}, one, zero, {}, {"load_s": 0.0})
    # study_estimate sums "seconds"; here they are FLOPs (its *_gpu_h fields are FLOPs / 3600)
    peak = ctx.get("peak_tflops", H100_SXM_BF16_DENSE_TFLOPS) * 1e12
    out["study"] = {"ours_eflop": study["ours_gpu_h"] * 3600 / 1e18, "ref_eflop": study["ref_gpu_h"] * 3600 / 1e18,
                    "ratio": study["ratio"],
                    "ours_h100_hours_at_peak": study["ours_gpu_h"] / peak, "ref_h100_hours_at_peak": study["ref_gpu_h"] / peak,
                    "per_method_ratio": {m: y["ratio"] for m, y in study["per_method"].items()},
                    "per_method_eflop": {m: {"ours": y["ours_gpu_h"] * 3600 / 1e18, "ref": y["ref_gpu_h"] * 3600 / 1e18}
                                         for m, y in study["per_method"].items()}}
    return out


# ---------------------------------------------------------------------------- workflow overhead
def measure_overhead(ctx, tmp: Path) -> dict:
    """What a workflow job pays before and around its training: a fresh process's interpreter start,
    imports and device init, the model load, and a whole `mvlpt train` of a tiny run against the
    training time the run reports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("MVLPT_GPU_LOCK_DIR", str(tmp / "locks"))
    py = sys.executable
    dev = ctx["device"]

    def wall(args):
        t = now()
        p = subprocess.run(args, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:4])}... failed: {p.stderr[-2000:]}")
        return now() - t

    out = {}
    out["python_start_s"] = min(wall([py, "-c", "pass"]) for _ in range(2))
    out["import_torch_s"] = min(wall([py, "-c", "import torch"]) for _ in range(2))
    out["import_mvlpt_train_s"] = min(wall([py, "-c", "import mvlpt.train, mvlpt.cli"]) for _ in range(2))
    init = f"import torch, mvlpt.train; torch.zeros(1, device={dev!r}); torch.cuda.synchronize() if {dev!r}.startswith('cuda') else None"
    out["process_start_import_device_s"] = min(wall([py, "-c", init]) for _ in range(2))
    t = now()
    load_clip(ctx["model"], ctx["pretrained"], device=dev)
    sync(dev)
    out["model_load_in_process_s"] = now() - t
    # a whole workflow-style job: `mvlpt train`, one task, 1 epoch, with this benchmark's model and device
    res = tmp / "overhead" / "r.json"
    args = [py, "-m", "mvlpt.cli", "train", "--method", "coop", "--task", "shapes", "--seed", "1", "--shots", "5",
            "--train-options", json.dumps({"epochs": 1, "warmup_epochs": 0}), "--output", f"shapes={res}",
            "--model", ctx["model"], "--device", dev]
    if ctx["pretrained"]:
        args += ["--pretrained", ctx["pretrained"]]
    total = wall(args)
    trained = json.loads(res.read_text())["wall_time_s"]
    out.update({"mvlpt_train_process_s": total, "mvlpt_train_reported_training_s": trained,
                "mvlpt_train_overhead_s": total - trained,
                "mvlpt_train_job": f"coop on shapes, 5 shots, 1 epoch, {ctx['model']} on {dev}"})
    return out


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="cpu: tiny model on the CPU (quick); gpu: ViT-B-16 on CUDA")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the preset's, else cuda if available)")
    p.add_argument("--model", default=None, help="open_clip model name (default: the preset's)")
    p.add_argument("--pretrained", default=None, help="pretrained tag; 'none' for random weights (default: the preset's)")
    p.add_argument("--methods", default="coop,vpt,upt")
    p.add_argument("--pair", default=None, help="two ELEVATER tasks whose class names and counts the benchmark pair takes "
                   "(default: the preset's; gpu: dtd,cifar-100, cpu: eurosat_clip,dtd)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the preset's; cpu: 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs measured per run (extrapolated to the paper's 200)")
    p.add_argument("--seeds", type=int, default=3, help="seeds stacked in our joint run (reference style: one per run)")
    p.add_argument("--test-size", type=int, default=None, help="test images per benchmark task")
    p.add_argument("--ref-runs", type=int, default=None, help="reference-style runs measured per method (direction x seed)")
    p.add_argument("--ref-precision", choices=["same", "fp32"], default="same",
                   help="same: the reference style uses our precision (bf16 autocast on a GPU, as the reference's fp16); fp32: full precision")
    p.add_argument("--peak-tflops", type=float, default=H100_SXM_BF16_DENSE_TFLOPS, help="peak for MFU (default: H100 SXM dense bf16)")
    p.add_argument("--no-overhead", action="store_true", help="skip the subprocess measurements of per-job overhead")
    p.add_argument("--flop-model", default=None, help="also count the FLOPs of this model's study (on the CPU; default: the "
                   "preset's; cpu: ViT-B-16, the paper's model class; 'none' to skip)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/<host>-<device>-<date>.json)")
    args = p.parse_args(argv)

    preset = PRESETS[args.preset] if args.preset else PRESETS["gpu" if torch.cuda.is_available() else "cpu"]
    device = args.device or preset["device"]
    if device == "cuda":
        device = "cuda:0"
    if device.startswith("cuda") and not torch.cuda.is_available():
        p.error("CUDA is not available here; use --preset cpu")
    model = args.model or preset["model"]
    pretrained = preset["pretrained"] if args.pretrained is None and args.model is None else args.pretrained
    if pretrained in ("none", "None", ""):
        pretrained = None
    epochs = args.epochs or preset["epochs"]
    global STEADY
    if not device.startswith("cuda"):
        STEADY = min
    threads = args.threads or preset["threads"]
    if threads:
        torch.set_num_threads(threads)
    if epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is the warm-up, left out of the steady-state times)")
    methods = [m for m in args.methods.split(",") if m]
    precision = "bf16" if device.startswith("cuda") else "fp32"
    ref_precision = precision if args.ref_precision == "same" else "fp32"
    paper = load_paper_config()
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        torch.zeros(1, device=device)  # CUDA context outside the timings (the overhead section measures it)

    t_start = now()
    log(f"bench_transfer: {model} ({pretrained or 'random weights'}) on {device} [{device_name(device)}], torch {torch.__version__}")
    tmp = Path(tempfile.mkdtemp(prefix="mvlpt-bench-"))
    probe = load_clip(model, pretrained, device=device)
    like = (args.pair or preset["pair"]).split(",")
    shots = paper["shots"]
    pair = []
    for i, name in enumerate(like):
        t = register_bench_task(f"bench-{name}", name, shots, args.test_size or preset["test_size"], probe.image_size, seed=100 + i)
        pair.append(t.name)
    C = sum(get_task(n).num_classes for n in pair)
    train_cfg = TrainConfig(epochs=epochs, warmup_epochs=1, batch_size=paper["train"]["batch_size"],
                            batch_size_multitask=paper["train"]["batch_size_multitask"],
                            eval_batch_size=paper["train"]["eval_batch_size"], precision="auto", checkpoint_every=0)
    ctx = {
        "device": device, "model": model, "pretrained": pretrained, "pair": pair, "pair_like": like, "pair_classes": C,
        "seeds": list(range(1, args.seeds + 1)), "shots": shots, "train_cfg": train_cfg, "paper": paper,
        "method_options": {m: dict(o) for m, o in paper["method_options"].items()},
        "ref_runs": args.ref_runs or preset["ref_runs"], "ref_precision": ref_precision, "tokenizer": probe.tokenizer,
        "component_reps": 5 if device.startswith("cuda") else 2,
        "image_sizes": [32, 96, 192] if device.startswith("cuda") else [16, 96],
    }
    names = [c for n in pair for c in get_task(n).classnames]
    ctx["cut_length"] = {m: prompt_length(probe.tokenizer, names, ctx["method_options"][m]["n_ctx"]) for m in ("coop", "upt")}
    log(f"pair: {pair[0]} ({get_task(pair[0]).num_classes} classes) + {pair[1]} ({get_task(pair[1]).num_classes}), "
        f"{shots} shots, {epochs} epochs measured, {len(ctx['seeds'])} seeds stacked; cut text length "
        f"coop {ctx['cut_length']['coop']}, upt {ctx['cut_length']['upt']} (reference 77)")

    report = {
        "format": 1, "date": _dt.datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
        "device": device, "device_name": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
        "model": model, "pretrained": pretrained, "precision": {"ours": precision, "reference": ref_precision},
        "pair": {"tasks": pair, "like": like, "classes": C, "shots": shots, "test_size": args.test_size or preset["test_size"]},
        "epochs_measured": epochs, "seeds_stacked": len(ctx["seeds"]), "paper_config": {k: paper[k] for k in ("source", "seeds", "shots", "train", "method_options")},
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "timing_statistic": "steady state = median of the epochs after the first (GPU); best of them (CPU, shared)",
        "flops_note": "FlopCounterMode with the MHA fast path off; on the CPU the attention kernel is not counted "
                      "(a few % of a step); on a GPU it is",
        "methods": {},
    }

    # CoOp's frozen features, as the workflow's frozen_features job writes them (one job per task)
    feature_job = {"load_s": 0.0}
    if "coop" in methods:
        sync(device)
        t = now()
        clip = load_clip(model, pretrained, device=device)
        sync(device)
        feature_job["load_s"] = now() - t
        t = now()
        n_images = 0
        for name in pair:
            task = get_task(name)
            train, test = task.load("train"), task.load("test")
            image_features(clip, name, test, None, "test", str(tmp / "cache"), write=True)
            n_images += len(test)
            for seed in ctx["seeds"]:
                sp = make_split(task, seed, shots, split_data=train)
                for part in ("train", "val"):
                    idx = indices_of(train, sp[part])
                    image_features(clip, name, train, idx, f"shots{shots}_seed{seed}_{part}", str(tmp / "cache"), write=True)
                    n_images += len(idx)
        sync(device)
        feature_job.update({"encode_s": now() - t, "images": n_images, "images_per_s": n_images / (now() - t)})
        del clip
        log(f"feature cache (workflow job frozen_features) for the pair: {n_images} images in {feature_job['encode_s']:.1f} s")
    report["feature_cache"] = feature_job

    # component cost model (same process, same device)
    t = now()
    comps = {"ours": measure_components(ctx, probe, precision)}
    comps["ref"] = comps["ours"] if ref_precision == precision else measure_components(ctx, probe, ref_precision)
    report["components"] = comps
    log(f"component timings: {now() - t:.1f} s")
    del probe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    calib, setup = {}, {}
    for method in methods:
        log(f"--- {method}")
        res = {}
        try:
            ours, trainer = run_ours(method, ctx, tmp)
            log(f"ours: init {ours['init_s']:.2f} s, step {ours['step_s'] * 1e3:.1f} ms ({len(ctx['seeds'])} seeds), "
                f"val {steady(ours['val_s']):.2f} s, test {sum(ours['test_s']):.2f} s, run {ours['total_s']:.1f} s")
            n_steps = ours["steps_per_epoch"]
            ours["flops_per_step"] = count_flops(lambda: trainer.train_epoch(epochs)) / n_steps
            if not args.no_profile:
                ours["profile_one_epoch"] = profile_epoch(trainer, device)
            res["ours"] = ours
            del trainer
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            ref, last = run_reference(method, ctx)
            log(f"reference style: setup {ref['setup_s']:.2f} s, step {ref['step_s'] * 1e3:.1f} ms, val {ref['val_s']:.2f} s, "
                f"test {ref['test_s']:.2f} s, run {ref['per_transfer_job_s_measured']:.1f} s (x{len(ref['runs'])})")
            idx = torch.arange(last.bs)
            ref["flops_per_step"] = count_flops(lambda: last.step(idx))
            res["ref"] = ref
            del last
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001 - keep the other methods' figures
            import traceback

            traceback.print_exc()
            res["error"] = f"{type(e).__name__}: {e}"
            report["methods"][method] = res
            continue
        # calibration of the cost model on the measured pair
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
            m_val = steady(meas["val_s"]) if path == "ours" else meas["val_s"]
            m_test = sum(meas["test_s"]) if path == "ours" else meas["test_s"]
            cal[path] = {"train": m_step / pred["step"], "val": m_val / pred["val"], "test": m_test / pred["test"],
                         "predicted": pred, "measured": {"step": m_step, "val": m_val, "test": m_test}}
        calib[method] = {k: {kk: cal[k][kk] for kk in ("train", "val", "test")} for k in cal}
        setup[method] = {"ours": ours["init_s"], "ref": ref["setup_s"]}
        res["calibration"] = cal
        res["step_ratio_per_seed"] = ref["step_per_seed_s"] / ours["step_per_seed_s"]
        res["transfer_job_ratio_paper_epochs"] = ref["per_transfer_job_s_paper_epochs"] / ours["per_transfer_job_s_paper_epochs"]
        res["transfer_job_ratio_measured"] = ref["per_transfer_job_s_measured"] / ours["per_transfer_job_s_measured"]
        if device.startswith("cuda"):
            peak = args.peak_tflops * 1e12
            for path, meas in (("ours", ours), ("ref", ref)):
                meas["achieved_tflops"] = meas["flops_per_step"] / meas["step_s"] / 1e12
                meas["mfu"] = meas["flops_per_step"] / meas["step_s"] / peak
            res["mfu_peak_tflops"] = args.peak_tflops
        report["methods"][method] = res
        log(f"{method}: step ratio (per seed) {res['step_ratio_per_seed']:.1f}x, transfer job ratio at "
            f"{paper['train']['epochs']} epochs {res['transfer_job_ratio_paper_epochs']:.1f}x (measured short runs "
            f"{res['transfer_job_ratio_measured']:.1f}x)")

    overhead = {}
    if not args.no_overhead:
        try:
            overhead = measure_overhead(ctx, tmp)
        except Exception as e:  # noqa: BLE001
            overhead = {"error": f"{type(e).__name__}: {e}"}
    report["workflow_overhead"] = overhead
    flop_model = args.flop_model or preset.get("flop_model")
    if flop_model and flop_model != "none":
        t = now()
        try:
            ctx["peak_tflops"] = args.peak_tflops
            report["flop_model"] = flop_report(ctx, flop_components(flop_model, ctx["method_options"]), PRESETS["gpu"]["pair"].split(","))
        except Exception as e:  # noqa: BLE001
            report["flop_model"] = {"error": f"{type(e).__name__}: {e}"}
        log(f"FLOP model of {flop_model}: {now() - t:.1f} s")
    if calib:
        report["study"] = study_estimate(ctx, comps, calib, setup, overhead if "error" not in overhead else {}, feature_job)
    report["bench_wall_s"] = now() - t_start

    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / (
        f"{socket.gethostname()}-{'cuda' if device.startswith('cuda') else 'cpu'}-{_dt.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print_summary(report)
    log(f"\nwritten: {out}  ({report['bench_wall_s']:.0f} s)")
    return 0 if all("error" not in r for r in report["methods"].values()) else 1


def print_summary(r: dict) -> None:
    gpu = r["device"].startswith("cuda")
    log(f"\n== {r['model']} on {r['device_name']} ({r['precision']['ours']} ours, {r['precision']['reference']} reference style); "
        f"pair {'+'.join(r['pair']['like'])} ({r['pair']['classes']} classes), {r['seeds_stacked']} seeds stacked")
    head = "| method | step ours (all seeds) | step ours / seed | step ref | step ratio | job ours | job ref | job ratio |"
    log(head)
    log("| --- " * 8 + "|")
    for m, x in r["methods"].items():
        if "error" in x:
            log(f"| {m} | failed: {x['error']} |")
            continue
        o, f = x["ours"], x["ref"]
        log(f"| {m} | {o['step_s'] * 1e3:.1f} ms | {o['step_per_seed_s'] * 1e3:.1f} ms | {f['step_s'] * 1e3:.1f} ms | "
            f"{x['step_ratio_per_seed']:.1f}x | {o['per_transfer_job_s_paper_epochs']:.1f} s | {f['per_transfer_job_s_paper_epochs']:.1f} s | "
            f"{x['transfer_job_ratio_paper_epochs']:.1f}x |")
    log("(job = one transfer job, one direction and one seed, at the paper's 200 epochs)")
    if gpu:
        log("| method | path | train images/s | peak GPU memory | TFLOP/step | achieved TFLOP/s | MFU |")
        log("| --- " * 7 + "|")
        for m, x in r["methods"].items():
            if "error" in x:
                continue
            for path in ("ours", "ref"):
                y = x[path]
                log(f"| {m} | {path} | {y['train_samples_per_s']:.0f} | {y.get('peak_gpu_memory_mb', 0) / 1024:.1f} GiB | "
                    f"{y['flops_per_step'] / 1e12:.2f} | {y['achieved_tflops']:.0f} | {100 * y['mfu']:.1f}% |")
        log(f"(MFU against {next(iter(r['methods'].values())).get('mfu_peak_tflops', H100_SXM_BF16_DENSE_TFLOPS)} TFLOP/s, H100 SXM dense bf16)")
    s = r.get("study")
    if s:
        log(f"whole study ({s['tasks']} tasks, {s['seeds']} seeds, {s['epochs']} epochs): ours {s['ours_gpu_h']:.1f} h, "
            f"reference style {s['ref_gpu_h']:.1f} h, ratio {s['ratio']:.1f}x")
        for m, y in s["per_method"].items():
            log(f"  {m}: ours {y['ours_gpu_h']:.1f} h ({y['jobs']['ours']} jobs), reference style {y['ref_gpu_h']:.1f} h "
                f"({y['jobs']['ref']} runs), {y['ratio']:.1f}x")
    fm = r.get("flop_model")
    if fm and "error" not in fm:
        log(f"FLOP model, {fm['model']} (paper's model class; FLOPs, not time), pair {'+'.join(fm['pair'])} ({fm['classes']} classes):")
        log("| method | step GFLOP/seed ours | ref | ratio | transfer job PFLOP ours | ref | ratio |")
        log("| --- " * 7 + "|")
        for m, y in fm["per_method"].items():
            log(f"| {m} | {y['ours']['step_flops_per_seed'] / 1e9:.0f} | {y['ref']['step_flops_per_seed'] / 1e9:.0f} | {y['step_ratio_per_seed']:.1f}x | "
                f"{y['ours']['transfer_job_flops'] / 1e15:.1f} | {y['ref']['transfer_job_flops'] / 1e15:.1f} | {y['transfer_job_ratio']:.1f}x |")
        st = fm["study"]
        log(f"  whole study: ours {st['ours_eflop']:.1f} EFLOP, reference style {st['ref_eflop']:.1f} EFLOP, ratio {st['ratio']:.1f}x "
            f"({', '.join(f'{m} {v:.1f}x' for m, v in st['per_method_ratio'].items())}); at 100% of "
            f"{H100_SXM_BF16_DENSE_TFLOPS} TFLOP/s: {st['ours_h100_hours_at_peak']:.0f} vs {st['ref_h100_hours_at_peak']:.0f} H100-hours")
    elif fm:
        log(f"FLOP model: {fm}")
    o = r.get("workflow_overhead") or {}
    if "mvlpt_train_overhead_s" in o:
        log(f"per-job overhead: python {o['python_start_s']:.2f} s, +torch {o['import_torch_s']:.2f} s, +mvlpt {o['import_mvlpt_train_s']:.2f} s, "
            f"+device {o['process_start_import_device_s']:.2f} s; model load {o['model_load_in_process_s']:.2f} s; "
            f"`mvlpt train` {o['mvlpt_train_process_s']:.2f} s of which training {o['mvlpt_train_reported_training_s']:.2f} s "
            f"-> overhead {o['mvlpt_train_overhead_s']:.2f} s")
    elif o:
        log(f"per-job overhead: {o}")


if __name__ == "__main__":
    sys.exit(main())
