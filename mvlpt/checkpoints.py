"""Prompt checkpoints and resumable training state, as safetensors only (no pickle is ever loaded).

* A *prompt* file holds the learned parameters of one method, with the method and its shape-defining
  options in the safetensors metadata. Loading is strict: another method, a missing or unexpected
  key, or another shape is an error that names it.
* A *state* file holds what a run needs to resume bit-for-bit: the current parameters, SGD momentum
  buffers and best parameters of every prompt set, and (in metadata) the epoch and best metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import MvlptError
from .io import atomic_path

FORMAT = "1"


def _open_meta(path: Path, what: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise MvlptError(f"{what} {path} does not exist.")
    try:
        with safe_open(str(path), "pt") as fh:
            return fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise MvlptError(f"{what} {path} is not a readable safetensors file ({e}); mvlpt never loads pickles.") from None


def save_prompt(learner, path, extra: dict | None = None, state: dict | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state or learner.state_dict()).items()}
    meta = {"format": FORMAT, "kind": "prompt", "method": learner.method, "options": json.dumps(learner.options(), sort_keys=True)}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_prompt(learner, path, allow_class_mismatch: bool = False) -> dict:
    """Load prompt parameters strictly into ``learner``; returns the file's metadata."""
    meta = _open_meta(path, "prompt checkpoint")
    if meta.get("kind") != "prompt":
        raise MvlptError(f"{path} is not an mvlpt prompt checkpoint (kind={meta.get('kind')!r}).")
    if meta.get("method") != learner.method:
        raise MvlptError(f"prompt checkpoint {path} is for method {meta.get('method')!r}, not {learner.method!r}.")
    tensors = load_file(str(path))
    own = learner.state_dict()
    for key in sorted(set(own) | set(tensors)):
        if key not in tensors:
            raise MvlptError(f"prompt checkpoint {path} lacks the parameter {key!r}.")
        if key not in own:
            raise MvlptError(f"prompt checkpoint {path} has an unexpected parameter {key!r}.")
        if tensors[key].shape != own[key].shape:
            raise MvlptError(
                f"prompt checkpoint {path}: parameter {key!r} has shape {tuple(tensors[key].shape)}, "
                f"this {learner.method} prompt needs {tuple(own[key].shape)} (other options or another model?)."
            )
    learner.load_state_dict(tensors, strict=True)
    return meta


def save_state(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Resumable training state: named tensors plus JSON metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "kind": "train-state", "meta": json.dumps(meta, sort_keys=True)})


def load_state(path) -> tuple[dict[str, torch.Tensor], dict]:
    meta = _open_meta(path, "training state")
    if meta.get("kind") != "train-state":
        raise MvlptError(f"{path} is not an mvlpt training state file.")
    return load_file(str(path)), json.loads(meta["meta"])


def remove(path) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
