"""A small Vision Transformer (Dosovitskiy et al., 2021) for 16x16 inputs.

Attention is written with Linear projections (a fused `qkv` and an output `proj`) and keeps
`num_heads` and `head_dim` as attributes that `forward` reads, so whole heads can be removed.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention over tokens (B, N, dim)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * num_heads * self.head_dim)
        self.proj = nn.Linear(num_heads * self.head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class Block(nn.Module):
    """Pre-norm transformer block: attention and MLP, each inside a residual connection."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch embedding, learned position embedding, transformer blocks, mean-pooled head."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        resolution: int = 16,
        patch: int = 4,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        if resolution % patch:
            raise ValueError(f"resolution {resolution} is not a multiple of patch {patch}")
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.pos_embed = nn.Embedding((resolution // patch) ** 2, dim)
        self.blocks = nn.Sequential(*(Block(dim, num_heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        positions = torch.arange(tokens.shape[1], device=x.device)
        x = self.blocks(tokens + self.pos_embed(positions))
        return self.head(self.norm(x).mean(dim=1))
