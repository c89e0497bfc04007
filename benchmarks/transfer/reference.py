"""The reference-style path: one run as the MVLPT reference code's trainer does it, through mvlpt's
own prompt modules and forward pass (:func:`mvlpt.models.prompts.stacked_logits`, with a stack of one
and the reference's costs: the uncut 77-token text sequence, every row of every block (:func:`every_row`)
and both towers on every step and every evaluation batch)."""

from __future__ import annotations

import contextlib
import gc
import math
import statistics

import torch
import torch.nn.functional as F

from mvlpt.models.clip import load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_logits
from mvlpt.models.prompts.text import TokenLayout, normalize
from mvlpt.tasks import get_task
from mvlpt.tasks.fewshot import indices_of, make_split
from mvlpt.training.data import iter_image_batches, labels_of, load_images
from mvlpt.training.metrics import compute_metric
from mvlpt.training.train import _targets, lr_at

from .common import autocast, now, steady, sync


@contextlib.contextmanager
def every_row():
    """Every block of both towers on every row, as the reference computes them: mvlpt's skipping of
    rows whose outputs are not used (:mod:`mvlpt.models.prompts.blocks`) and so its shared text
    prefix are off inside."""
    from mvlpt.models.prompts import blocks

    applies = blocks.applies
    blocks.applies = lambda transformer: False
    try:
        yield
    finally:
        blocks.applies = applies


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
            self.learner.layout = TokenLayout(
                self.clip, classnames, self.learner.layout.n_ctx, getattr(self.learner, "position", "end"), cut=False
            )
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
        """mvlpt's forward pass on a stack of one; VPT's fixed prompts are re-encoded every time, as the
        reference does (mvlpt encodes them once)."""
        text = None
        if not self.learner.learns_text:
            with autocast(self.device, self.precision):
                text = [normalize(self.clip.model.encode_text(self.tokens))]
        return stacked_logits(
            [self.learner], images=[x_uint8], text=text, autocast=torch.bfloat16 if self.precision == "bf16" else None
        )[0]

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
            self.step(order[s * self.bs : (s + 1) * self.bs])

    @torch.no_grad()
    def validate(self) -> float:
        """The target's metric; like the reference, the val loader covers every task of the run."""
        self.learner.eval()
        eb = self.ctx["train_cfg"].eval_batch_size
        xs = torch.cat([v[2] for v in self.val])
        scores = torch.cat([self.logits(xs[s : s + eb]).float().cpu() for s in range(0, len(xs), eb)])
        start, metric = 0, None
        for tk, cls, x, y in self.val:
            if tk.name == self.target:
                metric = compute_metric(tk.metric, scores[start : start + len(x), cls].numpy(), y)
            start += len(x)
        return metric

    @torch.no_grad()
    def test(self) -> float:
        self.learner.eval()
        k = [tk.name for tk in self.tasks].index(self.target)
        tk, cls = self.tasks[k], self.val[k][1]
        split = tk.load("test")
        scores = [
            self.logits(x)[:, cls].float().cpu()
            for x, _ in iter_image_batches(self.clip, split, None, self.ctx["train_cfg"].eval_batch_size)
        ]
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
        with every_row():
            r = ReferenceRun(method, ctx, target, seed)
            out = r.run()
        total = now() - t0
        out.update({"target": target, "seed": seed, "setup_s": r.t_setup, "total_s": total})
        runs.append(out)
        last = r
    steps = last.steps_per_epoch()
    stat = ctx["steady"]
    epoch = stat([steady(r["t_train"], stat) for r in runs])
    val = stat([steady(r["t_val"], stat) for r in runs])
    setup = statistics.mean(r["setup_s"] for r in runs)
    test = statistics.mean(r["t_test"] for r in runs)
    paper_E = ctx["paper"]["train"]["epochs"]
    job_paper = setup + paper_E * (epoch + val) + test
    out = {
        "tasks": list(ctx["pair"]),
        "runs": runs,
        "epochs": ctx["train_cfg"].epochs,
        "steps_per_epoch": steps,
        "precision": ctx["ref_precision"],
        "text_length": int(last.learner.layout.tokens.shape[1]) if last.learner.learns_text else int(last.tokens.shape[1]),
        "setup_s": setup,
        "epoch_s": epoch,
        "val_s": val,
        "test_s": test,
        "step_s": epoch / steps,
        "step_per_seed_s": epoch / steps,
        "train_samples_per_s": len(last.x) / epoch,
        "per_transfer_job_s_measured": statistics.mean(r["total_s"] for r in runs),
        "job_s_paper_epochs": job_paper,
        "per_transfer_job_s_paper_epochs": job_paper,
        "job_breakdown_paper_epochs": {
            "setup": setup / job_paper,
            "train": paper_E * epoch / job_paper,
            "validation": paper_E * val / job_paper,
            "test": test / job_paper,
        },
    }
    if ctx["device"].startswith("cuda"):
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out, last
