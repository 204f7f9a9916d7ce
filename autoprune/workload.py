"""A workload: the task, its data splits, and how batches are read from them.

Trials, base training, sensitivity and the end of a study all read data through this: seeded
shuffled training batches (a fresh order every epoch, augmentation applied by the dataset on
every read), a fixed seeded subset of validation batches during the search, whole splits for
the final scores, and the first training items for calibration.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.dataloader import default_collate

from autoprune.data.splits import DataSplits
from autoprune.tasks import Task, first


@dataclass(frozen=True)
class Loading:
    """Batch sizes and DataLoader settings shared by every process of a study."""

    batch_size: int = 64
    eval_batch_size: int = 256
    eval_batches: int | None = None  # during the search: this many validation batches
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0


@dataclass(frozen=True)
class Workload:
    """What a model is trained and judged on."""

    task: Task
    data: DataSplits
    loading: Loading = Loading()

    def _loader(self, dataset: Dataset, batch_size: int, seed: int | None) -> DataLoader:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        workers = self.loading.num_workers
        return DataLoader(dataset, batch_size=batch_size, shuffle=seed is not None,
                          generator=generator, num_workers=workers,
                          pin_memory=self.loading.pin_memory,
                          persistent_workers=False)

    def train_loader(self, seed: int) -> DataLoader:
        """Training batches in a seeded order, reshuffled every pass."""
        return self._loader(self.data.train, self.loading.batch_size, seed)

    def eval_loader(self, split: str = "val", subset: bool = True) -> DataLoader:
        """Batches of a split in order; with `subset` and `eval_batches` set, only that many
        batches of a fixed, seeded choice of its items (the same in every trial)."""
        dataset = getattr(self.data, split)
        size = len(dataset)
        limit = self.loading.eval_batches
        if subset and limit is not None and limit * self.loading.eval_batch_size < size:
            dataset = Subset(dataset, _subset(size, limit * self.loading.eval_batch_size,
                                              self.loading.seed))
        return self._loader(dataset, self.loading.eval_batch_size, None)

    def items(self, count: int) -> Any:
        """The first `count` training items as one batch: fixed, so that calibration (int8
        ranges, gradient criteria) repeats exactly."""
        train = self.data.train
        return default_collate([train[i] for i in range(min(count, len(train)))])

    def example(self) -> Any:
        """The model input of one training example (batch size 1), for tracing and timing."""
        return first(self.task.inputs(self.items(1)), 1)


@functools.lru_cache(maxsize=8)
def _subset(size: int, count: int, seed: int) -> list[int]:
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + 7919))
    return sorted(order[:count].tolist())
