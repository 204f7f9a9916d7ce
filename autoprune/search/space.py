"""The policy search space: one strategy and one ratio per prunable group, as Optuna params."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from autoprune.pruning.policy import RATIO_SUFFIX, STRATEGY_SUFFIX


class PolicySpace:
    """Define-by-run space for Optuna (and Ray's OptunaSearch); picklable, no lambdas.

    Calling it with an Optuna trial suggests `<group>.strategy` and `<group>.ratio` for every
    group; `autoprune.pruning.Policy.from_params` turns the sampled params back into a policy.
    """

    def __init__(self, group_ids: Sequence[str], strategies: Sequence[str],
                 ratio_min: float, ratio_max: float, ratio_step: float) -> None:
        self.group_ids = tuple(group_ids)
        self.strategies = tuple(strategies)
        self.ratio_min = ratio_min
        self.step = ratio_step
        steps = math.floor((ratio_max - ratio_min) / ratio_step + 1e-9)
        self.ratio_max = round(ratio_min + steps * ratio_step, 10)

    def __call__(self, trial: Any) -> None:
        for gid in self.group_ids:
            if len(self.strategies) > 1:
                trial.suggest_categorical(gid + STRATEGY_SUFFIX, list(self.strategies))
            else:
                trial.set_user_attr(gid + STRATEGY_SUFFIX, self.strategies[0])
            trial.suggest_float(gid + RATIO_SUFFIX, self.ratio_min, self.ratio_max,
                                step=self.step)

    def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add the fixed strategy to params when there is only one to choose."""
        if len(self.strategies) > 1:
            return dict(params)
        return {**params, **{gid + STRATEGY_SUFFIX: self.strategies[0]
                             for gid in self.group_ids}}

    def uniform_point(self, ratio: float) -> dict[str, Any]:
        """Params of a uniform policy (channel pruning where allowed), snapped to the grid."""
        strategy = "channel" if "channel" in self.strategies else self.strategies[0]
        snapped = self.ratio_min + round((ratio - self.ratio_min) / self.step) * self.step
        snapped = round(min(max(snapped, self.ratio_min), self.ratio_max), 10)
        point: dict[str, Any] = {}
        for gid in self.group_ids:
            if len(self.strategies) > 1:
                point[gid + STRATEGY_SUFFIX] = strategy
            point[gid + RATIO_SUFFIX] = snapped
        return point
