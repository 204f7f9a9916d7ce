"""Shared fixtures: typed settings from the bundled config, small and quick."""

from __future__ import annotations

import pytest

from autoprune.cli import compose
from autoprune.config import Settings, settings_from_dict


def make_settings(*overrides: str) -> Settings:
    """Settings composed from conf/ exactly as the CLI would, with overrides."""
    return settings_from_dict(compose("search", list(overrides)))


def trained_resnet(data, width: int, epochs: int, lr: float):
    """A small built-in ResNet, seeded and briefly trained on `data`."""
    import torch

    from autoprune.models.resnet import ResNet
    from autoprune.training import TrainSpec, train

    torch.manual_seed(0)
    model = ResNet(width=width, blocks_per_stage=1)
    train(model, data.x_train, data.y_train, TrainSpec(epochs=epochs, lr=lr))
    return model


@pytest.fixture
def settings_for():
    return make_settings
