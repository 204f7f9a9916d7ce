"""Layer pruning: a whole residual block is removed and its input passes straight through."""

from __future__ import annotations

from autoprune.pruning.blocks import PassThrough
from autoprune.pruning.strategies.base import SURGERY, Decisions, PruneContext
from autoprune.pruning.strategies.lowrank import replace_module


class LayerStrategy:
    """Replace each chosen block by a PassThrough: its layers are gone from the graph."""

    name = "layer"
    description = "layer pruning: residual blocks with matching in/out shapes removed whole"
    kinds = frozenset({"block"})
    stage = SURGERY
    fixed_ratio = 1.0
    ramps = False

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        for group, _ in decisions:
            if context.module(group.id) is not None:
                replace_module(context.model, group.id, PassThrough())
