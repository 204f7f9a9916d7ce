"""Evaluation through the task, and BatchNorm recalibration, on the configured device."""

from __future__ import annotations

import math

import torch
from torch import nn

from autoprune.errors import TrialFailed
from autoprune.tasks import call_model, to_device
from autoprune.training.compute import Compute
from autoprune.training.loop import Guard, no_guard
from autoprune.workload import Workload


@torch.no_grad()
def evaluate(model: nn.Module, workload: Workload, split: str = "val", subset: bool = True,
             compute: Compute = Compute(), guard: Guard = no_guard) -> dict[str, float]:  # noqa: B008
    """The task's metrics of `model` on `split` (with `subset`, on the workload's fixed
    validation subset when it has one). The model is moved to the compute device.

    Raises TrialFailed when the primary metric is not a number or outputs are not finite."""
    device = compute.resolve()
    model.to(device).eval()
    task = workload.task
    loader = workload.eval_loader(split, subset)
    pin = workload.loading.pin_memory
    with guard(), compute.autocast(device):
        try:
            metrics = task.evaluate(model, (to_device(b, device, pin) for b in loader))
        except FloatingPointError as exc:
            raise TrialFailed(str(exc)) from exc
    value = metrics.get(task.metric)
    if value is None or not math.isfinite(value):
        raise TrialFailed(f"{task.metric} is {value}")
    return metrics


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, workload: Workload, batches: int, seed: int = 0,
                          compute: Compute = Compute(), guard: Guard = no_guard) -> None:  # noqa: B008
    """Re-estimate BatchNorm running statistics from `batches` seeded training batches.

    Pruning changes the activations each BatchNorm sees; stale statistics can cost more
    accuracy than the pruning itself.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    device = compute.resolve()
    model.to(device)
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    task = workload.task
    model.train()
    with guard(), compute.autocast(device):
        for index, batch in enumerate(workload.train_loader(seed)):
            if index >= batches:
                break
            call_model(model, task.inputs(to_device(batch, device)))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()
