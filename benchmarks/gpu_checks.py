"""Checks of issue 12's step changes that only a GPU can make (run by benchmarks/gpu_check.sh).

1. Frozen weights cast once to bf16 give the logits and prompt gradients of autocast alone, bit for
   bit, on CUDA (tests/training/test_speed.py checks the same on the CPU).
2. A training step never waits for the device: ``torch.cuda.set_sync_debug_mode("error")`` around
   the steps of an epoch (the epoch's one read of its losses comes after).
3. Train option ``compile`` (torch.compile of the prompted towers, modes ``default`` and
   ``reduce-overhead`` = CUDA graphs): logits and prompt gradients of a few bf16 training steps of
   UPT (both towers learn) on mvlpt-tiny equal eager within bf16 tolerance: at most twice bf16's own
   error (eager bf16 against eager float32) + 1e-3, relative to the largest entry (tests/training/test_compile.py
   checks float32 on the CPU); each mode has its own time limit (``COMPILE_LIMIT_S``).
4. The towers' skipping of rows whose outputs are not used (shared text prefix, [EOS]/[CLS]-only last
   blocks, prompt rows the next layer replaces; mvlpt/models/prompts/blocks.py) equals every block on
   every row on ViT-B-16 in bf16 (the CUDA attention kernels with the masks and shapes it makes), within
   the same tolerance as 3 (tests/models/test_prompts.py checks float32 on the CPU).
Exit status 0 when all hold; one line per check.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

from mvlpt.models.clip import load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_logits
from mvlpt.study import vocabulary
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import Trainer

PAIRWISE = [m.name for m in vocabulary.PAIRWISE_METHODS]  # checks 1 and 2: every method of the pairwise study (CoCoOp too)


def cast_once_is_exact(device: str, model: str) -> bool:
    ok = True
    for method in PAIRWISE:
        clip = load_clip(model, "synthetic" if model == "mvlpt-tiny" else None, device=device)
        learner = build_prompt_learner(
            method, clip, ["circle", "square", "red triangle"], {}, generator=torch.Generator().manual_seed(1)
        )
        g = torch.Generator().manual_seed(0)
        images = [torch.randint(0, 256, (8, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=g).to(device)]

        def forward():
            learner.zero_grad(set_to_none=True)
            logits = stacked_logits([learner], images=images, autocast=torch.bfloat16)[0]
            logits.square().sum().backward()
            return logits.detach(), [p.grad.clone() for p in learner.parameters() if p.requires_grad]

        plain = forward()
        clip.cast_frozen(torch.bfloat16)
        cast = forward()
        same = torch.equal(plain[0], cast[0]) and all(torch.equal(a, b) for a, b in zip(plain[1], cast[1]))
        print(
            f"cast once, {model} {method}: logits and gradients {'bit-identical' if same else 'DIFFER'} "
            f"(max |logit diff| {(plain[0] - cast[0]).abs().max().item():.3g})",
            flush=True,
        )
        ok &= same
    return ok


def steps_never_sync(device: str) -> bool:
    tmp = Path(tempfile.mkdtemp())
    ok = True
    for method in PAIRWISE:
        spec = RunSpec(
            method=method,
            tasks=["shapes", "shape-colours"],
            seeds=[1, 2],
            shots=5,
            pretrained="synthetic",
            train=TrainConfig(epochs=2, warmup_epochs=0, batch_size_multitask=16, precision="bf16"),
            outputs={"shapes": str(tmp / method / "r{seed}.json")},
            device=device,
        )
        trainer = Trainer(spec)
        trainer.train_epoch(0)  # warm-up (first calls may allocate, autotune)
        plan = trainer.epoch_plan(1)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            losses = [trainer.train_step(b) for b in plan]
            error = None
        except RuntimeError as e:
            error = str(e).splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        print(f"no host sync in {len(plan)} {method} steps: {'yes' if error is None else 'NO: ' + error}", flush=True)
        ok &= error is None and torch.isfinite(torch.cat(losses)).all().item()
    return ok


COMPILE_LIMIT_S = 75


def rel(xs, ys) -> float:
    """The largest difference, relative to the largest entry of each tensor of ``xs``."""
    return max(((x - y).abs().max() / x.abs().max().clamp_min(1e-12)).item() for x, y in zip(xs, ys))


def compiled_equals_eager(device: str, modes=("default", "reduce-overhead")) -> bool:
    clip = load_clip("mvlpt-tiny", "synthetic", device=device)
    clip.cast_frozen(torch.bfloat16)
    learners = [
        build_prompt_learner("upt", clip, ["circle", "square", "red triangle"], {}, generator=torch.Generator().manual_seed(s))
        for s in (1, 2)
    ]
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (8, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=g).to(device)
        for _ in learners
    ]

    def steps(n=3, autocast=torch.bfloat16):  # CUDA graph trees warm up, record, then replay: the third step replays
        for _ in range(n):
            torch.compiler.cudagraph_mark_step_begin()
            for lr in learners:
                lr.zero_grad(set_to_none=True)
            logits = stacked_logits(learners, images=images, autocast=autocast)
            torch.cat(logits).log_softmax(-1).square().sum().backward()
        return [lg.detach().clone() for lg in logits], [
            p.grad.clone() for lr in learners for p in lr.parameters() if p.requires_grad
        ]

    eager, fp32 = steps(), steps(autocast=None)
    # bf16's own error (eager bf16 against eager float32) is the scale: compiled kernels round in
    # another order, so compiled-vs-eager may differ by as much, not by more than twice as much
    bound = [2 * rel(fp32[0], eager[0]) + 1e-3, 2 * rel(fp32[1], eager[1]) + 1e-3]
    ok = True
    for mode in modes:

        def expired(signum, frame):
            raise TimeoutError(f"not done within {COMPILE_LIMIT_S} s")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(COMPILE_LIMIT_S)
        t = time.perf_counter()
        try:
            clip.compile(mode)
            logits, grads = steps()
            torch.cuda.synchronize()
            dl, dg = rel(eager[0], logits), rel(eager[1], grads)
            same = dl <= bound[0] and dg <= bound[1]
            msg = (
                f"largest difference / largest entry: logits {dl:.3g} (bound {bound[0]:.3g}), "
                f"gradients {dg:.3g} (bound {bound[1]:.3g}); bound = 2 x bf16's own error + 1e-3"
            )
        except Exception as e:  # noqa: BLE001 - one line per check
            same, msg = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        print(
            f"compile {mode}, mvlpt-tiny upt bf16: {'equal to eager within bf16 tolerance' if same else 'DIFFERS'} "
            f"({msg}; {time.perf_counter() - t:.0f} s with compilation)",
            flush=True,
        )
        ok &= same
    clip.compile("none")
    return ok


def skipped_rows_equal_every_row(device: str, model: str = "ViT-B-16") -> bool:
    from mvlpt.models.prompts import blocks
    from mvlpt.tasks import get_task

    clip = load_clip(model, None, device=device)
    clip.cast_frozen(torch.bfloat16)
    names = list(get_task("dtd").classnames)
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (8, 3, clip.image_size, clip.image_size), dtype=torch.uint8, generator=g).to(device)
        for _ in range(2)
    ]
    ok = True
    for method, options in (("coop", {"position": "middle"}), ("vpt", {}), ("upt", {"position": "middle"})):
        learners = [
            build_prompt_learner(method, clip, names, options, generator=torch.Generator().manual_seed(s)) for s in (1, 2)
        ]

        def step(autocast=torch.bfloat16):
            for lr in learners:
                lr.zero_grad(set_to_none=True)
            logits = stacked_logits(learners, images=images, autocast=autocast)
            torch.cat(logits).log_softmax(-1).square().sum().backward()
            return [lg.detach().clone() for lg in logits], [
                p.grad.clone() for lr in learners for p in lr.parameters() if p.grad is not None
            ]

        skipped = step()
        applies = blocks.applies
        blocks.applies = lambda transformer: False  # every block on every row
        try:
            every, every_fp32 = step(), step(autocast=None)
        finally:
            blocks.applies = applies
        bound = [2 * rel(every_fp32[0], every[0]) + 1e-3, 2 * rel(every_fp32[1], every[1]) + 1e-3]
        dl, dg = rel(every[0], skipped[0]), rel(every[1], skipped[1])
        same = dl <= bound[0] and dg <= bound[1]
        print(
            f"rows skipped, {model} {method} bf16: {'equal to every row within bf16 tolerance' if same else 'DIFFERS'} "
            f"(logits {dl:.3g}, bound {bound[0]:.3g}; gradients {dg:.3g}, bound {bound[1]:.3g})",
            flush=True,
        )
        ok &= same
    return ok


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_checks: no CUDA device", file=sys.stderr)
        return 2
    device = "cuda:0"
    ok = cast_once_is_exact(device, "mvlpt-tiny")
    ok &= cast_once_is_exact(device, "ViT-B-16")
    ok &= steps_never_sync(device)
    ok &= skipped_rows_equal_every_row(device)  # before the compile checks, which may use up the time limit
    ok &= compiled_equals_eager(device)
    print("gpu_checks:", "all hold" if ok else "SOME FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
