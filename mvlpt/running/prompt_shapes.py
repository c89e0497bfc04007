"""The text prompts' shapes the cost model prices (:mod:`mvlpt.running.cost`), from the token layout training
builds: per method, a task's prompt length and the leading tokens its classes share (:func:`prompt_shapes`), and
SoftCPT's task prompt lengths (:func:`task_prompt_lengths`)."""

from __future__ import annotations

from collections.abc import Iterable

from mvlpt.study import vocabulary


def task_prompt_lengths(tasks: Iterable[str], model: str, n_task_ctx: int, descriptions: dict | None = None) -> dict:
    """SoftCPT's task prompt length (tokens) per task: ``[SOS] [task ctx] <task text> . [EOS]``, the task
    text cut as its learner cuts it (:mod:`mvlpt.models.prompts.softcpt`)."""
    from mvlpt.models.clip import open_clip_module
    from mvlpt.models.prompts.softcpt import MAX_TASK_TOKENS, SoftCPT, fit_text
    from mvlpt.models.prompts.text import word_tokens

    tok = open_clip_module().get_tokenizer(model)
    budget = min(MAX_TASK_TOKENS, int(tok(["x"]).shape[1]) - 3 - int(n_task_ctx))
    out = {}
    for name in tasks:
        text = fit_text(tok, SoftCPT.task_text(name, descriptions), budget, name)
        out[name] = int(n_task_ctx) + 3 + len(word_tokens(tok, text))
    return out


def prompt_shapes(classnames: Iterable[str], model: str, options: dict) -> tuple[dict, dict]:
    """Per text-learning method (``options``: method -> its options, the learner's defaults filling the
    rest): the text prompt length (tokens, cut as training cuts it) and the leading tokens every class
    shares when one context serves all classes (0 for class-specific or task-conditioned contexts), both
    from the token layout training builds (:func:`mvlpt.models.prompts.text.prompt_tokens`)."""
    from mvlpt.models.clip import open_clip_module
    from mvlpt.models.prompts.text import common_prefix, prompt_tokens

    tok = open_clip_module().get_tokenizer(model)
    names = list(classnames) or ["x"]
    lengths, prefixes = {}, {}
    for m, opts in options.items():
        o = vocabulary.full_options(m, opts)
        seqs, ctx_pos = prompt_tokens(tok, names, int(o["n_ctx"]), o.get("position", "end"))
        lengths[m] = max(map(len, seqs))
        shared = not o.get("csc") and not vocabulary.method(m).task_conditioned  # an image-conditioned context is shared too
        prefixes[m] = common_prefix(seqs, ctx_pos) if shared else 0
    return lengths, prefixes
