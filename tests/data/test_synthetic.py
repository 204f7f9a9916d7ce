"""The synthetic set: seeded, balanced, learnable."""

from __future__ import annotations

import numpy as np
import torch

from autoprune.data import load_data
from autoprune.training import evaluate
from tests.conftest import make_settings, trained_resnet


def test_same_seed_same_data_and_shapes_follow_the_config():
    settings = make_settings("data=synthetic", "data.samples=300", "data.resolution=12",
                             "data.in_channels=2")
    a, b = load_data(settings.data), load_data(settings.data)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.input_shape == (2, 12, 12)
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 300
    counts = np.bincount(np.concatenate([a.y_train.numpy(), a.y_val.numpy(),
                                         a.y_test.numpy()]))
    assert counts.min() == counts.max() == 30


def test_a_small_cnn_learns_it():
    settings = make_settings("data=synthetic")
    data = load_data(settings.data)
    model = trained_resnet(data, width=8, epochs=6, lr=0.05)
    assert evaluate(model, data.x_val, data.y_val) > 0.5  # chance is 0.1
