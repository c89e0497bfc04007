"""SoftCPT: soft context sharing across tasks (Ding et al., 2022, arXiv 2208.13474).

Each task ``t`` has a *task prompt* ``[SOS] [task ctx] <task text> . [EOS]`` whose task context
``(n_task_ctx, W)`` is learned and shared by all tasks. The frozen text tower turns every task
prompt into a task feature ``f_t`` (D); a task-shared *meta network*, a linear map D -> n_ctx * W
(weight init N(0, 0.02), no bias by default as in the reference's ``lin`` generator), turns ``f_t``
into that task's class context ``(n_ctx, W)``, and every class of the task gets the CoOp prompt
``[task's ctx] <class name> .`` (class token ``position`` as in CoOp). The image tower is untouched
(image features can be cached). The meta network reads the unnormalised text-tower output, as the
reference does; :meth:`SoftCPT.task_features` gives the normalised features.

Defaults are the reference's SoftCPT-NATA runs (README commands ``... 0 False 4 False 16 False lin 1``):
``n_ctx=16``, ``n_task_ctx=4``, class token at the ``end``, no meta bias. ``meta_bias=True`` adds a
bias (init 0) to the meta network (not in the reference; with a zero weight it makes SoftCPT CoOp).

The task text is ``descriptions[task]`` when given (the config's override), else the task's name
(``-``/``_`` as spaces) followed, where the registry has a description, by ``": "`` and its first
clause (URLs and parentheticals dropped), cut word by word to :data:`MAX_TASK_TOKENS` BPE tokens and
to what the model's context length leaves after the task context.

The parameters (task context, meta network) do not depend on the tasks, so a prompt trained on
tasks A, B loads into a learner for task C: that is how a trained SoftCPT prompt meets a new task.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.base import PromptLearner
from mvlpt.models.prompts.text import TokenLayout, normalize, word_tokens

MAX_TASK_TOKENS = 24  # BPE tokens of a task's text (name and short description), [SOS]/[EOS]/"." aside


def short_description(name: str, description: str = "") -> str:
    """The task's name, and the first clause of its description if it has one (URLs, parentheticals
    and trailing punctuation dropped): ``"shapes: Which shape is drawn"``."""
    text = re.sub(r"[-_]+", " ", name).strip()
    desc = re.sub(r"\S+://\S+", " ", description or "")
    desc = re.sub(r"\s*\([^()]*\)", "", desc)
    desc = re.split(r"[.;!?](?:\s|$)", desc.strip(), maxsplit=1)[0]
    desc = " ".join(desc.split())
    return _trim(f"{text}: {desc}" if _trim(desc) else text)


def _trim(text: str) -> str:
    """Without trailing non-alphanumerics (so the prompt's closing "." stays its own BPE token)."""
    return re.sub(r"[\W_]+$", "", " ".join(text.split()))


def fit_text(tokenizer, text: str, budget: int, task: str) -> str:
    """``text`` cut word by word to at most ``budget`` BPE tokens (one sentence if nothing fits)."""
    words = _trim(text).split()
    while words and len(word_tokens(tokenizer, " ".join(words))) > budget:
        words.pop()
        words = _trim(" ".join(words)).split()
    if not words:
        raise MvlptError(
            f"the SoftCPT text of task {task!r} does not fit the model's context length "
            f"({budget} tokens left after the task context); use a shorter description or fewer "
            f"task context tokens."
        )
    return " ".join(words)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype of the autocast region we run in, or None (also on torch < 2.4, which cannot say:
    the float32 tower under autocast computes the same numbers, only slower)."""
    try:
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    except (TypeError, AttributeError, RuntimeError):
        return None


class SoftCPT(PromptLearner):
    method = "softcpt"

    def __init__(
        self,
        clip,
        classnames,
        n_ctx: int = 16,
        n_task_ctx: int = 4,
        position: str = "end",
        meta_bias: bool = False,
        descriptions: dict | None = None,
        tasks=None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(clip, classnames)
        names, counts = self._check_tasks(tasks, len(classnames))
        if n_ctx < 1:
            raise MvlptError(f"SoftCPT needs n_ctx >= 1, got {n_ctx}.")
        if n_task_ctx < 0:
            raise MvlptError(f"SoftCPT needs n_task_ctx >= 0, got {n_task_ctx}.")
        if descriptions is not None and not (
            isinstance(descriptions, dict) and all(isinstance(v, str) for v in descriptions.values())
        ):
            raise MvlptError("SoftCPT descriptions must map task names to texts.")
        model = clip.model
        width = model.token_embedding.weight.shape[1]
        proj = model.text_projection
        dim = width if proj is None else proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]
        device = model.token_embedding.weight.device
        # parameters: shapes from the options only, never from the task list
        self.task_ctx = nn.Parameter(torch.empty(n_task_ctx, width).normal_(0, 0.02, generator=generator))
        self.meta = nn.Linear(dim, n_ctx * width, bias=meta_bias)
        with torch.no_grad():
            self.meta.weight.normal_(0, 0.02, generator=generator)
            if meta_bias:
                self.meta.bias.zero_()
        self.to(device)
        # the task prompts and which task each class belongs to (buffers, not saved)
        context_length = int(clip.tokenizer(["x"]).shape[1])
        budget = min(MAX_TASK_TOKENS, context_length - 3 - n_task_ctx)  # [SOS], ".", [EOS]
        self.task_names = names
        self.task_texts = [fit_text(clip.tokenizer, self.task_text(t, descriptions), budget, t) for t in names]
        self.task_layout = TokenLayout(clip, self.task_texts, n_task_ctx, "end")
        self.register_buffer(
            "task_of_class", torch.repeat_interleave(torch.arange(len(names)), torch.tensor(counts)).to(device), persistent=False
        )
        self.layout = TokenLayout(clip, classnames, n_ctx, position)
        self.n_ctx, self.n_task_ctx, self.position, self.meta_bias = n_ctx, n_task_ctx, position, meta_bias
        self.descriptions = dict(descriptions) if descriptions is not None else None
        self.width = width

    @staticmethod
    def _check_tasks(tasks, n_classes: int) -> tuple[list[str], list[int]]:
        how = "tasks=[(task name, number of its classes), ...] in class order"
        if tasks is None:
            raise MvlptError(f"SoftCPT needs the task of every class ({how}).")
        try:
            names, counts = zip(*[(str(n), int(c)) for n, c in tasks]) if len(tasks) else ((), ())
        except (TypeError, ValueError):
            raise MvlptError(f"SoftCPT's tasks must be {how}, got {tasks!r}.") from None
        if not names or min(counts) < 1 or sum(counts) != n_classes or len(set(names)) != len(names):
            raise MvlptError(
                f"SoftCPT's tasks {list(zip(names, counts))} must be distinct tasks of at least one class "
                f"whose class counts sum to the {n_classes} class names."
            )
        return list(names), list(counts)

    @staticmethod
    def task_text(name: str, descriptions: dict | None) -> str:
        if descriptions and name in descriptions:
            return descriptions[name]
        from mvlpt.tasks import get_task

        task = get_task(name)
        return short_description(task.name, task.description)

    def options(self) -> dict:
        return {
            "n_ctx": self.n_ctx,
            "n_task_ctx": self.n_task_ctx,
            "position": self.position,
            "meta_bias": self.meta_bias,
            "descriptions": self.descriptions,
        }

    @classmethod
    def parameter_count(cls, options: dict, dims: dict) -> int:
        """The shared task context and the meta network (feature -> class context)."""
        w = dims["text_width"]
        return int(options["n_task_ctx"]) * w + (dims["embed_dim"] + 1) * int(options["n_ctx"]) * w

    # ------------------------------------------------------------------ its prompts
    def task_features(self, normalized: bool = True) -> torch.Tensor:
        """(T, D) features of the task prompts from the frozen text tower (L2-normalised unless
        ``normalized`` is False: the meta network reads those). Under autocast the tower runs as
        :func:`~.base.stacked_text_features` runs it (the cast-once copy where one was made, compiled
        with the train option ``compile``, the prompts' shared prefix once)."""
        clip = self.clip
        dtype = _autocast_dtype(str(clip.device).split(":")[0])
        emb = self.task_layout.fill(self.task_ctx)  # one task context for every task: [SOS] and it are shared
        feats = clip.encode_prompted_text(
            clip.tower_model(dtype),
            emb,
            self.task_layout.eot_pos,
            clip.model.transformer.get_cast_dtype(),
            shared_prefix=self.task_layout.shared_prefix,
        )
        return normalize(feats) if normalized else feats

    def task_contexts(self) -> torch.Tensor:
        """(T, n_ctx, W): each task's class context, the meta network applied to its task feature."""
        feats = self.task_features(normalized=False)
        return self.meta(feats.to(self.meta.weight.dtype)).reshape(len(feats), self.n_ctx, self.width)

    def current_prompts(self) -> dict:
        return {"text": self.task_contexts()[self.task_of_class], "visual": None}
