"""Low-rank factorisation: a layer becomes two thinner ones, from a truncated SVD of its weight.

A Linear (out x in; GPT-2's Conv1D alike) becomes Linear(in -> r) then Linear(r -> out); a k x k
convolution becomes a k x k convolution to r channels then a 1x1 convolution to the original
outputs. The searched
ratio is the fraction of the full rank removed; r is rounded to the profile's alignment. A layer
is only factorised when that makes it smaller: at high rank two layers cost more than one.
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.pruning.attention import is_conv1d
from autoprune.pruning.strategies.base import SURGERY, Decisions, PruneContext
from autoprune.pruning.strategies.channel import kept_channels


def _matrix(layer: nn.Module) -> torch.Tensor:
    """The weight as (outputs x inputs); transformers' Conv1D stores it transposed."""
    if is_conv1d(layer):
        return layer.weight.detach().t().double()
    return layer.weight.detach().reshape(layer.weight.shape[0], -1).double()


def factorizable(layer: nn.Module) -> bool:
    """Dense Linear (or transformers' Conv1D) layers and ungrouped, zero-padded convolutions."""
    if isinstance(layer, nn.Linear) or is_conv1d(layer):
        return True
    return (isinstance(layer, nn.Conv2d) and layer.groups == 1
            and layer.padding_mode == "zeros")


class LowRank(nn.Sequential):
    """Two thinner layers standing for one: called as it was, and answering the attributes that
    model code reads of it (a Hugging Face model reads a convolution's `stride` to pad, or its
    `weight.dtype` to cast): its shape attributes are the original layer's, `weight` is the
    last layer's (the same dtype and device)."""

    KEPT = ("in_features", "out_features", "in_channels", "out_channels", "kernel_size",
            "stride", "padding", "dilation", "groups", "padding_mode", "nf", "nx")

    def __init__(self, first: nn.Module, second: nn.Module, original: nn.Module) -> None:
        super().__init__(first, second)
        for attr in self.KEPT:
            if hasattr(original, attr):
                setattr(self, attr, getattr(original, attr))

    @property
    def weight(self) -> torch.Tensor:
        return self[-1].weight


def factorize(layer: nn.Module, rank: int) -> LowRank:
    """Return two layers whose product is the best rank-`rank` approximation of `layer`."""
    u, s, vh = torch.linalg.svd(_matrix(layer), full_matrices=False)
    root = s[:rank].sqrt()
    first_w = (root[:, None] * vh[:rank]).to(layer.weight.dtype)
    second_w = (u[:, :rank] * root[None, :]).to(layer.weight.dtype)
    if not isinstance(layer, nn.Conv2d):  # Linear, or Conv1D: x @ W + b, a Linear pair too
        in_dim, out_dim = first_w.shape[1], second_w.shape[0]
        first = nn.Linear(in_dim, rank, bias=False)
        second = nn.Linear(rank, out_dim, bias=layer.bias is not None)
        first.weight.data = first_w
        second.weight.data = second_w
    else:
        first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride,
                          layer.padding, layer.dilation, bias=False)
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None)
        first.weight.data = first_w.reshape(rank, *layer.weight.shape[1:]).contiguous()
        second.weight.data = second_w.reshape(layer.out_channels, rank, 1, 1).contiguous()
    if layer.bias is not None:
        second.bias.data = layer.bias.detach().clone()
    return LowRank(first, second, layer).train(layer.training)


def rank_for(layer: nn.Module, ratio: float, alignment: int) -> int | None:
    """The rank to keep, or None when factorising at that rank would not make the layer smaller."""
    out_dim, in_dim = _matrix(layer).shape
    rank = kept_channels(min(out_dim, in_dim), ratio, alignment)
    if rank * (out_dim + in_dim) >= out_dim * in_dim:
        return None
    return rank


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule `name` of `model` was."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


class LowRankStrategy:
    """Factorise every layer of the group at the searched rank ratio."""

    name = "lowrank"
    description = "low-rank factorisation (truncated SVD) of Linear and conv layers"
    kinds = frozenset({"conv", "linear"})
    stage = SURGERY
    fixed_ratio = None
    ramps = False

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        for group, ratio in decisions:
            for layer_name in group.layers:
                layer = context.module(layer_name)
                if layer is None or not factorizable(layer):
                    continue
                rank = rank_for(layer, ratio, context.alignment)
                if rank is not None:
                    replace_module(context.model, layer_name, factorize(layer, rank))
