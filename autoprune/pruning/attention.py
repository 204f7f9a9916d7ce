"""Attention modules whose heads can be removed whole, and the operations that remove them.

Two forms are recognised:

- `nn.MultiheadAttention` (same embedding size for query, key and value). Removing heads makes
  its inner width smaller than its embedding size, which that class cannot express, so it is
  replaced by `HeadPrunedAttention`, a drop-in module with the same call signature.
- Attention written with Linear projections: a module with an integer `num_heads` attribute
  that its `forward` reads, query/key/value projections (a fused `qkv`, or `q`/`k`/`v`,
  `q_proj`/`k_proj`/`v_proj`, `query`/`key`/`value`) and an output projection (`proj`,
  `out_proj`, `o_proj`). A fused `qkv` is laid out as [3, heads, head_dim] along its outputs.
  Rows of the projections and columns of the output projection are sliced in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

SEPARATE = (("q", "k", "v"), ("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))
OUTPUT = ("proj", "out_proj", "o_proj")


@dataclass(frozen=True)
class AttentionLayout:
    """Where an attention module keeps its projections."""

    fused: str | None  # name of the fused qkv Linear, if any
    separate: tuple[str, str, str] | None
    output: str
    heads: int
    head_dim: int


def attention_layout(module: nn.Module) -> AttentionLayout | None:
    """Return the layout of a head-prunable attention module, or None if it is not one."""
    if isinstance(module, nn.MultiheadAttention):
        if not module._qkv_same_embed_dim or module.in_proj_weight is None:
            return None
        return AttentionLayout(None, None, "out_proj", module.num_heads, module.head_dim)
    if isinstance(module, HeadPrunedAttention):
        return AttentionLayout(None, ("q", "k", "v"), "out_proj", module.num_heads,
                               module.head_dim)
    heads = getattr(module, "num_heads", None)
    if not isinstance(heads, int) or heads < 2:
        return None
    children = dict(module.named_children())
    output = next((n for n in OUTPUT if isinstance(children.get(n), nn.Linear)), None)
    if output is None:
        return None
    if isinstance(children.get("qkv"), nn.Linear):
        width = children["qkv"].out_features
        if width % (3 * heads):
            return None
        return AttentionLayout("qkv", None, output, heads, width // (3 * heads))
    for names in SEPARATE:
        if all(isinstance(children.get(n), nn.Linear) for n in names):
            widths = {children[n].out_features for n in names}
            if len(widths) != 1 or next(iter(widths)) % heads:
                return None
            return AttentionLayout(None, names, output, heads, widths.pop() // heads)
    return None


def projection_layers(name: str, layout: AttentionLayout) -> list[str]:
    """Module names of the query/key/value projections (not the output projection)."""
    if layout.fused:
        return [f"{name}.{layout.fused}"]
    if layout.separate:
        return [f"{name}.{n}" for n in layout.separate]
    return []


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


def head_scores(module: nn.Module, layout: AttentionLayout) -> torch.Tensor:
    """L1 magnitude of each head's query/key/value rows and output-projection columns."""
    heads, dim = layout.heads, layout.head_dim
    if isinstance(module, nn.MultiheadAttention):
        qkv = module.in_proj_weight.detach().reshape(3, heads, dim, -1).abs().sum(dim=(0, 2, 3))
    elif layout.fused:
        weight = getattr(module, layout.fused).weight.detach()
        qkv = weight.reshape(3, heads, dim, -1).abs().sum(dim=(0, 2, 3))
    else:
        qkv = sum(getattr(module, n).weight.detach().reshape(heads, dim, -1).abs().sum(dim=(1, 2))
                  for n in layout.separate)
    out = getattr(module, layout.output).weight.detach()
    return qkv + out.reshape(out.shape[0], heads, dim).abs().sum(dim=(0, 2))


def _rows(linear: nn.Linear, index: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.detach()[index].clone())
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.detach()[index].clone())
    linear.out_features = len(index)


def _columns(linear: nn.Linear, index: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.detach()[:, index].clone())
    linear.in_features = len(index)


def remove_heads(parent: nn.Module, name: str, keep: list[int]) -> None:
    """Keep only heads `keep` (sorted) of attention module `parent.<name>`, head size unchanged."""
    module = getattr(parent, name)
    layout = attention_layout(module)
    dim = layout.head_dim
    channels = torch.tensor([h * dim + i for h in keep for i in range(dim)])
    if isinstance(module, nn.MultiheadAttention):
        module = _as_head_pruned(module)
        setattr(parent, name, module)
        layout = attention_layout(module)
    if layout.fused:
        width = layout.heads * dim
        _rows(getattr(module, layout.fused),
              torch.cat([channels + part * width for part in range(3)]))
    else:
        for proj in layout.separate:
            _rows(getattr(module, proj), channels)
    _columns(getattr(module, layout.output), channels)
    module.num_heads = len(keep)


def _as_head_pruned(mha: nn.MultiheadAttention) -> HeadPrunedAttention:
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
