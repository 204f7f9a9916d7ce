"""`nn.MultiheadAttention` with heads removed: `HeadPrunedAttention`, a drop-in module with the
same call signature whose inner width (heads x head_dim) may differ from its embedding size,
which `nn.MultiheadAttention` cannot express."""

from __future__ import annotations

import math

import torch
from torch import nn


class HeadPrunedAttention(nn.Module):
    """Multi-head attention whose inner width (heads x head_dim) may differ from its embedding.

    Takes the arguments of `nn.MultiheadAttention.forward` and returns (output, weights).
    """

    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, batch_first: bool,
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim, self.batch_first = num_heads, head_dim, batch_first
        self.dropout = dropout
        self.q = nn.Linear(embed_dim, inner, bias=bias)
        self.k = nn.Linear(embed_dim, inner, bias=bias)
        self.v = nn.Linear(embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        batch, length, _ = query.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(query)), split(self.k(key)), split(self.v(value))
        mask = _additive_mask(attn_mask, key_padding_mask, is_causal, length, k.shape[2],
                              self.num_heads, q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            out = nn.functional.dropout(weights, dropout) @ v
        else:  # the fused kernel, as nn.MultiheadAttention uses when weights are not needed
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                             dropout_p=dropout)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        return out, weights


def _additive_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
                   is_causal: bool, length: int, keys: int, heads: int,
                   dtype: torch.dtype) -> torch.Tensor | None:
    """Combine nn.MultiheadAttention's mask arguments into one additive mask."""
    mask = None
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(length, keys, dtype=torch.bool).triu(1)
    for part, shape in ((attn_mask, None), (key_padding_mask, "padding")):
        if part is None:
            continue
        if part.dtype == torch.bool:
            part = torch.zeros(part.shape, dtype=dtype).masked_fill(part, float("-inf"))
        part = part.to(dtype)
        if shape == "padding":
            part = part[:, None, None, :]
        elif part.dim() == 3:  # (batch * heads, L, S) as nn.MultiheadAttention takes it
            part = part.reshape(-1, heads, length, keys)
        mask = part if mask is None else mask + part
    return mask


def as_head_pruned(mha: nn.MultiheadAttention) -> HeadPrunedAttention:
    """The same attention as a HeadPrunedAttention, weights copied."""
    embed = mha.embed_dim
    module = HeadPrunedAttention(embed, mha.num_heads, mha.head_dim, mha.batch_first,
                                 mha.dropout, bias=mha.in_proj_bias is not None)
    weight = mha.in_proj_weight.detach()
    with torch.no_grad():
        for index, proj in enumerate((module.q, module.k, module.v)):
            proj.weight.copy_(weight[index * embed:(index + 1) * embed])
            if mha.in_proj_bias is not None:
                proj.bias.copy_(mha.in_proj_bias.detach()[index * embed:(index + 1) * embed])
        module.out_proj.weight.copy_(mha.out_proj.weight.detach())
        if mha.out_proj.bias is not None:
            module.out_proj.bias.copy_(mha.out_proj.bias.detach())
    return module.train(mha.training)
