"""A user's own data as a NumPy .npz file holding inputs `x` and integer labels `y`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoprune.config import DataConfig
from autoprune.errors import UserError


def load_arrays(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return x (N, C, H, W) float32 and y (N,) int64 from `cfg.path`; raises UserError.

    `x` may also be (N, H, W) for one channel. The file is read without pickle, and its shape
    must match the config (data.in_channels, data.resolution) that the model is built from.
    """
    if not cfg.path:
        raise UserError("data=arrays needs data.path=<file.npz> with arrays x and y")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise UserError(f"data.path {cfg.path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            found = sorted(archive.files)
            if "x" not in found or "y" not in found:
                raise UserError(f"data.path {cfg.path!r} holds {', '.join(found) or 'nothing'}; "
                                "it needs arrays named x (inputs) and y (labels)")
            x, y = archive["x"], archive["y"]
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"data.path {cfg.path!r} is not a readable .npz file: {exc}") from exc
    return checked_arrays(x, y, cfg, "data.path")


def checked_arrays(x: np.ndarray, y: np.ndarray, cfg: DataConfig,
                   source: str) -> tuple[np.ndarray, np.ndarray]:
    """Return x as float32 (N, C, H, W) and y as int64 after checking them against `cfg`;
    `source` names where they came from in any UserError."""
    if x.ndim == 3:
        x = x[:, None]
    expected = (cfg.in_channels, cfg.resolution, cfg.resolution)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise UserError(f"{source} x has shape {tuple(x.shape)}; expected (N, "
                        f"{', '.join(map(str, expected))}) from data.in_channels and "
                        "data.resolution")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{source} y must be {len(x)} integer labels, got {y.dtype} "
                        f"of shape {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= cfg.num_classes:
        raise UserError(f"{source} labels span {y.min()}..{y.max()}; data.num_classes is "
                        f"{cfg.num_classes}")
    if not np.isfinite(x).all():
        raise UserError(f"{source} x contains NaN or infinite values")
    return x.astype(np.float32), y.astype(np.int64)
