"""Training, fine-tuning, evaluation and BatchNorm recalibration on tensor splits.

Every compute-heavy loop runs inside `guard()`, a context manager supplied by the caller: the
Ray runner uses it to pause training while a latency measurement runs on the same cores.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from autoprune.data.splits import make_loader
from autoprune.errors import TrialFailed

Guard = Callable[[], AbstractContextManager]
Masks = dict[str, torch.Tensor]


def no_guard() -> AbstractContextManager:
    """The default guard: run without coordination."""
    return contextlib.nullcontext()


@dataclass(frozen=True)
class TrainSpec:
    """How to train: epochs, SGD with momentum, one-cycle learning rate.

    With a teacher, `distill_alpha` > 0 mixes in knowledge distillation (Hinton et al., 2015):
    loss = (1 - alpha) * CE + alpha * T^2 * KL(teacher / T || student / T).
    """

    epochs: int
    lr: float
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0


def _distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float
                  ) -> torch.Tensor:
    return nn.functional.kl_div(
        nn.functional.log_softmax(student / temperature, dim=1),
        nn.functional.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean", log_target=True) * temperature ** 2


def apply_masks(model: nn.Module, masks: Masks | None) -> None:
    """Zero the pruned weights again (after an optimiser step moved them)."""
    if not masks:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: TrainSpec,
    masks: Masks | None = None,
    guard: Guard = no_guard,
    teacher: nn.Module | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> float:
    """Train `model` in place; returns the mean loss of the last epoch.

    `teacher` (the unpruned model) is used when `spec.distill_alpha` > 0. `on_epoch(epoch)`
    is called after each epoch but the last (1-based; it may evaluate `model`).
    Raises TrialFailed when the loss becomes NaN or infinite.
    """
    if spec.epochs <= 0:
        return float("nan")
    torch.manual_seed(spec.seed)
    loader = make_loader(x, y, spec.batch_size, shuffle=True, seed=spec.seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=spec.lr, momentum=spec.momentum,
        weight_decay=spec.weight_decay, nesterov=True,
    )
    steps = spec.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=spec.lr, total_steps=steps, pct_start=0.15
    )
    loss_fn = nn.CrossEntropyLoss()
    alpha = spec.distill_alpha if teacher is not None else 0.0
    if teacher is not None:
        teacher.eval()
    model.train()
    epoch_loss = float("nan")
    for epoch in range(spec.epochs):
        total, count = 0.0, 0
        for xb, yb in loader:
            with guard():
                optimizer.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = loss_fn(logits, yb)
                if alpha > 0:
                    with torch.no_grad():
                        target = teacher(xb)
                    loss = (1 - alpha) * loss + alpha * _distillation(
                        logits, target, spec.distill_temperature)
                if not torch.isfinite(loss):
                    raise TrialFailed(f"training diverged: loss is {loss.item()} in epoch {epoch}")
                loss.backward()
                optimizer.step()
                apply_masks(model, masks)
            scheduler.step()
            total += loss.item() * len(yb)
            count += len(yb)
        epoch_loss = total / count
        if on_epoch is not None and epoch + 1 < spec.epochs:
            on_epoch(epoch + 1)
            model.train()
    model.eval()
    return epoch_loss


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, guard: Guard = no_guard,
    batch_size: int = 256,
) -> float:
    """Return top-1 accuracy of `model` on (x, y), in [0, 1]."""
    model.eval()
    correct = 0
    with guard():
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])
            if not torch.isfinite(logits).all():
                raise TrialFailed("model outputs are NaN or infinite")
            correct += int((logits.argmax(1) == y[start:start + batch_size]).sum())
    accuracy = correct / len(x)
    if math.isnan(accuracy):
        raise TrialFailed("accuracy is NaN")
    return accuracy


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, x: torch.Tensor, batches: int, batch_size: int = 64, seed: int = 0,
    guard: Guard = no_guard,
) -> None:
    """Re-estimate BatchNorm running statistics from `batches` training batches.

    Pruning changes the activations each BatchNorm sees; stale statistics can cost more
    accuracy than the pruning itself.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    model.train()
    with guard():
        for i in range(min(batches, math.ceil(len(x) / batch_size))):
            model(x[order[i * batch_size:(i + 1) * batch_size]])
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()
