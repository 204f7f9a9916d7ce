"""Search methods chosen by `search=<name>`, all Optuna samplers.

Optuna's own: multivariate TPE, NSGA-II, NSGA-III, GP (Bayesian optimisation) and random.
Ours: `uniform`, the width-by-depth grid users try first; `refine`, that grid then the front
refined by mutation (`autoprune.search.refine`); and `amc`, the reinforcement-learning agent
of `autoprune.search.amc`. Being samplers, all of them share Optuna's storage,
Ray Tune's parallel trials and the MLflow logging unchanged.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial

from autoprune.config import SearchConfig
from autoprune.errors import UserError
from autoprune.tasks import Objective

CONSTRAINTS_ATTR = "constraints"  # trial user attribute: values <= 0 mean satisfied


ACCURACY = Objective("accuracy", "maximize")


@dataclass(frozen=True)
class Constraints:
    """The study's limits, absolute: a latency and the worst acceptable value of the primary
    metric (a drop from the base reference is resolved before)."""

    max_latency_ms: float | None = None
    metric_bound: float | None = None
    objective: Objective = ACCURACY

    def __bool__(self) -> bool:
        return self.max_latency_ms is not None or self.metric_bound is not None

    def values(self, metric: float, latency_ms: float) -> list[float]:
        """Optuna's constraint values: each <= 0 when its limit is met."""
        values = []
        if self.max_latency_ms is not None:
            values.append(latency_ms - self.max_latency_ms)
        if self.metric_bound is not None:
            values.append(self.objective.score(self.metric_bound)
                          - self.objective.score(metric))
        return values

    def named(self, metric: float, latency_ms: float) -> dict[str, float]:
        """The constraint values by name, as `Trial.set_constraint` stores them (every sampler
        that honours constraints, and `study.best_trials`, read them there)."""
        names = [n for n, limit in (("max_latency_ms", self.max_latency_ms),
                                    ("metric_bound", self.metric_bound)) if limit is not None]
        return dict(zip(names, self.values(metric, latency_ms), strict=True))

    def met(self, metric: float, latency_ms: float) -> bool:
        return all(v <= 0 for v in self.values(metric, latency_ms))

    def describe(self) -> str:
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:.4g} ms")
        if self.metric_bound is not None:
            sign = ">=" if self.objective.maximize else "<="
            parts.append(f"{self.objective.metric} {sign} "
                         f"{self.objective.format(self.metric_bound)}")
        return " and ".join(parts) or "none"


def resolve_constraints(cfg: SearchConfig, reference: float,
                        objective: Objective = ACCURACY) -> Constraints:
    """The configured constraints, a drop turned into a bound on the primary metric measured
    from `reference` (the better of the base model and its fine-tuned twin)."""
    named = {"min_accuracy": cfg.min_accuracy, "max_accuracy_drop": cfg.max_accuracy_drop}
    for key, value in named.items():
        if value is not None and objective.metric != "accuracy":
            generic = "metric_limit" if key == "min_accuracy" else "max_drop"
            raise UserError(f"search.{key} limits accuracy, and this task's metric is "
                            f"{objective.metric}: use search.{generic} or "
                            "search.max_relative_drop")
    bound = cfg.metric_limit if cfg.metric_limit is not None else cfg.min_accuracy
    drop = cfg.max_drop if cfg.max_drop is not None else cfg.max_accuracy_drop
    if drop is not None:
        bound = objective.bound(reference, drop)
    if cfg.max_relative_drop is not None:
        bound = objective.bound(reference, cfg.max_relative_drop * abs(reference))
    return Constraints(cfg.max_latency_ms, bound, objective)


class PlannedSampler(optuna.samplers.BaseSampler):
    """A sampler that decides all of a trial's params at once (`plan`) and hands them out as
    Optuna asks for them; a param the plan lacks, or whose value does not fit the
    distribution asked for, is sampled at random."""

    def __init__(self, seed: int) -> None:
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    @abc.abstractmethod
    def plan(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """Every param of `trial`, decided together."""

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        value = self.plan(study, trial).get(param_name)
        if isinstance(param_distribution, CategoricalDistribution):
            if value in param_distribution.choices:
                return value
        elif isinstance(param_distribution, FloatDistribution) and value is not None:
            if param_distribution.low <= value <= param_distribution.high:
                return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


class UniformSampler(PlannedSampler):
    """The grid a user would write by hand: one global ratio for every group (in each group's
    preferred structured strategy) crossed with a depth, the number of residual blocks
    removed from the deepest. `n_trials` cells: every depth from 0 to the removable blocks,
    ratios swept evenly from the space's smallest to its largest, each a different model
    (`grid_points`); trials past the budget wrap around the grid."""

    def __init__(self, space: Any, n_trials: int) -> None:
        super().__init__(seed=0)
        self.space = space
        self.points = grid_points(space, n_trials)

    def plan(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return dict(self.points[trial.number % len(self.points)])


def grid(lo: float, hi: float, blocks: int, n_trials: int) -> list[tuple[float, int]]:
    """`n_trials` (ratio, depth) cells: depths 0..blocks (fewer when the budget is small),
    each with an even sweep of ratios (never the unpruned model; a single ratio is the
    middle one); shallow depths get the remainder. Ordered so that every prefix spreads over
    the grid (depths alternate, ratios interleave)."""
    depths = min(blocks + 1, n_trials)
    per = [n_trials // depths + (d < n_trials % depths) for d in range(depths)]
    columns = []
    for depth, count in enumerate(per):
        if depth == 0 and lo == 0.0:  # ratio 0 at depth 0 is the base model itself
            ratios = [lo + (i + 1) * (hi - lo) / count for i in range(count)]
        elif count == 1:
            ratios = [(lo + hi) / 2]
        else:
            ratios = [lo + i * (hi - lo) / (count - 1) for i in range(count)]
        columns.append(_spread(ratios))
    cells = []
    for i in range(max(per)):
        cells += [(column[i], d) for d, column in enumerate(columns) if i < len(column)]
    return cells


def grid_points(space: Any, n_trials: int) -> list[dict[str, Any]]:
    """`n_trials` uniform points of `space` (`grid` cells) that build different models: cells
    that collapse into one (every block removed, whatever the ratio) are tried once, and the
    budget they leave goes to the smallest finer sweep that fills it, up to four times the
    cells (at once when the space has fewer uniform models than `n_trials`). A sweep fine
    enough to snap a ratio to 0 at depth 0 would build the unpruned model: never a point."""
    base = _base_model(space)
    # When no sweep can fill the budget, go straight to the finest.
    first = 4 * n_trials if n_trials > _uniform_models(space, base) else n_trials
    points: list[dict[str, Any]] = []
    for size in range(first, 4 * n_trials + 1):
        points, seen = [], {base}
        for ratio, depth in grid(space.ratio_min, space.ratio_max, len(space.removable()),
                                 size):
            point = space.uniform_point(ratio, depth)
            model = space.effective(point)
            if model not in seen:
                seen.add(model)
                points.append(point)
        if len(points) >= n_trials:
            return points[:n_trials]
    return points


def _uniform_models(space: Any, base: Any) -> int:
    """How many different models other than `base` (`_base_model`) the uniform points of
    `space` can build: every ratio of its grid at every depth (a bound on what any sweep of
    `grid` reaches)."""
    steps = round((space.ratio_max - space.ratio_min) / space.step)
    models = {space.effective(space.uniform_point(space.ratio_min + i * space.step, depth))
              for i in range(steps + 1) for depth in range(len(space.removable()) + 1)}
    return len(models - {base})


def unpruned_point(space: Any) -> dict[str, Any] | None:
    """The point of `space` that builds the unpruned model, when its ratios start at 0 (else
    None: no point builds it)."""
    return space.uniform_point(0.0, 0) if space.ratio_min == 0 else None


def _base_model(space: Any) -> Any:
    """The unpruned model as `effective` names it (None when no point of `space` builds it)."""
    point = unpruned_point(space)
    return space.effective(point) if point is not None else None


def _spread(values: list[float]) -> list[float]:
    """`values` reordered so that each prefix covers their range: ends first, then midpoints."""
    order, queue = [0, len(values) - 1] if len(values) > 1 else [0], [(0, len(values) - 1)]
    while queue:
        a, b = queue.pop(0)
        if b - a > 1:
            m = (a + b) // 2
            order.append(m)
            queue += [(a, m), (m, b)]
    return [values[i] for i in order]


def make_sampler(cfg: SearchConfig, seed: int, *, space: Any = None,
                 constraints: Constraints | None = None,
                 agent: Callable[..., optuna.samplers.BaseSampler] | None = None,
                 reference: float = 1.0,
                 base_latency_ms: float | None = None) -> optuna.samplers.BaseSampler:
    """Return the configured sampler, seeded; bad options raise UserError.

    `space` (a PolicySpace) is needed by `uniform` and `refine` (which judges trials against
    the base `reference` metric, and grows gentle prunings from the unpruned model measured
    at `base_latency_ms`); `agent` builds the `amc` sampler (it needs the model's
    groups and latency model). Without them the options are only checked.
    """
    options = dict(cfg.options)
    if cfg.sampler == "refine":
        from autoprune.search.refine import RefineOptions, RefineSampler

        RefineOptions.from_dict(options)  # raises UserError on bad values
        if space is None:
            return optuna.samplers.RandomSampler(seed=seed)
        limits = constraints if constraints is not None else Constraints()  # no limits is falsy
        if base_latency_ms is not None and not limits.met(reference, base_latency_ms):
            base_latency_ms = None  # the unpruned model is no parent when it breaks a limit
        return RefineSampler(space, cfg.n_trials, seed, options, limits.objective, reference,
                             base_latency_ms)
    if cfg.sampler in ("uniform", "amc"):
        from autoprune.search.amc_options import AGENT_OPTIONS

        allowed = {"uniform": {}, "amc": AGENT_OPTIONS}[cfg.sampler]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UserError(f"search.options.{unknown[0]} is not an option of the "
                            f"{cfg.sampler} sampler; valid: {', '.join(allowed) or 'none'}")
        if cfg.sampler == "uniform":
            return UniformSampler(space, cfg.n_trials) if space is not None else \
                optuna.samplers.RandomSampler(seed=seed)
        if agent is None:
            from autoprune.search.amc_options import AgentOptions

            AgentOptions.from_dict(options)  # raises UserError on bad values
            return optuna.samplers.RandomSampler(seed=seed)
        return agent(options=options, seed=seed)
    factories: dict[str, Any] = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "nsga3": optuna.samplers.NSGAIIISampler,
        "gp": optuna.samplers.GPSampler,
        "random": optuna.samplers.RandomSampler,
    }
    if cfg.sampler == "tpe":
        # Several trials run at once: let pending ones count as "bad" so TPE spreads out.
        options.setdefault("constant_liar", cfg.concurrency > 1)
    if cfg.sampler == "gp":
        # The policy space is conditional; the GP samples what it cannot model at random.
        options.setdefault("warn_independent_sampling", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factories[cfg.sampler](seed=seed, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"search.options do not fit the {cfg.sampler} sampler: {exc}") from exc
