"""Optimisers and learning-rate schedules (`finetune.optimizer`, `finetune.schedule`).

`sgd` is SGD with Nesterov momentum (convolutional networks' usual choice); `adamw` is AdamW
(transformers'). `onecycle` is PyTorch's one-cycle policy (warm-up to the peak over the first
`warmup` fraction of the steps, cosine annealing after); `cosine` warms up linearly over that
fraction, then decays to zero along a cosine; `constant` warms up, then holds the peak.
"""

from __future__ import annotations

import math

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser over `model`'s parameters."""
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                               weight_decay=weight_decay, nesterov=momentum > 0)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def make_schedule(optimizer: torch.optim.Optimizer, name: str, lr: float, steps: int,
                  warmup: float) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule over `steps` optimiser steps, stepped once after each of them."""
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=max(warmup, 1e-6))
    warm = max(int(round(warmup * steps)), 0)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if name == "constant":
            return 1.0
        progress = (step - warm) / max(steps - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
