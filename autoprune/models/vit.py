"""A small Vision Transformer (Dosovitskiy et al., 2021) for 16x16 inputs (its blocks, whose
heads can be removed whole, are in `transformer.py`)."""

from __future__ import annotations

import torch
from torch import nn

from autoprune.models.transformer import Block


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
