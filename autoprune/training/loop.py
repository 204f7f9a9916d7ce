"""The training loop: a step budget of the task's loss, optional distillation, on the
configured device and precision.

Every step runs inside `guard()`, a context manager the caller supplies: the Ray runner uses
it to pause training while a latency measurement runs on the same cores (or GPU).
"""

from __future__ import annotations

import contextlib
import copy
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoprune.errors import TrialFailed
from autoprune.tasks import call_model, to_device
from autoprune.training.compute import Compute
from autoprune.training.optim import make_optimizer, make_schedule
from autoprune.workload import Workload

Guard = Callable[[], AbstractContextManager]
Masks = dict[str, torch.Tensor]
# Called after every optimiser step with (step, loss); it may evaluate the model.
OnStep = Callable[[int, float], None]


def no_guard() -> AbstractContextManager:
    """The default guard: run without coordination."""
    return contextlib.nullcontext()


@dataclass(frozen=True)
class TrainSpec:
    """How to train: a step budget, the optimiser and its schedule, distillation, compute.

    With a teacher, `distill_alpha` > 0 mixes in knowledge distillation:
    loss = (1 - alpha) * task loss + alpha * the task's distillation loss.
    """

    steps: int
    lr: float
    optimizer: str = "sgd"
    schedule: str = "onecycle"
    warmup: float = 0.15
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping
    compute: Compute = field(default_factory=Compute)


def apply_masks(model: nn.Module, masks: Masks | None) -> None:
    """Zero the pruned weights again (after an optimiser step moved them)."""
    if not masks:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].device))


def _forever(loader: Any) -> Iterator[Any]:
    """Batches of `loader`, pass after pass (each pass in a new shuffled order)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise TrialFailed("the training split yields no batches")


@dataclass(frozen=True)
class Resume:
    """Where an interrupted fine-tune picks up: after `step`, with the optimiser's, the
    schedule's and (mixed precision) the gradient scaler's state."""

    step: int
    optimizer: dict
    schedule: dict
    scaler: dict | None = None


# Called after each of the checkpoint steps with what resumes the fine-tune there.
OnCheckpoint = Callable[[Resume], None]


@dataclass(frozen=True)
class Checkpoints:
    """The steps after which `save` is called (never after the last one)."""

    steps: tuple[int, ...]
    save: OnCheckpoint


def _optimiser(model: nn.Module, spec: TrainSpec, device: torch.device,
               resume: Resume | None) -> tuple[Any, Any, Any]:
    """The optimiser, schedule and gradient scaler, as `resume` left them when given."""
    optimizer = make_optimizer(model, spec.optimizer, spec.lr, spec.momentum,
                               spec.weight_decay)
    scheduler = make_schedule(optimizer, spec.schedule, spec.lr, spec.steps, spec.warmup)
    scaler = spec.compute.scaler(device)
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.schedule)
        if scaler is not None and resume.scaler is not None:
            scaler.load_state_dict(resume.scaler)
    return optimizer, scheduler, scaler


def train(model: nn.Module, workload: Workload, spec: TrainSpec, masks: Masks | None = None,
          guard: Guard = no_guard, teacher: nn.Module | None = None,
          on_step: OnStep | None = None, resume: Resume | None = None,
          checkpoints: Checkpoints | None = None) -> float:
    """Train `model` in place for `spec.steps` steps, on `spec.compute`'s device (the model
    stays there); returns the mean loss of the last pass over the data (or of every step,
    when that is fewer).

    `teacher` (the unpruned model) is used when `spec.distill_alpha` > 0; it is not changed.
    `resume` continues a fine-tune after its step (the model holding its weights then), with
    the data in a fresh order; `checkpoints` says when to hand out what resumes it.
    Raises TrialFailed when the loss becomes NaN or infinite.
    """
    first = resume.step + 1 if resume is not None else 1
    if spec.steps < first:
        return float("nan")
    torch.manual_seed(spec.seed + first - 1)
    device = spec.compute.resolve()
    model.to(device)
    loader = workload.train_loader(spec.seed + first - 1)
    optimizer, scheduler, scaler = _optimiser(model, spec, device, resume)
    alpha = spec.distill_alpha if teacher is not None else 0.0
    if alpha > 0:
        teacher = _on(teacher, device)
    task = workload.task
    recent: deque[float] = deque(maxlen=max(1, min(len(loader), spec.steps)))
    model.train()
    batches = _forever(loader)
    for step in range(first, spec.steps + 1):
        batch = to_device(next(batches), device, non_blocking=workload.loading.pin_memory)
        with guard():
            optimizer.zero_grad(set_to_none=True)
            with spec.compute.autocast(device):
                output = task.output(call_model(model, task.inputs(batch)))
                loss = task.loss(output, batch)
                if alpha > 0:
                    with torch.no_grad():
                        target = task.output(call_model(teacher, task.inputs(batch)))
                    loss = (1 - alpha) * loss + alpha * task.distill(
                        output.float(), target.float(), spec.distill_temperature)
            if not torch.isfinite(loss):
                raise TrialFailed(f"training diverged: loss is {loss.item()} at step {step}")
            _step(model, loss, optimizer, scaler, spec.grad_clip)
            apply_masks(model, masks)
        scheduler.step()
        recent.append(loss.item())
        if on_step is not None:
            on_step(step, recent[-1])
            if not model.training:  # the callback evaluated the model
                model.train()
        if checkpoints is not None and step in checkpoints.steps and step < spec.steps:
            checkpoints.save(Resume(step, optimizer.state_dict(), scheduler.state_dict(),
                                    scaler.state_dict() if scaler is not None else None))
    model.eval()
    return sum(recent) / len(recent)


def _step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler | None, grad_clip: float) -> None:
    if scaler is None:
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _on(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` on `device` in eval mode: itself when it is there, else a copy."""
    current = next(iter(model.parameters()), None)
    if current is None or current.device == device:
        return model.eval()
    return copy.deepcopy(model).to(device).eval()
