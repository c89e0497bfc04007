"""Prompt methods: name -> class. Add a method by writing a PromptLearner subclass and listing it here."""

from __future__ import annotations

from ...errors import MvlptError
from .base import PromptLearner
from .coop import CoOp
from .upt import UPT
from .vpt import VPT

METHODS: dict[str, type[PromptLearner]] = {"coop": CoOp, "vpt": VPT, "upt": UPT}


def build_prompt_learner(method: str, clip, classnames: list[str], options: dict | None = None, generator=None) -> PromptLearner:
    try:
        cls = METHODS[method]
    except KeyError:
        raise MvlptError(f"unknown prompt method {method!r}; known methods are: {', '.join(METHODS)}.") from None
    try:
        return cls(clip, classnames, generator=generator, **(options or {}))
    except TypeError as e:
        raise MvlptError(f"bad options for method {method!r}: {e}.") from None


__all__ = ["METHODS", "PromptLearner", "build_prompt_learner", "CoOp", "VPT", "UPT"]
