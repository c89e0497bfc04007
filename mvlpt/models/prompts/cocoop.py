"""CoCoOp: conditional context optimisation (Zhou et al., CVPR 2022): CoOp's shared context, shifted
per image by a small meta network, so each image gets its own class prompts.

Parameters: a context ``(n_ctx, W_t)`` shared by all classes (init N(0, 0.02), or the token embeddings
of a phrase, ``init="a photo of a"``, whose BPE token count is then ``n_ctx``) and the *meta network*
``Linear(D, D // 16) - ReLU - Linear(D // 16, W_t)`` (torch's default Linear init, drawn from the
learner's generator), ``D`` the image feature size. For an image with L2-normalised frozen feature
``f`` the context is ``ctx + meta(f)``: the same shift added to every context vector, and every class
gets the prompt ``[SOS] <context> <class name> . [EOS]`` (class token at the ``end`` as in the
reference; ``middle`` / ``front`` as in CoOp). The image tower is frozen, so its features are cached
like CoOp's; the class text is computed per image (:func:`.base.stacked_conditioned_text_features`:
every image's class prompts in one text-tower batch, the shared ``[SOS]`` + context prefix once per
image).

Checked against the MVLPT reference's ``trainers/cocoop.py`` (Dassl; from the CoCoOp authors):

* meta network ``Linear(vis_dim, vis_dim // 16)``, ``ReLU``, ``Linear(vis_dim // 16, ctx_dim)``,
  ``vis_dim`` = the CLIP image embedding size (``visual.output_dim``), ``ctx_dim`` = the text width;
  default ``nn.Linear`` init; its input is the L2-normalised image feature; ``bias.unsqueeze(1)`` is
  added to every one of the ``n_ctx`` context vectors;
* defaults of its ``train.py``: ``N_CTX 16``, ``CTX_INIT ""`` (random N(0, 0.02)), ``PREC fp16`` (the
  meta network cast to half); the paper's configs (``vit_b16_c4_ep10_batch1_ctxv1``) use ``n_ctx 4``,
  ``"a photo of a"``, batch size 1, lr 0.002, 10 epochs. Here: the reference code's defaults; give
  ``n_ctx: 4, init: "a photo of a"`` for the paper's setting. Precision follows the train option
  ``precision`` (bf16 autocast on CUDA), the parameters stay float32.
* pitfalls of the reference: ``ctx_init`` counts *words* (``len(ctx_init.split(" "))``) where it
  means BPE tokens (equal for "a photo of a", not for every phrase; here: tokens); its text encoder
  runs each image's class prompts in a Python loop (here: one batch); its ``ReLU(inplace=True)`` is a
  plain ReLU here (the same values); it saves the frozen token embeddings with the prompt (here: the
  parameters only, so a prompt meets other class names, as a sequential run needs).
"""

from __future__ import annotations

import torch
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.base import PromptLearner
from mvlpt.models.prompts.text import TokenLayout, phrase_embeddings

META_RATIO = 16  # the meta network's hidden width: the image feature size // 16 (the reference's)


def _embed_dim(clip) -> int:
    proj = getattr(clip.model.visual, "output_dim", None)
    return int(proj) if proj else int(clip.model.text_projection.shape[1])


class CoCoOp(PromptLearner):
    method = "cocoop"

    def __init__(
        self,
        clip,
        classnames,
        n_ctx: int = 16,
        init: str | None = None,
        position: str = "end",
        generator: torch.Generator | None = None,
    ):
        super().__init__(clip, classnames)
        model = clip.model
        width = model.token_embedding.weight.shape[1]
        dim = _embed_dim(clip)
        device = model.token_embedding.weight.device
        if init:
            ctx = phrase_embeddings(clip, init)
            n_ctx = ctx.shape[0]
        else:
            if n_ctx < 1:
                raise MvlptError(f"CoCoOp needs n_ctx >= 1, got {n_ctx}.")
            ctx = torch.empty(n_ctx, width).normal_(0, 0.02, generator=generator)
        self.ctx = nn.Parameter(ctx)
        hidden = max(1, dim // META_RATIO)
        with torch.random.fork_rng(devices=[]):  # the meta network's default init, drawn from the learner's seed
            if generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            self.meta_net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, width))
        self.to(device)
        self.layout = TokenLayout(clip, classnames, n_ctx, position)
        self.n_ctx, self.position = n_ctx, position

    def options(self) -> dict:
        return {"n_ctx": self.n_ctx, "position": self.position}

    @classmethod
    def parameter_count(cls, options: dict, dims: dict) -> int:
        w, d = dims["text_width"], dims["embed_dim"]
        h = max(1, d // META_RATIO)
        return int(options["n_ctx"]) * w + (d * h + h) + (h * w + w)

    def current_prompts(self, image_features: torch.Tensor | None = None) -> dict:
        """``{"text": (B, n_ctx, W) context per image, "visual": None}`` for image features (B, D)
        (L2-normalised, the frozen tower's); without them no text (its class text needs an image)."""
        if image_features is None:
            return {"text": None, "visual": None}
        shift = self.meta_net(image_features.to(self.ctx.dtype))  # (B, W)
        return {"text": self.ctx.unsqueeze(0) + shift.unsqueeze(1), "visual": None}

    def text_embeddings(self, prompts: dict) -> torch.Tensor:
        """(B * C, L, W): image b's class prompts are rows b*C .. b*C + C - 1."""
        return self.layout.fill_sets(prompts["text"])

    def shared_text_prefix(self, prompts: dict) -> int:
        return self.layout.shared_prefix  # one context per image, shared by its classes
