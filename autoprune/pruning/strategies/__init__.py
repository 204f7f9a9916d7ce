"""Registry of pruning strategies; one module per strategy."""

from __future__ import annotations

from autoprune.errors import UserError
from autoprune.pruning.strategies.base import PruneContext, Strategy
from autoprune.pruning.strategies.channel import ChannelStrategy, kept_channels
from autoprune.pruning.strategies.unstructured import UnstructuredStrategy

STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (ChannelStrategy(), UnstructuredStrategy())
}


def get_strategy(name: str) -> Strategy:
    """Return the registered strategy called `name`; raises UserError listing the valid ones."""
    if name not in STRATEGIES:
        raise UserError(f"unknown pruning strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


__all__ = ["STRATEGIES", "PruneContext", "Strategy", "get_strategy", "kept_channels"]
