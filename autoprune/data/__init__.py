"""Datasets as seeded train/val/test splits; see `load_data`."""

from autoprune.data.splits import DataSplits, carve, load_data, split_arrays

__all__ = ["DataSplits", "carve", "load_data", "split_arrays"]
