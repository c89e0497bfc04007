"""Checks of issue 12's step changes that only a GPU can make (run by benchmarks/gpu_check.sh).

1. Frozen weights cast once to bf16 give the logits and prompt gradients of autocast alone, bit for
   bit, on CUDA (tests/test_speed.py checks the same on the CPU).
2. A training step never waits for the device: ``torch.cuda.set_sync_debug_mode("error")`` around
   the steps of an epoch (the epoch's one read of its losses comes after).
Exit status 0 when both hold; one line per check.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from mvlpt.config import RunSpec, TrainConfig
from mvlpt.models.clip import load_clip
from mvlpt.models.prompts import build_prompt_learner, stacked_logits
from mvlpt.train import Trainer


def cast_once_is_exact(device: str, model: str) -> bool:
    ok = True
    for method in ("coop", "vpt", "upt"):
        clip = load_clip(model, "synthetic" if model == "mvlpt-tiny" else None, device=device)
        learner = build_prompt_learner(method, clip, ["circle", "square", "red triangle"], {},
                                       generator=torch.Generator().manual_seed(1))
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
        print(f"cast once, {model} {method}: logits and gradients {'bit-identical' if same else 'DIFFER'} "
              f"(max |logit diff| {(plain[0] - cast[0]).abs().max().item():.3g})", flush=True)
        ok &= same
    return ok


def steps_never_sync(device: str) -> bool:
    tmp = Path(tempfile.mkdtemp())
    ok = True
    for method in ("coop", "vpt", "upt"):
        spec = RunSpec(method=method, tasks=["shapes", "shape-colours"], seeds=[1, 2], shots=5, pretrained="synthetic",
                       train=TrainConfig(epochs=2, warmup_epochs=0, batch_size_multitask=16, precision="bf16"),
                       outputs={"shapes": str(tmp / method / "r{seed}.json")}, device=device)
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


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_checks: no CUDA device", file=sys.stderr)
        return 2
    device = "cuda:0"
    ok = cast_once_is_exact(device, "mvlpt-tiny")
    ok &= cast_once_is_exact(device, "ViT-B-16")
    ok &= steps_never_sync(device)
    print("gpu_checks:", "all hold" if ok else "SOME FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
