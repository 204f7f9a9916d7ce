"""The strategy role: apply the decisions of every group that chose it to a model being pruned."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch_pruning as tp
from torch import nn

from autoprune.pruning.groups import PrunableGroup

# Stages, in the order apply_policy runs them. Dependency-graph strategies go first, while the
# graph still matches the model; module surgery next; masks last, on the final shapes.
GRAPH, SURGERY, MASK = 0, 1, 2


@dataclass
class PruneContext:
    """What a strategy works on: the model copy, its dependency graph and shared settings."""

    model: nn.Module
    graph: tp.DependencyGraph | None
    alignment: int
    criterion: str
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    example_input: torch.Tensor | None = None

    def module(self, name: str) -> nn.Module | None:
        """The module called `name`, or None once an earlier step removed or replaced it."""
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            return None

    def add_mask(self, layer: str, mask: torch.Tensor) -> None:
        """Zero `layer`'s weights where `mask` is 0 and keep them zero through fine-tuning."""
        key = f"{layer}.weight"
        weight = self.model.get_submodule(layer).weight
        with torch.no_grad():
            weight.mul_(mask)
        self.masks[key] = mask * self.masks[key] if key in self.masks else mask


Decisions = Sequence[tuple[PrunableGroup, float]]


class Strategy(Protocol):
    """A pruning strategy.

    `kinds` are the group kinds it acts on; `stage` orders strategies within one policy (see
    GRAPH, SURGERY, MASK); `fixed_ratio` is None when the ratio is searched, else the fraction
    of the group's weights it always removes (N:M) or 1.0 (a whole layer). `ramps` says whether
    iterative schedules may apply it in growing steps (else it is applied at the last step).

    `apply` receives every (group, ratio) that chose this strategy and changes
    `context.model` in place, adding masks that fine-tuning keeps applied. Ratios are fractions
    of the group's size in the unpruned model (`group.channels`), so that applying a growing
    ratio to an already pruned model removes only the difference. The same inputs always give
    the same result.
    """

    name: str
    description: str
    kinds: frozenset[str]
    stage: int
    fixed_ratio: float | None
    ramps: bool

    def apply(self, context: PruneContext, decisions: Decisions) -> None: ...
