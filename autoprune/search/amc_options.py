"""`search.options` of `search=amc`: the agent's settings, their defaults and their checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoprune.errors import UserError

AGENT_OPTIONS: dict[str, Any] = {
    "warmup_episodes": 8, "budget_min": 0.25, "budget_max": 0.9, "noise": 0.3,
    "noise_decay": 0.95, "updates_per_episode": 32, "batch_size": 64, "hidden": 64,
    "actor_lr": 1e-3, "critic_lr": 3e-3, "table_points": 6,
}


@dataclass(frozen=True)
class AgentOptions:
    """`search.options` of `search=amc` (see conf/search/amc.yaml)."""

    warmup_episodes: int
    budget_min: float
    budget_max: float
    noise: float
    noise_decay: float
    updates_per_episode: int
    batch_size: int
    hidden: int
    actor_lr: float
    critic_lr: float
    table_points: int

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> AgentOptions:
        values = {**AGENT_OPTIONS, **options}
        try:
            opts = cls(**{k: type(AGENT_OPTIONS[k])(v) for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise UserError(f"search.options of the amc sampler: {exc}") from exc
        if not 0.0 < opts.budget_min <= opts.budget_max <= 1.0:
            raise UserError("search.options.budget_min and budget_max must satisfy "
                            "0 < budget_min <= budget_max <= 1")
        if opts.warmup_episodes < 0 or opts.updates_per_episode < 0 or opts.batch_size < 1 \
                or opts.hidden < 1 or opts.table_points < 2 or opts.noise < 0 \
                or not 0 < opts.noise_decay <= 1:
            raise UserError("search.options of the amc sampler need warmup_episodes >= 0, "
                            "updates_per_episode >= 0, batch_size >= 1, hidden >= 1, "
                            "table_points >= 2, noise >= 0 and 0 < noise_decay <= 1")
        return opts
