"""What the AMC agent knows of a group: its latency table, looked up and inverted."""

from __future__ import annotations

import pytest
import torch

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.errors import UserError
from autoprune.hardware.predictor import predict_latency
from autoprune.models.resnet import ResNet
from autoprune.pruning import Policy, PruneSettings, apply_policy, find_groups
from autoprune.search.amc_features import GroupFeatures, group_features

GRID = (0.0, 0.25, 0.5, 0.75)


def test_table_lookup_interpolates_and_inverts():
    f = GroupFeatures("g0", "channel", (0.0,), GRID, tuple(0.2 * r / 0.75 for r in GRID))
    assert f.saving(0.0) == 0.0 and f.saving(0.75) == pytest.approx(0.2)
    assert f.saving(0.375) == pytest.approx(0.1)
    assert f.ratio_for(0.1, 0.0, 0.75) == pytest.approx(0.375, abs=1e-6)
    assert f.ratio_for(0.5, 0.0, 0.75) == 0.75  # more than the group can give
    assert f.ratio_for(-0.1, 0.0, 0.75) == 0.0


def test_latency_table_of_a_real_model_is_monotone_and_predicted():
    jetson = settings_from_dict(compose("search", ["hardware=jetson"])).hardware
    torch.manual_seed(0)
    model = ResNet(width=16, blocks_per_stage=1).eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = find_groups(model, x)
    choices = {g.id: ("channel",) for g in groups if g.kind == "conv"}
    groups = [g for g in groups if g.id in choices]
    table = group_features(model, groups, choices, 0.75, x, PruneSettings(8),
                           lambda m: predict_latency(m, x, jetson).median_ms, 4)
    assert [f.gid for f in table] == [g.id for g in groups]
    for f in table:
        assert f.strategy == "channel" and f.saved[0] == 0.0
        assert all(b >= a for a, b in zip(f.saved, f.saved[1:], strict=False))
    # A group's entry is the prediction for the model with that group alone pruned.
    first = table[0]
    pruned = apply_policy(model, Policy.uniform([first.gid], "channel", 0.75), groups, x,
                          PruneSettings(8)).model
    base_ms = predict_latency(model, x, jetson).median_ms
    alone = 1 - predict_latency(pruned, x, jetson).median_ms / base_ms
    assert first.saved[-1] >= max(alone, 0.0) - 1e-12


def test_the_latency_table_prunes_with_the_studys_criterion():
    from autoprune.pruning.apply import Calibration
    from autoprune.tasks import Classification

    jetson = settings_from_dict(compose("search", ["hardware=jetson"])).hardware
    torch.manual_seed(0)
    model = ResNet(width=16, blocks_per_stage=1).eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = [g for g in find_groups(model, x) if g.kind == "conv"][:2]
    choices = {g.id: ("channel",) for g in groups}
    taylor = PruneSettings(8, "taylor")
    with pytest.raises(UserError, match="taylor criterion needs a calibration batch"):
        group_features(model, groups, choices, 0.75, x, taylor,
                       lambda m: predict_latency(m, x, jetson).median_ms, 3)
    batch = (torch.randn(8, 1, 16, 16), torch.arange(8) % 10)
    table = group_features(model, groups, choices, 0.75, x, taylor,
                           lambda m: predict_latency(m, x, jetson).median_ms, 3,
                           Calibration(Classification(), batch))
    assert [f.gid for f in table] == [g.id for g in groups]
