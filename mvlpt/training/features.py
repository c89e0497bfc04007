"""Frozen image-feature caches (safetensors), keyed by model, task and the exact list of sample ids.

CoOp never changes the image encoder and the ELEVATER path has no augmentation, so every image's
feature is computed once and reused by every seed, source and evaluation. A cache file records the
sha256 of its ids; a file that does not match the requested ids is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mvlpt.io import atomic_path
from mvlpt.study import layout
from mvlpt.training.data import encode_split_images


def ids_digest(ids) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def cache_path(cache_dir, clip, task: str, name: str) -> Path:
    return layout.FEATURES.path(cache_dir, clip.key, task, name)


def read_cached(path: Path, ids) -> torch.Tensor | None:
    if not path.exists():
        return None
    from safetensors import SafetensorError, safe_open

    try:  # anything but a safetensors file of exactly these ids (a stray pickle, a foreign file) is recomputed
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("ids_sha256") != ids_digest(ids) or "features" not in fh.keys():
                return None
        return load_file(str(path))["features"]
    except (SafetensorError, OSError, ValueError):
        return None


def write_cached(path: Path, feats: torch.Tensor, ids) -> None:
    with atomic_path(path) as tmp:
        save_file({"features": feats.contiguous()}, str(tmp), metadata={"ids_sha256": ids_digest(ids), "n": str(len(ids))})


def image_features(
    clip, task: str, split, indices, name: str, cache_dir=None, workers: int = 0, write: bool = False
) -> torch.Tensor:
    """Features of ``split`` at ``indices``: from the cache when it holds exactly these ids, else computed
    (and written when ``write``)."""
    indices = list(range(len(split))) if indices is None else list(indices)
    ids = [split.ids[i] for i in indices]
    path = cache_path(cache_dir, clip, task, name) if cache_dir else None
    if path is not None:
        cached = read_cached(path, ids)
        if cached is not None:
            return cached
    feats = encode_split_images(clip, split, indices, workers=workers)
    if path is not None and write:
        write_cached(path, feats, ids)
    return feats
