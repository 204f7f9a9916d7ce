"""A user's .npz arrays: loaded when right, refused with a clear message when not."""

from __future__ import annotations

import numpy as np
import pytest

from autoprune.data import load_data
from autoprune.errors import UserError
from tests.conftest import make_settings


def write(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def settings_for_file(path: str, *extra: str):
    return make_settings("data=arrays", f"data.path={path}", *extra)


def good_arrays(n: int = 200, channels: int = 1):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, channels, 16, 16)), np.arange(n) % 10


def test_loads_and_splits_a_valid_file(tmp_path):
    x, y = good_arrays()
    data = load_data(settings_for_file(write(tmp_path / "d.npz", x=x, y=y)).data)
    assert data.train[0][0].shape == (1, 16, 16)
    assert sum(data.sizes()) == 200


def test_single_channel_inputs_may_omit_the_channel_axis(tmp_path):
    x, y = good_arrays()
    data = load_data(settings_for_file(write(tmp_path / "d.npz", x=x[:, 0], y=y)).data)
    assert data.train[0][0].shape == (1, 16, 16)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"inputs": np.zeros((10, 1, 16, 16)), "y": np.zeros(10, int)}, "needs arrays named x"),
        ({"x": np.zeros((10, 3, 16, 16)), "y": np.zeros(10, int)}, "expected (N, 1, 16, 16)"),
        ({"x": np.zeros((10, 1, 16, 16)), "y": np.zeros(10)}, "integer labels"),
        ({"x": np.zeros((10, 1, 16, 16)), "y": np.zeros(9, int)}, "must be 10 integer labels"),
        ({"x": np.zeros((10, 1, 16, 16)), "y": np.full(10, 12)}, "data.num_classes is 10"),
        ({"x": np.full((10, 1, 16, 16), np.nan), "y": np.zeros(10, int)}, "NaN"),
        ({"x": np.array([{"a": 1}] * 10, dtype=object), "y": np.zeros(10, int)},
         "not a readable .npz"),
    ],
)
def test_wrong_files_are_user_errors(tmp_path, arrays, message):
    path = write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_data(settings_for_file(path).data)


def test_missing_file_and_missing_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_data(settings_for_file(str(tmp_path / "nope.npz")).data)
    with pytest.raises(UserError, match="data.path is required"):
        make_settings("data=arrays")
