"""Images of a task split as tensors: few-shot sets held in memory, large splits streamed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class SplitImages(Dataset):
    """``(uint8 image (3, S, S), position)`` for the given positions of a TaskSplit."""

    def __init__(self, clip, split, indices: Sequence[int] | None = None):
        self.to_uint8 = clip.to_uint8
        self.split = split
        self.indices = list(range(len(split))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        return self.to_uint8(self.split.image(self.indices[k])), k


def iter_image_batches(
    clip, split, indices=None, batch_size: int = 100, workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(uint8 images, positions)`` batches; ``workers`` > 0 decodes in background processes."""
    loader = DataLoader(
        SplitImages(clip, split, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=str(clip.device).startswith("cuda"),
        persistent_workers=False,
    )
    yield from loader


def load_images(clip, split, indices=None, workers: int = 0) -> torch.Tensor:
    """All requested images as one uint8 tensor (N, 3, S, S) (few-shot sets: small)."""
    chunks = [x for x, _ in iter_image_batches(clip, split, indices, batch_size=256, workers=workers)]
    if not chunks:
        return torch.zeros(0, 3, clip.image_size, clip.image_size, dtype=torch.uint8)
    return torch.cat(chunks)


def labels_of(split, indices=None) -> np.ndarray:
    labels = np.asarray(split.labels)
    return labels if indices is None else labels[np.asarray(list(indices), dtype=np.int64)]


def encode_split_images(clip, split, indices=None, batch_size: int = 256, workers: int = 0) -> torch.Tensor:
    """Frozen, L2-normalised image features (N, D) float32 on the CPU."""
    feats = [
        clip.encode_images(clip.normalize(x)).cpu() for x, _ in iter_image_batches(clip, split, indices, batch_size, workers)
    ]
    return torch.cat(feats) if feats else torch.zeros(0, clip.model.visual.output_dim)
