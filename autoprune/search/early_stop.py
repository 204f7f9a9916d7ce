"""Multi-fidelity fine-tuning: trials checked at rungs of their step budget and stopped there
when they cannot reach the front (a Tune stopper, run on the driver)."""

from __future__ import annotations

from collections.abc import Sequence

from ray import tune

from autoprune.tasks import Objective

# The result a trial reports at each rung of its fine-tuning.
CHECK_STEP, CHECK_METRIC, CHECK_LATENCY = "check_step", "check_metric", "check_latency_ms"
CHECK_SOURCE = "check_latency_source"  # measured, or predicted (adaptive measurement)


def rung_steps(rungs: Sequence[float], steps: int) -> tuple[int, ...]:
    """The fine-tuning steps (of `steps`) at which a trial is checked: each fraction in
    `rungs` rounded, at least the first step and before the last."""
    return tuple(sorted({s for s in (round(f * steps) for f in rungs) if 1 <= s < steps}))


class EarlyStop(tune.Stopper):
    """Asynchronous successive halving over the fine-tuning steps, for two objectives.

    A trial reports its validation metric at each rung (`rung_steps`), with its latency,
    measured already (the weights do not change it). It goes on past the rung only when no
    trial that reached that rung before it is at least as fast and was better there by more
    than `margin` (relative to its value): each rung passes on its front, widened by the
    noise margin, and what falls behind it stops, its remaining steps saved. Trials are
    compared like with like, at the same step.
    """

    def __init__(self, enabled: bool, margin: float, steps: int, objective: Objective,
                 rungs: Sequence[float] = (0.5,)) -> None:
        self.rungs = rung_steps(rungs, steps) if enabled else ()
        self.enabled = bool(self.rungs)
        self.margin = margin
        self.steps = steps
        self.objective = objective
        self.reached: dict[int, list[tuple[float, float]]] = {}  # step -> (metric, latency)
        self.stopped: dict[str, str] = {}  # trial id -> why
        self.gave_up: str | None = None  # why the whole study stops (set by the driver)

    def __call__(self, trial_id: str, result: dict) -> bool:
        step = result.get(CHECK_STEP)
        if not self.enabled or step not in self.rungs:
            return False
        value, latency = result[CHECK_METRIC], result[CHECK_LATENCY]
        objective = self.objective
        earlier = self.reached.setdefault(step, [])
        better = [(m, lat) for m, lat in earlier if lat <= latency
                  and objective.relative_worsening(m, value) > self.margin]
        earlier.append((value, latency))
        if not better:
            return False
        best = objective.best(m for m, _ in better)
        self.stopped[trial_id] = (
            f"after {step}/{self.steps} steps {objective.metric} "
            f"{objective.format(value)} at {latency:.3f} ms; a trial at least as fast had "
            f"{objective.format(best)} then")
        return True

    def stop_all(self) -> bool:
        return self.gave_up is not None
