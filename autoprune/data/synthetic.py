"""A synthetic classification set for quick runs: seeded class templates plus noise."""

from __future__ import annotations

import numpy as np

from autoprune.config import DataConfig


def make_synthetic(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return `cfg.samples` images (N, C, R, R) and balanced labels, fully determined by the seed.

    Each class has a smooth random template; an example is its template plus Gaussian noise of
    scale `cfg.noise`, so a small CNN learns it in a few epochs and pruning still costs accuracy.
    """
    rng = np.random.default_rng(cfg.split_seed)
    shape = (cfg.in_channels, cfg.resolution, cfg.resolution)
    coarse = rng.standard_normal((cfg.num_classes, cfg.in_channels, 4, 4))
    repeat = -(-cfg.resolution // 4)
    templates = coarse.repeat(repeat, axis=2).repeat(repeat, axis=3)[
        :, :, : cfg.resolution, : cfg.resolution]
    labels = np.arange(cfg.samples) % cfg.num_classes
    rng.shuffle(labels)
    images = templates[labels] + cfg.noise * rng.standard_normal((cfg.samples, *shape))
    return images.astype(np.float32), labels.astype(np.int64)
