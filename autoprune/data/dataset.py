"""Any map-style torch Dataset, built by an importable factory (`data._target_`).

The dataset is read once, item by item, into tensors and then split like every other source:
the splits travel to Ray workers as plain tensors. Items are (input, label) pairs; inputs of
shape (C, H, W) or (H, W) as tensors or arrays, labels as integers.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from autoprune.config import DataConfig
from autoprune.data.arrays import checked_arrays
from autoprune.errors import UserError


def _factory(target: str):
    module_name, _, attr = target.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(f"data._target_ {target!r} cannot be imported ({exc})") from exc
    if not callable(factory):
        raise UserError(f"data._target_ {target!r} is not callable")
    return factory


def load_dataset(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return x (N, C, H, W) float32 and y (N,) int64 from the configured Dataset factory."""
    if not cfg.target:
        raise UserError("data=dataset needs data._target_=<pkg.module.factory> returning a "
                        "map-style torch Dataset")
    try:
        dataset = _factory(cfg.target)(**cfg.args)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"data._target_ {cfg.target} could not be built: {exc}") from exc
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise UserError(f"data._target_ {cfg.target} returned {type(dataset).__name__}, "
                        "not a map-style Dataset (with __len__ and __getitem__)")
    if len(dataset) < 10:
        raise UserError(f"data._target_ {cfg.target} has {len(dataset)} items; "
                        "at least 10 are needed to split it")
    inputs, labels = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise UserError(f"data._target_ {cfg.target}: item {index} is not an "
                            "(input, label) pair")
        inputs.append(torch.as_tensor(np.asarray(item[0]), dtype=torch.float32))
        labels.append(int(item[1]))
    shapes = {tuple(t.shape) for t in inputs}
    if len(shapes) != 1:
        raise UserError(f"data._target_ {cfg.target}: inputs have different shapes "
                        f"{sorted(shapes)[:3]}")
    x = torch.stack(inputs).numpy()
    return checked_arrays(x, np.asarray(labels, dtype=np.int64), cfg,
                          f"data._target_ {cfg.target}")
