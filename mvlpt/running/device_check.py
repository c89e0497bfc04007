"""Preflight, the devices: CUDA GPUs visible and the GPU lease directory writable (:func:`check_devices`),
what ``train.compile`` needs where the jobs run (:func:`check_compile`), and the SLURM profile's
partition and GPU request read back (:func:`slurm_profile`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mvlpt.errors import MvlptError

# the per-rule resources of a SLURM profile that say where and how a GPU job is submitted
SLURM_GPU_KEYS = ("gpu", "gres", "gpu_model", "slurm_partition", "slurm_account")
DEFAULT_RULE = "(every GPU rule without its own set-resources)"


def slurm_profile(path: str | os.PathLike | None = None, gpu_rules=None) -> dict | None:
    """Partition and GPU request of the SLURM profile's GPU rules, as the executor plugin will submit them
    (None: no profile given). ``gpu_rules``: the rules that declare a GPU (the workflow knows them: its
    rules' ``resources: gpu``); None: the rules whose profile entry says where or how to submit them, and
    one entry for every other GPU rule (the profile's ``default-resources``)."""
    import yaml

    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        p = p / "config.yaml"
    if not p.is_file():  # asked for by name: its absence is a problem, not "no profile" (issue 24, class 5)
        raise MvlptError(
            f"the SLURM profile {path} does not exist (no {p}); give --profile a profile folder "
            f"(e.g. workflow/profiles/slurm) or its config.yaml."
        )
    try:
        prof = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise MvlptError(f"the SLURM profile {p} cannot be read ({e}).") from None
    default = prof.get("default-resources") or {}
    per_rule = prof.get("set-resources") or {}
    if gpu_rules is None:
        names = [r for r, v in per_rule.items() if isinstance(v, dict) and any(k in v for k in SLURM_GPU_KEYS)]
        names.append(DEFAULT_RULE)
    else:
        names = list(gpu_rules)
    rules = {}
    for rule in names:
        r = {**default, **(per_rule.get(rule) or {})}
        gpu = r.get("gpu", 1)
        if r.get("gres"):
            request = f"--gres={r['gres']}"
        elif not gpu:
            request = "no GPU (CPU job)"
        else:
            request = f"--gpus={r['gpu_model'] + ':' if r.get('gpu_model') else ''}{gpu}"
        rules[rule] = {
            "partition": r.get("slurm_partition") or "cluster default (not set)",
            "gpu_request": request,
            "account": r.get("slurm_account"),
        }
    return {"profile": str(p), "executor": prof.get("executor"), "jobs": prof.get("jobs"), "rules": rules}


def check_devices(cfg: dict, problems: list, warnings: list, profile: str | None = None, gpu_rules=None) -> dict:
    from mvlpt.running.devices import NO_LEASE_ENV, default_lock_dir

    out: dict[str, Any] = {"cuda_gpus": [], "lease_dir": default_lock_dir(), "lease_dir_writable": None, "slurm": None}
    try:
        import torch

        out["cuda_gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as e:  # noqa: BLE001 - a broken driver is reported, not raised
        warnings.append(f"devices: CUDA cannot be queried ({type(e).__name__}: {e}).")
    d = Path(out["lease_dir"])
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    out["lease_dir_writable"] = os.access(probe, os.W_OK | os.X_OK)
    requested = str(cfg.get("device", "auto"))
    if out["cuda_gpus"] and not out["lease_dir_writable"] and os.environ.get(NO_LEASE_ENV, "") in ("", "0"):
        problems.append(
            f"devices: the GPU lease directory {d} is not writable, so no job can lease a GPU; set "
            f"MVLPT_GPU_LOCK_DIR to a writable folder."
        )
    if not out["cuda_gpus"]:
        msg = "devices: no CUDA GPU is visible here"
        if requested.startswith("cuda"):
            warnings.append(
                f"{msg} but the config asks for device {requested}; run the jobs where GPUs are "
                f"(a SLURM profile submits them to GPU nodes)."
            )
        else:
            warnings.append(f"{msg}: jobs run on the CPU unless they are submitted to GPU nodes (SLURM profile).")
    out["slurm"] = slurm_profile(profile, gpu_rules)
    return out


def check_compile(cfg: dict, devices: dict, problems: list, warnings: list, on_slurm: bool = False) -> dict:
    """``train.compile``: what torch.compile needs where the jobs run, looked up in this environment:
    Triton for GPU jobs, a C++ compiler for CPU jobs. Without it every job stops at its first step, so
    it is a problem where the jobs surely run on that kind of device (GPUs visible here, ``device:
    cuda``, a SLURM profile; ``device: cpu``), else a warning. The cost estimate prices eager steps,
    which a warning says."""
    from mvlpt.training.config import COMPILE_CACHE, COMPILE_MODES

    mode = str((cfg.get("train") or {}).get("compile", "none"))
    if mode == "none" or mode not in COMPILE_MODES:  # an unknown mode is a config problem (mvlpt.study.configcheck)
        return {"mode": mode}
    # the workflow's (a TORCHINDUCTOR_CACHE_DIR in the jobs' environment wins; torch sets that variable
    # itself in a process that compiled, so this one's says nothing about the jobs')
    out: dict[str, Any] = {"mode": mode, "kernel_cache": str(Path(cfg["cache_dir"]) / COMPILE_CACHE)}
    requested = str(cfg.get("device", "auto"))
    on_gpu = bool(devices.get("cuda_gpus")) or on_slurm or requested.startswith("cuda")
    on_cpu = requested == "cpu"
    if not on_cpu:
        import torch
        from torch.utils._triton import has_triton_package

        out["triton"] = has_triton_package()
        if not out["triton"]:
            (problems if on_gpu else warnings).append(
                f"train.compile: {mode} compiles the GPU jobs' towers with Triton, which this environment lacks; "
                f"install the `triton` package that matches torch {torch.__version__}, or set `train: {{compile: none}}`."
            )
    if not on_gpu:
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            out["cxx"] = get_cpp_compiler()
        except Exception as e:  # noqa: BLE001 - torch's InvalidCxxCompiler, or a broken installation
            out["cxx"] = None
            (problems if on_cpu else warnings).append(
                f"train.compile: {mode} compiles CPU jobs with a C++ compiler, and none works here "
                f"({str(e).splitlines()[0][:200]}); install one (g++) or set `train: {{compile: none}}`."
            )
    warnings.append(
        f"cost: train.compile is {mode}: the estimate prices eager steps and leaves out compile time "
        f"(paid in each job's first epoch, mostly by the first job of each shape: the jobs share the "
        f"kernel cache {out['kernel_cache']}); the training log and each result's `compile` field record it."
    )
    return out
