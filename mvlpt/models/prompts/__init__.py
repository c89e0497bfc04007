"""Prompt methods. The list of methods is :data:`mvlpt.study.vocabulary.METHODS`: add a method by writing a
:class:`PromptLearner` subclass in a module here and one registry line there."""

from __future__ import annotations

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.base import (
    PromptLearner,
    stacked_conditioned_text_features,
    stacked_image_features,
    stacked_logits,
    stacked_text_features,
    stacked_text_features_once,
)
from mvlpt.study import vocabulary


def learner_class(method: str) -> type[PromptLearner]:
    """The :class:`PromptLearner` subclass of ``method`` (one sentence if the method is unknown)."""
    return vocabulary.method(method).learner_class()


def build_prompt_learner(
    method: str,
    clip,
    classnames: list[str],
    options: dict | None = None,
    generator=None,
    tasks: list[tuple[str, int]] | None = None,
) -> PromptLearner:
    """A learner of ``method`` for ``classnames``. ``tasks``: ``[(task name, number of its classes), ...]``
    in class order, passed only to the learners of task-conditioned methods (SoftCPT), which need it."""
    entry = vocabulary.method(method)
    cls = entry.learner_class()
    options = cls.canonical_options(options)
    extra = {}
    if entry.task_conditioned:
        if tasks is None:
            raise MvlptError(
                f"method {method!r} needs the task of every class: pass tasks=[(task name, number of classes), ...]."
            )
        extra["tasks"] = tasks
    try:
        return cls(clip, classnames, generator=generator, **extra, **options)
    except TypeError as e:
        raise MvlptError(f"bad options for method {method!r}: {e}.") from None


__all__ = [
    "PromptLearner",
    "build_prompt_learner",
    "learner_class",
    "stacked_conditioned_text_features",
    "stacked_image_features",
    "stacked_logits",
    "stacked_text_features",
    "stacked_text_features_once",
]
