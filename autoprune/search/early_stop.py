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

    With `curves`, a trial behind at a rung goes on when the finished trials' learning curves
    say it may still make the front: some trial that was no better at that rung (within the
    margin) ended with a metric no finished trial at least as fast beats by the margin. Early
    in fine-tuning, models that recover at different paces (a block removed leaves the rest
    intact; a narrowed layer has to relearn) rank otherwise than at the end.
    """

    def __init__(self, enabled: bool, margin: float, steps: int, objective: Objective,
                 rungs: Sequence[float] = (0.5,), curves: bool = False) -> None:
        self.rungs = rung_steps(rungs, steps) if enabled else ()
        self.enabled = bool(self.rungs)
        self.margin = margin
        self.steps = steps
        self.objective = objective
        self.curves = curves
        self.reached: dict[int, list[tuple[float, float]]] = {}  # step -> (metric, latency)
        self.at_rungs: dict[str, dict[int, float]] = {}  # trial id -> its metric per rung
        self.finished: list[tuple[dict[int, float], float, float]] = []  # (rungs, metric, ms)
        self.stopped: dict[str, str] = {}  # trial id -> why
        self.gave_up: str | None = None  # why the whole study stops (set by the driver)

    def __call__(self, trial_id: str, result: dict) -> bool:
        step = result.get(CHECK_STEP)
        if not self.enabled:
            return False
        if step is None:
            self._finish(trial_id, result)
            return False
        if step not in self.rungs:
            return False
        value, latency = result[CHECK_METRIC], result[CHECK_LATENCY]
        objective = self.objective
        self.at_rungs.setdefault(trial_id, {})[step] = value
        earlier = self.reached.setdefault(step, [])
        better = [(m, lat) for m, lat in earlier if lat <= latency
                  and objective.relative_worsening(m, value) > self.margin]
        earlier.append((value, latency))
        if not better or (self.curves and self._may_reach_front(step, value, latency)):
            return False
        best = objective.best(m for m, _ in better)
        self.stopped[trial_id] = (
            f"after {step}/{self.steps} steps {objective.metric} "
            f"{objective.format(value)} at {latency:.3f} ms; a trial at least as fast had "
            f"{objective.format(best)} then")
        return True

    def _finish(self, trial_id: str, result: dict) -> None:
        """Keep a trial's curve at the rungs with its final metric, once it has one."""
        metric = result.get(self.objective.metric)
        if trial_id in self.at_rungs and metric is not None and "latency_ms" in result:
            self.finished.append((self.at_rungs.pop(trial_id), float(metric),
                                  float(result["latency_ms"])))

    def _may_reach_front(self, step: int, value: float, latency: float) -> bool:
        """Whether a finished trial no better than `value` at `step` ended where no finished
        trial at least as fast as `latency` beats it by the margin."""
        worse = self.objective.relative_worsening
        hopes = [final for rungs, final, _ in self.finished
                 if step in rungs and worse(rungs[step], value) <= self.margin]
        if not hopes:
            return False
        hope = self.objective.best(hopes)
        return not any(ms <= latency and worse(final, hope) > self.margin
                       for _, final, ms in self.finished)

    def stop_all(self) -> bool:
        return self.gave_up is not None
