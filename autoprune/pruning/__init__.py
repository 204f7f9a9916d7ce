"""Prunable groups, policies (per-group decisions as data) and the strategies that apply them."""

from autoprune.pruning.apply import (
    PrunedModel,
    PruneSettings,
    apply_policy,
    check_groups,
    model_stats,
)
from autoprune.pruning.groups import PrunableGroup, find_groups
from autoprune.pruning.policy import Decision, Policy
from autoprune.pruning.strategies import STRATEGIES, get_strategy

__all__ = [
    "STRATEGIES",
    "Decision",
    "Policy",
    "PrunableGroup",
    "PruneSettings",
    "PrunedModel",
    "apply_policy",
    "check_groups",
    "find_groups",
    "get_strategy",
    "model_stats",
]
