"""Datasets as seeded train/val/test splits of tensors; see `load_data`."""

from autoprune.data.digits import load_digits
from autoprune.data.splits import DataSplits, load_data, make_loader, split_arrays

__all__ = ["DataSplits", "load_data", "load_digits", "make_loader", "split_arrays"]
