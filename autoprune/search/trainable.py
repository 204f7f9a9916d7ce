"""What runs in a Tune trial: the trial function with its data, device and progress reports."""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from torch import nn

from autoprune.config import DataConfig, HardwareProfile
from autoprune.pruning import Policy, PrunableGroup
from autoprune.search.early_stop import CHECK_LATENCY, CHECK_METRIC, CHECK_SOURCE, CHECK_STEP
from autoprune.search.latency_plan import LatencyPlan
from autoprune.search.objective import TrialCheckpoint, TrialSettings, run_trial
from autoprune.search.space import PolicySpace
from autoprune.search.stopwatch import Stopwatch
from autoprune.tasks import Task
from autoprune.training import no_guard
from autoprune.workload import Loading, Workload

# Keys of the results a trial reports while it fine-tunes, and of its final result.
PROGRESS_STEP, PROGRESS_STEPS, PROGRESS_LOSS = "progress_step", "progress_steps", "progress_loss"
TRIAL_METRICS = "trial_metrics"
# A trial that failed on its own reports why (one line, and the traceback) and ends.
TRIAL_ERROR, TRIAL_TRACEBACK = "trial_error", "trial_traceback"
# The step a retried trial's fine-tune went on from; the step of a checkpoint it handed out.
RESUMED, CHECKPOINT_STEP = "resumed_from_step", "checkpoint_step"
CHECKPOINT_ERROR = "checkpoint_error"  # why a trial could not hand out its checkpoint
CHECKPOINT_FILE = "trial.pt"
STARTED, FINISHED = "trial_started", "trial_finished"
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study needs, shipped once through Ray's object store: the base
    model and its groups, and the configs each worker builds its data from (no data)."""

    base_model: nn.Module
    groups: list[PrunableGroup]
    data: DataConfig
    task: Task
    loading: Loading
    settings: TrialSettings
    space: PolicySpace
    profile: HardwareProfile
    plan: LatencyPlan
    threads: int
    example: Any


def _device(settings: TrialSettings) -> tuple[TrialSettings, str]:
    """The trial's settings with `device=auto` decided (CUDA only when Tune gave this trial a
    GPU), and the GPU ids it was given."""
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    compute = settings.finetune.compute
    if compute.device == "auto":
        device = "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"
        compute = dataclasses.replace(compute, device=device)
    finetune = dataclasses.replace(settings.finetune, compute=compute)
    return dataclasses.replace(settings, finetune=finetune), ",".join(gpu_ids)


@functools.lru_cache(maxsize=1)
def _worker_data(cfg: DataConfig) -> Any:
    """The study's splits, built once per worker process (a worker runs many trials)."""
    from autoprune.data import load_data

    return load_data(cfg)


def trainable(config: dict[str, Any], *, context: TrialContext, store: Any) -> None:
    """One trial under Tune: progress while fine-tuning, the check result at each rung, then
    the metrics; the fine-tuned weights go to the driver's weight store."""
    from autoprune.hardware.gate import TrainingGuard

    started = time.time()
    torch.set_num_threads(context.threads)
    policy = Policy.from_params(context.space.complete(config))
    trial_id = tune.get_context().get_trial_id()
    settings, gpu_ids = _device(context.settings)
    device = settings.finetune.compute.resolve()
    loading = dataclasses.replace(context.loading, pin_memory=context.loading.pin_memory
                                  and device.type == "cuda")
    watch = Stopwatch()
    with watch.phase("data"):
        workload = Workload(context.task, _worker_data(context.data), loading)
    gate = context.plan.gate
    guard = TrainingGuard(gate, trial_id) if gate is not None else no_guard
    last = [0.0]

    def on_step(step: int, steps: int, loss: float) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or step == steps:
            last[0] = now
            with watch.phase("report"):
                tune.report({PROGRESS_STEP: step, PROGRESS_STEPS: steps, PROGRESS_LOSS: loss})

    def on_check(step: int, metrics: dict[str, float], latency: Any) -> None:
        with watch.phase("report"):
            tune.report({CHECK_STEP: step, CHECK_METRIC: metrics[context.task.metric],
                         CHECK_LATENCY: latency.median_ms, CHECK_SOURCE: latency.source,
                         **watch.metrics()})

    restored = _restored()
    save = functools.partial(_save, watch) if settings.checkpoint_steps else None
    try:
        result = run_trial(policy, context.base_model, context.groups, workload, settings,
                           context.plan.backend(context.profile, context.example, trial_id),
                           guard,
                           on_step, on_check, watch,
                           checkpoint=save, resume=restored)
    except Exception as exc:  # the trial's own failure: reported as such, never retried
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        cause = [line.strip() for line in text.splitlines() if line.strip()][-1]
        tune.report({TRIAL_ERROR: cause, TRIAL_TRACEBACK: traceback.format_exc(),
                     **watch.metrics()})
        return
    # The float weights: an int8 model is rebuilt from them and the same calibration data.
    with watch.phase("report"):
        ray.get(store.put.remote(trial_id, result.model.state_dict()))
    report = {**result.report(), **watch.metrics(), "steps": float(settings.finetune.steps)}
    tune.report({context.task.metric: report[context.task.metric],
                 "latency_ms": report["latency_ms"], TRIAL_METRICS: report,
                 "latency_source": result.latency.source, "device": str(device),
                 "gpu_ids": gpu_ids, STARTED: started, FINISHED: time.time(),
                 **({RESUMED: restored.state.step} if restored is not None else {})})


def _save(watch: Stopwatch, saved: TrialCheckpoint) -> None:
    """Hand Tune what resumes this trial's fine-tune (it keeps the latest only). A model that
    cannot be pickled whole is not checkpointed: its trial, if retried, starts over."""
    with watch.phase("report"), tempfile.TemporaryDirectory() as folder:
        try:
            torch.save(saved, Path(folder) / CHECKPOINT_FILE)
        except Exception as exc:  # noqa: BLE001 - a checkpoint must never fail the trial
            tune.report({CHECKPOINT_ERROR: f"{type(exc).__name__}: {exc}"[:300]})
            return
        tune.report({CHECKPOINT_STEP: saved.state.step},
                    checkpoint=tune.Checkpoint.from_directory(folder))


def _restored() -> TrialCheckpoint | None:
    """The fine-tune this trial left when its worker died, if Tune is retrying it."""
    found = tune.get_checkpoint()
    if found is None:
        return None
    with found.as_directory() as folder:
        return torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu",
                          weights_only=False)
