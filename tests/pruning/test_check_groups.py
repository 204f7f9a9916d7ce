"""Groups whose pruning would break the model are found up front and left alone."""

from __future__ import annotations

import torch
from torch import nn

from autoprune.models.resnet import ResNet
from autoprune.pruning import check_groups, find_groups


class HardCoded(nn.Module):
    """A model whose forward pass assumes conv2 has exactly 16 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = x.reshape(x.shape[0], 16, 8, 8, -1).mean(-1)  # hard-codes 16 channels
        return self.fc(x.flatten(1))


def test_group_with_hard_coded_width_is_rejected_with_a_reason():
    model = HardCoded().eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = find_groups(model, x)
    usable, rejected = check_groups(model, groups, x, alignment=8)
    assert "conv2" in rejected
    assert rejected["conv2"]
    assert "conv1" in {g.id for g in usable}


def test_every_group_of_the_builtin_resnet_is_usable():
    model = ResNet(width=16, blocks_per_stage=1).eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = find_groups(model, x)
    usable, rejected = check_groups(model, groups, x, alignment=8)
    assert rejected == {}
    assert [g.id for g in usable] == [g.id for g in groups]
