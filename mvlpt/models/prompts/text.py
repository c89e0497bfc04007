"""Text side with learned context vectors: the CoOp token layout and the cut causal text encoder.

For class ``c`` the token sequence is ``[SOS] <ctx and class-name tokens> . [EOS]`` where the class
name's tokens go at the end, the front, or the middle of the ``n_ctx`` context tokens. The learned
context vectors replace the token embeddings at the context positions.

The text transformer is causal, so the feature read at [EOS] does not depend on later positions:
the sequence is cut to the longest prompt among the classes (positional embedding and attention
mask sliced alike). ``tests/test_prompts.py`` checks that this equals the full 77-token result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import MvlptError

POSITIONS = ("end", "middle", "front")


def _word_tokens(tokenizer, text: str) -> list[int]:
    """The BPE tokens of ``text`` without [SOS]/[EOS]."""
    ids = tokenizer([text])[0].tolist()
    eot = max(range(len(ids)), key=lambda i: ids[i])  # [EOS] has the largest id
    return ids[1:eot]


class TokenLayout(nn.Module):
    """Token ids, frozen token embeddings and context positions of every class's prompt."""

    def __init__(self, clip, classnames: list[str], n_ctx: int, position: str = "end", cut: bool = True):
        super().__init__()
        if position not in POSITIONS:
            raise MvlptError(f"class token position must be one of {', '.join(POSITIONS)}, got {position!r}.")
        tok = clip.tokenizer
        full = tok(["x"])[0]
        sos, eos, context_length = int(full[0]), int(full.max()), full.shape[0]
        period = _word_tokens(tok, ".")
        filler = _word_tokens(tok, "x")[0]  # any token: its embedding is replaced by the context
        seqs, ctx_pos = [], []
        half = n_ctx // 2
        for name in classnames:
            name_ids = _word_tokens(tok, name)
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
        length = max(map(len, seqs)) if cut else context_length
        tokens = torch.zeros(len(seqs), length, dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = torch.tensor(s)
        model = clip.model
        device = model.token_embedding.weight.device
        with torch.no_grad():
            emb = model.token_embedding(tokens.to(device)).float()
        self.register_buffer("tokens", tokens.to(device), persistent=False)
        self.register_buffer("embeddings", emb, persistent=False)
        self.register_buffer("ctx_pos", torch.tensor(ctx_pos, dtype=torch.long, device=device).reshape(len(seqs), n_ctx), persistent=False)
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


def encode_prompted_text(model: nn.Module, x: torch.Tensor, eot_pos: torch.Tensor, cast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Run open_clip's text tower on prompt embeddings ``x`` (C, L, W); returns unnormalised (C, D).

    ``cast_dtype``: the dtype of the residual stream (default: open_clip's, the dtype of the tower's
    weights); a tower whose weights were cast once (:meth:`FrozenCLIP.cast_frozen`) is given its
    float32 original's, so that it computes what the original computes under autocast."""
    L = x.shape[1]
    cast = cast_dtype or model.transformer.get_cast_dtype()
    x = x.to(cast) + model.positional_embedding[:L].to(cast)
    mask = model.attn_mask[:L, :L] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_pos]
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return x


def phrase_embeddings(clip, phrase: str) -> torch.Tensor:
    """Token embeddings of ``phrase`` (its BPE tokens, no [SOS]/[EOS]): a CoOp context init."""
    ids = _word_tokens(clip.tokenizer, phrase)
    weight = clip.model.token_embedding.weight
    with torch.no_grad():
        return weight[torch.tensor(ids, device=weight.device)].detach().float().clone()


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)
