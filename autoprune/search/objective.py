"""One trial: prune a copy of the base model, recalibrate, fine-tune, evaluate, time.

Plain Python: no Ray, MLflow or Hydra. Runners wrap it; tests call it directly.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.data.splits import DataSplits
from autoprune.errors import TrialFailed
from autoprune.hardware.latency import Latency, LatencyBackend
from autoprune.pruning import Policy, PrunableGroup, PruneSettings, apply_policy, model_stats
from autoprune.pruning.quantize import quantize_int8
from autoprune.pruning.schedule import ramp
from autoprune.training import Guard, TrainSpec, evaluate, no_guard, recalibrate_batchnorm, train

CALIBRATION_SAMPLES = 256  # training examples that calibrate int8 activation ranges


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a study shares."""

    prune: PruneSettings
    finetune: TrainSpec
    bn_batches: int
    base_latency_ms: float
    schedule_steps: int = 3
    step_epochs: int = 1  # fine-tuning between the steps of an iterative schedule


@dataclass
class TrialResult:
    """Metrics of one pruned, fine-tuned candidate; `model` holds its float weights and
    `deployed` is what was evaluated and timed (the int8 model when the policy quantises)."""

    accuracy: float
    latency: Latency
    speedup: float
    stats: dict[str, float]
    model: nn.Module
    deployed: nn.Module

    def metrics(self) -> dict[str, float]:
        """The numbers a study reports and logs per trial."""
        return {
            "accuracy": self.accuracy, "latency_ms": self.latency.median_ms,
            "latency_p90_ms": self.latency.p90_ms, "latency_cv": self.latency.cv,
            "speedup": self.speedup, **self.stats,
        }


def example_input(data: DataSplits) -> torch.Tensor:
    """A single zero input of the data's shape, for tracing and counting."""
    return torch.zeros(1, *data.input_shape)


def calibration_batch(data: DataSplits, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `size` training examples: fixed, so gradient criteria repeat exactly."""
    return data.x_train[:size], data.y_train[:size]


def prune_and_finetune(
    policy: Policy,
    base_model: nn.Module,
    groups: Sequence[PrunableGroup],
    data: DataSplits,
    settings: TrialSettings,
    guard: Guard = no_guard,
    before_final: Callable[[nn.Module], None] | None = None,
    on_epoch: Callable[[nn.Module, int], None] | None = None,
) -> nn.Module:
    """Return `base_model` pruned by `policy` along its schedule and fine-tuned (float).

    `before_final(model)` is called once the architecture is final, before the last
    fine-tuning; `on_epoch(model, epoch)` after each of its epochs but the last.
    """
    x = example_input(data)
    spec = settings.finetune
    teacher = base_model if spec.distill_alpha > 0 else None
    with guard():
        model = copy.deepcopy(base_model)
    fractions = ramp(policy.schedule, settings.schedule_steps)
    for step, fraction in enumerate(fractions, start=1):
        with guard():
            pruned = apply_policy(model, policy, groups, x, settings.prune,
                                  calibration_batch(data), fraction, inplace=True)
        recalibrate_batchnorm(model, data.x_train, settings.bn_batches, spec.batch_size,
                              spec.seed, guard)
        last = step == len(fractions)
        if last and before_final is not None:
            before_final(model)
        epochs = spec.epochs if last else settings.step_epochs
        callback = None
        if last and on_epoch is not None:
            def callback(epoch: int) -> None:
                on_epoch(model, epoch)
        train(model, data.x_train, data.y_train, dataclasses.replace(spec, epochs=epochs),
              pruned.masks, guard, teacher, callback)
    return model


def deployed_model(model: nn.Module, policy: Policy, data: DataSplits) -> nn.Module:
    """The model as it would be deployed: `model`, or its int8 version when the policy says so."""
    if policy.quantize == "int8":
        try:
            return quantize_int8(model, data.x_train[:CALIBRATION_SAMPLES])
        except RuntimeError as exc:
            raise TrialFailed(str(exc)) from exc
    return model


def run_trial(
    policy: Policy,
    base_model: nn.Module,
    groups: Sequence[PrunableGroup],
    data: DataSplits,
    settings: TrialSettings,
    latency: LatencyBackend,
    guard: Guard = no_guard,
    progress: Callable[[int, float, Latency], None] | None = None,
) -> TrialResult:
    """Return the metrics of `policy` applied to `base_model`; `base_model` is not changed.

    The latency is measured as soon as the architecture is final (weights do not change it),
    so that `progress(epoch, val_accuracy, latency)`, called after each fine-tuning epoch
    but the last, can tell where the trial stands; it may stop the trial.
    Raises TrialFailed when fine-tuning diverges or the accuracy is not a number.
    """
    calibration = data.x_train[:CALIBRATION_SAMPLES] if policy.quantize == "int8" else None
    timings: list[Latency] = []

    def measure(model: nn.Module) -> None:
        # Outside the guard: a measurement needs the cores alone.
        timing = latency.latency(model, refresh=bool(timings), int8_calibration=calibration)
        if not (math.isfinite(timing.median_ms) and timing.median_ms > 0):
            raise TrialFailed(f"latency measurement returned {timing.median_ms} ms")
        timings.append(timing)

    def epoch_done(model: nn.Module, epoch: int) -> None:
        if progress is not None:
            progress(epoch, evaluate(model, data.x_val, data.y_val, guard), timings[-1])

    model = prune_and_finetune(policy, base_model, groups, data, settings, guard, measure,
                               epoch_done if progress is not None else None)
    # Measured again now that the trial's neighbours are past their start-up (a worker
    # importing torch next to the first measurement slows it); the faster is kept.
    measure(model)
    timing = min(timings[-2:], key=lambda t: t.median_ms)
    with guard():
        deployed = deployed_model(model, policy, data)
    accuracy = evaluate(deployed, data.x_val, data.y_val, guard)
    if not math.isfinite(accuracy):
        raise TrialFailed(f"validation accuracy is {accuracy}")
    with guard():
        stats = model_stats(model, example_input(data))
    if calibration is not None:
        stats["size_mb"] = int8_size_mb(model)
    return TrialResult(accuracy=accuracy, latency=timing,
                       speedup=settings.base_latency_ms / timing.median_ms,
                       stats=stats, model=model, deployed=deployed)


def int8_size_mb(model: nn.Module) -> float:
    """Size of `model` with its Conv2d/Linear weights stored as int8, the rest as they are."""
    size = 0
    for module in model.modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + \
                list(module.named_buffers(recurse=False)):
            quantized = name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear))
            size += tensor.numel() * (1 if quantized else tensor.element_size())
    return size / 1e6
