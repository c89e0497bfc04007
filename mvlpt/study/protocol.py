"""The two named protocols of a study (issue 27): ``reference`` reproduces the MVLPT reference code
(sIncerass/MVLPT at 6fa518b) point by point, ``corrected`` is ours. The config key ``protocol`` chooses one;
each point is also its own documented option, and a key the config sets wins over the preset.

:data:`POINTS` lists the points: the config key each sets and its value under each protocol. ``corrected``'s
values are the options' own defaults (the schema's, ``TrainConfig``'s, the learners'), so a study that says
nothing, or says ``protocol: corrected``, is what it was before the key existed: same jobs, same hashes
(tests/study/test_protocol.py holds that). :func:`apply` writes ``reference``'s values into a config where
the config leaves the key unset. docs/protocol.md has the table with the reasons and the expected effects.

Cheap: no torch, no numpy (the workflow imports it at every start).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from mvlpt.errors import MvlptError

PROTOCOLS = ("corrected", "reference")
DEFAULT = "corrected"


@dataclasses.dataclass(frozen=True)
class Point:
    """One difference between the reference code and ours: the config key (a path) and its value in each protocol."""

    name: str
    key: tuple[str, ...]
    reference: Any
    corrected: Any
    cite: str  # where the reference code does it


# SoftCPT's own setting (kding1225/softcpt configs/trainers/MTCoOp/*_ep50.yaml, scripts/main_mtcoop.sh): the train
# options of a task-conditioned method's multitask runs (`multitask.task_conditioned_train`); its augmentation
# (random_resized_crop + random_flip) and training on all K shots have no option here (docs/protocol.md)
SOFTCPT_REFERENCE = {"epochs": 50, "batch_size_multitask": 32, "select": "last"}

POINTS: tuple[Point, ...] = (
    Point(
        "joint checkpoint", ("train", "joint_checkpoint"), "mean_val", "per_task", "train.py MULTITASK_EVALKEY, trainers/mvlpt.py"
    ),
    Point(
        "joint few-shot images",
        ("train", "joint_fewshot"),
        "union",
        "split_files",
        "trainers/mvlpt.py construct_multitask_dataset",
    ),
    # (None: the key unset, ELEVATER's ROC-AUC)
    Point("hateful-memes metric", ("elevater", "hateful_memes_metric"), "accuracy", None, "commit 218e6a6"),
    Point("UPT token mixing", ("method_options", "upt", "mix"), "per_token", "all", "trainers/mvlpt.py (the UPT block)"),
    Point("precision", ("train", "precision"), "fp16", "auto", "configs/trainers/MVLPT/vit_b16.yaml PREC"),
    Point("joint batch order", ("train", "joint_order"), "fixed", "reshuffle", "trainers/mvlpt.py (shuffle=False)"),
    Point("multitask source prompt", ("multitask", "source_prompt"), "averaged", "per_seed", "scripts/avg_ckpt.py"),
    Point("SoftCPT setting", ("multitask", "task_conditioned_train"), SOFTCPT_REFERENCE, {}, "kding1225/softcpt"),
)


def check(name: Any) -> str:
    """``name`` if it names a protocol; else one sentence."""
    if name not in PROTOCOLS:
        raise MvlptError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {name!r}.")
    return name


def _get(cfg: dict, key: tuple[str, ...]) -> tuple[bool, Any]:
    node = cfg
    for k in key:
        if not isinstance(node, dict) or k not in node:
            return False, None
        node = node[k]
    return True, node


def preset(name: str) -> dict:
    """The config keys protocol ``name`` sets, as a nested dict (``corrected``: none, its values are the defaults)."""
    out: dict = {}
    if check(name) == DEFAULT:
        return out
    for point in POINTS:
        node = out
        for k in point.key[:-1]:
            node = node.setdefault(k, {})
        node[point.key[-1]] = copy.deepcopy(point.reference)
    return out


def apply(cfg: dict) -> dict:
    """``cfg`` (a config dict, before the schema's defaults) with its protocol's values where it leaves a
    point's key unset, in place and returned. A key the config sets wins; a section given as null counts
    as unset."""
    name = check(cfg.get("protocol", DEFAULT))
    for point in POINTS if name != DEFAULT else ():
        given, _ = _get(cfg, point.key)
        if given:
            continue
        node = cfg
        for k in point.key[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[point.key[-1]] = copy.deepcopy(point.reference)
    return cfg


def run_defaults(name: str) -> dict:
    """What protocol ``name`` sets for one ``mvlpt train`` run: ``{"train": {...}, "method_options": {method:
    {...}}, "hateful_memes_metric": ...}`` (the multitask keys are the workflow's)."""
    p = preset(name)
    return {
        "train": dict(p.get("train", {})),
        "method_options": copy.deepcopy(p.get("method_options", {})),
        "hateful_memes_metric": p.get("elevater", {}).get("hateful_memes_metric"),
    }
