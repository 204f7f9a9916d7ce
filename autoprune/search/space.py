"""The policy search space, as Optuna parameters.

Per group: `<group>.strategy`, one of the strategies that can act on that group's kind (plus
"none" where no choice takes a ratio, so the group can be left alone), and `<group>.ratio`,
sampled only when the chosen strategy takes a ratio (N:M and layer removal do not). Globally:
`schedule` and `quantize`, when more than one value is allowed; `quantize` only for policies
without dynamic gating, which int8 cannot run. Conditional parameters like these are what
Optuna's define-by-run spaces are for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autoprune.pruning.policy import (
    QUANTIZE_KEY,
    RATIO_SUFFIX,
    SCHEDULE_KEY,
    STRATEGY_SUFFIX,
    UNPRUNED,
)
from autoprune.pruning.strategies import STRATEGIES

DYNAMIC = "dynamic"  # the strategy whose policies are never quantised
LAYER = "layer"  # the strategy that removes a whole block

# Which strategy a uniform seed policy uses, most preferred first: the ones that make a model
# faster on dense hardware.
SEED_PREFERENCE = ("channel", "neuron", "head", "lowrank", "unstructured", "global_unstructured",
                   "dynamic")


class PolicySpace:
    """Define-by-run space for Optuna (asked by the study's Ray Tune searcher); picklable, no
    lambdas.

    Calling it with an Optuna trial suggests the parameters above; `complete` adds the values
    that were not searched because they had one option, and `Policy.from_params` turns the
    result into a policy.
    """

    def __init__(self, choices: Mapping[str, Sequence[str]], ratio_min: float, ratio_max: float,
                 ratio_step: float, schedules: Sequence[str] = ("oneshot",),
                 quantize: Sequence[str] = ("none",),
                 caps: Mapping[str, float] | None = None) -> None:
        self.choices: dict[str, tuple[str, ...]] = {}
        for gid, names in choices.items():
            names = tuple(names)
            if all(STRATEGIES[n].fixed_ratio is not None for n in names):
                names = (*names, UNPRUNED)
            self.choices[gid] = names
        self.group_ids = tuple(self.choices)
        self.schedules = tuple(schedules)
        self.quantize = tuple(quantize)
        self.ratio_min = ratio_min
        self.step = ratio_step
        self.ratio_max = self._snap_down(ratio_max)
        # Per-group upper ends narrower than ratio_max (from the sensitivity warm start).
        self.caps = {gid: self._snap_down(min(cap, self.ratio_max))
                     for gid, cap in (caps or {}).items() if gid in self.choices}

    def _snap_down(self, ratio: float) -> float:
        steps = max(math.floor((ratio - self.ratio_min) / self.step + 1e-9), 0)
        return round(self.ratio_min + steps * self.step, 10)

    def ratio_high(self, gid: str) -> float:
        """The largest ratio group `gid` may take."""
        return self.caps.get(gid, self.ratio_max)

    def __call__(self, trial: Any) -> None:
        gated = False
        for gid, names in self.choices.items():
            if len(names) > 1:
                strategy = trial.suggest_categorical(gid + STRATEGY_SUFFIX, list(names))
            else:
                strategy = names[0]
            if strategy != UNPRUNED and STRATEGIES[strategy].fixed_ratio is None:
                ratio = trial.suggest_float(gid + RATIO_SUFFIX, self.ratio_min,
                                            self.ratio_high(gid), step=self.step)
                gated = gated or (strategy == DYNAMIC and ratio > 0)
        if len(self.schedules) > 1:
            trial.suggest_categorical(SCHEDULE_KEY, list(self.schedules))
        if len(self.quantize) > 1 and not gated:
            trial.suggest_categorical(QUANTIZE_KEY, list(self.quantize))

    def complete(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` plus every value that had a single option and so was not sampled."""
        full = dict(params)
        for gid, names in self.choices.items():
            if len(names) == 1:
                full.setdefault(gid + STRATEGY_SUFFIX, names[0])
        full.setdefault(SCHEDULE_KEY, self.schedules[0])
        gated = any(value == DYNAMIC and float(full.get(key[:-len(STRATEGY_SUFFIX)]
                                                        + RATIO_SUFFIX, 0)) > 0
                    for key, value in full.items() if key.endswith(STRATEGY_SUFFIX))
        full.setdefault(QUANTIZE_KEY, "none" if gated else self.quantize[0])
        return full

    def uniform_point(self, ratio: float, depth: int = 0) -> dict[str, Any]:
        """Params of a uniform float policy: every group at one `ratio` in its preferred
        structured strategy, one-shot, snapped to the grid, and the `depth` deepest removable
        blocks removed (other groups with no ratio strategy are left alone)."""
        removed = set(self.removable()[len(self.removable()) - depth:]) if depth else set()
        point = self.point({gid: ratio for gid in self.choices if gid not in removed})
        for gid in removed:
            point[gid + STRATEGY_SUFFIX] = LAYER
            point.pop(gid + RATIO_SUFFIX, None)
        return point

    def effective(self, params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """What of `params` decides the pruned model, hashable: the decisions of groups
        inside a removed block are dropped, since the block goes with them (two policies
        that differ only there build the same model)."""
        removed = [key[:-len(STRATEGY_SUFFIX)] + "." for key, value in params.items()
                   if key.endswith(STRATEGY_SUFFIX) and value == LAYER]
        return tuple(sorted((key, value) for key, value in params.items()
                            if not any(key.startswith(prefix) for prefix in removed)))

    def removable(self) -> tuple[str, ...]:
        """The groups that can be removed whole (residual blocks), in model order."""
        return tuple(gid for gid, names in self.choices.items() if LAYER in names)

    def point(self, ratios: Mapping[str, float]) -> dict[str, Any]:
        """Params of a float one-shot policy: each group in `ratios` at its ratio (snapped to
        the grid, within the group's range) in its preferred structured strategy; the other
        groups are left alone where they can be."""
        point: dict[str, Any] = {}
        for gid, names in self.choices.items():
            strategy = next((s for s in SEED_PREFERENCE if s in names), None)
            if gid not in ratios and UNPRUNED in names:
                strategy = UNPRUNED
            if strategy is None:
                strategy = UNPRUNED if UNPRUNED in names else names[0]
            if len(names) > 1:
                point[gid + STRATEGY_SUFFIX] = strategy
            if strategy != UNPRUNED and STRATEGIES[strategy].fixed_ratio is None:
                ratio = ratios.get(gid, self.ratio_min)
                snapped = self.ratio_min + round((ratio - self.ratio_min) / self.step) * self.step
                point[gid + RATIO_SUFFIX] = round(
                    min(max(snapped, self.ratio_min), self.ratio_high(gid)), 10)
        if len(self.schedules) > 1:
            point[SCHEDULE_KEY] = "oneshot" if "oneshot" in self.schedules else self.schedules[0]
        if len(self.quantize) > 1:
            point[QUANTIZE_KEY] = "none" if "none" in self.quantize else self.quantize[0]
        return point
