"""A small learnable classification workload and a small network for the training tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoprune.data import DataSplits
from tests.conftest import classification


def images(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(size) % 4
    # Learnable: the class shifts the mean of the image.
    return torch.randn(size, 1, 8, 8, generator=generator) + y.view(-1, 1, 1, 1).float(), y


@pytest.fixture(scope="module")
def work():
    x, y = images()
    data = DataSplits(TensorDataset(x, y), TensorDataset(x, y), TensorDataset(x, y), "images")
    return classification(data, batch_size=16, eval_batch_size=32)


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
