"""The digits data: seeded, stratified, disjoint splits of all 1797 images at any resolution."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autoprune.config import DataConfig
from autoprune.data import DataSplits, load_data, split_arrays
from autoprune.data.digits import load_digits
from autoprune.errors import UserError
from tests.conftest import xy

TOTAL = 1797
CLASSES = 10
CONFIG = DataConfig(name="digits", resolution=16, in_channels=1, num_classes=CLASSES,
                    val_fraction=0.2, test_fraction=0.2, split_seed=0)


@pytest.fixture(scope="module")
def splits() -> DataSplits:
    return load_data(CONFIG)


def _labels(splits: DataSplits) -> list[torch.Tensor]:
    return [xy(splits.train)[1], xy(splits.val)[1], xy(splits.test)[1]]


def _index_splits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the example indices the way load_data splits the images."""
    _, y = load_digits(dataclasses.replace(CONFIG, resolution=8))
    s = split_arrays(np.arange(TOTAL)[:, None], y, CONFIG.val_fraction, CONFIG.test_fraction,
                     seed)
    return tuple(xy(split)[0][:, 0].long().numpy() for split in (s.train, s.val, s.test))


def test_split_sizes_add_up(splits: DataSplits) -> None:
    sizes = splits.sizes()
    assert sum(sizes) == TOTAL
    assert [len(y) for y in _labels(splits)] == list(sizes)
    assert sizes[1] == pytest.approx(0.2 * TOTAL, abs=2)
    assert sizes[2] == pytest.approx(0.2 * TOTAL, abs=2)


def test_every_split_is_stratified(splits: DataSplits) -> None:
    labels = _labels(splits)
    overall = np.bincount(torch.cat(labels).numpy(), minlength=CLASSES)
    for y, fraction in zip(labels, (0.6, 0.2, 0.2), strict=True):
        counts = np.bincount(y.numpy(), minlength=CLASSES)
        assert (counts > 0).all(), "every class appears in every split"
        assert np.abs(counts - fraction * overall).max() <= 2


@pytest.mark.parametrize("resolution", [8, 16, 24])
def test_inputs_have_the_configured_resolution(resolution: int) -> None:
    data = load_data(dataclasses.replace(CONFIG, resolution=resolution))
    for split in (data.train, data.val, data.test):
        x, y = xy(split)
        assert x.dtype == torch.float32 and y.dtype == torch.long
        assert x.shape[1:] == (1, resolution, resolution)
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert set(y.tolist()) == set(range(CLASSES))


def test_splits_are_disjoint_and_cover_everything() -> None:
    train, val, test = _index_splits(seed=0)
    assert len(set(train) | set(val) | set(test)) == TOTAL
    assert not set(train) & set(val)
    assert not set(train) & set(test)
    assert not set(val) & set(test)


def test_load_data_splits_match_the_index_split(splits: DataSplits) -> None:
    x, y = load_digits(CONFIG)
    for index, split in zip(_index_splits(seed=0), (splits.train, splits.val, splits.test),
                            strict=True):
        xs, ys = xy(split)
        assert torch.equal(xs, torch.as_tensor(x[index]))
        assert torch.equal(ys, torch.as_tensor(y[index]))


def test_same_split_seed_gives_identical_splits(splits: DataSplits) -> None:
    again = load_data(CONFIG)
    for name in ("train", "val", "test"):
        for a, b in zip(xy(getattr(again, name)), xy(getattr(splits, name)), strict=True):
            assert torch.equal(a, b)
    assert again.fingerprint == splits.fingerprint


def test_other_split_seed_gives_another_split() -> None:
    assert not np.array_equal(_index_splits(seed=0)[2], _index_splits(seed=1)[2])
    other = load_data(dataclasses.replace(CONFIG, split_seed=1))
    assert other.fingerprint != load_data(CONFIG).fingerprint


def test_num_classes_mismatch_is_a_user_error() -> None:
    with pytest.raises(UserError, match="num_classes"):
        load_data(dataclasses.replace(CONFIG, num_classes=9))


def test_unknown_dataset_is_a_user_error() -> None:
    with pytest.raises(UserError, match="digits"):
        load_data(dataclasses.replace(CONFIG, name="imagenet"))


def test_mismatched_inputs_and_labels_are_a_user_error() -> None:
    with pytest.raises(UserError, match="labels"):
        split_arrays(np.zeros((10, 1)), np.zeros(9, dtype=np.int64), 0.2, 0.2, 0)
