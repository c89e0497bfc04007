"""Text side with learned context vectors: the CoOp token layout and the cut causal text encoder.

For class ``c`` the token sequence is ``[SOS] <ctx and class-name tokens> . [EOS]`` where the class
name's tokens go at the end, the front, or the middle of the ``n_ctx`` context tokens. The learned
context vectors replace the token embeddings at the context positions.

The text transformer is causal, so the feature read at [EOS] does not depend on later positions:
the sequence is cut to the longest prompt among the classes (positional embedding and attention
mask sliced alike). ``tests/models/test_prompts.py`` checks that this equals the full 77-token result.

Causality also means that the leading positions every class's prompt has in common (``[SOS]`` and
the context before the class name when the context is shared: 17 of CoOp's positions with the class
token at the end, 9 in the middle) have the same hidden states in every class. With
``shared_prefix``, :func:`encode_prompted_text` runs them once per prompt set and lets each class's
remaining positions attend to them (:func:`.blocks.block_rows`, with the prefix's keys and values in
front of the class's own); ``tests/models/test_prompts.py`` checks it against the plain pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts import blocks
from mvlpt.models.prompts.blocks import block_rows

POSITIONS = ("end", "middle", "front")


def word_tokens(tokenizer, text: str) -> list[int]:
    """The BPE tokens of ``text`` without [SOS]/[EOS]."""
    ids = tokenizer([text])[0].tolist()
    eot = max(range(len(ids)), key=lambda i: ids[i])  # [EOS] has the largest id
    return ids[1:eot]


def prompt_tokens(tokenizer, classnames: list[str], n_ctx: int, position: str = "end") -> tuple[list[list[int]], list[list[int]]]:
    """Every class's token ids ``[SOS] <context and class name> . [EOS]`` (the context positions hold a
    filler token) and its context positions, in context order."""
    if position not in POSITIONS:
        raise MvlptError(f"class token position must be one of {', '.join(POSITIONS)}, got {position!r}.")
    full = tokenizer(["x"])[0]
    sos, eos, context_length = int(full[0]), int(full.max()), full.shape[0]
    period = word_tokens(tokenizer, ".")
    filler = word_tokens(tokenizer, "x")[0]  # any token: its embedding is replaced by the context
    seqs, ctx_pos = [], []
    half = n_ctx // 2
    for name in classnames:
        name_ids = word_tokens(tokenizer, name)
        if position == "end":
            body, pos = [filler] * n_ctx + name_ids, list(range(1, 1 + n_ctx))
        elif position == "front":
            body, pos = name_ids + [filler] * n_ctx, list(range(1 + len(name_ids), 1 + len(name_ids) + n_ctx))
        else:
            body = [filler] * half + name_ids + [filler] * (n_ctx - half)
            pos = list(range(1, 1 + half)) + list(range(1 + half + len(name_ids), 1 + len(name_ids) + n_ctx))
        seq = [sos] + body + period + [eos]
        if len(seq) > context_length:
            raise MvlptError(f"the prompt for class {name!r} needs {len(seq)} tokens, more than the model's {context_length}.")
        seqs.append(seq)
        ctx_pos.append(pos)
    return seqs, ctx_pos


def common_prefix(seqs: list[list[int]], ctx_pos: list[list[int]]) -> int:
    """How many leading positions are the same in every sequence (the same token, and a context
    position in all of them or in none), stopping before the first [EOS] (the read-out position)."""
    marks = [[(t, i in set(p)) for i, t in enumerate(s)] for s, p in zip(seqs, ctx_pos)]
    limit = min(len(s) for s in seqs) - 1
    n = 0
    while n < limit and all(m[n] == marks[0][n] for m in marks):
        n += 1
    return n


class TokenLayout(nn.Module):
    """Token ids, frozen token embeddings and context positions of every class's prompt.

    ``shared_prefix``: the leading positions that are the same for every class once a context shared
    by all classes is filled in (0 with ``cut=False``, the reference's plain 77-token layout)."""

    def __init__(self, clip, classnames: list[str], n_ctx: int, position: str = "end", cut: bool = True):
        super().__init__()
        seqs, ctx_pos = prompt_tokens(clip.tokenizer, classnames, n_ctx, position)
        context_length = int(clip.tokenizer(["x"]).shape[1])
        length = max(map(len, seqs)) if cut else context_length
        self.shared_prefix = common_prefix(seqs, ctx_pos) if cut else 0
        tokens = torch.zeros(len(seqs), length, dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = torch.tensor(s)
        model = clip.model
        device = model.token_embedding.weight.device
        with torch.no_grad():
            emb = model.token_embedding(tokens.to(device)).float()
        self.register_buffer("tokens", tokens.to(device), persistent=False)
        self.register_buffer("embeddings", emb, persistent=False)
        self.register_buffer(
            "ctx_pos", torch.tensor(ctx_pos, dtype=torch.long, device=device).reshape(len(seqs), n_ctx), persistent=False
        )
        self.register_buffer("eot_pos", torch.tensor([len(s) - 1 for s in seqs], device=device), persistent=False)
        self.n_ctx = n_ctx

    def fill(self, ctx: torch.Tensor) -> torch.Tensor:
        """Put context vectors (n_ctx, W) or (C, n_ctx, W) into the prompts: (C, L, W)."""
        C, L, W = self.embeddings.shape
        if self.n_ctx == 0:
            return self.embeddings
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(C, -1, -1)
        index = self.ctx_pos.unsqueeze(-1).expand(-1, -1, W)
        ctx = ctx.to(self.embeddings.dtype)
        placed = torch.zeros_like(self.embeddings).scatter(1, index, ctx)
        mask = torch.zeros(C, L, 1, dtype=torch.bool, device=ctx.device).scatter(1, self.ctx_pos.unsqueeze(-1), True)
        return torch.where(mask, placed, self.embeddings)

    def fill_sets(self, ctx: torch.Tensor) -> torch.Tensor:
        """Put ``S`` contexts (S, n_ctx, W), each shared by all classes, into ``S`` sets of the class
        prompts: (S * C, L, W), set by set (an image-conditioned method's one set per image). Set ``s``
        equals :meth:`fill` of ``ctx[s]``."""
        C, L, W = self.embeddings.shape
        S = ctx.shape[0]
        emb = self.embeddings.unsqueeze(0).expand(S, C, L, W)
        if self.n_ctx == 0:
            return emb.reshape(S * C, L, W)
        index = self.ctx_pos[None, :, :, None].expand(S, C, self.n_ctx, W)
        ctx = ctx.to(self.embeddings.dtype)[:, None].expand(S, C, self.n_ctx, W)
        placed = torch.zeros(S, C, L, W, dtype=emb.dtype, device=emb.device).scatter(2, index, ctx)
        mask = torch.zeros(1, C, L, 1, dtype=torch.bool, device=emb.device).scatter(2, self.ctx_pos[None, :, :, None], True)
        return torch.where(mask, placed, emb).reshape(S * C, L, W)


def encode_prompted_text(
    model: nn.Module,
    x: torch.Tensor,
    eot_pos: torch.Tensor,
    cast_dtype: torch.dtype | None = None,
    shared_prefix: int = 0,
    sets: int = 1,
) -> torch.Tensor:
    """Run open_clip's text tower on prompt embeddings ``x`` (C, L, W); returns unnormalised (C, D).

    ``cast_dtype``: the dtype of the residual stream (default: open_clip's, the dtype of the tower's
    weights); a tower whose weights were cast once (:meth:`FrozenCLIP.cast_frozen`) is given its
    float32 original's, so that it computes what the original computes under autocast.

    ``shared_prefix``: the first ``shared_prefix`` positions of ``x`` are the same in every row of a
    prompt set, the rows being ``sets`` consecutive sets of equal size (default: all rows one set),
    and come before every row's [EOS] (:attr:`TokenLayout.shared_prefix` is such a number). They then
    run once per set (see the module's docstring). The last block computes each row's [EOS] position
    only, the one the feature reads. Both equal the plain pass within float tolerance; a tower they do
    not apply to (no causal mask, other block types) runs the plain pass."""
    C, L, _ = x.shape
    cast = cast_dtype or model.transformer.get_cast_dtype()
    x = x.to(cast) + model.positional_embedding[:L].to(cast)
    mask = model.attn_mask[:L, :L] if model.attn_mask is not None else None
    if mask is None or not blocks.applies(model.transformer):
        return _pool_text(model, model.transformer(x, attn_mask=mask), eot_pos)
    P = shared_prefix if 1 < shared_prefix < L else 0
    if P:
        if C % sets:
            raise ValueError(f"{C} prompts do not form {sets} sets of equal size")
        size = C // sets
        prefix = x[::size, :P]  # (sets, P, W): the first row of each set, run once per set
        owner = torch.arange(C, device=x.device) // size
    rest = x[:, P:]  # (C, L - P, W)

    def keys(block):  # ln_1 of every position a class attends to: its set's prefix, then its own
        return block.ln_1(rest) if not P else torch.cat([block.ln_1(prefix)[owner], block.ln_1(rest)], dim=1)

    resblocks = list(model.transformer.resblocks)
    for block in resblocks[:-1]:
        k = keys(block)
        rest = block_rows(block, rest, k[:, P:], k, mask[P:])
        if P:
            prefix = block(prefix, attn_mask=mask[:P, :P])
    # the last block: each class's [EOS] row alone, attending to its positions up to [EOS]
    block, rows = resblocks[-1], torch.arange(C, device=x.device)
    k = keys(block)
    after_eos = torch.arange(L, device=x.device) > eot_pos[:, None]
    eos_mask = torch.zeros(C, 1, L, dtype=x.dtype, device=x.device).masked_fill(after_eos[:, None], float("-inf"))
    out = block_rows(
        block,
        rest[rows, eot_pos - P][:, None],
        k[rows, eot_pos][:, None],
        k,
        eos_mask.repeat_interleave(block.attn.num_heads, dim=0),
    )
    return _pool_text(model, out, torch.zeros_like(eot_pos))


def _pool_text(model: nn.Module, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
    """``ln_final``, the hidden state at [EOS], the text projection."""
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_pos]
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return x


def phrase_embeddings(clip, phrase: str) -> torch.Tensor:
    """Token embeddings of ``phrase`` (its BPE tokens, no [SOS]/[EOS]): a CoOp context init."""
    ids = word_tokens(clip.tokenizer, phrase)
    weight = clip.model.token_embedding.weight
    with torch.no_grad():
        return weight[torch.tensor(ids, device=weight.device)].detach().float().clone()


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)
