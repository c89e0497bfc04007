"""The training loop: frozen CLIP, learned prompts, SGD + cosine with warm-up, best-val per task.

One process trains a method on one task (baseline), two or more tasks jointly (one training run
serves every direction: the best-validation checkpoint is tracked *per task*), or one target task
initialised from a source task's prompt (sequential). The points of the reference protocol that concern a
joint run (mvlpt.study.protocol: one mean-validation checkpoint, images sampled anew for the union, one batch
order every epoch) and fp16 parameters are train options. Each requested target gets a result JSON with
its test metric, evaluated with the checkpoint that was best on that task's validation set (ties: the
lower validation loss, then the later epoch; :func:`better`), or with the last epoch's (train option
``select: last``).

Several seeds can share one process (``RunSpec.seeds``): each seed is a *member* with its own
few-shot data, prompt parameters, shuffling, loss and best checkpoints, but every step stacks all
members' batches into one forward pass of the frozen towers (text prompts of all members in one
text-encoder batch, images of all members with per-image prompts in one image-encoder batch).
Plain SGD updates every parameter element on its own, so a stacked run computes what separate
runs compute (tested), while the GPU sees K times larger batches and the model is loaded once.

Determinism: each member's prompt init comes from a generator seeded with its seed and each
epoch's order from one seeded with (seed, epoch), so a run resumed from its saved state computes
exactly what an uninterrupted one computes (tested on the CPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mvlpt import __version__
from mvlpt.errors import MvlptError
from mvlpt.io import content_hash, write_together
from mvlpt.models.clip import compile_account, compile_errors, load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_logits, stacked_text_features_once
from mvlpt.running.devices import resolve_device
from mvlpt.study import layout, vocabulary
from mvlpt.study.results import write_result
from mvlpt.tasks import get_task
from mvlpt.tasks.fewshot import indices_of, make_split, read_split
from mvlpt.training.checkpoints import load_prompt, load_state, remove, save_prompt, save_state, source_prompts
from mvlpt.training.config import RunSpec
from mvlpt.training.data import iter_image_batches, labels_of, load_images
from mvlpt.training.features import image_features
from mvlpt.training.metrics import bootstrap_record, compute_metric


@dataclass
class TaskData:
    """One task of one member: its few-shot train/val sets and its place among the run's classes."""

    task: object
    offset: int
    train_idx: list[int]
    val_idx: list[int]
    train_x: torch.Tensor | None  # uint8 images, or None when features are cached
    val_x: torch.Tensor | None
    train_f: torch.Tensor | None  # frozen image features (CoOp)
    val_f: torch.Tensor | None
    train_y: np.ndarray
    val_y: np.ndarray
    split_hash: str = ""  # identity of the few-shot split (mvlpt.io.content_hash of its train/val ids)
    shots_taken: dict | None = None  # the split's record of classes with fewer than `shots` images, if any
    train_t: torch.Tensor | None = None  # (n_train, run classes) soft targets, on the training device
    class_mask: torch.Tensor | None = None  # (run classes,) bool: this task's classes, on the training device

    @property
    def classes(self) -> slice:
        return slice(self.offset, self.offset + self.task.num_classes)

    def inputs(self, which: str, idx) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(uint8 images, None) or (None, cached features) of samples ``idx`` of train or val."""
        x, f = (self.train_x, self.train_f) if which == "train" else (self.val_x, self.val_f)
        return (None, f[idx]) if f is not None else (x[idx], None)


@dataclass
class Member:
    """One prompt set (one seed) of a run."""

    seed: int
    learner: object
    data: list[TaskData]
    best: dict = field(default_factory=dict)  # task -> {"metric", "loss", "epoch", "state"}

    def union(self) -> tuple[np.ndarray, np.ndarray]:
        """(owner task position, index within that task) of every few-shot train sample."""
        owners = np.concatenate([np.full(len(td.train_idx), k) for k, td in enumerate(self.data)])
        local = np.concatenate([np.arange(len(td.train_idx)) for td in self.data])
        return owners, local


def lr_at(epoch: int, cfg) -> float:
    """Constant warm-up lr for the first ``warmup_epochs``, then cosine from ``lr`` over the rest."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))


def _targets(y: np.ndarray, offset: int, n_total: int, multilabel: bool) -> torch.Tensor:
    """Soft targets over the run's classes: one-hot, or a multi-hot normalised to sum 1."""
    t = torch.zeros(len(y), n_total)
    if multilabel:
        m = torch.as_tensor(y, dtype=torch.float32)
        t[:, offset : offset + m.shape[1]] = m / m.sum(1, keepdim=True).clamp_min(1)
    else:
        t[torch.arange(len(y)), offset + torch.as_tensor(y, dtype=torch.long)] = 1.0
    return t


GROUP = "*group*"  # key of the group checkpoint (best mean validation metric) among a member's per-task bests


def better(candidate: dict, best: dict) -> bool:
    """Whether ``candidate`` ({"metric", "loss", "epoch"}) is a better validation checkpoint than ``best``.

    The higher validation metric wins; among checkpoints tied on it (exact equality: common with a few
    validation images, where the metric takes few values) the lower validation loss; among those still
    tied, the later epoch. Ties going to the earliest epoch made many runs report epoch 1, whose prompts
    have barely moved from their initialisation (docs/protocol.md). A NaN metric never wins; a NaN loss
    counts as an infinite one.
    """
    if candidate["metric"] != best["metric"]:
        return candidate["metric"] > best["metric"]  # False for a NaN candidate

    def loss(entry):
        v = entry.get("loss", math.inf)
        return math.inf if v is None or math.isnan(v) else v

    if loss(candidate) != loss(best):
        return loss(candidate) < loss(best)
    return candidate["epoch"] > best["epoch"]


def validation_loss(scores: np.ndarray, labels: np.ndarray, multilabel: bool) -> float:
    """Mean cross-entropy of ``scores`` (N, C logits over one task's classes) on ``labels`` (N class
    indices); multi-label ((N, C) multi-hot labels): the mean binary cross-entropy of each class's logit.
    NaN for no images."""
    if len(scores) == 0:
        return math.nan
    s = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
    if multilabel:
        return float(F.binary_cross_entropy_with_logits(s, torch.as_tensor(np.asarray(labels), dtype=torch.float64)))
    return float(F.cross_entropy(s, torch.as_tensor(np.asarray(labels), dtype=torch.long)))


class Trainer:
    def __init__(self, spec: RunSpec):
        self.spec = spec.validate()
        self.cfg = spec.train
        self.device = resolve_device(spec.device)
        self.clip = load_clip(spec.model, spec.pretrained, device=self.device, init_seed=spec.init_seed)
        self.autocast_dtype = None
        if self.cfg.precision == "bf16" or (self.cfg.precision == "auto" and self.device.startswith("cuda")):
            self.autocast_dtype = torch.bfloat16
        if self.cfg.precision == "fp16":  # the reference's PREC fp16: float16 towers and float16 prompt parameters
            self.autocast_dtype = torch.float16
        self.joint = len(spec.tasks) > 1
        from mvlpt.tasks.elevater import scored_task

        self.tasks = [scored_task(get_task(n), spec.hateful_memes_metric) for n in spec.tasks]
        self._train_splits = {t.name: t.load("train", spec.data_dir) for t in self.tasks}
        classnames = [c for t in self.tasks for c in t.classnames]  # after the load: some are read from the data
        self.n_classes = len(classnames)
        self.members: list[Member] = []
        # a task-conditioned method (SoftCPT) is told which task each class belongs to
        tasks_of_classes = (
            {"tasks": [(t.name, t.num_classes) for t in self.tasks]} if vocabulary.method(spec.method).task_conditioned else {}
        )
        for seed in spec.seeds:
            gen = torch.Generator().manual_seed(seed)
            learner = build_prompt_learner(
                spec.method, self.clip, classnames, spec.method_options, generator=gen, **tasks_of_classes
            )
            if spec.init_from:
                load_prompt(learner, spec.path(spec.init_from, seed))
            if self.cfg.precision == "fp16":  # learned in float16, plain SGD without loss scaling (as the reference)
                for p in learner.parameters():
                    if p.requires_grad:
                        p.data = p.data.half()
            self.members.append(Member(seed, learner, []))
        # the frozen image tower's output does not depend on the prompts: features once per task (CoOp)
        self.cache_images = vocabulary.method(spec.method).caches_image_features and self.cfg.cache_features
        for m in self.members:
            offset = 0
            for t in self.tasks:
                m.data.append(self._load_task(t, offset, m.seed))
                offset += t.num_classes
        params = [p for m in self.members for p in m.learner.parameters() if p.requires_grad]
        # One SGD over every member's parameters: its update is elementwise, so members stay independent.
        # foreach: a few kernels for all parameter tensors instead of a few per tensor (same arithmetic).
        self.optimizer = torch.optim.SGD(
            params, lr=self.cfg.lr, momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay, foreach=True
        )
        if self.autocast_dtype is not None:
            # frozen matrix-product weights cast to the autocast dtype once, not on every step (exact);
            # after the set-up above, whose cached features and fixed class features run in float32
            self.clip.cast_frozen(self.autocast_dtype)
        # torch.compile of the prompted towers (compiled at their first call of each shape), after the
        # set-up above, which runs eager once
        self.clip.compile(self.cfg.compile)

    # ------------------------------------------------------------------ data
    def _load_task(self, task, offset: int, seed: int) -> TaskData:
        spec = self.spec
        train_split = self._train_splits[task.name]
        if self.joint and self.cfg.joint_fewshot == "union":  # the reference's: sampled anew for the union of the tasks
            split = make_split(task, union_seed(seed, spec.tasks), spec.shots, spec.data_dir, split_data=train_split)
        elif task.name in spec.split_files:
            path = spec.path(spec.split_files[task.name], seed)
            split = read_split(path, task.name)
            if split.get("shots") != spec.shots:
                raise MvlptError(f"few-shot split file {path} has {split.get('shots')} shots, the run asks for {spec.shots}.")
            if split.get("seed") != seed:
                raise MvlptError(
                    f"few-shot split file {path} was sampled with seed {split.get('seed')}, this run's seed is {seed}; "
                    f"give the split file of seed {seed}."
                )
        else:
            split = make_split(task, seed, spec.shots, spec.data_dir, split_data=train_split)
        split_hash = content_hash({"train": split["train"], "val": split["val"]})
        tr, va = indices_of(train_split, split["train"]), indices_of(train_split, split["val"])
        if self.cache_images:
            tf, vf = (
                image_features(
                    self.clip, task.name, train_split, idx, layout.features_name(spec.shots, split["seed"], part), spec.cache_dir
                )
                for idx, part in ((tr, "train"), (va, "val"))
            )
            tx = vx = None
        else:
            tx, vx = load_images(self.clip, train_split, tr), load_images(self.clip, train_split, va)
            tf = vf = None
        # the few-shot sets are small: they live on the training device (uint8 images, normalised per
        # batch there), with their targets, so that a step never copies from the host
        dev = self.device
        tx, vx, tf, vf = (None if t is None else t.to(dev) for t in (tx, vx, tf, vf))
        ty = labels_of(train_split, tr)
        train_t = _targets(ty, offset, self.n_classes, task.multilabel).to(dev)
        class_mask = torch.zeros(self.n_classes, dtype=torch.bool)
        class_mask[offset : offset + task.num_classes] = True
        return TaskData(
            task,
            offset,
            tr,
            va,
            tx,
            vx,
            tf,
            vf,
            ty,
            labels_of(train_split, va),
            split_hash,
            split.get("shots_taken"),
            train_t,
            class_mask.to(dev),
        )

    # ----------------------------------------------------------------- model
    def _text_features(self, members: list[Member]) -> list[torch.Tensor] | None:
        """Each member's (C, D) class features for a whole evaluation pass, all members' prompts in one
        text-encoder batch; None when they depend on the image (an image-conditioned method: CoCoOp)."""
        return stacked_text_features_once([m.learner for m in members], autocast=self.autocast_dtype)

    def _logits(self, members: list[Member], images: list, feats: list, text: list | None = None) -> list[torch.Tensor]:
        """Logits over the run's classes for each member's batch, in one pass of each frozen tower
        (:func:`mvlpt.models.prompts.stacked_logits`).

        ``images[k]`` (uint8) or ``feats[k]`` (cached features) is member k's batch; ``text[k]``, if
        given, member k's class features (evaluation computes them once, not for every batch).
        """
        cached = feats[0] is not None
        return stacked_logits(
            [m.learner for m in members],
            images=None if cached else images,
            feats=feats if cached else None,
            text=text,
            autocast=self.autocast_dtype,
        )

    # -------------------------------------------------------------- training
    def epoch_plan(self, epoch: int) -> list[list[tuple[Member, list[tuple[TaskData, torch.Tensor]]]]]:
        """The epoch's steps: for each step, each active member's (task data, sample indices) parts.

        Each member has its own seeded order of the union of its tasks' few-shot sets; the indices
        of the whole epoch go to the device in one copy. A joint run with train option ``joint_batch: added``
        plans each task on its own instead (:meth:`added_plan`)."""
        if self.cfg.joint_batch == "added" and len(self.tasks) > 1:
            return self.added_plan(epoch)
        bs = self.cfg.batch_size if len(self.tasks) == 1 else self.cfg.batch_size_multitask
        plans = []
        epoch = self.order_epoch(epoch)
        for m in self.members:
            owners, local = m.union()
            gen = torch.Generator().manual_seed(m.seed * 100_003 + epoch)
            plans.append((m, owners, local, torch.randperm(len(owners), generator=gen).numpy()))
        n_steps = max(math.ceil(len(order) / bs) for *_, order in plans)
        layout, pieces = [], []
        for step in range(n_steps):
            batch = []
            for m, owners, local, order in plans:
                chunk = order[step * bs : (step + 1) * bs]
                if len(chunk) == 0:
                    continue  # this member's epoch is over: its parameters get no gradient, hence no update
                parts = []
                for k, td in enumerate(m.data):
                    sel = local[chunk[owners[chunk] == k]]
                    if len(sel):
                        parts.append(td)
                        pieces.append(sel)
                batch.append((m, parts))
            layout.append(batch)
        flat = torch.as_tensor(np.concatenate(pieces), dtype=torch.long).to(self.device)
        idx = iter(flat.split([len(p) for p in pieces]))
        return [[(m, [(td, next(idx)) for td in parts]) for m, parts in batch] for batch in layout]

    def order_epoch(self, epoch: int) -> int:
        """The epoch whose seeded order epoch ``epoch`` uses: its own, or the first's in a joint run with
        train option ``joint_order: fixed`` (the reference code's loader, shuffle=False: one order every epoch)."""
        return 0 if self.joint and self.cfg.joint_order == "fixed" else epoch

    def added_plan(self, epoch: int) -> list[list[tuple[Member, list[tuple[TaskData, torch.Tensor]]]]]:
        """The epoch's steps of a joint run with ``joint_batch: added``: every step holds ``batch_size``
        images of each task (its own seeded order; a task with fewer images than the longest starts its
        next shuffled pass within the epoch), as many steps as the largest task's baseline takes, so each
        task gets its baseline's batches and the other tasks' are added to them (the loss sums each
        task's mean, :meth:`train_step`)."""
        bs, epoch = self.cfg.batch_size, self.order_epoch(epoch)
        n_steps = max(math.ceil(len(td.train_idx) / bs) for m in self.members for td in m.data)
        layout, pieces = [], []
        orders = []
        for m in self.members:
            per_task = []
            for k, td in enumerate(m.data):
                gen = torch.Generator().manual_seed((m.seed * 100_003 + epoch) * 1_009 + k + 1)
                n = len(td.train_idx)
                passes = math.ceil(n_steps * bs / n)
                per_task.append(torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)]).numpy())
            orders.append(per_task)
        for step in range(n_steps):
            batch = []
            for m, per_task in zip(self.members, orders):
                parts = []
                for td, order in zip(m.data, per_task):
                    parts.append(td)
                    pieces.append(order[step * bs : (step + 1) * bs])
                batch.append((m, parts))
            layout.append(batch)
        flat = torch.as_tensor(np.concatenate(pieces), dtype=torch.long).to(self.device)
        idx = iter(flat.split([len(p) for p in pieces]))
        return [[(m, [(td, next(idx)) for td in parts]) for m, parts in batch] for batch in layout]

    def train_step(self, batch) -> torch.Tensor:
        """One SGD step on ``batch`` (one entry of :meth:`epoch_plan`); the active members' losses,
        on the device (not synchronised)."""
        cfg = self.cfg
        if cfg.compile != "none":  # a new training step for CUDA graph trees (reduce-overhead); harmless otherwise
            torch.compiler.cudagraph_mark_step_begin()
        active, images, feats, targets, masks = [], [], [], [], []
        for m, parts in batch:
            xs, fs = zip(*(td.inputs("train", sel) for td, sel in parts))
            active.append(m)
            images.append(torch.cat(xs) if xs[0] is not None else None)
            feats.append(torch.cat(fs) if fs[0] is not None else None)
            targets.append(torch.cat([td.train_t[sel] for td, sel in parts]))
            masks.append(torch.cat([td.class_mask.expand(len(sel), -1) for td, sel in parts]))
        losses = []
        for logits, target, mask in zip(self._logits(active, images, feats), targets, masks):
            if cfg.head == "per_task":
                logits = logits.masked_fill(~mask, float("-inf"))
            logp = F.log_softmax(logits, dim=-1)
            if cfg.joint_batch == "added" and len(self.tasks) > 1:  # each task's mean loss, summed over the tasks
                rows = -(target * logp.masked_fill(target == 0, 0)).sum(1)
                sizes = [len(sel) for _, sel in batch[len(losses)][1]]
                losses.append(torch.stack([part.mean() for part in rows.split(sizes)]).sum())
                continue
            losses.append(-(target * logp.masked_fill(target == 0, 0)).sum(1).mean())
        losses = torch.stack(losses)  # computed outside the compiled towers: no CUDA-graph output is kept
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members share no parameters: each gets its own gradient
        self.optimizer.step()
        return losses.detach()

    def train_epoch(self, epoch: int) -> float:
        """One epoch; its mean loss. The host waits for the device once, at the end of the epoch,
        where the per-step losses are checked: a non-finite one stops the run naming its step."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(epoch, self.cfg)
        plan = self.epoch_plan(epoch)
        for m in self.members:
            m.learner.train()
        losses = [self.train_step(batch) for batch in plan]
        values = torch.cat(losses).tolist() if losses else []  # the epoch's one synchronisation
        total, at = 0.0, 0
        for step, batch in enumerate(plan):
            step_values = values[at : at + len(batch)]
            at += len(batch)
            for (m, _), value in zip(batch, step_values):
                if not math.isfinite(value):
                    raise MvlptError(
                        f"the training loss became {value} at epoch {epoch + 1}, step {step + 1} "
                        f"(method {self.spec.method}, tasks {', '.join(self.spec.tasks)}, seed {m.seed}, "
                        f"lr {self.optimizer.param_groups[0]['lr']:g}); lower the learning rate or check the data."
                    )
            total += float(sum(step_values)) / len(step_values)
        self._check_parameters(epoch, len(plan))
        return total / max(len(plan), 1)

    def _check_parameters(self, epoch: int, steps: int) -> None:
        """The learned parameters after the epoch's last update are finite (issue 24, class 4): a step's
        loss is computed before its update, so a blow-up on the last step shows in no loss; the
        prompts it would leave are checked here, once per epoch."""
        for m in self.members:
            params = [p for p in m.learner.parameters() if p.requires_grad]
            if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
                raise MvlptError(
                    f"the learned prompt became non-finite (NaN or infinite) in the update of step {steps} of epoch "
                    f"{epoch + 1} (method {self.spec.method}, tasks {', '.join(self.spec.tasks)}, seed {m.seed}, "
                    f"lr {self.optimizer.param_groups[0]['lr']:g}); lower the learning rate or check the data."
                )

    def validate(self) -> list[dict[str, float]]:
        """Per member, per task: the validation metric (all members' val batches in one pass)."""
        return [{name: metric for name, (metric, _) in values.items()} for values in self.validation()]

    @torch.no_grad()
    def validation(self) -> list[dict[str, tuple[float, float]]]:
        """Per member, per task: (validation metric, validation loss), both from the same scores of the
        task's own classes (:func:`validation_loss`); all members' val batches in one pass."""
        for m in self.members:
            m.learner.eval()
        out = [{} for _ in self.members]
        text = self._text_features(self.members)  # the prompts do not change during evaluation: class features once
        for k in range(len(self.tasks)):
            sizes = [len(m.data[k].val_idx) for m in self.members]
            scores = [[] for _ in self.members]
            for s in range(0, max(sizes), self.cfg.eval_batch_size):
                active = [j for j, size in enumerate(sizes) if s < size]
                idx = [slice(s, min(sizes[j], s + self.cfg.eval_batch_size)) for j in active]
                batch = [self.members[j].data[k].inputs("val", i) for j, i in zip(active, idx)]
                logits = self._logits(
                    [self.members[j] for j in active],
                    [b[0] for b in batch],
                    [b[1] for b in batch],
                    None if text is None else [text[j] for j in active],
                )
                for j, lg in zip(active, logits):
                    scores[j].append(lg[:, self.members[j].data[k].classes].float())
            for j, m in enumerate(self.members):
                td = m.data[k]
                sc = torch.cat(scores[j]).cpu().numpy() if scores[j] else np.zeros((0, td.task.num_classes))
                out[j][td.task.name] = (
                    compute_metric(td.task.metric, sc, td.val_y),
                    validation_loss(sc, td.val_y, td.task.multilabel),
                )
        return out

    @torch.no_grad()
    def test(self, k: int, members: list[Member] | None = None, replicates: bool = False):
        """Test metric of task ``k`` for each member with its current prompts (one pass over the test set),
        and the test set's size; with ``replicates`` also each member's :func:`mvlpt.training.metrics.bootstrap_record`."""
        members = self.members if members is None else members
        for m in members:
            m.learner.eval()
        task, spec, bs = self.tasks[k], self.spec, self.cfg.eval_batch_size
        split = task.load("test", spec.data_dir)
        y = labels_of(split)
        if self.cache_images:
            feats = image_features(self.clip, task.name, split, None, "test", spec.cache_dir, workers=self.cfg.workers)
            batches = ((None, feats[s : s + bs]) for s in range(0, len(feats), bs))
        else:
            batches = ((x, None) for x, _ in iter_image_batches(self.clip, split, None, bs, self.cfg.workers))
        scores = [[] for _ in members]
        cls = members[0].data[k].classes
        text = self._text_features(members)
        for x, f in batches:
            for j, lg in enumerate(self._logits(members, [x] * len(members), [f] * len(members), text)):
                scores[j].append(lg[:, cls].float().cpu())
        scores = [torch.cat(s).numpy() for s in scores]
        values = [compute_metric(task.metric, s, y) for s in scores]
        if replicates:
            return values, len(y), [bootstrap_record(task.metric, s, y) for s in scores]
        return values, len(y)

    # ------------------------------------------------------------------- run
    def run(self) -> list[dict]:
        spec, cfg = self.spec, self.cfg
        t0 = time.time()
        self._compile_start = compile_account() if cfg.compile != "none" else {}
        spec.check_paths()  # before the work, not after it
        # sequential: the source task is the one the prompt files record (checked against --source)
        self.init_prompts = {}
        if spec.init_from:
            spec.source, self.init_prompts = source_prompts(spec)
        for m in self.members:
            m.best = {t.name: {"metric": -math.inf, "loss": math.inf, "epoch": -1, "state": None} for t in self.tasks}
            if self.tracks_group:
                m.best[GROUP] = {"metric": -math.inf, "loss": math.inf, "epoch": -1, "state": None}
        start = self._resume() if spec.state_path else 0
        if start:  # say so: a rerun that starts over and one that resumes look alike otherwise
            print(
                f"resuming from the saved training state {spec.state_path} at epoch {start + 1} of {cfg.epochs}",
                file=sys.stderr,
                flush=True,
            )
        seeds = ",".join(map(str, spec.seeds))
        bar = tqdm(
            range(start, cfg.epochs),
            desc=f"{spec.method} {'+'.join(spec.tasks)} seed {seeds}",
            initial=start,
            total=cfg.epochs,
            disable=None,
            leave=False,
        )
        for epoch in bar:
            with compile_errors(cfg.compile):  # also the backward graphs, compiled at the first backward
                loss = self.train_epoch(epoch)
            for m, values in zip(self.members, self.validation()):
                own = dict(values)  # each task's (metric, loss) at this epoch
                if self.tracks_group:  # the group's checkpoint: best mean validation metric (then loss) over its tasks
                    values = {**values, GROUP: tuple(sum(v) / len(values) for v in zip(*values.values()))}
                for name, (value, val_loss) in values.items():
                    candidate = {"metric": value, "loss": val_loss, "epoch": epoch}
                    if name == GROUP:
                        candidate["tasks"] = {t: list(v) for t, v in own.items()}
                    if cfg.select == "last" or better(candidate, m.best[name]):
                        state = {k: v.detach().clone() for k, v in m.learner.state_dict().items()}
                        m.best[name] = {**candidate, "state": state}
            bar.set_postfix(loss=f"{loss:.3f}")
            if spec.state_path and cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0 and epoch + 1 < cfg.epochs:
                self._save_state(epoch + 1)
            if epoch == start and cfg.compile != "none":
                c = compile_account(since=self._compile_start)
                print(
                    f"torch.compile ({cfg.compile}): {c['graphs']} graphs compiled in {c['compile_s']:.1f} s during the "
                    f"first epoch; inductor loaded {c['cache_hits']} of their {c['cache_hits'] + c['cache_misses']} "
                    f"forward/backward graphs from the cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR', '(torch default)')}",
                    file=sys.stderr,
                    flush=True,
                )
        return self._finish(time.time() - t0)

    @property
    def tracks_group(self) -> bool:
        """Whether the run keeps the checkpoint best on the mean validation metric over its tasks: for a group
        prompt, or as every target's checkpoint (a joint run with train option ``joint_checkpoint: mean_val``)."""
        return bool(self.spec.save_group_prompt) or self.mean_val

    @property
    def mean_val(self) -> bool:
        return self.joint and self.cfg.joint_checkpoint == "mean_val"

    def reported(self, m: Member, name: str) -> dict:
        """The checkpoint task ``name`` reports ({"metric", "loss", "epoch", "state"}: the task's own validation
        metric and loss at its epoch): the task's best, or the run's one mean-validation checkpoint."""
        if not self.mean_val:
            return m.best[name]
        group = m.best[GROUP]
        metric, loss = (group.get("tasks") or {}).get(name, (group["metric"], group["loss"]))
        return {**group, "metric": metric, "loss": loss}

    def _finish(self, elapsed: float) -> list[dict]:
        """Evaluate every requested target, then write all prompts and results together: a failure
        anywhere (a corrupt test image, a full disk) leaves none of them."""
        spec = self.spec
        results, prompts = [], []
        for k, task in enumerate(self.tasks):
            name = task.name
            if name not in spec.outputs and name not in spec.save_prompts:
                continue
            for m in self.members:  # every member takes the checkpoint this task reports (best on it, or mean_val)
                m.learner.load_state_dict(self.reported(m, name)["state"] or m.learner.state_dict())
                if name in spec.save_prompts:
                    state = {key: v.detach().clone() for key, v in m.learner.state_dict().items()}
                    prompts.append((m, spec.path(spec.save_prompts[name], m.seed), self._provenance(m, name), state))
            if name not in spec.outputs:
                continue
            values, n_test, boots = self.test(k, replicates=True)
            others = [t for t in spec.tasks if t != name]
            for m, value, boot in zip(self.members, values, boots):
                chosen = self.reported(m, name)
                result = {
                    "method": spec.method,
                    "source": spec.source or ("+".join(others) if others else name),
                    "target": name,
                    "mode": spec.mode,
                    "seed": m.seed,
                    "shots": spec.shots,
                    "metric": task.metric,
                    "test": value,
                    "val": chosen["metric"],
                    "val_loss": _finite_or_none(chosen.get("loss")),
                    "select": self.cfg.select,
                    "best_epoch": chosen["epoch"] + 1,
                    "epochs": self.cfg.epochs,
                    "wall_time_s": round(elapsed, 3),
                    "seeds_in_process": len(self.members),
                    "device": self.device,
                    "model": spec.model,
                    "pretrained": spec.pretrained,
                    "mvlpt_version": __version__,
                    "config_hash": spec.config_hash(m.seed),
                    "setting_hash": spec.setting_hash(),
                    "n_train": len(m.data[k].train_idx),
                    "n_val": len(m.data[k].val_idx),
                    "n_test": n_test,
                    "test_bootstrap": boot,
                    "method_options": m.learner.options(),
                    "splits": {td.task.name: td.split_hash for td in m.data},
                    "protocol": spec.protocol,
                }
                if self.mean_val:  # the one checkpoint of the run, best on the mean validation metric of its tasks
                    result["joint_checkpoint"] = "mean_val"
                if self.joint and self.cfg.joint_fewshot == "union":  # not the baseline's split: no paired gain check
                    result["joint_fewshot"] = "union"
                if m.data[k].shots_taken:  # only when a class was short of `shots` (fewshot policy "available")
                    result["shots_taken"] = m.data[k].shots_taken
                if m.seed in self.init_prompts:
                    src = self.init_prompts[m.seed]
                    result["init_prompt"] = {key: src[key] for key in ("task", "tasks", "seed", "config_hash", "splits")}
                if self.device.startswith("cuda"):
                    result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                if self.cfg.compile != "none":  # the run's compilation so far (test batches included); in wall_time_s too
                    result["compile"] = {"mode": self.cfg.compile, **compile_account(since=self._compile_start)}
                results.append(result)
        if spec.save_group_prompt:
            for m in self.members:
                best = m.best[GROUP]
                state = best["state"] or {key: v.detach().clone() for key, v in m.learner.state_dict().items()}
                prompts.append((m, spec.path(spec.save_group_prompt, m.seed), self._provenance(m, GROUP), state))
        with write_together():  # prompts first, results last; renamed into place only when all are written
            for m, path, provenance, state in prompts:
                save_prompt(m.learner, path, provenance, state=state)
            for result in results:
                write_result(result, spec.path(spec.outputs[result["target"]], result["seed"]))
        remove(spec.state_path)
        return results

    def _provenance(self, m: Member, task: str) -> dict:
        """What a prompt file records of the run that made it (mvlpt.training.checkpoints.PROVENANCE)."""
        spec = self.spec
        # a multitask source prompt (GROUP) was chosen on the mean validation metric of all the run's tasks
        group = {"selected_by": "mean_val"} if task == GROUP else {}
        return {
            **group,
            "task": "+".join(spec.tasks) if group else task,
            "tasks": list(spec.tasks),
            "seed": m.seed,
            "shots": spec.shots,
            "model": spec.model,
            "pretrained": spec.pretrained,
            "init_seed": spec.init_seed,
            "config_hash": spec.config_hash(m.seed),
            "splits": {td.task.name: td.split_hash for td in m.data},
            "best_epoch": (m.best[task] if group else self.reported(m, task))["epoch"] + 1,
            "mvlpt_version": __version__,
        }

    # ---------------------------------------------------------------- resume
    def _save_state(self, next_epoch: int) -> None:
        tensors, best_meta = {}, {}
        for m in self.members:
            tensors.update({f"{m.seed}/param/{k}": v for k, v in m.learner.state_dict().items()})
            for k, p in m.learner.named_parameters():
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    tensors[f"{m.seed}/momentum/{k}"] = buf
            best_meta[str(m.seed)] = {}
            for task, entry in m.best.items():
                best_meta[str(m.seed)][task] = {"metric": entry["metric"], "loss": entry["loss"], "epoch": entry["epoch"]}
                if "tasks" in entry:
                    best_meta[str(m.seed)][task]["tasks"] = entry["tasks"]
                for k, v in (entry["state"] or {}).items():
                    tensors[f"{m.seed}/best/{task}/{k}"] = v
        meta = {"next_epoch": next_epoch, "config_hashes": [self.spec.config_hash(s) for s in self.spec.seeds], "best": best_meta}
        save_state(self.spec.state_path, tensors, meta)

    def _resume(self) -> int:
        if not Path(self.spec.state_path).exists():
            return 0
        tensors, meta = load_state(self.spec.state_path)
        if meta.get("config_hashes") != [self.spec.config_hash(s) for s in self.spec.seeds]:
            raise MvlptError(
                f"the saved training state {self.spec.state_path} belongs to another configuration; delete it to start over."
            )
        if any((GROUP in best) != self.tracks_group for best in meta["best"].values()):
            raise MvlptError(
                f"the saved training state {self.spec.state_path} was saved by a run that "
                f"{'did not track' if self.tracks_group else 'tracked'} a group prompt; delete it to start over."
            )

        def part(prefix):
            return {k[len(prefix) :]: v.to(self.device) for k, v in tensors.items() if k.startswith(prefix)}

        for m in self.members:
            m.learner.load_state_dict(part(f"{m.seed}/param/"), strict=True)
            momentum = part(f"{m.seed}/momentum/")
            for k, p in m.learner.named_parameters():
                if k in momentum:
                    self.optimizer.state[p]["momentum_buffer"] = momentum[k]
            for task, entry in meta["best"][str(m.seed)].items():
                state = part(f"{m.seed}/best/{task}/")
                m.best[task] = {
                    "metric": entry["metric"],
                    "loss": entry.get("loss", math.inf),
                    "epoch": entry["epoch"],
                    "state": state or None,
                    **({"tasks": entry["tasks"]} if "tasks" in entry else {}),
                }
        return int(meta["next_epoch"])


def union_seed(seed: int, tasks) -> int:
    """The seed of a joint run's few-shot sample with train option ``joint_fewshot: union``: one per seed and
    set of tasks, the same in either task order (the reference code samples the union's manifest anew), a
    stream other than the seed's own, which the baselines' split files come from."""
    from mvlpt.study.names import SEED_LIMIT

    digest = hashlib.sha256(json.dumps([seed, sorted(tasks)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_LIMIT


def _finite_or_none(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def run(spec: RunSpec) -> list[dict]:
    """Train and evaluate one run; writes its result files and returns the results."""
    return Trainer(spec).run()
