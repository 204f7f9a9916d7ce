"""A user's own Datasets through data.train._target_ (and val/test): built with Hydra's
instantiate, read lazily, split when a split is missing."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.data import Subset

from autoprune.data import load_data
from autoprune.errors import UserError

STRIPES = "tests.fixtures.datasets.Stripes"


def _settings(settings_for, *extra: str):
    return settings_for("data=dataset", f"data.train._target_={STRIPES}", *extra)


def test_missing_splits_are_carved_from_train_seeded(settings_for):
    data = load_data(_settings(settings_for, "+data.train.size=120").data)
    assert data.sizes() == (72, 24, 24)
    assert all(isinstance(s, Subset) for s in (data.train, data.val, data.test))
    seen = [set(s.indices) for s in (data.train, data.val, data.test)]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) == 120
    again = load_data(_settings(settings_for, "+data.train.size=120").data)
    assert again.val.indices == data.val.indices and again.fingerprint == data.fingerprint
    other = load_data(_settings(settings_for, "+data.train.size=120",
                                "data.split_seed=1").data)
    assert other.val.indices != data.val.indices


def test_given_splits_are_used_as_they_are(settings_for):
    settings = _settings(settings_for, "+data.train.size=100", f"data.val._target_={STRIPES}",
                         "+data.val.size=30", "+data.val.seed=1",
                         f"data.test._target_={STRIPES}", "+data.test.size=40",
                         "+data.test.seed=2")
    data = load_data(settings.data)
    assert data.sizes() == (100, 30, 40)
    assert not isinstance(data.train, Subset)


def test_nested_targets_build_transforms(settings_for):
    plain = load_data(_settings(settings_for, "+data.train.size=50").data)
    shifted = load_data(_settings(
        settings_for, "+data.train.size=50",
        "+data.train.transform._target_=tests.fixtures.datasets.Shift",
        "+data.train.transform.by=2.0").data)
    index = plain.train.indices[0]
    assert torch.allclose(shifted.train.dataset[index][0], plain.train.dataset[index][0] + 2)


def test_a_large_lazy_dataset_is_not_read_to_split_it(settings_for):
    settings = settings_for("data=dataset",
                            "data.train._target_=tests.fixtures.datasets.LazyImages")
    data = load_data(settings.data)
    assert sum(data.sizes()) == 200_000
    assert data.train[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("data.train._target_=tests.fixtures.datasets.nothing",),
         "data.train: Error locating target"),
        (("data.train._target_=tests.fixtures.datasets.not_a_dataset",), "not a map-style"),
        (("data.train._target_=tests.fixtures.datasets.Broken",),
         "data.train: reading item 0 failed: OSError: the file is gone"),
        (("+data.train.bogus=1",), "data.train: Error in call to target"),
        (("data.train=null",), "needs data.train._target_"),
    ],
)
def test_bad_dataset_is_a_user_error(settings_for, overrides, message):
    settings = _settings(settings_for, *overrides)
    with pytest.raises(UserError, match=re.escape(message)):
        load_data(settings.data)
