"""Typed run configuration: training hyperparameters (protocol defaults) and one run's specification."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any

from mvlpt.errors import MvlptError

HEADS = ("union", "per_task")
MODES = ("single", "joint", "sequential", "zero_epoch")  # zero_epoch: mvlpt.training.zero_epoch (no target training)
# train option `joint_batch`: how a joint run's steps are made (mvlpt.training.train.Trainer.epoch_plan). "shared": one
# shuffled order of the union of the tasks' few-shot sets, batch_size_multitask images a step, the loss their
# mean (the reference code's: one loader over the concatenated train sets, trainers/mvlpt.py); "added": every
# step holds batch_size images of each task and the loss is the sum of each task's mean, so a task's update is
# its baseline's update plus the other tasks' (docs/groundtruth.md, the second world)
JOINT_BATCHES = ("shared", "added")
# train option `compile`: "none" (eager) or one of torch.compile's modes (mvlpt.models.clip.FrozenCLIP.compile)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# train.compile: the folder under a study's cache_dir where its jobs share torch.compile's kernel cache
COMPILE_CACHE = "torch-compile"
# train option `select`: the checkpoint a run reports per target, the best on validation or the final epoch's
# (the reference code's TEST.FINAL_MODEL); best's tie-break: mvlpt.training.train.better
SELECT_MODES = ("best", "last")
# train option `joint_checkpoint`: the checkpoint each target of a joint run reports, the best on that target's own
# validation metric ("per_task", ours: one run serves every direction) or the one checkpoint best on the mean
# validation metric over the run's tasks ("mean_val", the reference code's: MULTITASK_EVALKEY average and Dassl's
# single model-best, sIncerass/MVLPT train.py, trainers/mvlpt.py)
JOINT_CHECKPOINTS = ("per_task", "mean_val")
# train option `joint_order`: a joint run's batch order, a new seeded shuffle every epoch ("reshuffle", ours) or one
# seeded order repeated every epoch ("fixed", the reference code's loader with shuffle=False, trainers/mvlpt.py)
JOINT_ORDERS = ("reshuffle", "fixed")
# train option `joint_fewshot`: a joint run's few-shot images, the baselines' split files ("split_files", ours: a
# gain is a paired difference on the same images) or sampled anew from the union of the run's tasks ("union", the
# reference code's construct_multitask_dataset, trainers/mvlpt.py)
JOINT_FEWSHOTS = ("split_files", "union")
# train option `precision`: "auto" (bf16 autocast on CUDA, fp32 on the CPU), "fp32", "bf16" (autocast, fp32
# parameters) or "fp16": the reference code's PREC fp16, the frozen weights and the prompt parameters in float16,
# plain SGD without loss scaling (configs/trainers/MVLPT/vit_b16.yaml)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# the largest learning rate accepted: what float32 parameters can take (torch's SGD step fails beyond it);
# a large one below it ends in the training loss's NaN check (mvlpt.training.train), one sentence either way
LR_MAX = 1e38


def yaml_text_number(v) -> float | None:
    """The number in ``v`` when it is one a YAML 1.1 reader (PyYAML, hence Snakemake) leaves as text:
    e-notation without a decimal point (``2e-3``) or with an unsigned positive exponent (``1.0e5``); else None."""
    if isinstance(v, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", v.strip()):
        return float(v)
    return None


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters; defaults are the reference runs' (see the protocol)."""

    epochs: int = 200
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    batch_size: int = 32  # single task
    batch_size_multitask: int = 64  # joint runs
    eval_batch_size: int = 100
    head: str = "union"  # joint runs: one softmax over all classes, or a per-task head (other tasks masked)
    precision: str = "auto"  # PRECISIONS: auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16 (parameters too)
    cache_features: bool = True  # frozen image features (CoOp) / text features (VPT) computed once
    checkpoint_every: int = 10  # epochs between resumable state saves (0: never)
    workers: int = 0  # image decoding processes for test evaluation
    # torch.compile of the prompted towers: "none" (eager) or a torch.compile mode; equal results within
    # float tolerance (tests/training/test_compile.py), so a runtime choice like the ones below
    compile: str = "none"
    # the checkpoint each target reports (SELECT_MODES): "best" validation metric (ties: lower validation
    # loss, then the later epoch; mvlpt.training.train.better) or the "last" epoch's; changes results, so it is hashed
    select: str = "best"
    # joint runs: JOINT_BATCHES; changes results, so it is hashed, but only when not "shared" (the hashes of
    # the runs made before the option existed stay what they were)
    joint_batch: str = "shared"
    # joint runs, the points of the reference protocol (mvlpt.study.protocol): JOINT_CHECKPOINTS, JOINT_ORDERS,
    # JOINT_FEWSHOTS; each changes results, so it is hashed, but only when not its default (hashes unchanged)
    joint_checkpoint: str = "per_task"
    joint_order: str = "reshuffle"
    joint_fewshot: str = "split_files"

    # options that do not change results (beyond float tolerance), left out of the config hash
    RUNTIME = ("eval_batch_size", "checkpoint_every", "workers", "cache_features", "compile")
    # options added after results existed: left out of the config hash at these values (what runs did before)
    NEWER_DEFAULTS = {
        "joint_batch": "shared",
        "joint_checkpoint": "per_task",
        "joint_order": "reshuffle",
        "joint_fewshot": "split_files",
    }

    def validate(self) -> TrainConfig:
        def finite(v) -> bool:  # NaN fails every comparison, inf passes "> 0": both are refused here
            return isinstance(v, (int, float)) and math.isfinite(v)

        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (finite(self.lr) and self.lr > 0, f"lr must be a finite number > 0, got {self.lr}"),
            (
                self.lr <= LR_MAX,
                f"lr must be at most {LR_MAX:g}, what float32 parameters can take (the paper's is 0.002), got {self.lr}",
            ),
            (
                finite(self.momentum) and 0 <= self.momentum < 1,
                f"momentum must be a finite number in [0, 1), got {self.momentum}",
            ),
            (
                finite(self.weight_decay) and self.weight_decay >= 0,
                f"weight_decay must be a finite number >= 0, got {self.weight_decay}",
            ),
            (finite(self.warmup_lr) and self.warmup_lr >= 0, f"warmup_lr must be a finite number >= 0, got {self.warmup_lr}"),
            (
                self.warmup_lr <= LR_MAX,
                f"warmup_lr must be at most {LR_MAX:g}, what float32 parameters can take, got {self.warmup_lr}",
            ),
            (
                self.weight_decay <= LR_MAX,
                f"weight_decay must be at most {LR_MAX:g}, what float32 parameters can take, got {self.weight_decay}",
            ),
            (
                0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0,
                f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs}); set warmup_epochs: 0 for very short runs",
            ),
            (self.batch_size >= 1 and self.batch_size_multitask >= 1, "batch sizes must be >= 1"),
            (self.head in HEADS, f"head must be one of {', '.join(HEADS)}, got {self.head!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.compile in COMPILE_MODES, f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}"),
            (
                self.select in SELECT_MODES,
                f"select must be {' or '.join(SELECT_MODES)} (the best-validation or the final "
                f"epoch's checkpoint), got {self.select!r}",
            ),
            (
                self.joint_batch in JOINT_BATCHES,
                f"joint_batch must be {' or '.join(JOINT_BATCHES)} (a joint step's images "
                f"shared by the tasks, or each task's batch with the others' added), "
                f"got {self.joint_batch!r}",
            ),
            (
                self.joint_checkpoint in JOINT_CHECKPOINTS,
                f"joint_checkpoint must be {' or '.join(JOINT_CHECKPOINTS)} (each target's best checkpoint, or the one "
                f"best on the mean validation metric of the run's tasks), got {self.joint_checkpoint!r}",
            ),
            (
                self.joint_order in JOINT_ORDERS,
                f"joint_order must be {' or '.join(JOINT_ORDERS)} (a new batch order every epoch, or one order "
                f"repeated), got {self.joint_order!r}",
            ),
            (
                self.joint_fewshot in JOINT_FEWSHOTS,
                f"joint_fewshot must be {' or '.join(JOINT_FEWSHOTS)} (the baselines' split files, or images "
                f"sampled anew from the union of the tasks), got {self.joint_fewshot!r}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise MvlptError(msg + ".")
        return self

    @classmethod
    def from_dict(cls, d: dict | None) -> TrainConfig:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise MvlptError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}.")
        for f in dataclasses.fields(cls):
            if f.name in d:
                want = type(f.default)
                v = d[f.name]
                if want is float and isinstance(v, int) and not isinstance(v, bool):
                    v = float(v)
                if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                    number = yaml_text_number(v) if want is float else None
                    hint = f" (YAML reads {v} as text: write {number!r})" if number is not None else ""
                    raise MvlptError(f"training option {f.name} must be a {want.__name__}, got {v!r}{hint}.")
                d[f.name] = v
        return cls(**d).validate()

    def hashable(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUNTIME}
        for key, default in self.NEWER_DEFAULTS.items():  # the default before the option existed: hashes unchanged
            if out[key] == default:
                del out[key]
        return out


@dataclasses.dataclass
class RunSpec:
    """One training process: a method on one or more tasks, evaluated on each target."""

    method: str
    tasks: list[str]
    seeds: list[int] = dataclasses.field(default_factory=lambda: [1])  # several: stacked prompt sets, one pass
    shots: int = 5
    method_options: dict = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model: str = "mvlpt-tiny"
    pretrained: str | None = None
    init_seed: int = 0
    split_files: dict[str, str] = dataclasses.field(default_factory=dict)  # task -> few-shot split file
    data_dir: str | None = None
    cache_dir: str | None = None  # frozen-feature caches
    init_from: str | None = None  # sequential mode: the source's prompt checkpoint
    source: str | None = None  # sequential mode: the source task's name (None: the one the prompt file records)
    # Paths may contain "{seed}" (required when the run has several seeds).
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)  # target task -> result JSON
    save_prompts: dict[str, str] = dataclasses.field(default_factory=dict)  # task -> best prompt (safetensors)
    # the prompt best on the mean validation metric over the run's tasks: a multitask source prompt
    save_group_prompt: str | None = None
    state_path: str | None = None  # resumable state; removed when the run completes
    device: str = "auto"
    # ELEVATER's hateful-memes scored by roc_auc (None: the default) or accuracy (mvlpt.tasks.elevater.scored_task)
    hateful_memes_metric: str | None = None
    # the named protocol of the study the run belongs to (mvlpt.study.protocol.PROTOCOLS): recorded in its results,
    # not hashed (the options it sets are)
    protocol: str = "corrected"

    def validate(self) -> RunSpec:
        if not self.tasks:
            raise MvlptError("a run needs at least one task.")
        if len(set(self.tasks)) != len(self.tasks):
            raise MvlptError(f"a run's tasks must be distinct, got {', '.join(self.tasks)}.")
        if self.shots < 1:
            raise MvlptError(f"shots must be at least 1, got {self.shots}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise MvlptError(f"a run needs one or more distinct seeds, got {self.seeds}.")
        from mvlpt.study.names import JOINED_MAX, check_name, check_seed

        for seed in self.seeds:
            check_seed(seed)
        check_seed(self.init_seed, "init seed")
        for t in self.tasks:
            check_name(t, "task name")
        if self.source is not None:
            check_name(self.source, "source task", max_bytes=JOINED_MAX)
        if len(self.seeds) > 1:
            templates = [*self.outputs.values(), *self.save_prompts.values(), *self.split_files.values()]
            # (an init prompt without one: the one prompt every seed starts from, an averaged source prompt)
            templates += [t for t in (self.save_group_prompt,) if t]
            for t in templates:
                if "{seed}" not in t:
                    raise MvlptError(
                        f"with several seeds every output, prompt, split and init path needs a {{seed}} placeholder; {t!r} has none."
                    )
        for t in [*self.outputs, *self.save_prompts]:
            if t not in self.tasks:
                raise MvlptError(f"an output is requested for task {t!r}, which this run does not train on.")
        if self.hateful_memes_metric is not None:
            from mvlpt.tasks.elevater import HATEFUL_MEMES_METRICS

            if self.hateful_memes_metric not in HATEFUL_MEMES_METRICS:
                raise MvlptError(
                    f"hateful_memes_metric must be one of {', '.join(HATEFUL_MEMES_METRICS)}, not {self.hateful_memes_metric!r}."
                )
        from mvlpt.study import protocol

        protocol.check(self.protocol)
        if self.pretrained in ("", "none", "None"):  # the spelling of "random init" on a command line
            self.pretrained = None
        if self.init_from and len(self.tasks) != 1:
            raise MvlptError("a sequential (initialised) run trains on exactly one target task.")
        if self.source and not self.init_from:
            raise MvlptError(
                f"a source task ({self.source!r}) is given but no source prompt: the source of a sequential "
                f"run comes with --init-from; a single or joint run's source is its own tasks."
            )
        if self.source and self.source in self.tasks:
            raise MvlptError(f"the source task {self.source!r} is the target itself: that is the baseline cell, not a transfer.")
        self.train.validate()
        return self

    @property
    def mode(self) -> str:
        if self.init_from:
            return "sequential"
        return "joint" if len(self.tasks) > 1 else "single"

    def output_paths(self) -> list[str]:
        """Every file this run writes (prompts, then results), for every seed."""
        group = [self.save_group_prompt] if self.save_group_prompt else []
        return [self.path(t, s) for t in [*self.save_prompts.values(), *group, *self.outputs.values()] for s in self.seeds]

    def check_paths(self) -> None:
        """Every path this run writes (:meth:`output_paths` and the state file) is a distinct file, none
        of them one the run reads (split files, source prompts), and each could be written
        (:func:`mvlpt.io.check_writable`): one sentence before any work otherwise."""
        from mvlpt.io import check_distinct, check_writable

        written = [*self.output_paths(), *([self.state_path] if self.state_path else [])]
        read = [
            self.path(t, s)
            for t in [*self.split_files.values(), *([self.init_from] if self.init_from else [])]
            for s in self.seeds
        ]
        check_writable(written)
        check_distinct(written, read)

    def path(self, template: str | None, seed: int) -> str | None:
        return None if template is None else template.replace("{seed}", str(seed))

    def setting_hash(self) -> str:
        """Hash of the setting the runs of one study share: method, options, shots, training options and
        the frozen model, but not the tasks, the source nor the seed. Seeds of one cell, and a pair and
        its target's baseline, are compared on it (mvlpt.study.results.check_settings)."""
        key = {
            "method": self.method,
            "options": self.method_options,
            "shots": self.shots,
            "train": self.train.hashable(),
            "model": self.model,
            "pretrained": self.pretrained,
            "init_seed": self.init_seed if not self.pretrained else None,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def config_hash(self, seed: int) -> str:
        """Hash of everything that determines one seed's results (not paths, devices, runtime knobs,
        nor how many seeds share the process: a stacked run equals separate runs)."""
        key: dict[str, Any] = {
            "method": self.method,
            "options": self.method_options,
            "tasks": self.tasks,
            "seed": seed,
            "shots": self.shots,
            "train": self.train.hashable(),
            "model": self.model,
            "pretrained": self.pretrained,
            "init_seed": self.init_seed if not self.pretrained else None,
            "init_from": bool(self.init_from),
            "source": self.source,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
