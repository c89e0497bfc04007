"""Prompt checkpoints and resumable training state, as safetensors only (no pickle is ever loaded).

* A *prompt* file holds the learned parameters of one method, with the method, its shape-defining
  options and its *provenance* in the safetensors metadata: the task whose validation chose it, the
  tasks and seed it was trained on,
  shots, model, weights (and random-init seed), config hash, few-shot split hashes, best epoch and
  mvlpt version. Loading is strict: another method, model, weights or init, a missing or unexpected
  key, another shape or other options is an error that names it; a file without provenance (older
  mvlpt) is refused. A sequential run takes its source task from the file (:func:`source_prompts`).
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

FORMAT = "1"  # of state files
PROMPT_FORMAT = "2"  # 2: prompt files carry their provenance
# What a prompt file records of the run that made it (metadata "provenance", JSON).
PROVENANCE = ("task", "tasks", "seed", "shots", "model", "pretrained", "init_seed", "config_hash", "splits", "best_epoch",
              "mvlpt_version")


def _open_meta(path: Path, what: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise MvlptError(f"{what} {path} does not exist.")
    try:
        with safe_open(str(path), "pt") as fh:
            return fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise MvlptError(f"{what} {path} is not a readable safetensors file ({e}); mvlpt never loads pickles.") from None


def save_prompt(learner, path, provenance: dict, state: dict | None = None) -> None:
    """Write ``learner``'s parameters (or ``state``) with its method, options and ``provenance``
    (every key of :data:`PROVENANCE`) atomically; inside :func:`mvlpt.io.write_together` the file
    appears with the group."""
    missing = [k for k in PROVENANCE if k not in provenance]
    if missing:
        raise ValueError(f"prompt provenance lacks {missing}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state or learner.state_dict()).items()}
    meta = {"format": PROMPT_FORMAT, "kind": "prompt", "method": learner.method,
            "options": json.dumps(learner.options(), sort_keys=True),
            "provenance": json.dumps(provenance, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_prompt_meta(path) -> tuple[dict, dict]:
    """(metadata, provenance) of a prompt file; one sentence if it is not a prompt or has no provenance."""
    meta = _open_meta(path, "prompt checkpoint")
    if meta.get("kind") != "prompt":
        raise MvlptError(f"{path} is not an mvlpt prompt checkpoint (kind={meta.get('kind')!r}).")
    try:
        prov = json.loads(meta["provenance"])
        assert isinstance(prov, dict) and all(k in prov for k in PROVENANCE)
    except (KeyError, ValueError, AssertionError):
        raise MvlptError(
            f"prompt checkpoint {path} does not record which task, seed, model and weights made it (written by an "
            f"older mvlpt), so a transfer from it cannot be checked; delete it and rerun its source task's training."
        ) from None
    return meta, prov


def _weights(model: str, pretrained: str | None, init_seed: int) -> str:
    return f"model {model} with " + (f"weights {pretrained!r}" if pretrained else f"a random init (seed {init_seed})")


def _check_model(path, prov: dict, model: str, pretrained: str | None, init_seed: int) -> None:
    have = _weights(prov["model"], prov["pretrained"], prov["init_seed"])
    want = _weights(model, pretrained, init_seed)
    if have != want:
        raise MvlptError(f"prompt checkpoint {path} was trained on {have}, this run uses {want}; "
                         f"a prompt only fits the frozen model it was trained with.")


def load_prompt(learner, path) -> dict:
    """Load prompt parameters strictly into ``learner``; returns the file's provenance."""
    meta, prov = read_prompt_meta(path)
    if meta.get("method") != learner.method:
        raise MvlptError(f"prompt checkpoint {path} is for method {meta.get('method')!r}, not {learner.method!r}.")
    clip = learner.clip
    _check_model(path, prov, clip.name, clip.pretrained, clip.init_seed)
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
    options = type(learner).canonical_options(json.loads(meta.get("options") or "{}"), warn=False)
    if options != learner.options():
        raise MvlptError(f"prompt checkpoint {path} was trained with the {learner.method} options {options}, "
                         f"this run asks for {learner.options()}.")
    learner.load_state_dict(tensors, strict=True)
    return prov


def source_prompts(spec) -> tuple[str, dict[int, dict]]:
    """Check a sequential run's source prompt files (one per seed) against the run, before any
    training: method, model and weights, the seed and shots they were trained with, and the source
    (``spec.source``, when given, must be what the files record). Returns the source (the task the
    prompts were trained on; ``a+b`` for a joint prompt) and each seed's provenance."""
    out: dict[int, dict] = {}
    for seed in spec.seeds:
        path = spec.path(spec.init_from, seed)
        meta, prov = read_prompt_meta(path)
        if meta.get("method") != spec.method:
            raise MvlptError(f"prompt checkpoint {path} is for method {meta.get('method')!r}, not {spec.method!r}.")
        pretrained = None if spec.pretrained in (None, "", "none", "None") else spec.pretrained
        _check_model(path, prov, spec.model, pretrained, spec.init_seed)
        source = "+".join(prov["tasks"])
        if spec.source is not None and source != spec.source:
            raise MvlptError(f"prompt checkpoint {path} was trained on {source!r}, not on the given source "
                             f"{spec.source!r}; leave out --source (it is read from the file) or give the right file.")
        if set(prov["tasks"]) & set(spec.tasks):
            raise MvlptError(f"prompt checkpoint {path} was trained on the target task {spec.tasks[0]!r} itself: "
                             f"that is the baseline cell, not a transfer.")
        for key, want in (("seed", seed), ("shots", spec.shots)):
            if prov[key] != want:
                raise MvlptError(f"prompt checkpoint {path} was trained with {key} {prov[key]}, this run's {key} is "
                                 f"{want}; a transfer starts from the source prompt of the same {key}.")
        out[seed] = prov
    sources = sorted({"+".join(p["tasks"]) for p in out.values()})
    if len(sources) > 1:
        raise MvlptError(f"the source prompt files of this run were trained on different tasks ({', '.join(sources)}).")
    return sources[0], out


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
    """Remove a resumable state, and the temporary files a killed save of it left (``.NAME.*.tmp``)."""
    if path:
        path = Path(path)
        path.unlink(missing_ok=True)
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
