"""UPT: unified prompts, text context and deep visual prompts generated from shared parameters.

Parameters: text context ``(n, W_t)`` and visual prompts ``(layers, n, W_v)`` are projected to a
width-128 space (Linear W_t->128, Linear W_v->128), pass one CLIP residual attention block of width
128 (1 head), and are projected back (Linear 128->W_t, 128->W_v). The text part becomes CoOp-style
context (class token at the ``end`` by default; ``position: middle`` as in the reference scripts, or
``front``), the visual part deep VPT prompts.

Init: text context N(0, 0.02); visual prompts N(0, 0.02) (``visual_init: normal``, the default) or
VPT's uniform range +-sqrt(6 / (3 * patch^2 + width)) (``visual_init: uniform``, as in the reference
scripts). Like CoOp's ``init``, the init is not among the shape-defining ``options()``.

``mix`` chooses what the block attends over:

* ``"all"`` (default, the presumably intended behaviour): one sequence of all ``(1 + layers) * n``
  tokens, so text and visual prompts inform each other.
* ``"per_token"``: the reference code's behaviour. It feeds a (1, 13n, 128) tensor to a
  sequence-first block, so attention runs over a length-1 sequence per token and nothing is mixed.
"""

from __future__ import annotations

import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.base import PromptLearner
from mvlpt.models.prompts.text import TokenLayout
from mvlpt.models.prompts.vision import vpt_uniform_init

MIX_MODES = ("all", "per_token")
VISUAL_INITS = ("normal", "uniform")


class UPT(PromptLearner):
    method = "upt"

    def __init__(
        self,
        clip,
        classnames,
        n_ctx: int = 4,
        hidden: int = 128,
        mix: str = "all",
        position: str = "end",
        visual_init: str = "normal",
        generator: torch.Generator | None = None,
    ):
        super().__init__(clip, classnames)
        if mix not in MIX_MODES:
            raise MvlptError(f"UPT mix must be one of {', '.join(MIX_MODES)}, got {mix!r}.")
        if visual_init not in VISUAL_INITS:
            raise MvlptError(f"UPT visual_init must be one of {', '.join(VISUAL_INITS)}, got {visual_init!r}.")
        model = clip.model
        w_t = model.token_embedding.weight.shape[1]
        w_v = model.visual.conv1.weight.shape[0]
        layers = len(model.visual.transformer.resblocks)
        device = model.token_embedding.weight.device
        self.text_ctx = nn.Parameter(torch.empty(n_ctx, w_t).normal_(0, 0.02, generator=generator))
        if visual_init == "uniform":
            visual_ctx = vpt_uniform_init((layers, n_ctx, w_v), model.visual.conv1.weight.shape[-1], w_v, generator)
        else:
            visual_ctx = torch.empty(layers, n_ctx, w_v).normal_(0, 0.02, generator=generator)
        self.visual_ctx = nn.Parameter(visual_ctx)
        with torch.random.fork_rng(devices=[]):
            if generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            self.down_t = nn.Linear(w_t, hidden)
            self.down_v = nn.Linear(w_v, hidden)
            self.block = ResidualAttentionBlock(hidden, 1, mlp_ratio=4.0, act_layer=QuickGELU, batch_first=True)
            self.up_t = nn.Linear(hidden, w_t)
            self.up_v = nn.Linear(hidden, w_v)
        self.to(device)
        self.layout = TokenLayout(clip, classnames, n_ctx, position)
        self.n_ctx, self.hidden, self.mix, self.position, self.layers = n_ctx, hidden, mix, position, layers
        self.visual_init = visual_init

    def options(self) -> dict:
        return {"n_ctx": self.n_ctx, "hidden": self.hidden, "mix": self.mix, "position": self.position}

    @classmethod
    def parameter_count(cls, options: dict, dims: dict) -> int:
        h, n = int(options.get("hidden", 128)), int(options["n_ctx"])
        # shared tokens (text + every visual layer), projections in and out, one width-h attention block
        return (dims["layers"] + 1) * n * h + 2 * (dims["text_width"] * h + dims["vision_width"] * h) + 12 * h * h

    def generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The text context (n, W_t) and the deep visual prompts (layers, n, W_v)."""
        n = self.n_ctx
        tokens = torch.cat([self.down_t(self.text_ctx), self.down_v(self.visual_ctx.reshape(-1, self.visual_ctx.shape[-1]))])
        if self.mix == "all":
            out = self.block(tokens.unsqueeze(0))[0]  # one sequence of (1 + layers) * n tokens
        else:
            out = self.block(tokens.unsqueeze(1))[:, 0]  # (1+layers)*n sequences of length 1
        text = self.up_t(out[:n])
        visual = self.up_v(out[n:]).reshape(self.layers, n, -1)
        return text, visual

    def current_prompts(self) -> dict:
        text, visual = self.generate()
        return {"text": text, "visual": visual}
