"""What every prompt method provides to the training loop."""

from __future__ import annotations

import torch
from torch import nn


class PromptLearner(nn.Module):
    """Learned prompts on a frozen CLIP.

    Only the prompt parameters are in ``state_dict()``; the CLIP model is held by reference and
    never trained. ``learns_text`` / ``learns_image`` tell the training loop which side it may
    compute once and cache (CoOp: image features; VPT: class text features).
    """

    method: str = ""
    learns_text: bool = False
    learns_image: bool = False

    def __init__(self, clip, classnames: list[str]):
        super().__init__()
        self.clip = clip  # a FrozenCLIP dataclass, not a Module: its weights stay out of state_dict
        self.classnames = list(classnames)

    def text_features(self) -> torch.Tensor:
        """(C, D) L2-normalised class features."""
        raise NotImplementedError

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) L2-normalised image features of preprocessed images (B, 3, S, S)."""
        raise NotImplementedError

    def options(self) -> dict:
        """The options that define the parameter shapes (stored in checkpoints)."""
        return {}
