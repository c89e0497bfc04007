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

from mvlpt.errors import MvlptError
from mvlpt.io import atomic_path, content_hash

FORMAT = "1"  # of state files
PROMPT_FORMAT = "2"  # 2: prompt files carry their provenance
# What a prompt file records of the run that made it (metadata "provenance", JSON).
PROVENANCE = (
    "task",
    "tasks",
    "seed",
    "shots",
    "model",
    "pretrained",
    "init_seed",
    "config_hash",
    "splits",
    "best_epoch",
    "mvlpt_version",
)


def _open_meta(path: Path, what: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise MvlptError(f"{what} {path} does not exist.")
    if path.is_dir():
        raise MvlptError(f"{what} {path} is a folder, not a file; give the file's path.")
    if not path.is_file():
        raise MvlptError(f"{what} {path} is not a regular file (a device, FIFO or socket); give the file's path.")
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
    meta = {
        "format": PROMPT_FORMAT,
        "kind": "prompt",
        "method": learner.method,
        "options": json.dumps(learner.options(), sort_keys=True),
        "provenance": json.dumps(provenance, sort_keys=True),
    }
    meta["provenance_hash"] = content_hash(provenance)  # an edit of the provenance shows (read_prompt_meta)
    _save(tensors, path, meta)


def _save(tensors: dict, path, meta: dict) -> None:
    """safetensors' save_file, atomically; its own errors (a full disk) as one sentence."""
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except SafetensorError as e:
            raise OSError(f"safetensors could not write it ({e})") from None


def _load_tensors(path, what: str) -> dict:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MvlptError(f"{what} {path} is damaged ({e}); delete it and rerun the run that wrote it.") from None


def provenance_problem(prov) -> str | None:
    """What makes a prompt's provenance disagree with itself, as a clause (None: nothing)."""
    from mvlpt.study.names import JOINED_MAX, name_problem, seed_ok

    if not isinstance(prov, dict):
        return "is not an object"
    missing = [k for k in PROVENANCE if k not in prov]
    if missing:
        return f"lacks {', '.join(missing)}"
    if (
        name_problem(prov["task"], JOINED_MAX)
        or not isinstance(prov["tasks"], list)
        or not prov["tasks"]
        or any(name_problem(t) for t in prov["tasks"])
    ):
        return f"names the tasks {prov['task']!r} / {prov['tasks']!r}, which are not task names"
    if not seed_ok(prov["seed"]):
        return f"has seed {prov['seed']!r}, which is not an integer from 0 to 2**31 - 1"
    if not seed_ok(prov["init_seed"]):
        return f"has init_seed {prov['init_seed']!r}, which is not an integer from 0 to 2**31 - 1"
    if not (isinstance(prov["shots"], int) and not isinstance(prov["shots"], bool) and prov["shots"] >= 1):
        return f"has shots {prov['shots']!r}, which is not an integer >= 1"
    if not isinstance(prov["model"], str) or not (prov["pretrained"] is None or isinstance(prov["pretrained"], str)):
        return "has a model or weights that are not text"
    if not isinstance(prov["splits"], dict):
        return f"has splits {prov['splits']!r}, which is not an object of task -> split hash"
    return None


def read_prompt_meta(path) -> tuple[dict, dict]:
    """(metadata, provenance) of a prompt file; one sentence if it is not a prompt or has no provenance."""
    meta = _open_meta(path, "prompt checkpoint")
    if meta.get("kind") != "prompt":
        raise MvlptError(f"{path} is not an mvlpt prompt checkpoint (kind={meta.get('kind')!r}).")
    if "provenance" not in meta:
        raise MvlptError(
            f"prompt checkpoint {path} does not record which task, seed, model and weights made it (written by an "
            f"older mvlpt), so a transfer from it cannot be checked; delete it and rerun its source task's training."
        )
    try:
        prov = json.loads(meta["provenance"])
    except ValueError:
        prov = None
    problem = "is not valid JSON" if prov is None else provenance_problem(prov)
    if problem is None and "provenance_hash" in meta and meta["provenance_hash"] != content_hash(prov):
        problem = "was edited after the file was written (it does not match its recorded hash)"
    if problem:
        raise MvlptError(
            f"prompt checkpoint {path} is damaged: its provenance {problem}; delete it and rerun its source task's training."
        )
    return meta, prov


def _weights(model: str, pretrained: str | None, init_seed: int) -> str:
    return f"model {model} with " + (f"weights {pretrained!r}" if pretrained else f"a random init (seed {init_seed})")


def _check_model(path, prov: dict, model: str, pretrained: str | None, init_seed: int) -> None:
    have = _weights(prov["model"], prov["pretrained"], prov["init_seed"])
    want = _weights(model, pretrained, init_seed)
    if have != want:
        raise MvlptError(
            f"prompt checkpoint {path} was trained on {have}, this run uses {want}; "
            f"a prompt only fits the frozen model it was trained with."
        )


def load_prompt(learner, path) -> dict:
    """Load prompt parameters strictly into ``learner``; returns the file's provenance."""
    meta, prov = read_prompt_meta(path)
    if meta.get("method") != learner.method:
        raise MvlptError(f"prompt checkpoint {path} is for method {meta.get('method')!r}, not {learner.method!r}.")
    clip = learner.clip
    _check_model(path, prov, clip.name, clip.pretrained, clip.init_seed)
    tensors = _load_tensors(path, "prompt checkpoint")
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
    try:
        options = json.loads(meta.get("options") or "{}")
        if not isinstance(options, dict):
            raise ValueError("not an object")
        options = type(learner).canonical_options(options, warn=False)
    except (ValueError, TypeError, RecursionError) as e:
        raise MvlptError(
            f"prompt checkpoint {path} is damaged: its method options are unreadable ({str(e)[:100]}); "
            f"delete it and rerun its source task's training."
        ) from None
    if options != learner.options():
        raise MvlptError(
            f"prompt checkpoint {path} was trained with the {learner.method} options {options}, "
            f"this run asks for {learner.options()}."
        )
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
            raise MvlptError(
                f"prompt checkpoint {path} was trained on {source!r}, not on the given source "
                f"{spec.source!r}; leave out --source (it is read from the file) or give the right file."
            )
        if set(prov["tasks"]) & set(spec.tasks):
            raise MvlptError(
                f"prompt checkpoint {path} was trained on the target task {spec.tasks[0]!r} itself: "
                f"that is the baseline cell, not a transfer."
            )
        # an averaged prompt (average_prompts) starts every seed's run, as the reference code's avg_ckpt.py prompt
        checked = (("shots", spec.shots),) if "averaged_seeds" in prov else (("seed", seed), ("shots", spec.shots))
        for key, want in checked:
            if prov[key] != want:
                raise MvlptError(
                    f"prompt checkpoint {path} was trained with {key} {prov[key]}, this run's {key} is "
                    f"{want}; a transfer starts from the source prompt of the same {key}."
                )
        out[seed] = prov
    sources = sorted({"+".join(p["tasks"]) for p in out.values()})
    if len(sources) > 1:
        raise MvlptError(f"the source prompt files of this run were trained on different tasks ({', '.join(sources)}).")
    return sources[0], out


def average_prompts(paths, out) -> dict:
    """The prompt files ``paths`` (one source prompt per seed, of one method, options, model, tasks and shots)
    averaged, tensor by tensor, into one prompt file ``out``, as the reference code's scripts/avg_ckpt.py does
    with the seeds' best checkpoints (multitask option ``source_prompt: averaged``). The mean is taken in
    float32 and stored in the files' own dtype. Its provenance is the first file's with ``averaged_seeds``
    (the seeds, in order), ``seed`` the first of them, and each seed's ``config_hash``, ``splits`` and
    ``best_epoch`` as lists; a sequential run of any seed may start from it (:func:`source_prompts`).
    Returns that provenance; files that do not belong together are one sentence."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise MvlptError(f"averaging source prompts needs the prompts of two or more seeds, got {len(paths)}.")
    metas = [read_prompt_meta(p) for p in paths]
    (meta0, prov0), first = metas[0], paths[0]
    for path, (meta, prov) in zip(paths[1:], metas[1:]):
        for what, mine, theirs in (
            ("method", meta.get("method"), meta0.get("method")),
            ("options", meta.get("options"), meta0.get("options")),
            *((key, prov[key], prov0[key]) for key in ("tasks", "shots", "model", "pretrained", "init_seed")),
        ):
            if mine != theirs:
                raise MvlptError(
                    f"prompt checkpoints {first} and {path} differ in their {what} ({theirs!r} vs {mine!r}); "
                    f"only the seeds' prompts of one source are averaged."
                )
    seeds = [prov["seed"] for _, prov in metas]
    if len(set(seeds)) != len(seeds):
        raise MvlptError(f"the prompt checkpoints to average repeat a seed ({seeds}); give each seed's prompt once.")
    tensors = [_load_tensors(p, "prompt checkpoint") for p in paths]
    for path, t in zip(paths[1:], tensors[1:]):
        if t.keys() != tensors[0].keys() or any(t[k].shape != tensors[0][k].shape for k in t):
            raise MvlptError(f"prompt checkpoints {first} and {path} hold different parameters; they cannot be averaged.")
    mean = {k: torch.stack([t[k].float() for t in tensors]).mean(0).to(tensors[0][k].dtype).contiguous() for k in tensors[0]}
    provenance = {
        **prov0,
        "seed": seeds[0],
        "averaged_seeds": seeds,
        "config_hash": content_hash([prov["config_hash"] for _, prov in metas]),
        "seed_config_hashes": [prov["config_hash"] for _, prov in metas],
        "splits": {t: [prov["splits"].get(t) for _, prov in metas] for t in prov0["splits"]},
        "best_epoch": [prov["best_epoch"] for _, prov in metas],
    }
    meta = {k: meta0[k] for k in ("format", "kind", "method", "options")}
    meta["provenance"] = json.dumps(provenance, sort_keys=True)
    meta["provenance_hash"] = content_hash(provenance)
    _save(mean, out, meta)
    return provenance


def save_state(path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Resumable training state: named tensors plus JSON metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    _save(tensors, path, {"format": FORMAT, "kind": "train-state", "meta": json.dumps(meta, sort_keys=True)})


def load_state(path) -> tuple[dict[str, torch.Tensor], dict]:
    meta = _open_meta(path, "training state")
    if meta.get("kind") != "train-state":
        raise MvlptError(f"{path} is not an mvlpt training state file.")
    damaged = f"training state {path} is damaged"
    try:
        state = json.loads(meta["meta"])
    except (KeyError, ValueError):
        state = None
    if not (
        isinstance(state, dict)
        and isinstance(state.get("next_epoch"), int)
        and state["next_epoch"] >= 0
        and isinstance(state.get("config_hashes"), list)
        and isinstance(state.get("best"), dict)
        and all(
            isinstance(b, dict) and all(isinstance(e, dict) and {"metric", "epoch"} <= set(e) for e in b.values())
            for b in state["best"].values()
        )
    ):
        raise MvlptError(f"{damaged} (its metadata is not what mvlpt writes); delete it to start over.")
    return _load_tensors(path, "training state"), state


def remove(path) -> None:
    """Remove a resumable state, and the temporary files a killed save of it left (``.NAME.*.tmp``)."""
    if path:
        path = Path(path)
        path.unlink(missing_ok=True)
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)
