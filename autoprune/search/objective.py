"""One trial: prune a copy of the base model, recalibrate, fine-tune, evaluate, time.

Plain Python: no Ray, MLflow or Hydra. Runners wrap it; tests call it directly.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from autoprune.errors import TrialFailed
from autoprune.hardware.latency import Latency, LatencyBackend
from autoprune.pruning import Policy, PrunableGroup, PruneSettings, apply_policy, model_stats
from autoprune.pruning.apply import Calibration
from autoprune.pruning.quantize import quantize_int8
from autoprune.pruning.schedule import ramp
from autoprune.search.stopwatch import Stopwatch
from autoprune.training import (
    Checkpoints,
    Guard,
    Masks,
    Resume,
    TrainSpec,
    evaluate,
    no_guard,
    recalibrate_batchnorm,
    train,
)
from autoprune.workload import Workload

CALIBRATION_SAMPLES = 256  # training examples that calibrate int8 activation ranges
CALIBRATION_BATCH = 64  # training examples that gradient criteria score channels on
# Called during fine-tuning: (step, steps, loss) after each step; (step, metrics, latency)
# at each check step (a rung of multi-fidelity fine-tuning), where the trial may be stopped.
OnProgress = Callable[[int, int, float], None]
OnCheck = Callable[[int, dict[str, float], Latency], None]


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a study shares."""

    prune: PruneSettings
    finetune: TrainSpec
    bn_batches: int
    base_latency_ms: float
    schedule_steps: int = 3
    schedule_finetune_steps: int = 17  # fine-tuning between the steps of an iterative schedule
    check_steps: tuple[int, ...] = ()  # fine-tuning steps after which `on_check` is called
    # Fine-tuning steps after which a trial hands out what resumes it (a retried trial's
    # worker died); none when a trial is never retried.
    checkpoint_steps: tuple[int, ...] = ()


@dataclass
class TrialCheckpoint:
    """A trial's fine-tune in progress, as a retried trial picks it up: the pruned model
    (architecture and weights after `state.step`), its masks, the optimiser's state."""

    model: nn.Module
    masks: Masks | None
    state: Resume


OnCheckpoint = Callable[[TrialCheckpoint], None]


@dataclass
class TrialResult:
    """Metrics of one pruned, fine-tuned candidate; `model` holds its float weights (on the
    CPU) and `deployed` is what was evaluated and timed (the int8 model when the policy
    quantises)."""

    metrics: dict[str, float]  # the task's metrics on the validation (sub)set
    latency: Latency
    speedup: float
    stats: dict[str, float]
    model: nn.Module
    deployed: nn.Module

    def report(self) -> dict[str, float]:
        """The numbers a study reports and logs per trial."""
        uncertain = self.latency.source == "predicted" and self.latency.uncertainty > 0
        return {**self.metrics, "latency_ms": self.latency.median_ms,
                "latency_p90_ms": self.latency.p90_ms, "latency_cv": self.latency.cv,
                **({"latency_uncertainty": self.latency.uncertainty} if uncertain else {}),
                "speedup": self.speedup, **self.stats}


def calibration(workload: Workload) -> Calibration:
    """The fixed training batch that gradient criteria score channels on."""
    return Calibration(workload.task, workload.items(CALIBRATION_BATCH))


def int8_inputs(workload: Workload) -> Any:
    """Model inputs that calibrate int8 activation ranges."""
    return workload.task.inputs(workload.items(CALIBRATION_SAMPLES))


def prune_and_finetune(
    policy: Policy,
    base_model: nn.Module,
    groups: Sequence[PrunableGroup],
    workload: Workload,
    settings: TrialSettings,
    guard: Guard = no_guard,
    before_final: Callable[[nn.Module], None] | None = None,
    on_step: Callable[[nn.Module, int, float], None] | None = None,
    watch: Stopwatch | None = None,
    checkpoint: OnCheckpoint | None = None,
) -> nn.Module:
    """Return `base_model` pruned by `policy` along its schedule and fine-tuned (float, left
    on the training device).

    `before_final(model)` is called once the architecture is final, before the last
    fine-tuning; `on_step(model, step, loss)` after each of its steps; `watch` counts the
    seconds spent pruning and training.
    """
    watch = watch or Stopwatch()
    x = workload.example()
    spec = settings.finetune
    teacher = base_model if spec.distill_alpha > 0 else None
    with watch.phase("prune"), guard():
        model = copy.deepcopy(base_model)
    fractions = ramp(policy.schedule, settings.schedule_steps)
    for step, fraction in enumerate(fractions, start=1):
        with watch.phase("prune"), guard():
            model.cpu()
            pruned = apply_policy(model, policy, groups, x, settings.prune,
                                  calibration(workload), fraction, inplace=True)
        with watch.phase("train"):
            recalibrate_batchnorm(model, workload, settings.bn_batches, spec.seed,
                                  spec.compute, guard)
        last = step == len(fractions)
        if last and before_final is not None:
            before_final(model)
        steps = spec.steps if last else settings.schedule_finetune_steps
        callback = None
        if last and on_step is not None:
            def callback(step: int, loss: float) -> None:
                on_step(model, step, loss)
        saves = _checkpoints(settings, checkpoint, model, pruned.masks) if last else None
        with watch.phase("train"):
            train(model, workload, dataclasses.replace(spec, steps=steps), pruned.masks, guard,
                  teacher, callback, checkpoints=saves)
    return model


def _checkpoints(settings: TrialSettings, checkpoint: OnCheckpoint | None, model: nn.Module,
                 masks: Masks | None) -> Checkpoints | None:
    """When the fine-tune of `model` hands `checkpoint` what resumes it (None: never)."""
    if checkpoint is None:
        return None
    return Checkpoints(settings.checkpoint_steps,
                       lambda state: checkpoint(TrialCheckpoint(model, masks, state)))


def resume_finetune(resume: TrialCheckpoint, base_model: nn.Module, workload: Workload,
                    settings: TrialSettings, guard: Guard, before_final: Callable,
                    on_step: Callable, watch: Stopwatch,
                    checkpoint: OnCheckpoint | None = None) -> nn.Module:
    """The fine-tune of `resume` carried on to the end (a retried trial): the model is as
    the checkpoint left it, its latency measured again first."""
    spec = settings.finetune
    model = resume.model
    before_final(model)
    teacher = base_model if spec.distill_alpha > 0 else None
    with watch.phase("train"):
        train(model, workload, spec, resume.masks, guard, teacher,
              lambda step, loss: on_step(model, step, loss), resume=resume.state,
              checkpoints=_checkpoints(settings, checkpoint, model, resume.masks))
    return model


def deployed_model(model: nn.Module, policy: Policy, workload: Workload) -> nn.Module:
    """The model as it would be deployed: `model`, or its int8 version when the policy says so."""
    if policy.quantize == "int8":
        try:
            return quantize_int8(model.cpu(), int8_inputs(workload))
        except RuntimeError as exc:
            raise TrialFailed(str(exc)) from exc
    return model


def on_cpu(model: nn.Module) -> nn.Module:
    """`model` itself when it is on the CPU, else a CPU copy (what travels to a bench)."""
    if all(p.device.type == "cpu" for p in model.parameters()):
        return model
    return copy.deepcopy(model).cpu()


def run_trial(
    policy: Policy,
    base_model: nn.Module,
    groups: Sequence[PrunableGroup],
    workload: Workload,
    settings: TrialSettings,
    latency: LatencyBackend,
    guard: Guard = no_guard,
    on_step: OnProgress | None = None,
    on_check: OnCheck | None = None,
    watch: Stopwatch | None = None,
    checkpoint: OnCheckpoint | None = None,
    resume: TrialCheckpoint | None = None,
) -> TrialResult:
    """Return the metrics of `policy` applied to `base_model`; `base_model` is not changed.

    The latency is measured as soon as the architecture is final (weights do not change it),
    so that `on_check(step, metrics, latency)`, called after each of `settings.check_steps`,
    can tell where the trial stands; it may stop the trial. `on_step(step, steps, loss)` follows
    the fine-tuning; `watch` counts where the time goes. `checkpoint(saved)` is called after
    each of `settings.checkpoint_steps`; `resume` carries such a fine-tune on instead of
    starting over. Raises TrialFailed when fine-tuning diverges or the metric is not a number.
    """
    watch = watch or Stopwatch()
    guard = watch.guarded(guard)
    int8 = int8_inputs(workload) if policy.quantize == "int8" else None
    timings: list[Latency] = []
    spec = settings.finetune

    def measure(model: nn.Module) -> None:
        # Outside the guard: a measurement needs the cores alone.
        with watch.phase("latency"):
            timing = latency.latency(on_cpu(model), refresh=bool(timings),
                                     int8_calibration=int8)
        if not (math.isfinite(timing.median_ms) and timing.median_ms > 0):
            raise TrialFailed(f"latency measurement returned {timing.median_ms} ms")
        timings.append(timing)

    def step_done(model: nn.Module, step: int, loss: float) -> None:
        if on_step is not None:
            on_step(step, spec.steps, loss)
        if on_check is not None and step in settings.check_steps:
            with watch.phase("evaluate"):
                metrics = evaluate(model, workload, compute=spec.compute, guard=guard)
            on_check(step, metrics, timings[-1])

    if resume is not None:
        model = resume_finetune(resume, base_model, workload, settings, guard, measure,
                                step_done, watch, checkpoint)
    else:
        model = prune_and_finetune(policy, base_model, groups, workload, settings, guard,
                                   measure, step_done, watch, checkpoint)
    with watch.phase("evaluate"):
        result = _scored(model, policy, workload, spec.compute, guard, timings[-1])
    return _timed_again(result, latency, measure, timings, workload, settings.base_latency_ms)


def _timed_again(result: TrialResult, latency: LatencyBackend,
                 measure: Callable[[nn.Module], None], timings: list[Latency],
                 workload: Workload, base_latency_ms: float) -> TrialResult:
    """The scored trial timed again, now that its neighbours are past their start-up (a
    worker importing torch next to the first measurement slows it): the faster time is kept,
    of those from the same source as the last. An adaptive backend is told the trial's score
    first: it decides whether to measure knowing it."""
    inform = getattr(latency, "inform", None)
    if inform is not None:
        inform(workload.task.objective.score(result.metrics[workload.task.metric]))
    measure(result.model)
    result.latency = min((t for t in timings[-2:] if t.source == timings[-1].source),
                         key=lambda t: t.median_ms)
    result.speedup = base_latency_ms / result.latency.median_ms
    return result


def _scored(model: nn.Module, policy: Policy, workload: Workload, compute: Any, guard: Guard,
            timing: Latency) -> TrialResult:
    """The fine-tuned model deployed (int8 when the policy says so), evaluated, counted."""
    with guard():
        deployed = deployed_model(model, policy, workload)
    metrics = evaluate(deployed, workload, compute=compute if deployed is model
                       else dataclasses.replace(compute, device="cpu"), guard=guard)
    model.cpu()
    with guard():
        stats = model_stats(model, workload.example())
    if policy.quantize == "int8":
        stats["size_mb"] = int8_size_mb(model)
    return TrialResult(metrics=metrics, latency=timing, speedup=math.nan, stats=stats,
                       model=model, deployed=deployed)


def int8_size_mb(model: nn.Module) -> float:
    """Size of `model` with its Conv2d/Linear weights stored as int8, the rest as they are."""
    size = 0
    for module in model.modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + \
                list(module.named_buffers(recurse=False)):
            quantized = name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear))
            size += tensor.numel() * (1 if quantized else tensor.element_size())
    return size / 1e6
