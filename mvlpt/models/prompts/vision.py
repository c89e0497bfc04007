"""Image side with prompt tokens (VPT): prompts inserted right after [CLS], deep or shallow.

``conv1 -> [CLS] + patches -> + pos -> patch dropout -> ln_pre`` (open_clip's
``VisionTransformer._embeds``), then the prompt tokens of layer 0 are inserted after [CLS]. In deep
mode, before every later layer ``l`` those positions are replaced by layer ``l``'s prompts; in
shallow mode they flow on. The prompt positions are removed before pooling, then open_clip's
``VisionTransformer._pool`` (attention pooling, ``ln_post``, token or average pooling, as the model
is configured) and the projection give the feature.

``_embeds`` and ``_pool`` are open_clip's own halves of ``VisionTransformer.forward`` (its
``forward_intermediates`` calls them too), so every vision-tower variant open_clip configures is
followed without mvlpt copying its pooling branches. They are private: pyproject pins
``open_clip_torch>=3,<4``, :func:`encode_prompted_image` stops with one sentence if they are gone,
and ``tests/models/test_prompts.py`` checks that with zero prompt tokens this is exactly ``encode_image``
and that shallow prompts equal open_clip's own ``forward`` with the prompts put into ``_embeds``.

Rows whose outputs are not used are not computed (:func:`.blocks.block_rows`): a block before a
layer that replaces the prompts computes [CLS] and the patches only (keys and values from every
row), the last block [CLS] only when the pooling reads [CLS] alone (CLIP's ViTs). For ViT-B-16 with
16 deep prompts that is 13 % of the image tower's FLOPs; ``tests/models/test_prompts.py`` checks it against
every block on every row.
"""

from __future__ import annotations

import torch
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts import blocks
from mvlpt.models.prompts.blocks import block_rows


def encode_prompted_image(
    visual: nn.Module, images: torch.Tensor, prompts: torch.Tensor | None, deep: bool = True
) -> torch.Tensor:
    """Unnormalised image features (B, D).

    ``prompts``: ``(layers, n, width)`` shared by the batch (deep: layer 0 is the inserted prompt;
    shallow: ``layers == 1``), or ``(B, layers, n, width)``, one prompt set per image: several prompt
    sets (seeds) then share one forward pass.
    """
    if not (hasattr(visual, "_embeds") and hasattr(visual, "_pool")):
        import open_clip

        raise MvlptError(
            f"open_clip {open_clip.__version__}'s VisionTransformer lacks _embeds/_pool, which mvlpt's "
            f"visual prompts build on; install open_clip_torch>=3,<4 as pyproject.toml pins it."
        )
    x = visual._embeds(images)
    B = x.shape[0]
    n = 0 if prompts is None else prompts.shape[-2]
    if n:
        p = prompts.to(x.dtype)
        p = p.unsqueeze(0).expand(B, *p.shape) if p.dim() == 3 else p
        x = torch.cat([x[:, :1], p[:, 0], x[:, 1:]], dim=1)
    transformer = visual.transformer
    resblocks = list(transformer.resblocks)
    if not blocks.applies(transformer):  # another block type: the whole blocks, every row
        return _pool(visual, _whole_blocks(transformer, x, p if n else None, deep), n)
    cls_only = visual.attn_pool is None and visual.pool_type == "tok"  # the feature reads [CLS] alone
    for i, block in enumerate(resblocks):
        last = i == len(resblocks) - 1
        if n and deep and 0 < i < p.shape[1]:  # this layer's prompts, after [CLS]
            x = torch.cat([x[:, :1], p[:, i], x[:, 1:]], dim=1)
        # outputs not used: the prompt rows when the next layer replaces them or the tower ends, and after
        # the last block every row but [CLS] when the pooling reads [CLS] alone
        drop_prompts = bool(n) and (last or (deep and i + 1 < p.shape[1]))
        keys = block.ln_1(x)
        if last and cls_only:
            x = block_rows(block, x[:, :1], keys[:, :1], keys)
        elif drop_prompts:
            x = block_rows(
                block, torch.cat([x[:, :1], x[:, 1 + n :]], dim=1), torch.cat([keys[:, :1], keys[:, 1 + n :]], dim=1), keys
            )
        else:
            x = block(x, attn_mask=None)
    return _pool(visual, x, 0)


def _whole_blocks(transformer: nn.Module, x: torch.Tensor, p: torch.Tensor | None, deep: bool) -> torch.Tensor:
    """Every block on every row (prompt rows replaced before each layer that has its own)."""
    n = 0 if p is None else p.shape[2]
    batch_first = getattr(transformer, "batch_first", True)
    for i, block in enumerate(transformer.resblocks):
        if n and deep and 0 < i < p.shape[1]:
            x = torch.cat([x[:, :1], p[:, i], x[:, 1 + n :]], dim=1)
        if batch_first:
            x = block(x, attn_mask=None)
        else:
            x = block(x.transpose(0, 1), attn_mask=None).transpose(0, 1)
    return x


def _pool(visual: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """The prompt rows (``n``, after [CLS]) removed, open_clip's pooling and projection."""
    if n:
        x = torch.cat([x[:, :1], x[:, 1 + n :]], dim=1)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return pooled


def vpt_uniform_init(
    shape: tuple[int, ...], patch_size: int, width: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """VPT's init: uniform(-v, v), v = sqrt(6 / (3 * patch * patch + width))."""
    v = (6.0 / (3 * patch_size * patch_size + width)) ** 0.5
    return torch.empty(shape).uniform_(-v, v, generator=generator)
