"""Groups whose pruning would break the model are found up front and left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.models.resnet import ResNet
from autoprune.pruning import STRATEGIES, PruneSettings, check_groups, find_groups


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
    usable, rejected = check_groups(model, groups, ["channel", "unstructured"], x,
                                    PruneSettings(alignment=8))
    assert rejected["conv2/channel"]  # the reason, e.g. "IndexError: index ... out of bounds"
    assert usable["conv2"] == ("unstructured",)  # masks never change a shape: still allowed
    assert usable["conv1"] == ("channel", "unstructured")


def test_every_group_of_the_builtin_resnet_is_usable():
    model = ResNet(width=16, blocks_per_stage=1).eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = find_groups(model, x)
    usable, rejected = check_groups(model, groups, list(STRATEGIES), x, PruneSettings(alignment=8))
    # Dynamic gating takes the channels inside a block; the channels the residual additions
    # tie together reach more than one convolution.
    inner = {g.id for g in groups if g.id.endswith(".conv1")}
    coupled = {g.id for g in groups if g.kind == "conv"} - inner
    assert inner and coupled
    assert set(rejected) == {f"{gid}/dynamic" for gid in coupled}
    assert all("cannot be gated" in reason for reason in rejected.values())
    assert list(usable) == [g.id for g in groups]
    for group in groups:
        expected = {n for n, s in STRATEGIES.items() if group.kind in s.kinds}
        assert set(usable[group.id]) == expected - ({"dynamic"} if group.id in coupled else set())


def test_a_choice_that_breaks_the_model_is_rejected_per_strategy():
    from tests.fixtures.hybrid import HybridNet

    torch.manual_seed(0)
    model = HybridNet().eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = find_groups(model, x)
    usable, rejected = check_groups(model, groups, list(STRATEGIES), x)
    # Halving the concatenated stream empties one branch of the concat: refused, while the
    # same group's other strategies stay available.
    assert "block2.project.0/channel" in rejected
    assert "channel" not in usable["block2.project.0"]
    assert "lowrank" in usable["block2.project.0"]
    assert usable["attn"] == ("head",)


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_a_concatenated_group_never_loses_a_whole_branch(ratio):
    from autoprune.pruning import Decision, Policy, apply_policy
    from tests.fixtures.hybrid import HybridNet
    from tests.pruning.test_strategies import randomise_norms

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = HybridNet()
    randomise_norms(model, generator)
    model.eval()
    x = torch.randn(1, 1, 16, 16, generator=generator)
    groups = find_groups(model, x)
    pruned = apply_policy(model, Policy({"block2.project.0": Decision("channel", ratio)}),
                          groups, x).model
    with torch.no_grad():
        assert pruned(x).shape == (1, 10)
    branches = (pruned.branch_a[0].out_channels, pruned.branch_b[0].out_channels)
    assert min(branches) >= 1
    assert sum(branches) < 32
