"""Fitting the kernel-level latency model to a device, storing it and applying it.

`calibrate` times every distinct kernel of its calibration models into a fresh kernel table
and fits the correction to the models' measured latencies; the weights sit in the profile's
calibration file beside the roofline's factors, the table beside it. The kernel-level model
is used on PyTorch profiles on this machine's CPU, the only kind it can time kernels on here;
every other profile keeps the roofline.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from autoprune.config import HardwareProfile
from autoprune.hardware.kernels import (
    KernelModel,
    KernelTable,
    Summed,
    fit_correction,
    forget_tables,
    summed,
    table,
    time_kernels,
)


def kernel_level(profile: HardwareProfile) -> bool:
    """Whether the profile can have a kernel-level model: PyTorch eager on the CPU."""
    return profile.backend == "torch" and profile.device == "cpu" and not profile.ray_resource


def table_path(calibration_file: Path) -> Path:
    return calibration_file.with_suffix(".kernels.sqlite")


def fit_kernel_model(models: Sequence[nn.Module], measured_ms: Sequence[float],
                     profile: HardwareProfile, example: Any, path: Path, device: str,
                     progress: Callable[[int, int], None] | None = None
                     ) -> tuple[KernelModel, list[Summed]]:
    """Time every kernel of `models` into a fresh table written beside `path` (it replaces
    `path` only once complete) and fit the correction to `measured_ms`."""
    building = path.with_name(f".{path.name}.{os.getpid()}")
    building.unlink(missing_ok=True)
    table = KernelTable(building)
    passes = []
    for done, model in enumerate(models, start=1):
        timed, modules = time_kernels(model, example, profile, table, measure_new=True)
        passes.append(summed(timed, modules, table, profile))
        if progress is not None:
            progress(done, len(models))
    weights, spread = fit_correction(passes, measured_ms)
    os.replace(building, path)
    forget_tables()
    return KernelModel(str(path), weights, spread, device), passes


def kernel_errors(model: KernelModel, passes: Sequence[Summed],
                  measured_ms: Sequence[float]) -> dict[str, float]:
    """MAPE, Kendall's tau and the share within 10% of the model's predictions."""
    from scipy.stats import kendalltau

    predicted = [model.correct(p) for p in passes]
    errors = [abs(p - m) / m for p, m in zip(predicted, measured_ms, strict=True)]
    tau = kendalltau(predicted, measured_ms).statistic if len(errors) > 1 else float("nan")
    return {"mape": sum(errors) / len(errors), "kendall_tau": float(tau),
            "within_10": sum(e <= 0.10 for e in errors) / len(errors)}


def stored(model: KernelModel, fit: dict[str, float], kernels: int) -> dict[str, Any]:
    """The calibration file's section for the kernel-level model."""
    return {"table": Path(model.table_path).name, "weights": list(model.weights),
            "features": ["sum_ms", "kernels", "module_calls", "1"], "spread": model.spread,
            "kernels": kernels, "fit": fit}


def applied(profile: HardwareProfile, data: dict[str, Any], calibration_file: Path,
            measure_new: bool) -> HardwareProfile:
    """`profile` with the stored kernel-level model attached (new kernels timed in this
    process when `measure_new`), or as it is when it has none or cannot use one."""
    section = data.get("kernel_model")
    path = table_path(calibration_file)
    if not section or not kernel_level(profile) or not path.is_file():
        return profile
    try:
        table(str(path))
    except sqlite3.DatabaseError:  # not a kernel table of this version: calibrate again
        return profile
    model = KernelModel(str(path), tuple(float(w) for w in section["weights"]),
                        float(section["spread"]), str(data.get("device", "")), measure_new)
    return dataclasses.replace(profile, kernel_model=model)
