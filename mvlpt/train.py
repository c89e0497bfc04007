"""The training loop: frozen CLIP, learned prompts, SGD + cosine with warm-up, best-val per task.

One process trains a method on one task (baseline), two or more tasks jointly (one training run
serves every direction: the best-validation checkpoint is tracked *per task*), or one target task
initialised from a source task's prompt (sequential). Each requested target gets a result JSON with
its test metric, evaluated with the checkpoint that was best on that task's validation set.

Determinism: the prompt init comes from a generator seeded with the run's seed and each epoch's
order from a generator seeded with (seed, epoch), so a run resumed from its saved state computes
exactly what an uninterrupted one computes (tested on the CPU).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__
from .checkpoints import load_prompt, load_state, remove, save_prompt, save_state
from .config import RunSpec
from .data import iter_image_batches, labels_of, load_images
from .devices import resolve_device
from .errors import MvlptError
from .features import image_features
from .metrics import compute_metric
from .models.clip import load_clip
from .models.prompts import build_prompt_learner
from .results import write_result
from .tasks import get_task
from .tasks.fewshot import indices_of, make_split, read_split


@dataclass
class TaskData:
    """One task inside a run: its few-shot train/val sets and its place among the run's classes."""

    task: object
    offset: int
    train_split: object
    train_idx: list[int]
    val_idx: list[int]
    train_x: torch.Tensor | None  # uint8 images, or None when features are cached
    val_x: torch.Tensor | None
    train_f: torch.Tensor | None  # frozen image features (CoOp)
    val_f: torch.Tensor | None
    train_y: np.ndarray
    val_y: np.ndarray

    @property
    def classes(self) -> slice:
        return slice(self.offset, self.offset + self.task.num_classes)


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


class Trainer:
    def __init__(self, spec: RunSpec):
        self.spec = spec.validate()
        self.cfg = spec.train
        self.device = resolve_device(spec.device)
        self.clip = load_clip(spec.model, spec.pretrained, device=self.device, init_seed=spec.init_seed)
        self.autocast_dtype = None
        if self.cfg.precision == "bf16" or (self.cfg.precision == "auto" and self.device.startswith("cuda")):
            self.autocast_dtype = torch.bfloat16
        self.tasks = [get_task(n) for n in spec.tasks]
        classnames, offset = [], 0
        for t in self.tasks:
            classnames += list(t.classnames)
        gen = torch.Generator().manual_seed(spec.seed)
        self.learner = build_prompt_learner(spec.method, self.clip, classnames, spec.method_options, generator=gen)
        if spec.init_from:
            load_prompt(self.learner, spec.init_from)
        self.data: list[TaskData] = []
        for t in self.tasks:
            self.data.append(self._load_task(t, offset))
            offset += t.num_classes
        self.n_classes = offset
        self.params = {k: p for k, p in self.learner.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.SGD(
            list(self.params.values()), lr=self.cfg.lr, momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay
        )
        self.fixed_text = None
        if not self.learner.learns_text and self.cfg.cache_features:
            with torch.no_grad():
                self.fixed_text = self.learner.text_features().detach()

    # ------------------------------------------------------------------ data
    def _load_task(self, task, offset: int) -> TaskData:
        spec = self.spec
        train_split = task.load("train", spec.data_dir)
        if task.name in spec.split_files:
            split = read_split(spec.split_files[task.name], task.name)
            if split["shots"] != spec.shots:
                raise MvlptError(
                    f"few-shot split file {spec.split_files[task.name]} has {split['shots']} shots, the run asks for {spec.shots}."
                )
        else:
            split = make_split(task, spec.seed, spec.shots, spec.data_dir, split_data=train_split)
        tr, va = indices_of(train_split, split["train"]), indices_of(train_split, split["val"])
        cached = not self.learner.learns_image and self.cfg.cache_features
        name = f"shots{spec.shots}_seed{split['seed']}"
        if cached:
            tf = image_features(self.clip, task.name, train_split, tr, f"{name}_train", spec.cache_dir)
            vf = image_features(self.clip, task.name, train_split, va, f"{name}_val", spec.cache_dir)
            tx = vx = None
        else:
            tx, vx = load_images(self.clip, train_split, tr), load_images(self.clip, train_split, va)
            tf = vf = None
        return TaskData(task, offset, train_split, tr, va, tx, vx, tf, vf, labels_of(train_split, tr), labels_of(train_split, va))

    # ----------------------------------------------------------------- model
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.autocast_dtype)

    def _logits(self, images=None, feats=None, text=None) -> torch.Tensor:
        learner = self.learner
        with self._autocast():
            if text is None:
                text = self.fixed_text if self.fixed_text is not None else None
            if learner.method == "upt":
                generated = learner.generate()
                img = learner.image_features(images, generated) if feats is None else feats
                txt = learner.text_features(generated) if text is None else text
            else:
                img = learner.image_features(images) if feats is None else feats.to(self.device)
                txt = learner.text_features() if text is None else text
        scale = self.clip.model.logit_scale.exp().float()
        return scale * img.float() @ txt.float().t()

    def _batch_inputs(self, td: TaskData, which: str, idx) -> dict:
        if which == "train":
            x, f = td.train_x, td.train_f
        else:
            x, f = td.val_x, td.val_f
        if f is not None:
            return {"feats": f[idx]}
        return {"images": self.clip.normalize(x[idx])}

    # -------------------------------------------------------------- training
    def train_epoch(self, epoch: int) -> float:
        cfg = self.cfg
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(epoch, cfg)
        # the union of all tasks' few-shot train sets, shuffled by (seed, epoch)
        owners = np.concatenate([np.full(len(td.train_idx), k) for k, td in enumerate(self.data)])
        local = np.concatenate([np.arange(len(td.train_idx)) for td in self.data])
        gen = torch.Generator().manual_seed(self.spec.seed * 100_003 + epoch)
        order = torch.randperm(len(owners), generator=gen).numpy()
        bs = cfg.batch_size if len(self.data) == 1 else cfg.batch_size_multitask
        self.learner.train()
        total, steps = 0.0, 0
        for start in range(0, len(order), bs):
            chunk = order[start : start + bs]
            logits_parts, target_parts, masks = [], [], []
            inputs = {"images": [], "feats": []}
            for k, td in enumerate(self.data):
                sel = local[chunk[owners[chunk] == k]]
                if len(sel) == 0:
                    continue
                inp = self._batch_inputs(td, "train", torch.as_tensor(sel))
                for key, v in inp.items():
                    inputs[key].append(v)
                target_parts.append(_targets(td.train_y[sel], td.offset, self.n_classes, td.task.multilabel))
                m = torch.zeros(len(sel), self.n_classes, dtype=torch.bool)
                m[:, td.classes] = True
                masks.append(m)
            kw = {key: torch.cat(v) for key, v in inputs.items() if v}
            logits = self._logits(**kw)
            target = torch.cat(target_parts).to(logits.device)
            if cfg.head == "per_task":
                logits = logits.masked_fill(~torch.cat(masks).to(logits.device), float("-inf"))
            logp = F.log_softmax(logits, dim=-1)
            loss = -(target * logp.masked_fill(target == 0, 0)).sum(1).mean()
            if not torch.isfinite(loss):
                raise MvlptError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {steps + 1} "
                    f"(method {self.spec.method}, tasks {', '.join(self.spec.tasks)}, lr {self.optimizer.param_groups[0]['lr']:g}); "
                    f"lower the learning rate or check the data."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            steps += 1
        return total / max(steps, 1)

    @torch.no_grad()
    def _scores(self, td: TaskData, which: str) -> np.ndarray:
        self.learner.eval()
        text = None
        if self.learner.learns_text or self.fixed_text is None:
            if self.learner.method == "upt":
                text = None  # generated inside _logits
            else:
                with self._autocast():
                    text = self.learner.text_features()
        n = len(td.val_idx)
        out = []
        for s in range(0, n, self.cfg.eval_batch_size):
            idx = torch.arange(s, min(n, s + self.cfg.eval_batch_size))
            out.append(self._logits(text=text, **self._batch_inputs(td, which, idx))[:, td.classes].float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, td.task.num_classes))

    def validate(self) -> dict[str, float]:
        return {td.task.name: compute_metric(td.task.metric, self._scores(td, "val"), td.val_y) for td in self.data}

    @torch.no_grad()
    def test(self, td: TaskData) -> tuple[float, int]:
        """The test metric of ``td``'s task with the current prompts."""
        self.learner.eval()
        task, spec = td.task, self.spec
        split = task.load("test", spec.data_dir)
        y = labels_of(split)
        if not self.learner.learns_image and self.cfg.cache_features:
            all_feats = image_features(self.clip, task.name, split, None, "test", spec.cache_dir, workers=self.cfg.workers)
            bs = self.cfg.eval_batch_size
            batches = ((None, all_feats[s : s + bs]) for s in range(0, len(all_feats), bs))
        else:
            batches = ((self.clip.normalize(x), None) for x, _ in iter_image_batches(self.clip, split, None, self.cfg.eval_batch_size, self.cfg.workers))
        text = None
        if self.learner.method != "upt":
            with self._autocast():
                text = self.fixed_text if self.fixed_text is not None else self.learner.text_features()
        scores = []
        for images, feats in batches:
            scores.append(self._logits(images=images, feats=feats, text=text)[:, td.classes].float().cpu())
        scores = torch.cat(scores).numpy()
        return compute_metric(task.metric, scores, y), len(y)

    # ------------------------------------------------------------------- run
    def run(self) -> list[dict]:
        spec, cfg = self.spec, self.cfg
        t0 = time.time()
        best = {td.task.name: {"metric": -math.inf, "epoch": -1, "state": None} for td in self.data}
        start = 0
        if spec.state_path:
            start = self._resume(best)
        bar = tqdm(range(start, cfg.epochs), desc=f"{spec.method} {'+'.join(spec.tasks)} seed{spec.seed}",
                   initial=start, total=cfg.epochs, disable=None, leave=False)
        for epoch in bar:
            loss = self.train_epoch(epoch)
            for name, value in self.validate().items():
                if value > best[name]["metric"]:
                    best[name] = {"metric": value, "epoch": epoch, "state": {k: v.detach().clone() for k, v in self.learner.state_dict().items()}}
            bar.set_postfix(loss=f"{loss:.3f}")
            if spec.state_path and cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0 and epoch + 1 < cfg.epochs:
                self._save_state(epoch + 1, best)
        return self._finish(best, time.time() - t0)

    def _finish(self, best: dict, elapsed: float) -> list[dict]:
        spec = self.spec
        results = []
        final = {k: v.detach().clone() for k, v in self.learner.state_dict().items()}
        for td in self.data:
            name = td.task.name
            if name not in spec.outputs and name not in spec.save_prompts:
                continue
            self.learner.load_state_dict(best[name]["state"] or final)
            if name in spec.save_prompts:
                save_prompt(self.learner, spec.save_prompts[name], extra={"task": name, "seed": spec.seed, "best_epoch": best[name]["epoch"] + 1})
            if name not in spec.outputs:
                continue
            value, n_test = self.test(td)
            others = [t for t in spec.tasks if t != name]
            result = {
                "method": spec.method,
                "source": spec.source or ("+".join(others) if others else name),
                "target": name,
                "mode": spec.mode,
                "seed": spec.seed,
                "shots": spec.shots,
                "metric": td.task.metric,
                "test": value,
                "val": best[name]["metric"],
                "best_epoch": best[name]["epoch"] + 1,
                "epochs": self.cfg.epochs,
                "wall_time_s": round(elapsed + 0.0, 3),
                "device": self.device,
                "model": spec.model,
                "pretrained": spec.pretrained,
                "mvlpt_version": __version__,
                "config_hash": spec.config_hash(),
                "n_train": len(td.train_idx),
                "n_val": len(td.val_idx),
                "n_test": n_test,
                "method_options": self.learner.options(),
            }
            if self.device.startswith("cuda"):
                result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            results.append(result)
        for result in results:  # written only once every target is evaluated
            write_result(result, spec.outputs[result["target"]])
        remove(spec.state_path)
        return results

    def _save_state(self, next_epoch: int, best: dict) -> None:
        momentum = {}
        for k, p in self.params.items():
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                momentum[k] = buf
        meta = {"next_epoch": next_epoch, "config_hash": self.spec.config_hash()}
        save_state(self.spec.state_path, self.learner.state_dict(), momentum, best, meta)

    def _resume(self, best: dict) -> int:
        from pathlib import Path

        if not Path(self.spec.state_path).exists():
            return 0
        params, momentum, saved_best, meta = load_state(self.spec.state_path)
        if meta.get("config_hash") != self.spec.config_hash():
            raise MvlptError(
                f"the saved training state {self.spec.state_path} belongs to another configuration; delete it to start over."
            )
        self.learner.load_state_dict(params, strict=True)
        for k, p in self.params.items():
            if k in momentum:
                self.optimizer.state[p]["momentum_buffer"] = momentum[k].to(p.device)
        for name, entry in saved_best.items():
            if entry.get("state") is not None:
                entry["state"] = {k: v.to(self.device) for k, v in entry["state"].items()}
            best[name] = entry
        return int(meta["next_epoch"])


def run(spec: RunSpec) -> list[dict]:
    """Train and evaluate one run; writes its result files and returns the results."""
    return Trainer(spec).run()
