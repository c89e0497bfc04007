"""Where a joint run's training steps spend their time: torch.profiler on a GPU, cProfile on the CPU.

A few steps, not a whole epoch and validation: a profile of a whole ViT-B-16 epoch holds hundreds of
thousands of events, and summarising them (``key_averages``) took minutes. The steps are taken
after one unprofiled warm-up step."""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

from .common import now, sync


def profile_steps(trainer, device: str, steps: int = 5, top: int = 8) -> dict:
    """Top ops and (on a GPU) the device's busy and idle share over ``steps`` training steps."""
    epoch = trainer.cfg.epochs  # a further epoch, after the timed run
    for g in trainer.optimizer.param_groups:
        g["lr"] = 0.0  # the run is over; its prompts do not matter any more, but keep them finite
    plan = trainer.epoch_plan(epoch)
    plan = (plan * (1 + steps // len(plan)))[: steps + 1]
    for m in trainer.members:
        m.learner.train()
    trainer.train_step(plan[0])  # warm-up
    sync(device)
    out = {"steps": steps, "samples_per_step": sum(len(sel) for _, parts in plan[1] for _, sel in parts)}
    if device.startswith("cuda"):
        from torch.profiler import ProfilerActivity, profile

        t = now()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=False, with_stack=False) as prof:
            for batch in plan[1:]:
                trainer.train_step(batch)
            sync(device)
        wall = now() - t
        events = prof.key_averages()

        def dev_self(e):
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0

        busy = sum(dev_self(e) for e in events) / 1e6
        rows = [
            {
                "op": e.key,
                "self_gpu_ms": dev_self(e) / 1e3,
                "calls": e.count,
                "share_of_gpu_time": dev_self(e) / 1e6 / busy if busy else None,
            }
            for e in sorted(events, key=dev_self, reverse=True)[:top]
        ]
        cpu_rows = [
            {"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
            for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
        ]
        out.update(
            {
                "tool": "torch.profiler",
                "wall_s": wall,
                "step_s_profiled": wall / steps,
                "gpu_busy_s": busy,
                "gpu_busy_fraction": busy / wall if wall else None,
                "gpu_idle_fraction": 1 - busy / wall if wall else None,
                "top_gpu_ops": rows,
                "top_cpu_ops": cpu_rows,
            }
        )
        return out
    pr = cProfile.Profile()
    t = now()
    pr.enable()
    for batch in plan[1:]:
        trainer.train_step(batch)
    pr.disable()
    wall = now() - t
    stats = pstats.Stats(pr)
    rows = []
    for (file, lineno, func), (cc, nc, tt, ct, callers) in sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[
        :top
    ]:
        where = f"{Path(file).name}:{lineno}" if file != "~" else "builtin"
        rows.append({"function": f"{func} ({where})", "self_s": tt, "cumulative_s": ct, "calls": nc, "share_of_wall": tt / wall})
    out.update({"tool": "cProfile", "wall_s": wall, "step_s_profiled": wall / steps, "top_functions_by_self_time": rows})
    return out
