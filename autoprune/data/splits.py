"""Train/val/test splits as torch Datasets, and how a config becomes them (`load_data`).

The embedded sets (digits, synthetic, a user's .npz arrays) are small arrays held as
TensorDatasets and split 60/20/20, stratified and seeded. A user's Dataset (`data=dataset`)
and text (`data=text`) are read lazily, item by item, through DataLoaders: nothing holds a
whole split in memory. Every process that trains builds its own splits from the config, so
nothing large travels between processes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from autoprune.config import DataConfig
from autoprune.errors import UserError


@dataclass(frozen=True)
class DataSplits:
    """The three splits, and a fingerprint of the training data that keys cached models."""

    train: Dataset
    val: Dataset
    test: Dataset
    fingerprint: str

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)  # type: ignore[arg-type]


def split_arrays(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float,
                 seed: int) -> DataSplits:
    """A stratified, seeded train/val/test split of arrays x (N, ...) and labels y (N,)."""
    from sklearn.model_selection import train_test_split

    if len(x) != len(y):
        raise UserError(f"data has {len(x)} inputs but {len(y)} labels")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed,
        stratify=y_rest)

    def tensors(a: np.ndarray, b: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.as_tensor(a, dtype=torch.float32),
                             torch.as_tensor(b, dtype=torch.long))

    digest = hashlib.sha256(np.ascontiguousarray(x_train, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(y_train, dtype=np.int64).tobytes())
    return DataSplits(tensors(x_train, y_train), tensors(x_val, y_val),
                      tensors(x_test, y_test), digest.hexdigest())


def carve(dataset: Dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Split `dataset` into (rest, carved) at random, seeded: `fraction` of it carved out."""
    size = len(dataset)  # type: ignore[arg-type]
    count = max(1, round(size * fraction))
    if count >= size:
        raise UserError(f"a dataset of {size} items cannot give up {count} for a split")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    rest, carved = sorted(order[count:]), sorted(order[:count])
    if isinstance(dataset, Subset):  # index the underlying dataset: no subsets of subsets
        base = list(dataset.indices)
        return (Subset(dataset.dataset, [base[i] for i in rest]),
                Subset(dataset.dataset, [base[i] for i in carved]))
    return Subset(dataset, rest), Subset(dataset, carved)


def load_data(cfg: DataConfig) -> DataSplits:
    """The configured splits; raises UserError for unknown names or bad data."""
    from autoprune.data.arrays import load_arrays
    from autoprune.data.dataset import load_dataset
    from autoprune.data.digits import load_digits
    from autoprune.data.synthetic import make_synthetic
    from autoprune.data.text import load_text

    if cfg.name == "dataset":
        return load_dataset(cfg)
    if cfg.name == "text":
        return load_text(cfg)
    arrays = {"digits": load_digits, "synthetic": make_synthetic, "arrays": load_arrays}
    if cfg.name not in arrays:
        raise UserError(f"unknown data {cfg.name!r}; choose one of: "
                        f"{', '.join([*arrays, 'dataset', 'text'])}")
    x, y = arrays[cfg.name](cfg)
    classes = int(np.max(y)) + 1
    if cfg.num_classes is not None and classes != cfg.num_classes:
        raise UserError(f"data.num_classes is {cfg.num_classes} but {cfg.name} has {classes}")
    return split_arrays(x, y, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
