"""Layer pruning: a whole residual block is removed and its input passes straight through."""

from __future__ import annotations

from autoprune.pruning.blocks import PassThrough, arity
from autoprune.pruning.replay import record_calls
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
        present = [group.id for group, _ in decisions if context.module(group.id) is not None]
        # What each block returned (a tensor, or a tuple) is what its pass-through returns.
        calls = record_calls(context.model, context.example_input, present) \
            if present and context.example_input is not None else {}
        for name in present:
            made = calls.get(name)
            replace_module(context.model, name, PassThrough(arity(made[0].output) if made else 0))
