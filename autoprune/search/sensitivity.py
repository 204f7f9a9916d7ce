"""Sensitivity warm start: how much accuracy each group loses when pruned alone.

Each group is pruned alone, with its preferred structured strategy, at a few ratios; the
BatchNorm statistics are re-estimated and the accuracy measured, without fine-tuning (seconds
per group, against a minute of search per trial). The result narrows each group's ratio range
(it ends at the first ratio whose drop passes the limit) and gives the first trials: for a few
tolerated drops, every group at the largest ratio that stays within it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from autoprune.data.splits import DataSplits
from autoprune.pruning import Decision, Policy, PrunableGroup, PruneSettings, apply_policy
from autoprune.search.space import SEED_PREFERENCE
from autoprune.training import evaluate, recalibrate_batchnorm


@dataclass(frozen=True)
class Sensitivity:
    """Validation accuracy of the model with one group pruned, per group and ratio."""

    base_accuracy: float
    strategies: dict[str, str]  # group id -> the strategy that was tried
    accuracy: dict[str, dict[float, float]]  # group id -> {ratio: accuracy}

    def drop(self, gid: str, ratio: float) -> float:
        return self.base_accuracy - self.accuracy[gid][ratio]

    def caps(self, max_drop: float) -> dict[str, float]:
        """Per group, the first tried ratio whose drop passes `max_drop` (groups that stay
        within it at every ratio are not capped)."""
        caps = {}
        for gid, by_ratio in self.accuracy.items():
            failing = [r for r in sorted(by_ratio) if self.drop(gid, r) > max_drop]
            if failing:
                caps[gid] = failing[0]
        return caps

    def seed_params(self, tolerated: float, ratio_min: float) -> dict[str, float]:
        """Per group, the largest tried ratio whose drop stays within `tolerated`."""
        ratios = {}
        for gid, by_ratio in self.accuracy.items():
            within = [r for r in sorted(by_ratio) if self.drop(gid, r) <= tolerated]
            ratios[gid] = within[-1] if within else ratio_min
        return ratios


def measure_sensitivity(base_model: nn.Module, groups: Sequence[PrunableGroup],
                        choices: Mapping[str, Sequence[str]], data: DataSplits,
                        prune: PruneSettings, ratios: Sequence[float], bn_batches: int,
                        batch_size: int, seed: int, calibration,  # noqa: ANN001
                        say: Callable[[str], None] = print) -> Sensitivity:
    """Prune each group alone at `ratios`, recalibrate BatchNorm, measure accuracy."""
    import torch

    x = torch.zeros(1, *data.input_shape)
    base_accuracy = evaluate(base_model, data.x_val, data.y_val)
    strategies, accuracy = {}, {}
    for group in groups:
        strategy = next((s for s in SEED_PREFERENCE if s in choices.get(group.id, ())), None)
        if strategy is None:
            continue
        strategies[group.id] = strategy
        accuracy[group.id] = {}
        for ratio in ratios:
            model = apply_policy(base_model, Policy({group.id: Decision(strategy, ratio)}),
                                 groups, x, prune, calibration).model
            recalibrate_batchnorm(model, data.x_train, bn_batches, batch_size, seed)
            accuracy[group.id][ratio] = evaluate(model, data.x_val, data.y_val)
        drops = ", ".join(f"{r:g}: {100 * (base_accuracy - a):+.1f}"
                          for r, a in accuracy[group.id].items())
        say(f"sensitivity {group.id} ({strategy}) accuracy drop in points at ratio {drops}")
    return Sensitivity(base_accuracy, strategies, accuracy)
