"""Sensitivity warm start: how much of the task's metric each group loses when pruned alone.

Each group is pruned alone, with its preferred structured strategy, at a few ratios; the
BatchNorm statistics are re-estimated and the metric measured, without fine-tuning (seconds
per group, against a minute of search per trial). Drops are relative to the base model's
value, in the metric's direction (0.1: 10% worse). The result narrows each group's ratio range
(it ends at the first ratio whose drop passes the limit) and gives the first trials: for a few
tolerated drops, every group at the largest ratio that stays within it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from autoprune.pruning import Decision, Policy, PrunableGroup, PruneSettings, apply_policy
from autoprune.search.space import SEED_PREFERENCE
from autoprune.tasks import Objective
from autoprune.training import Compute, evaluate, recalibrate_batchnorm
from autoprune.workload import Workload


@dataclass(frozen=True)
class Sensitivity:
    """The validation metric of the model with one group pruned, per group and ratio."""

    objective: Objective
    base_value: float
    strategies: dict[str, str]  # group id -> the strategy that was tried
    accuracy: dict[str, dict[float, float]]  # group id -> {ratio: the metric's value}

    def drop(self, gid: str, ratio: float) -> float:
        """How much worse the metric got, relative to the base model's."""
        return self.objective.relative_worsening(self.base_value, self.accuracy[gid][ratio])

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
                        choices: Mapping[str, Sequence[str]], workload: Workload,
                        prune: PruneSettings, ratios: Sequence[float], bn_batches: int,
                        seed: int, calibration,  # noqa: ANN001
                        say: Callable[[str], None] = print,
                        compute: Compute = Compute()) -> Sensitivity:  # noqa: B008
    """Prune each group alone at `ratios`, recalibrate BatchNorm, measure the metric."""
    x = workload.example()
    objective = workload.task.objective
    name = objective.metric
    base_value = evaluate(base_model, workload, compute=compute)[name]
    base_model.cpu()
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
            recalibrate_batchnorm(model, workload, bn_batches, seed, compute)
            accuracy[group.id][ratio] = evaluate(model, workload, compute=compute)[name]
        drops = ", ".join(
            f"{r:g}: {100 * objective.relative_worsening(base_value, a):+.1f}%"
            for r, a in accuracy[group.id].items())
        say(f"sensitivity {group.id} ({strategy}): {name} worse by, at ratio {drops}")
    return Sensitivity(objective, base_value, strategies, accuracy)
