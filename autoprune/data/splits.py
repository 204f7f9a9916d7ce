"""Train/val/test splits held as tensors: small enough to ship through Ray's object store once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from autoprune.config import DataConfig
from autoprune.errors import UserError


@dataclass(frozen=True)
class DataSplits:
    """Inputs (N, C, H, W) float32 and integer labels for each split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, without the batch dimension."""
        return tuple(self.x_train.shape[1:])


def split_arrays(
    x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> DataSplits:
    """Return a stratified, seeded train/val/test split of arrays x (N, ...) and labels y (N,)."""
    from sklearn.model_selection import train_test_split

    if len(x) != len(y):
        raise UserError(f"data has {len(x)} inputs but {len(y)} labels")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed,
        stratify=y_rest,
    )

    def pair(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.long)

    tr, va, te = pair(x_train, y_train), pair(x_val, y_val), pair(x_test, y_test)
    return DataSplits(*tr, *va, *te, num_classes=int(np.max(y)) + 1)


def load_data(cfg: DataConfig) -> DataSplits:
    """Load the configured dataset and split it; raises UserError for unknown names."""
    from autoprune.data.arrays import load_arrays
    from autoprune.data.dataset import load_dataset
    from autoprune.data.digits import load_digits
    from autoprune.data.synthetic import make_synthetic

    loaders = {"digits": load_digits, "synthetic": make_synthetic, "arrays": load_arrays,
               "dataset": load_dataset}
    if cfg.name not in loaders:
        raise UserError(f"unknown data {cfg.name!r}; choose one of: {', '.join(loaders)}")
    x, y = loaders[cfg.name](cfg)
    splits = split_arrays(x, y, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    if splits.num_classes != cfg.num_classes:
        raise UserError(
            f"data.num_classes is {cfg.num_classes} but {cfg.name} has {splits.num_classes}"
        )
    return splits


def make_loader(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0
) -> DataLoader:
    """Return a single-process loader; shuffling is seeded so runs repeat exactly."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator
    )
