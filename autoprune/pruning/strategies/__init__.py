"""Registry of pruning strategies; one module per strategy, one instance each."""

from __future__ import annotations

from autoprune.errors import UserError
from autoprune.pruning.strategies.base import GRAPH, MASK, SURGERY, PruneContext, Strategy
from autoprune.pruning.strategies.channel import ChannelStrategy, NeuronStrategy, kept_channels
from autoprune.pruning.strategies.dynamic import DynamicStrategy
from autoprune.pruning.strategies.head import HeadStrategy
from autoprune.pruning.strategies.layer import LayerStrategy
from autoprune.pruning.strategies.lowrank import LowRankStrategy
from autoprune.pruning.strategies.nm import NMStrategy
from autoprune.pruning.strategies.unstructured import (
    GlobalUnstructuredStrategy,
    UnstructuredStrategy,
)

STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (
        ChannelStrategy(), NeuronStrategy(), HeadStrategy(), LayerStrategy(), LowRankStrategy(),
        DynamicStrategy(),
        UnstructuredStrategy(), GlobalUnstructuredStrategy(), NMStrategy(),
    )
}


def get_strategy(name: str) -> Strategy:
    """Return the registered strategy called `name`; raises UserError listing the valid ones."""
    if name not in STRATEGIES:
        raise UserError(f"unknown pruning strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


__all__ = ["GRAPH", "MASK", "STRATEGIES", "SURGERY", "PruneContext", "Strategy", "get_strategy",
           "kept_channels"]
