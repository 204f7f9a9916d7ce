"""The synthetic set: seeded, balanced, learnable."""

from __future__ import annotations

import numpy as np
import torch

from autoprune.data import load_data
from autoprune.training import evaluate
from tests.conftest import classification, make_settings, trained_resnet, xy


def test_same_seed_same_data_and_shapes_follow_the_config():
    settings = make_settings("data=synthetic", "data.samples=300", "data.resolution=12",
                             "data.in_channels=2")
    a, b = load_data(settings.data), load_data(settings.data)
    assert torch.equal(xy(a.train)[0], xy(b.train)[0])
    assert torch.equal(xy(a.test)[1], xy(b.test)[1])
    assert xy(a.train)[0].shape[1:] == (2, 12, 12)
    assert sum(a.sizes()) == 300
    counts = np.bincount(torch.cat([xy(s)[1] for s in (a.train, a.val, a.test)]).numpy())
    assert counts.min() == counts.max() == 30


def test_a_small_cnn_learns_it():
    settings = make_settings("data=synthetic")
    data = load_data(settings.data)
    model = trained_resnet(data, width=8, epochs_=6, lr=0.05)
    assert evaluate(model, classification(data))["accuracy"] > 0.5  # chance is 0.1
