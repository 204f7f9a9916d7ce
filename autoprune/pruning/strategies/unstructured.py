"""Unstructured magnitude pruning: the smallest weights of the group's layers become zero."""

from __future__ import annotations

import torch

from autoprune.pruning.groups import PrunableGroup
from autoprune.pruning.strategies.base import PruneContext


class UnstructuredStrategy:
    """Zero exactly round(ratio * n) weights of each layer in the group, smallest |w| first.

    Dense kernels do not skip zeros, so this shrinks compressed size, not dense latency;
    the latency the search measures says so honestly.
    """

    name = "unstructured"
    structural = False

    def apply(self, context: PruneContext, group: PrunableGroup, ratio: float) -> None:
        for layer in group.layers:
            weight = context.module(layer).weight
            count = int(round(ratio * weight.numel()))
            if count == 0:
                continue
            flat = weight.detach().abs().flatten()
            drop = torch.sort(flat.double(), stable=True).indices[:count]
            mask = torch.ones_like(flat)
            mask[drop] = 0.0
            mask = mask.view_as(weight)
            key = f"{layer}.weight"
            with torch.no_grad():
                weight.mul_(mask)
            context.masks[key] = mask * context.masks[key] if key in context.masks else mask
