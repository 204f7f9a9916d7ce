"""A user's own torch Datasets: `data.train._target_` (and optionally `data.val._target_`,
`data.test._target_`), built with Hydra's instantiate, so a dataset with a nested transform
(`transform._target_: torchvision.transforms.Compose`, ...) is written in YAML.

Items are read lazily by the DataLoaders, never all at once: a split missing from the config
is carved from the training set by a seeded random choice of indices, and the checks here
read only a few items.
"""

from __future__ import annotations

import hashlib

from torch.utils.data import Dataset

from autoprune.config import DataConfig
from autoprune.data.splits import DataSplits, carve
from autoprune.errors import UserError
from autoprune.instantiate import instantiate

SPLITS = ("train", "val", "test")


def _given(cfg: DataConfig, split: str) -> bool:
    node = getattr(cfg, split)
    return node is not None and not (isinstance(node, dict) and node.get("_target_") is None)


def _build(cfg: DataConfig, split: str) -> Dataset | None:
    node = getattr(cfg, split)
    if not _given(cfg, split):
        return None
    if not isinstance(node, dict) or "_target_" not in node:
        raise UserError(f"data.{split} must be a mapping with _target_ (a Dataset class or "
                        f"factory), got {node!r}")
    dataset = instantiate(node, f"data.{split}")
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise UserError(f"data.{split}._target_ {node['_target_']} returned "
                        f"{type(dataset).__name__}, not a map-style Dataset (with __len__ and "
                        "__getitem__)")
    if len(dataset) < 2:
        raise UserError(f"data.{split}._target_ {node['_target_']} has {len(dataset)} items")
    return dataset


def fingerprint(cfg: DataConfig, train: Dataset) -> str:
    """What identifies the training data without reading it: its config and its size (items
    are not read, since random augmentations make them differ on every read)."""
    key = repr((cfg.train, cfg.val, cfg.test, cfg.split_seed, cfg.val_fraction,
                cfg.test_fraction, len(train)))  # type: ignore[arg-type]
    return hashlib.sha256(key.encode()).hexdigest()


def load_dataset(cfg: DataConfig) -> DataSplits:
    """The user's splits; raises UserError naming the key when one cannot be built or read."""
    if not _given(cfg, "train"):
        raise UserError("data=dataset needs data.train._target_=<pkg.module.Dataset> (and "
                        "optionally data.val._target_ and data.test._target_)")
    train, val, test = (_build(cfg, split) for split in SPLITS)
    for split, dataset in zip(SPLITS, (train, val, test), strict=True):
        if dataset is not None:
            try:
                dataset[0]
            except Exception as exc:
                raise UserError(f"data.{split}: reading item 0 failed: {type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:200]}") from exc
    if test is None:
        train, test = carve(train, cfg.test_fraction, cfg.split_seed)
    if val is None:
        share = cfg.val_fraction / (1.0 - cfg.test_fraction) if not _given(cfg, "test") \
            else cfg.val_fraction
        train, val = carve(train, share, cfg.split_seed + 1)
    return DataSplits(train, val, test, fingerprint(cfg, train))
