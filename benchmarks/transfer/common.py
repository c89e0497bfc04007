"""What every part of the transfer benchmark shares: the presets, the paper's configuration, the
benchmark's task pair, timing primitives and the device's name."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mvlpt.models.prompts.text import word_tokens
from mvlpt.study import vocabulary
from mvlpt.tasks import get_task
from mvlpt.tasks.registry import ArraySplit, Task, register

REPO = Path(__file__).resolve().parents[2]
H100_SXM_BF16_DENSE_TFLOPS = 989.4

# The paper's configuration: the study config the benchmark prices (read through mvlpt.study.settings, whose
# schema and TrainConfig hold the defaults; no copy of them here).
PAPER_CONFIG = REPO / "config" / "elevater.yaml"

# cpu: a quick check (a smaller pair, 2 epochs, 1 torch thread: on a shared 2-core machine more threads
# spin against other processes and run several times slower); gpu: the paper's model class.
PRESETS = {
    "cpu": {
        "device": "cpu",
        "model": "mvlpt-tiny",
        "pretrained": "synthetic",
        "epochs": 3,
        "test_size": 100,
        "ref_runs": 2,
        "pair": "eurosat_clip,dtd",
        "threads": 1,
        "flop_model": "ViT-B-16",
    },
    "gpu": {
        "device": "cuda",
        "model": "ViT-B-16",
        "pretrained": None,
        "epochs": 3,
        "test_size": 500,
        "ref_runs": 2,
        "pair": "dtd,cifar-100",
        "threads": None,
        "flop_model": None,
    },
}


# ---------------------------------------------------------------------------- small helpers
def log(*a):
    print(*a, flush=True)


_T0 = time.perf_counter()


class StageTimeout(Exception):
    """A benchmark stage ran past its time limit."""


@contextlib.contextmanager
def stage(name: str, timeout: float | None = None):
    """Announce a stage, say when it ends with its duration and the benchmark's elapsed time, and
    stop it with :class:`StageTimeout` after ``timeout`` seconds (SIGALRM: Python code is interrupted
    at its next bytecode, a running kernel or C call first returns; None or 0: no limit)."""
    import signal

    t = time.perf_counter()
    log(f"[{t - _T0:7.1f} s] {name} ...")
    use_alarm = bool(timeout) and hasattr(signal, "SIGALRM")
    if use_alarm:

        def expired(signum, frame):
            raise StageTimeout(f"{name} did not finish within {timeout:g} s")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    except BaseException as e:
        log(
            f"[{time.perf_counter() - _T0:7.1f} s] {name}: stopped after {time.perf_counter() - t:.1f} s ({type(e).__name__}: {e})"
        )
        raise
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    log(f"[{time.perf_counter() - _T0:7.1f} s] {name}: done in {time.perf_counter() - t:.1f} s")


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


def steady(values: list[float], statistic=statistics.median) -> float:
    """Steady-state time of an epoch: the first (warm-up) epoch left out. ``statistic``: median on a
    GPU, min on a shared CPU (interference only ever adds time); see :func:`steady_statistic`."""
    return statistic(values[1:] if len(values) > 1 else values)


def steady_statistic(device: str):
    return statistics.median if device.startswith("cuda") else min


def load_paper_config(path: str | os.PathLike = PAPER_CONFIG) -> dict:
    """The paper's study config (``path``), checked and over its defaults (:func:`mvlpt.study.settings.load`):
    tasks, methods, seeds, shots, the training options that shape a job, and every option of each
    method (the config's over the learner's own defaults, :func:`mvlpt.study.vocabulary.full_options`)."""
    import dataclasses

    from mvlpt.running.preflight import load_config
    from mvlpt.study import settings

    s = settings.load(load_config(path))
    train = dataclasses.asdict(s.train)
    return {
        "tasks": list(s.tasks),
        "methods": list(s.methods),
        "seeds": list(s.seeds),
        "shots": s.shots,
        "train": {k: train[k] for k in ("epochs", "batch_size", "batch_size_multitask", "eval_batch_size")},
        "method_options": {m: vocabulary.full_options(m, s.method_options.get(m)) for m in s.methods},
        "source": str(Path(path).resolve().relative_to(REPO)) if Path(path).resolve().is_relative_to(REPO) else str(path),
    }


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return (
        platform.processor() or platform.machine() or "cpu"
    ) + f" ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


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
    task = Task(
        name=name,
        classnames=tuple(classnames),
        templates=("a photo of a {}.",),
        metric="accuracy",
        loader=lambda s, data_dir=None: splits[s],
        splits=("train", "test"),
        source="benchmark",
        description=f"benchmark stand-in for {like}",
    )
    return register(task, replace=True)


def prompt_length(tokenizer, classnames, n_ctx: int) -> int:
    """Cut text length of a CoOp-layout prompt: [SOS] ctx + name + '.' [EOS]."""
    period = len(word_tokens(tokenizer, "."))
    return max(1 + n_ctx + len(word_tokens(tokenizer, c)) + period + 1 for c in classnames)
