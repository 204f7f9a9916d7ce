"""Unstructured magnitude pruning, layer by layer or with one global threshold."""

from __future__ import annotations

import torch

from autoprune.pruning.strategies.base import MASK, Decisions, PruneContext


def _smallest_mask(values: torch.Tensor, count: int) -> torch.Tensor:
    """1 everywhere except the `count` smallest entries of `values` (ties broken by position)."""
    flat = values.flatten()
    mask = torch.ones_like(flat)
    if count > 0:
        mask[torch.sort(flat.double(), stable=True).indices[:count]] = 0.0
    return mask.view_as(values)


def _weights(context: PruneContext, decisions: Decisions):
    for group, ratio in decisions:
        for layer in group.layers:
            module = context.module(layer)
            if module is not None and hasattr(module, "weight"):
                yield layer, module.weight, ratio


class UnstructuredStrategy:
    """Zero exactly round(ratio * n) weights of each layer in the group, smallest |w| first.

    Dense kernels do not skip zeros, so this shrinks compressed size, not dense latency;
    the latency the search measures says so honestly.
    """

    name = "unstructured"
    description = "layer-wise magnitude pruning: the smallest weights of each layer zeroed"
    kinds = frozenset({"conv", "linear"})
    stage = MASK
    fixed_ratio = None
    ramps = True

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        for layer, weight, ratio in _weights(context, decisions):
            count = int(round(ratio * weight.numel()))
            if count:
                context.add_mask(layer, _smallest_mask(weight.detach().abs(), count))


class GlobalUnstructuredStrategy:
    """One magnitude threshold across all layers of all groups that chose it.

    The number of weights removed is what layer-wise pruning would remove at each group's
    ratio; which weights go is decided globally, so layers with many small weights lose more.
    """

    name = "global_unstructured"
    description = "global magnitude pruning: one threshold across every group choosing it"
    kinds = frozenset({"conv", "linear"})
    stage = MASK
    fixed_ratio = None
    ramps = True

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        entries = list(_weights(context, decisions))
        if not entries:
            return
        count = sum(int(round(ratio * w.numel())) for _, w, ratio in entries)
        if count == 0:
            return
        pooled = torch.cat([w.detach().abs().flatten() for _, w, _ in entries])
        mask = _smallest_mask(pooled, count)
        start = 0
        for layer, weight, _ in entries:
            part = mask[start:start + weight.numel()].view_as(weight)
            start += weight.numel()
            context.add_mask(layer, part)
