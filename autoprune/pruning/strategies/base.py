"""The strategy role: apply one group's pruning decision to a model being pruned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch_pruning as tp
from torch import nn

from autoprune.pruning.groups import PrunableGroup


@dataclass
class PruneContext:
    """What a strategy works on: the model copy, its dependency graph and shared settings."""

    model: nn.Module
    graph: tp.DependencyGraph
    alignment: int
    importance: str
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)


class Strategy(Protocol):
    """A pruning strategy.

    `structural` strategies change tensor shapes and run before mask-based ones, so masks are
    made on final shapes. `apply` mutates `context.model` (and may add to `context.masks`,
    weight masks that fine-tuning keeps applied); the same inputs give the same result.
    """

    name: str
    structural: bool

    def apply(self, context: PruneContext, group: PrunableGroup, ratio: float) -> None: ...
