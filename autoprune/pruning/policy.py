"""A policy: the per-group pruning decisions of one trial, as plain data (YAML/JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from autoprune.errors import UserError

RATIO_SUFFIX = ".ratio"
STRATEGY_SUFFIX = ".strategy"


@dataclass(frozen=True)
class Decision:
    """How one group is pruned: a strategy name and the fraction to remove, in [0, 1)."""

    strategy: str
    ratio: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise UserError(f"pruning ratio {self.ratio} is outside [0, 1)")


@dataclass(frozen=True)
class Policy:
    """Decisions keyed by group id; groups not named are left unpruned."""

    decisions: Mapping[str, Decision]

    def to_dict(self) -> dict[str, Any]:
        """Return {"groups": {id: {"strategy": ..., "ratio": ...}}} in group order."""
        return {"groups": {gid: {"strategy": d.strategy, "ratio": round(d.ratio, 6)}
                           for gid, d in self.decisions.items()}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_params(self) -> dict[str, Any]:
        """Flat parameters, as Optuna samples and MLflow logs them."""
        params: dict[str, Any] = {}
        for gid, d in self.decisions.items():
            params[gid + STRATEGY_SUFFIX] = d.strategy
            params[gid + RATIO_SUFFIX] = d.ratio
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
        return cls(decisions)

    @classmethod
    def from_yaml(cls, text: str) -> Policy:
        return cls.from_dict(yaml.safe_load(text) or {})

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Policy:
        """Inverse of `to_params`: group ids are the keys without their suffix."""
        decisions = {}
        for key, value in params.items():
            if key.endswith(RATIO_SUFFIX):
                gid = key[: -len(RATIO_SUFFIX)]
                strategy = params.get(gid + STRATEGY_SUFFIX)
                if strategy is None:
                    raise UserError(f"parameter {key!r} has no matching {gid + STRATEGY_SUFFIX!r}")
                decisions[gid] = Decision(str(strategy), float(value))
        return cls(decisions)

    @classmethod
    def uniform(cls, group_ids: list[str], strategy: str, ratio: float) -> Policy:
        return cls({gid: Decision(strategy, ratio) for gid in group_ids})

    def summary(self) -> str:
        """A short human description: strategy counts and mean ratios."""
        active = [d for d in self.decisions.values() if d.ratio > 0]
        if not active:
            return "unpruned"
        parts = []
        for name in sorted({d.strategy for d in active}):
            ratios = [d.ratio for d in active if d.strategy == name]
            mean = sum(ratios) / len(ratios)
            parts.append(f"{name} {len(ratios)}/{len(self.decisions)} @{mean:.2f}")
        return ", ".join(parts)
