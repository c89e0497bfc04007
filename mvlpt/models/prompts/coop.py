"""CoOp: learned text context, frozen image encoder (Zhou et al., 2022).

Context ``(n_ctx, W)`` shared by all classes, or ``(C, n_ctx, W)`` class-specific (``csc``).
Init N(0, 0.02), or the token embeddings of a phrase (``init="a photo of a"``; then ``n_ctx`` is
the phrase's token count). Class token at the ``end``, ``middle`` (the paper's default) or ``front``.
"""

from __future__ import annotations

import torch
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.base import PromptLearner
from mvlpt.models.prompts.text import TokenLayout, phrase_embeddings


class CoOp(PromptLearner):
    method = "coop"

    def __init__(
        self,
        clip,
        classnames,
        n_ctx: int = 16,
        init: str | None = None,
        position: str = "middle",
        csc: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__(clip, classnames)
        width = clip.model.token_embedding.weight.shape[1]
        if init:
            vectors = phrase_embeddings(clip, init)
            n_ctx = vectors.shape[0]
            ctx = vectors.unsqueeze(0).repeat(len(classnames), 1, 1) if csc else vectors
        else:
            if n_ctx < 1:
                raise MvlptError(f"CoOp needs n_ctx >= 1, got {n_ctx}.")
            shape = (len(classnames), n_ctx, width) if csc else (n_ctx, width)
            ctx = torch.empty(shape).normal_(0, 0.02, generator=generator)
        self.ctx = nn.Parameter(ctx.to(clip.model.token_embedding.weight.device))
        self.layout = TokenLayout(clip, classnames, n_ctx, position)
        self.n_ctx, self.position, self.csc = n_ctx, position, csc

    def options(self) -> dict:
        return {"n_ctx": self.n_ctx, "position": self.position, "csc": self.csc}

    @classmethod
    def parameter_count(cls, options: dict, dims: dict) -> int:
        return int(options["n_ctx"]) * dims["text_width"]

    def current_prompts(self) -> dict:
        return {"text": self.ctx, "visual": None}
