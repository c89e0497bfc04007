"""What every prompt method provides to the training loop.

A method turns its parameters into *prompts* (``current_prompts()``): a ``"text"`` context for the text
tower and/or ``"visual"`` prompt tokens for the image tower. The encoders take those prompts, so
the training loop can stack several prompt sets (one per seed) into one forward pass of the frozen
towers (``mvlpt.train``); ``text_features``/``image_features`` are the one-set conveniences.
"""

from __future__ import annotations

import torch
from torch import nn

from .text import encode_prompted_text, normalize
from .vision import encode_prompted_image


class PromptLearner(nn.Module):
    """Learned prompts on a frozen CLIP.

    Only the prompt parameters are in ``state_dict()``; the CLIP model is held by reference and
    never trained. ``learns_text`` / ``learns_image`` tell the training loop which side it may
    compute once and cache (CoOp: image features; VPT: class text features).
    """

    method: str = ""
    learns_text: bool = False
    learns_image: bool = False
    deep: bool = True  # visual prompts replaced before every layer (VPT-deep, UPT) or inserted once

    def __init__(self, clip, classnames: list[str]):
        super().__init__()
        self.clip = clip  # a FrozenCLIP dataclass, not a Module: its weights stay out of state_dict
        self.classnames = list(classnames)

    def current_prompts(self) -> dict[str, torch.Tensor | None]:
        """``{"text": (n, W_t) or (C, n, W_t) context or None, "visual": (layers, n, W_v) or None}``."""
        raise NotImplementedError

    def fixed_text_features(self) -> torch.Tensor:
        """(C, D) class features of methods whose text side does not learn."""
        raise NotImplementedError

    def text_embeddings(self, prompts: dict) -> torch.Tensor:
        """(C, L, W_t) prompt token embeddings of every class."""
        return self.layout.fill(prompts["text"])

    def text_features(self, prompts: dict | None = None) -> torch.Tensor:
        """(C, D) L2-normalised class features."""
        if not self.learns_text:
            return self.fixed_text_features()
        prompts = self.current_prompts() if prompts is None else prompts
        return normalize(encode_prompted_text(self.clip.model, self.text_embeddings(prompts), self.layout.eot_pos))

    def image_features(self, images: torch.Tensor, prompts: dict | None = None) -> torch.Tensor:
        """(B, D) L2-normalised features of preprocessed images (B, 3, S, S)."""
        if not self.learns_image:
            with torch.no_grad():
                return normalize(encode_prompted_image(self.clip.model.visual, images, None))
        prompts = self.current_prompts() if prompts is None else prompts
        return normalize(encode_prompted_image(self.clip.model.visual, images, prompts["visual"], self.deep))

    def options(self) -> dict:
        """The options that define the parameter shapes (stored in checkpoints)."""
        return {}
