"""`refine`: the width-by-depth grid first, then the front refined by mutation.

A small search budget cannot fit a model of a policy space with a ratio per layer group, but
the coarse shape of the front is cheap to find: one global width ratio crossed with a depth
(the `uniform` grid) gets close to it in a handful of trials. `refine` spends the first part
of the budget on that grid, coarser, and the rest on the region that decides a deployment:
each later trial takes a model on the current front (within `floor` of the reference metric)
and changes it a little, a few groups' ratios moved by a normal step and now and then one
residual block removed or brought back. Policies the grid cannot express (groups pruned
unevenly, middle blocks removed) are reached from the best ones it found. The unpruned model
counts as a member of that front until a trial is as good and faster: the gentlest prunings,
which a coarse grid skips, grow from it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprune.errors import UserError
from autoprune.pruning.policy import RATIO_SUFFIX, STRATEGY_SUFFIX
from autoprune.search.pareto import pareto_front
from autoprune.search.samplers import (
    CONSTRAINTS_ATTR,
    PlannedSampler,
    grid_points,
    unpruned_point,
)
from autoprune.search.space import LAYER
from autoprune.tasks import Objective


@dataclass(frozen=True)
class RefineOptions:
    grid_fraction: float = 0.5  # share of the trials spent on the grid
    floor: float = 0.9  # parents: front models at least this good relative to the reference
    shift_rate: float = 0.5  # chance that every ratio moves together, one or two steps
    rate: float = 0.2  # chance that a group's ratio moves on its own ...
    sigma: float = 0.1  # ... by a normal step of this standard deviation
    depth_rate: float = 0.25  # chance that one residual block is removed or brought back

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> RefineOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"search.options.{unknown[0]} is not an option of the refine "
                            f"sampler; valid: {', '.join(sorted(known))}")
        try:
            opts = cls(**{k: float(v) for k, v in options.items()})
        except (TypeError, ValueError):
            raise UserError("search.options of the refine sampler are numbers; got "
                            f"{dict(options)}") from None
        for name in ("grid_fraction", "floor", "shift_rate", "rate", "depth_rate"):
            if not 0.0 <= getattr(opts, name) <= 1.0:
                raise UserError(f"search.options.{name} must lie in [0, 1], got "
                                f"{getattr(opts, name)}")
        if opts.sigma <= 0:
            raise UserError(f"search.options.sigma must be positive, got {opts.sigma}")
        return opts


class RefineSampler(PlannedSampler):
    """Grid trials first, then mutations of the front's members (see the module)."""

    def __init__(self, space: Any, n_trials: int, seed: int, options: Mapping[str, Any],
                 objective: Objective, reference: float,
                 base_latency_ms: float | None = None) -> None:
        super().__init__(seed)
        self.space = space
        self.options = RefineOptions.from_dict(options)
        self.objective, self.reference = objective, reference
        self.rng = random.Random(seed)
        self.points = grid_points(space, max(1, round(self.options.grid_fraction * n_trials)))
        self.plans: dict[int, dict[str, Any]] = {}
        # The unpruned model, a parent like the trials (at the reference metric and the base
        # latency) when the space can build it and it meets the study's limits.
        base = unpruned_point(space)
        self.unpruned = (base, reference, base_latency_ms) \
            if base is not None and base_latency_ms is not None else None
        # The unpruned model is never a trial: its name (`effective`) counts as taken.
        self.excluded = {space.effective(base)} if base is not None else set()

    def plan(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        if trial.number not in self.plans:
            trials = study.get_trials(deepcopy=False)
            parents = self.parents([t for t in trials if t.state == TrialState.COMPLETE])
            if trial.number < len(self.points) or not parents:
                self.plans[trial.number] = dict(
                    self.points[trial.number % len(self.points)])
            else:
                taken = {self.space.effective(p)
                         for p in [*(t.params for t in trials), *self.plans.values()]}
                self.plans[trial.number] = self.child(parents, taken | self.excluded)
        return self.plans[trial.number]

    def parents(self, done: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
        """The policies of the front of the finished trials (those meeting the constraints,
        when any do) and the unpruned model, without the members below `floor` of the
        reference; while none is above it, the front's best. The unpruned model stays on the
        front until a trial is as good and faster: till then the gentlest prunings grow from
        it, as the fast ones grow from the fastest good trials."""
        done = [t for t in done if t.values and len(t.values) == 2]
        feasible = [t for t in done
                    if all(v <= 0 for v in t.user_attrs.get(CONSTRAINTS_ATTR, []))]
        members = [(t.params, t.values[0], t.values[1]) for t in feasible or done]
        if self.unpruned and members:
            members.append(self.unpruned)
        front = [members[i] for i in pareto_front(
            [(self.objective.score(metric), latency) for _, metric, latency in members])]
        good = [m for m in front
                if self.objective.ratio(self.reference, m[1]) >= self.options.floor]
        best = max(front, key=lambda m: self.objective.score(m[1]), default=None)
        return [params for params, _, _ in good or ([best] if best else [])]

    def child(self, parents: Sequence[Mapping[str, Any]],
              taken: set[tuple[tuple[str, Any], ...]]) -> dict[str, Any]:
        """A mutation of a random parent that builds a model no trial has tried yet
        (`PolicySpace.effective`): twenty draws from each parent in turn, the last one
        drawn when all of them were tried."""
        child: dict[str, Any] = {}
        for params in self.rng.sample(list(parents), len(parents)):
            for _ in range(20):
                child = self.mutate(params)
                if self.space.effective(child) not in taken:
                    return child
        return child

    def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` with some ratios moved and perhaps one block removed or restored; never
        unchanged."""
        opts, space = self.options, self.space
        child = dict(params)
        while child == dict(params):
            shift = 0.0
            if self.rng.random() < opts.shift_rate:
                shift = self.rng.choice((-2, -1, 1, 2)) * space.step
            for key in [k for k in child if k.endswith(RATIO_SUFFIX)]:
                moved = child[key] + shift
                if self.rng.random() < opts.rate:
                    moved += self.rng.gauss(0.0, opts.sigma)
                gid = key[:-len(RATIO_SUFFIX)]
                child[key] = space.point({gid: moved})[key]
            removable = space.removable()
            if removable and self.rng.random() < opts.depth_rate:
                self._toggle(child, self.rng.choice(removable))
        return child

    def _toggle(self, params: dict[str, Any], gid: str) -> None:
        """Remove block `gid`, or bring it back at the policy's mean ratio."""
        key = gid + STRATEGY_SUFFIX
        if params.get(key) != LAYER:
            params[key] = LAYER
            params.pop(gid + RATIO_SUFFIX, None)
            return
        ratios = [v for k, v in params.items() if k.endswith(RATIO_SUFFIX)]
        mean = sum(ratios) / len(ratios) if ratios else self.space.ratio_min
        params.pop(key)
        restored = self.space.point({gid: mean})
        params.update({k: restored[k] for k in (key, gid + RATIO_SUFFIX) if k in restored})
