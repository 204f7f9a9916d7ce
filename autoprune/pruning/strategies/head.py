"""Attention-head pruning: the least important heads are removed whole, head size kept (with
grouped-query attention, a key/value head and its query heads go together)."""

from __future__ import annotations

import torch

from autoprune.pruning.attention import attention_layout, head_scores, remove_heads
from autoprune.pruning.strategies.base import SURGERY, Decisions, PruneContext


def kept_heads(heads: int, ratio: float) -> int:
    """Heads left after removing `ratio` of them; at least one."""
    return max(1, int(heads * (1.0 - ratio) + 0.5))


class HeadStrategy:
    """Score heads by the L1 norm of their projection weights and drop the weakest."""

    name = "head"
    description = "attention-head pruning (nn.MultiheadAttention or Linear-projection attention)"
    kinds = frozenset({"attention"})
    stage = SURGERY
    fixed_ratio = None
    ramps = False

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        for group, ratio in decisions:
            module = context.module(group.id)
            layout = attention_layout(module) if module is not None else None
            if layout is None:
                continue
            keep = kept_heads(group.channels, ratio)
            if keep >= layout.units:
                continue
            order = torch.sort(head_scores(module, layout).double(), stable=True).indices
            kept = sorted(order[layout.units - keep:].tolist())
            parent_name, _, child = group.id.rpartition(".")
            parent = context.model.get_submodule(parent_name) if parent_name else context.model
            remove_heads(parent, child, kept)
