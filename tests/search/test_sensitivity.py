"""Sensitivity warm start: per-group drops of the metric, ratio caps and seed policies."""

from __future__ import annotations

import pytest
import torch

from autoprune.config import DataConfig
from autoprune.data import load_data
from autoprune.models.resnet import ResNet
from autoprune.pruning import PruneSettings, find_groups
from autoprune.search.sensitivity import Sensitivity, measure_sensitivity
from autoprune.tasks import Objective
from tests.conftest import classification


def test_caps_end_at_the_first_ratio_past_the_limit_and_seeds_stay_within():
    s = Sensitivity(Objective("accuracy", "maximize"), 1.0, {"a": "channel", "b": "channel"},
                    {"a": {0.25: 0.99, 0.5: 0.90, 0.75: 0.6}, "b": {0.25: 1.0, 0.5: 1.0,
                                                                  0.75: 0.98}})
    assert s.drop("a", 0.5) == pytest.approx(0.1)
    assert s.caps(0.05) == {"a": 0.5}  # b stays within 5 points everywhere: no cap
    assert s.caps(0.015) == {"a": 0.5, "b": 0.75}
    assert s.seed_params(0.05, 0.0) == {"a": 0.25, "b": 0.75}
    assert s.seed_params(0.005, 0.0) == {"a": 0.0, "b": 0.5}


def test_drops_of_a_minimised_metric_are_increases():
    s = Sensitivity(Objective("perplexity", "minimize"), 4.0, {"a": "head"},
                    {"a": {0.25: 4.2, 0.5: 5.0}})
    assert s.drop("a", 0.25) == pytest.approx(0.05) and s.drop("a", 0.5) == pytest.approx(0.25)
    assert s.caps(0.1) == {"a": 0.5}
    assert s.seed_params(0.1, 0.0) == {"a": 0.25}


def test_measured_on_a_real_model_without_fine_tuning():
    data = load_data(DataConfig("synthetic", 0.2, 0.2, 0, 16, 1, 10, samples=300))
    torch.manual_seed(0)
    model = ResNet(width=16, blocks_per_stage=1).eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = [g for g in find_groups(model, x) if g.kind == "conv"][:2]
    lines = []
    s = measure_sensitivity(model, groups, {g.id: ("channel", "lowrank") for g in groups},
                            classification(data, 32), PruneSettings(8), (0.25, 0.75), 2, 0, None,
                            lines.append)
    assert set(s.accuracy) == {g.id for g in groups}
    assert set(s.strategies.values()) == {"channel"}  # the preferred structured strategy
    for by_ratio in s.accuracy.values():
        assert set(by_ratio) == {0.25, 0.75} and all(0 <= a <= 1 for a in by_ratio.values())
    assert len(lines) == 2 and lines[0].startswith(f"sensitivity {groups[0].id} (channel)")
    # The model itself is left as it was.
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in ResNet(width=16, blocks_per_stage=1).parameters())
