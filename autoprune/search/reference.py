"""The unpruned model's numbers that every trial is compared with.

A briefly trained base keeps improving with more training, so a pruned model fine-tuned for a
trial's budget could look better than the base only because it trained longer. The study
therefore also fine-tunes the unpruned base with a trial's budget: drops, constraints and
claims are measured from the better of the two (`best`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoprune.tasks import Objective


@dataclass(frozen=True)
class Reference:
    """The base model's primary metric (validation, as trials are scored during the search),
    its latency and test metric, and the metric of its fine-tuned twin (None if not run)."""

    objective: Objective
    metric: float
    latency_ms: float
    test_metric: float = math.nan
    finetuned: float | None = None

    @property
    def best(self) -> float:
        """The better of the base model and its fine-tuned twin."""
        if self.finetuned is None or not math.isfinite(self.finetuned):
            return self.metric
        return self.objective.best([self.metric, self.finetuned])

    def metrics(self) -> dict[str, float]:
        """The study run's base metrics, named after the task's metric."""
        name = self.objective.metric
        found = {f"base_{name}": self.metric, f"base_test_{name}": self.test_metric,
                 "base_latency_ms": self.latency_ms}
        if self.finetuned is not None:
            found[f"base_{name}_finetuned"] = self.finetuned
        return found
