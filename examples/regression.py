"""A task, data and a model of your own: regression of a smooth function of 8 inputs.

Search it with
    python -m autoprune search task._target_=examples.regression.Regression \
        data=dataset data.train._target_=examples.regression.Curve \
        model=custom model._target_=examples.regression.Net hardware=cpu
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from autoprune.tasks import MINIMIZE, Task


class Regression(Task):
    """Mean squared error: the loss, and the primary metric (lower is better); also the mean
    absolute error."""

    name = "regression"
    metric = "mse"
    direction = MINIMIZE

    def loss(self, output: torch.Tensor, batch) -> torch.Tensor:  # noqa: ANN001
        return nn.functional.mse_loss(output.squeeze(-1), batch[1])

    def measure(self, output: torch.Tensor, batch) -> dict[str, tuple[float, float]]:  # noqa: ANN001
        error = output.squeeze(-1).float() - batch[1]
        return {"mse": (float((error ** 2).sum()), error.numel()),
                "mae": (float(error.abs().sum()), error.numel())}


class Curve(Dataset):
    """(x, y) pairs: x uniform in [-1, 1]^8, y = sum(sin(3 x_i)) / 2, seeded per index."""

    def __init__(self, size: int = 4000, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.rand(size, 8, generator=generator) * 2 - 1
        self.y = torch.sin(3 * self.x).sum(dim=1) / 2

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def Net(width: int = 256) -> nn.Module:  # noqa: N802 - a factory named like the model it builds
    """An MLP: 8 inputs, two hidden layers of `width` units, one output."""
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 1))
