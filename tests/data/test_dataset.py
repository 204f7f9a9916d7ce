"""Any map-style torch Dataset through data._target_: read, checked and split."""

from __future__ import annotations

import re

import pytest
import torch

from autoprune.data import load_data
from autoprune.errors import UserError


def _settings(settings_for, *extra: str):
    return settings_for("data=dataset", "data._target_=tests.fixtures.datasets.Stripes",
                        "data.num_classes=2", *extra)


def test_dataset_is_read_split_and_stratified(settings_for):
    settings = _settings(settings_for, "+data.args.size=120")
    data = load_data(settings.data)
    assert data.input_shape == (1, 16, 16)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 120
    assert data.num_classes == 2
    assert set(data.y_val.tolist()) == {0, 1}
    # The same factory and seed give the same split.
    again = load_data(settings.data)
    assert torch.equal(again.x_train, data.x_train)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("data._target_=tests.fixtures.datasets.nothing",), "cannot be imported"),
        (("data._target_=tests.fixtures.datasets.not_a_dataset",), "at least 10"),
        (("data._target_=tests.fixtures.datasets.not_a_dataset", "+data.args.size=20"),
         "not an (input, label) pair"),
        (("data.num_classes=2", "data.resolution=8"), "expected (N, 1, 8, 8)"),
        (("+data.args.bogus=1",), "could not be built"),
    ],
)
def test_bad_dataset_is_a_user_error(settings_for, overrides, message):
    settings = _settings(settings_for, *overrides)
    with pytest.raises(UserError, match=re.escape(message)):
        load_data(settings.data)
