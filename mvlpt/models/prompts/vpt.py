"""VPT: learned visual prompt tokens, frozen text side (Jia et al., 2022).

Deep (default): prompts ``(layers, n_ctx, W)``, layer 0 inserted after [CLS], layers 1.. replace
those positions before each later block. Shallow: ``(1, n_ctx, W)``, inserted once. Text side: the
fixed prompt ``"a photo of a {class}."``, computed once. The prompt length is ``n_ctx`` as for the
other methods; ``n_tokens``, its name before, is still accepted (deprecated).
"""

from __future__ import annotations

import torch
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.base import PromptLearner
from mvlpt.models.prompts.vision import vpt_uniform_init

DEFAULT_TEMPLATE = "a photo of a {}."


class VPT(PromptLearner):
    method = "vpt"

    def __init__(
        self,
        clip,
        classnames,
        n_ctx: int = 16,
        deep: bool = True,
        template: str = DEFAULT_TEMPLATE,
        generator: torch.Generator | None = None,
    ):
        super().__init__(clip, classnames)
        if n_ctx < 0:
            raise MvlptError(f"VPT needs n_ctx >= 0, got {n_ctx}.")
        visual = clip.model.visual
        width = visual.conv1.weight.shape[0]
        patch = visual.conv1.weight.shape[-1]
        layers = len(visual.transformer.resblocks) if deep else 1
        init = vpt_uniform_init((layers, n_ctx, width), patch, width, generator)
        self.prompts = nn.Parameter(init.to(visual.conv1.weight.device))
        self.n_ctx, self.deep, self.template = n_ctx, deep, template
        with torch.no_grad():
            feats = clip.encode_texts([template.format(c) for c in classnames])
        self.register_buffer("_text", feats, persistent=False)

    def options(self) -> dict:
        return {"n_ctx": self.n_ctx, "deep": self.deep}

    @classmethod
    def parameter_count(cls, options: dict, dims: dict) -> int:
        return (dims["layers"] if options.get("deep", True) else 1) * int(options["n_ctx"]) * dims["vision_width"]

    def current_prompts(self) -> dict:
        return {"text": None, "visual": self.prompts if self.n_ctx else None}

    def fixed_text_features(self) -> torch.Tensor:
        return self._text
