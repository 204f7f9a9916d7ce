"""Attention scopes are read from structure and kept only when removing a head is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from autoprune.pruning import Decision, Policy, apply_policy, find_groups
from autoprune.pruning.attention_scopes import find_attention


class FusedAttention(nn.Module):
    """[q | k | v] in one projection, grouped-query: `heads` query heads share `kv` heads.
    Keeps only `head_dim` and `num_key_value_groups`, as LLaMA's kin do; `interleaved` lays
    the projection out per key/value head instead ([q.. k v] per head), which the reading
    of a fused projection as [q | k | v] gets wrong."""

    def __init__(self, width: int = 32, heads: int = 4, kv: int = 2,
                 interleaved: bool = False) -> None:
        super().__init__()
        self.head_dim, self.num_key_value_groups = width // heads, heads // kv
        self.kv, self.interleaved = kv, interleaved
        self.qkv_proj = nn.Linear(width, (heads + 2 * kv) * self.head_dim)
        self.o_proj = nn.Linear(heads * self.head_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        qkv = self.qkv_proj(x)
        d, g = self.head_dim, self.num_key_value_groups
        if self.interleaved:
            parts = qkv.reshape(batch, length, -1, (g + 2) * d)
            q, k, v = parts.split([g * d, d, d], dim=-1)
            q = q.reshape(batch, length, -1, d)
        else:
            kv = qkv.shape[-1] // ((g + 2) * d)
            q, k, v = qkv.split([g * kv * d, kv * d, kv * d], dim=-1)
            q, k, v = (t.reshape(batch, length, -1, d) for t in (q, k, v))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        k, v = (t.repeat_interleave(g, dim=1) for t in (k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class Net(nn.Module):
    def __init__(self, interleaved: bool = False) -> None:
        super().__init__()
        self.attn = FusedAttention(interleaved=interleaved)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x + self.attn(x)).mean(1)


X = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(0))


def test_grouped_query_attention_in_one_projection_is_found_by_key_value_heads():
    torch.manual_seed(0)
    model = Net().eval()
    [(name, layout)] = find_attention(model, X)
    assert name == "attn" and (layout.heads, layout.kv_heads, layout.head_dim) == (4, 2, 8)
    groups = find_groups(model, X)
    pruned = apply_policy(model, Policy({"attn": Decision("head", 0.5)}), groups, X).model
    assert pruned.attn.qkv_proj.out_features == (2 + 2 * 1) * 8
    assert pruned.attn.o_proj.in_features == 2 * 8
    with torch.no_grad():
        assert pruned(X).shape == (2, 10)


def test_a_layout_read_wrongly_is_left_out():
    torch.manual_seed(0)
    model = Net(interleaved=True).eval()
    assert find_attention(model, X) == []
    assert all(g.kind != "attention" for g in find_groups(model, X))


@pytest.mark.parametrize("ignored", [["attn"], ["attn.o_proj"]])
def test_an_ignored_module_keeps_its_attention_whole(ignored: list[str]):
    model = Net().eval()
    assert find_attention(model, X, ignored) == []
