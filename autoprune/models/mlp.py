"""Multi-layer perceptron over flattened inputs: the neuron-pruning workhorse."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then Linear-BatchNorm-ReLU blocks of `hidden` widths, then a classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, resolution: int = 16,
                 hidden: Sequence[int] = (512, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * resolution * resolution
        for size in hidden:
            layers += [nn.Linear(width, size, bias=False), nn.BatchNorm1d(size),
                       nn.ReLU(inplace=True)]
            width = size
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
