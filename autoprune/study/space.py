"""What a study searches and how: the policy space, the constraints, the first trials and
the sampler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from autoprune import specs
from autoprune.config import Settings
from autoprune.search.amc_factory import agent_factory
from autoprune.search.objective import calibration
from autoprune.search.reference import Reference
from autoprune.search.samplers import Constraints, make_sampler, resolve_constraints
from autoprune.search.sensitivity import measure_sensitivity
from autoprune.search.space import PolicySpace
from autoprune.study.prepare import Prepared


@dataclass
class Plan:
    space: PolicySpace
    sampler: optuna.samplers.BaseSampler
    constraints: Constraints
    seed_points: list[dict[str, Any]]


def _quantizable(quantize: tuple[str, ...], prepared: Prepared,
                 say: Callable[[str], None]) -> tuple[str, ...]:
    """`quantize` without int8 when the model cannot be quantised (it is then named)."""
    from autoprune.pruning.quantize import quantize_int8
    from autoprune.study.front import first_line

    if "int8" not in quantize:
        return quantize
    try:
        quantize_int8(prepared.base.model, prepared.workload.task.inputs(
            prepared.workload.items(8)))
    except Exception as exc:
        say(f"int8 quantisation is left out: {first_line(exc)}")
        return tuple(q for q in quantize if q != "int8") or ("none",)
    return quantize


def plan_search(settings: Settings, prepared: Prepared, base: Reference, profile: Any,
                say: Callable[[str], None]) -> Plan:
    """The space (narrowed by the sensitivity warm start when asked), constraints resolved
    against the reference, the seed policies and the configured sampler."""
    search, pruning = settings.search, settings.pruning
    constraints = resolve_constraints(search, base.best, base.objective)
    if constraints:
        say(f"constraints: {constraints.describe()}; the front holds only trials that "
            "meet them")
    seed_points: list[dict[str, Any]] = []
    caps: dict[str, float] = {}
    seed_ratio_sets: list[dict[str, float]] = []
    if search.sensitivity:
        say(f"sensitivity warm start: {len(prepared.groups)} groups x "
            f"{len(search.sensitivity_ratios)} ratios, no fine-tuning")
        sensitivity = measure_sensitivity(
            prepared.base.model, prepared.groups, prepared.choices, prepared.workload,
            specs.prune_settings(settings), search.sensitivity_ratios,
            settings.finetune.bn_recalibration_batches, settings.seed,
            calibration(prepared.workload), say, specs.compute(settings.finetune))
        caps = sensitivity.caps(search.sensitivity_max_drop)
        tolerated = (search.sensitivity_max_drop / 4, search.sensitivity_max_drop / 2)
        seed_ratio_sets = [sensitivity.seed_params(t, pruning.ratio_min) for t in tolerated]
    space = PolicySpace(prepared.choices, pruning.ratio_min, pruning.ratio_max,
                        pruning.ratio_step, pruning.schedules,
                        _quantizable(pruning.quantize, prepared, say), caps)
    seed_points += [space.point(r) for r in seed_ratio_sets]
    if caps:
        say("ratio ranges narrowed: " + ", ".join(f"{gid} <= {space.ratio_high(gid):g}"
                                                  for gid in caps))
    seed_points += [space.uniform_point(r) for r in search.seed_ratios]
    agent = None
    if search.sampler == "amc":
        agent = agent_factory(prepared.base.model, prepared.groups, space, prepared.example,
                              specs.prune_settings(settings), profile, base.latency_ms,
                              constraints.max_latency_ms, base.objective, base.best,
                              calibration(prepared.workload))
    sampler = make_sampler(search, settings.seed, space=space, constraints=constraints,
                           agent=agent, reference=base.best, base_latency_ms=base.latency_ms)
    return Plan(space, sampler, constraints, seed_points)
