"""A small decoder-only transformer language model (GPT-style), in plain PyTorch.

Token and learned position embeddings, pre-norm blocks of causal multi-head attention and an
MLP, a final LayerNorm and an output head tied to the token embedding. Attention keeps
`num_heads` and `head_dim` as attributes that `forward` reads and projects with Linear
layers (a fused `qkv`, an output `proj`), so whole heads can be removed; each block is a
residual unit that can be removed whole; the MLP's hidden neurons are a Linear group (the
blocks are those of `transformer.py`, causal).
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.models.transformer import Block


class GPT(nn.Module):
    """Token ids (B, T) in, next-token logits (B, T, vocab_size) out."""

    def __init__(self, vocab_size: int = 256, context: int = 64, dim: int = 128,
                 depth: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.context = context
        self.tok_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Embedding(context, dim)
        self.blocks = nn.Sequential(*(Block(dim, num_heads, mlp_ratio, causal=True)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.tok_embed.weight  # tied input and output embeddings
        self.apply(_init)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.blocks(self.tok_embed(tokens) + self.pos_embed(positions))
        return self.head(self.norm(x))


def _init(module: nn.Module) -> None:
    # GPT-2's initialisation: small normal weights, zero biases.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
