"""One trial: prune a copy of the base model, recalibrate, fine-tune, evaluate, time.

Plain Python: no Ray, MLflow or Hydra. Runners wrap it; tests call it directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.data.splits import DataSplits
from autoprune.errors import TrialFailed
from autoprune.hardware.latency import Latency, LatencyBackend
from autoprune.pruning import Policy, PrunableGroup, apply_policy, model_stats
from autoprune.training import Guard, TrainSpec, evaluate, no_guard, recalibrate_batchnorm, train


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a study shares."""

    alignment: int
    importance: str
    finetune: TrainSpec
    bn_batches: int
    base_latency_ms: float
    base_nonzero_params: float
    ignored: tuple[str, ...] = ()


@dataclass
class TrialResult:
    """Metrics of one pruned, fine-tuned candidate, and the model itself."""

    accuracy: float
    latency: Latency
    speedup: float
    params: float
    macs: float
    size_mb: float
    sparsity: float
    model: nn.Module

    def metrics(self) -> dict[str, float]:
        """The numbers a study reports and logs per trial."""
        return {
            "accuracy": self.accuracy, "latency_ms": self.latency.median_ms,
            "latency_p90_ms": self.latency.p90_ms, "latency_cv": self.latency.cv,
            "speedup": self.speedup, "params": self.params, "macs": self.macs,
            "size_mb": self.size_mb, "sparsity": self.sparsity,
        }


def example_input(data: DataSplits) -> torch.Tensor:
    """A single zero input of the data's shape, for tracing and counting."""
    return torch.zeros(1, *data.input_shape)


def run_trial(
    policy: Policy,
    base_model: nn.Module,
    groups: Sequence[PrunableGroup],
    data: DataSplits,
    settings: TrialSettings,
    latency: LatencyBackend,
    guard: Guard = no_guard,
) -> TrialResult:
    """Return the metrics of `policy` applied to `base_model`; `base_model` is not changed.

    Raises TrialFailed when fine-tuning diverges or the accuracy is not a number.
    """
    x = example_input(data)
    with guard():
        pruned = apply_policy(base_model, policy, groups, x, settings.alignment,
                              settings.importance, settings.ignored)
    model = pruned.model
    recalibrate_batchnorm(model, data.x_train, settings.bn_batches,
                          settings.finetune.batch_size, settings.finetune.seed, guard)
    train(model, data.x_train, data.y_train, settings.finetune, pruned.masks, guard)
    accuracy = evaluate(model, data.x_val, data.y_val, guard)
    if not math.isfinite(accuracy):
        raise TrialFailed(f"validation accuracy is {accuracy}")
    timing = latency.latency(model)  # outside the guard: a measurement needs the cores alone
    if not (math.isfinite(timing.median_ms) and timing.median_ms > 0):
        raise TrialFailed(f"latency measurement returned {timing.median_ms} ms")
    with guard():
        stats = model_stats(model, x)
    return TrialResult(
        accuracy=accuracy,
        latency=timing,
        speedup=settings.base_latency_ms / timing.median_ms,
        params=stats["params"],
        macs=stats["macs"],
        size_mb=stats["size_mb"],
        sparsity=1.0 - stats["nonzero_params"] / settings.base_nonzero_params,
        model=model,
    )
