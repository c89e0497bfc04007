"""Where one epoch (train + validation) of a joint run spends its time: torch.profiler on a GPU,
cProfile on the CPU."""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

from .common import now, sync


def profile_epoch(trainer, device: str, top: int = 8) -> dict:
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
