"""Early stopping of trials that cannot reach the front (a Tune stopper, run on the driver)."""

from __future__ import annotations

from ray import tune

from autoprune.tasks import Objective

# The result a trial reports once, halfway through its fine-tuning.
CHECK_STEP, CHECK_METRIC, CHECK_LATENCY = "check_step", "check_metric", "check_latency_ms"


class EarlyStop(tune.Stopper):
    """Stops a trial halfway through its fine-tuning when it cannot reach the front.

    Trials report their validation metric at the halfway step, with the latency already
    measured (it does not depend on the weights). A trial is compared like with like: it
    stops when a finished trial at least as fast was better at that same step by more than
    `margin`, relative to its value.
    """

    def __init__(self, enabled: bool, margin: float, steps: int,
                 objective: Objective) -> None:
        self.enabled = enabled and steps >= 2
        self.margin = margin
        self.check_step = steps // 2
        self.steps = steps
        self.objective = objective
        self.midway: dict[str, float] = {}  # trial id -> metric at the check step
        self.finished: list[tuple[float, float]] = []  # (metric midway, latency_ms)
        self.stopped: dict[str, str] = {}  # trial id -> why
        self.gave_up: str | None = None  # why the whole study stops (set by the driver)

    def __call__(self, trial_id: str, result: dict) -> bool:
        if not self.enabled or result.get(CHECK_STEP) != self.check_step:
            return False
        value, latency = result[CHECK_METRIC], result[CHECK_LATENCY]
        self.midway[trial_id] = value
        objective = self.objective
        better = [(m, lat) for m, lat in self.finished if lat <= latency
                  and objective.relative_worsening(m, value) > self.margin]
        if not better:
            return False
        best = objective.best(m for m, _ in better)
        self.stopped[trial_id] = (
            f"after {self.check_step}/{self.steps} steps {objective.metric} "
            f"{objective.format(value)} at {latency:.3f} ms; a finished trial at least as "
            f"fast had {objective.format(best)} then")
        return True

    def finish(self, trial_id: str, latency_ms: float) -> None:
        """A trial completed: it becomes a reference for the trials after it."""
        if trial_id in self.midway:
            self.finished.append((self.midway[trial_id], latency_ms))

    def stop_all(self) -> bool:
        return self.gave_up is not None
