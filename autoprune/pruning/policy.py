"""A policy: the per-group pruning decisions of one trial, as plain data (YAML/JSON).

Besides the per-group decisions a policy holds two global choices: the schedule that reaches
the ratios (`oneshot`, `iterative`, `agp`) and whether the result is quantised (`none`, `int8`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from autoprune.config import parse_yaml
from autoprune.errors import UserError

RATIO_SUFFIX = ".ratio"
STRATEGY_SUFFIX = ".strategy"
SCHEDULE_KEY = "schedule"
QUANTIZE_KEY = "quantize"
UNPRUNED = "none"  # a group's strategy when the search leaves it alone


@dataclass(frozen=True)
class Decision:
    """How one group is pruned: a strategy name and the fraction of the group it removes."""

    strategy: str
    ratio: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise UserError(f"pruning ratio {self.ratio} is outside [0, 1]")


@dataclass(frozen=True)
class Policy:
    """Decisions keyed by group id (groups not named are left unpruned) and global choices."""

    decisions: Mapping[str, Decision]
    schedule: str = "oneshot"
    quantize: str = "none"

    def to_dict(self) -> dict[str, Any]:
        """Return {"groups": {id: {"strategy", "ratio"}}, "schedule", "quantize"}."""
        return {"groups": {gid: {"strategy": d.strategy, "ratio": round(d.ratio, 6)}
                           for gid, d in self.decisions.items()},
                "schedule": self.schedule, "quantize": self.quantize}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_params(self) -> dict[str, Any]:
        """Flat parameters, as Optuna samples and MLflow logs them."""
        params: dict[str, Any] = {}
        for gid, d in self.decisions.items():
            params[gid + STRATEGY_SUFFIX] = d.strategy
            params[gid + RATIO_SUFFIX] = d.ratio
        params[SCHEDULE_KEY] = self.schedule
        params[QUANTIZE_KEY] = self.quantize
        return params

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        groups = data.get("groups") if isinstance(data, Mapping) else None
        if not isinstance(groups, Mapping):
            raise UserError("a policy needs a 'groups' mapping of group id -> strategy, ratio")
        decisions = {}
        for gid, entry in groups.items():
            if not isinstance(entry, Mapping) or "strategy" not in entry or "ratio" not in entry:
                raise UserError(f"policy group {gid!r} needs 'strategy' and 'ratio'")
            decisions[str(gid)] = Decision(str(entry["strategy"]), float(entry["ratio"]))
        return cls(decisions, str(data.get(SCHEDULE_KEY, "oneshot")),
                   str(data.get(QUANTIZE_KEY, "none")))

    @classmethod
    def from_yaml(cls, text: str) -> Policy:
        return cls.from_dict(parse_yaml(text, "the policy") or {})

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Policy:
        """Inverse of `to_params`. A strategy without a ratio takes its fixed ratio; a group
        whose strategy is "none" is left out."""
        from autoprune.pruning.strategies import get_strategy

        decisions = {}
        for key, value in params.items():
            if key.endswith(RATIO_SUFFIX) and key[:-len(RATIO_SUFFIX)] + STRATEGY_SUFFIX \
                    not in params:
                raise UserError(f"parameter {key!r} has no matching "
                                f"{key[:-len(RATIO_SUFFIX)] + STRATEGY_SUFFIX!r}")
            if not key.endswith(STRATEGY_SUFFIX) or value == UNPRUNED:
                continue
            gid = key[: -len(STRATEGY_SUFFIX)]
            strategy = get_strategy(str(value))
            ratio = params.get(gid + RATIO_SUFFIX, strategy.fixed_ratio)
            if ratio is None:
                raise UserError(f"parameter {key!r} has no matching {gid + RATIO_SUFFIX!r}")
            decisions[gid] = Decision(strategy.name, float(ratio))
        return cls(decisions, str(params.get(SCHEDULE_KEY, "oneshot")),
                   str(params.get(QUANTIZE_KEY, "none")))

    @classmethod
    def uniform(cls, group_ids: list[str], strategy: str, ratio: float) -> Policy:
        return cls({gid: Decision(strategy, ratio) for gid in group_ids})

    def used(self) -> tuple[str, ...]:
        """Strategies that remove something, then the schedule and quantisation if not plain."""
        names = sorted({d.strategy for d in self.decisions.values() if d.ratio > 0})
        if names and self.schedule != "oneshot":
            names.append(self.schedule)
        if self.quantize != "none":
            names.append(self.quantize)
        return tuple(names)

    def summary(self) -> str:
        """A short human description: strategy counts and mean ratios, schedule, int8."""
        active = [d for d in self.decisions.values() if d.ratio > 0]
        parts = []
        for name in sorted({d.strategy for d in active}):
            ratios = [d.ratio for d in active if d.strategy == name]
            mean = sum(ratios) / len(ratios)
            parts.append(f"{name} {len(ratios)}/{len(self.decisions)} @{mean:.2f}")
        if self.schedule != "oneshot" and active:
            parts.append(self.schedule)
        if self.quantize != "none":
            parts.append(self.quantize)
        return ", ".join(parts) or "unpruned"
