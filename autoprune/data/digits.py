"""scikit-learn's bundled 8x8 handwritten digits: real data that needs no download."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from autoprune.config import DataConfig


def load_digits(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return images (N, 1, R, R) scaled to [0, 1] and upsampled to cfg.resolution, and labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if cfg.resolution != images.shape[-1]:
        images = F.interpolate(
            images, size=(cfg.resolution, cfg.resolution), mode="bilinear", align_corners=False
        )
    images = (images - 0.5) / 0.5
    return images.numpy(), bunch.target.astype(np.int64)
