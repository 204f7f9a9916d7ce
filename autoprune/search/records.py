"""What a finished trial leaves behind, in a form every reporter (terminal, MLflow) shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The error of a trial the study stopped before it finished: it does not count toward the
# budget, and a resumed study runs it again.
INTERRUPTED = "interrupted"


@dataclass
class TrialRecord:
    """One trial of a study: its policy params, outcome and metrics (the task's metrics under
    their own names, latency_ms, speedup, ...)."""

    number: int
    params: dict[str, Any]
    state: str  # "complete", "failed" or "stopped" (early, hopeless)
    metrics: dict[str, float] = field(default_factory=dict)
    latency_source: str = ""
    summary: str = ""
    strategies: tuple[str, ...] = ()  # strategies the policy uses (ratio > 0), schedule, int8
    error: str = ""
    weights_key: str | None = None  # where the runner kept the fine-tuned weights
    pareto: bool = False
    feasible: bool = True  # meets the study's constraints (complete trials only)
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # where it trained (device, GPU ids)
    started: float | None = None  # when the trial started and finished (time.time())
    finished: float | None = None
    # Learning curves: metric name -> (step, value, time.time()) as the trial reported them
    # (the training loss while it fine-tuned, its validation metric at each rung).
    curves: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)

    def final_step(self) -> int:
        """The step its final metrics are logged at: where its fine-tuning ended. Anything
        logged later for it (the front timed again) goes at this step too, so that MLflow's
        latest value of a metric is the last one logged."""
        steps = self.metrics.get("steps", 0.0)
        return int(steps) if math.isfinite(steps) else 0
