"""open_clip's transformer block computed for the rows whose output is used, attending to all rows.

A residual attention block maps every row of its input to an output row, but a prompted tower does
not use every output: VPT-deep replaces its prompt rows before the next block, the image feature
reads only [CLS] after the last block, and a text prompt's positions shared by every class are the
same for all classes. :func:`block_rows` runs a block's own modules (``ln_1``, ``attention``,
``ls_1``, ``ln_2``, ``mlp``, ``ls_2``) for the query rows only, with keys and values from all the rows
they attend to: the same function as the whole block followed by a selection of its output rows, so
equal to it within float tolerance (``tests/models/test_prompts.py``), with the queries', the output
projection's and the MLP's work of the dropped rows saved.

It applies to open_clip's plain, batch-first :class:`~open_clip.transformer.ResidualAttentionBlock`
(every CLIP tower open_clip configures); :func:`applies` says whether a tower has only those, and
callers run the whole blocks otherwise.
"""

from __future__ import annotations

import torch
from torch import nn


def applies(transformer: nn.Module) -> bool:
    """Whether every block of ``transformer`` is open_clip's plain batch-first residual attention block."""
    from open_clip.transformer import ResidualAttentionBlock

    return getattr(transformer, "batch_first", True) and all(
        type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv") for b in transformer.resblocks
    )


def block_rows(
    block: nn.Module,
    rows: torch.Tensor,
    rows_normed: torch.Tensor,
    keys_normed: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``block``'s output for ``rows`` (B, Q, W; its input rows, before ``ln_1``) whose attention reads
    ``keys_normed`` (B, S, W; ``ln_1`` of every row they attend to, in order). ``rows_normed`` is
    ``ln_1(rows)`` (callers usually have it as a slice of ``keys_normed``); ``attn_mask`` (Q, S) as the
    block's own (additive float, or boolean)."""
    x = rows + block.ls_1(block.attention(q_x=rows_normed, k_x=keys_normed, v_x=keys_normed, attn_mask=attn_mask))
    return x + block.ls_2(block.mlp(block.ln_2(x)))
