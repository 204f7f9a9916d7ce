"""Calibration of a profile's latency model against measurements on the device itself.

The roofline's efficiency factors (fraction of peak compute and of peak bandwidth that real
kernels reach) and its per-kernel overhead are fitted to measured latencies of a set of models:
the built-in zoo and randomly pruned variants of it. The fit minimises the squared error of
log latency (relative error, so small and large models count alike). The result is stored per
profile under `<cache_dir>/calibration/<profile>.json` and used from then on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from autoprune.config import HardwareProfile, ModelConfig, RooflineConfig
from autoprune.hardware.predictor import Kernel, kernel_time_ms, record_kernels

ZOO = {
    "resnet8": ("autoprune.models.resnet.ResNet", {"blocks_per_stage": 1}),
    "resnet": ("autoprune.models.resnet.ResNet", {}),
    "mobilenet": ("autoprune.models.mobilenet.MobileNetV2", {}),
    "vgg": ("autoprune.models.vgg.VGG", {}),
    "mlp": ("autoprune.models.mlp.MLP", {"resolution": 16}),
    "vit": ("autoprune.models.vit.ViT", {"resolution": 16}),
}
STRUCTURED = ("channel", "neuron", "head", "layer", "lowrank")
RATIOS = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75)


@dataclass(frozen=True)
class Sample:
    """One model's recorded kernels and its measured latency."""

    name: str
    kernels: tuple[Kernel, ...]
    measured_ms: float


def pruned_variants(name: str, count: int, seed: int, alignment: int = 8,
                    input_shape: Sequence[int] = (1, 16, 16)) -> list[nn.Module]:
    """`count` random structured prunings of zoo model `name` (untrained weights: latency does
    not depend on them); the first is the unpruned model."""
    from autoprune.models import build_model
    from autoprune.pruning import (
        Decision,
        Policy,
        PruneSettings,
        apply_policy,
        check_groups,
        find_groups,
    )

    target, kwargs = ZOO[name]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name, target, None, {"num_classes": 10,
                                                        "in_channels": input_shape[0],
                                                        **kwargs})).eval()
    x = torch.zeros(1, *input_shape)
    groups = find_groups(model, x)
    choices, _ = check_groups(model, groups, STRUCTURED, x, PruneSettings(alignment))
    usable = [g for g in groups if g.id in choices]
    rng = random.Random(seed)
    variants = [model]
    while len(variants) < count:
        decisions = {}
        for gid, names in choices.items():
            strategy = rng.choice([*names, "none"])
            if strategy == "none":
                continue
            ratio = 1.0 if strategy == "layer" else rng.choice(RATIOS)
            decisions[gid] = Decision(strategy, ratio)
        variants.append(apply_policy(model, Policy(decisions), usable, x,
                                     PruneSettings(alignment)).model)
    return variants


def predict_ms(kernels: Sequence[Kernel], roofline: RooflineConfig, precision: str) -> float:
    """The latency model's prediction for recorded kernels, in milliseconds."""
    return sum(kernel_time_ms(k, roofline, precision) for k in kernels)


def fit(samples: Sequence[Sample], roofline: RooflineConfig, precision: str) -> RooflineConfig:
    """The roofline with efficiencies and kernel overhead fitted to `samples`."""
    from scipy.optimize import minimize

    def with_params(params: Sequence[float]) -> RooflineConfig:
        compute, memory, overhead = (math.exp(p) for p in params)
        return dataclasses.replace(roofline, compute_efficiency=compute,
                                   memory_efficiency=memory, kernel_overhead_us=overhead)

    def loss(params: Sequence[float]) -> float:
        candidate = with_params(params)
        return sum((math.log(predict_ms(s.kernels, candidate, precision))
                    - math.log(s.measured_ms)) ** 2 for s in samples)

    start = [math.log(roofline.compute_efficiency), math.log(roofline.memory_efficiency),
             math.log(max(roofline.kernel_overhead_us, 0.1))]
    result = minimize(loss, start, method="Nelder-Mead",
                      options={"maxiter": 3000, "xatol": 1e-5, "fatol": 1e-10})
    return with_params(result.x)


def errors(samples: Sequence[Sample], roofline: RooflineConfig,
           precision: str) -> dict[str, float]:
    """Mean absolute percentage error and Kendall's tau of predictions against measurements."""
    from scipy.stats import kendalltau

    predicted = [predict_ms(s.kernels, roofline, precision) for s in samples]
    measured = [s.measured_ms for s in samples]
    mape = sum(abs(p - m) / m for p, m in zip(predicted, measured, strict=True)) / len(samples)
    tau = kendalltau(predicted, measured).statistic if len(samples) > 1 else float("nan")
    return {"mape": mape, "kendall_tau": float(tau)}


def collect(models: Sequence[tuple[str, nn.Module]], profile: HardwareProfile,
            input_shape: Sequence[int], measure) -> list[Sample]:  # noqa: ANN001
    """Record and measure each model (`measure(model) -> Latency`)."""
    return [Sample(name, tuple(record_kernels(model, input_shape, profile)),
                   measure(model).median_ms) for name, model in models]


def calibration_path(cache_dir: str, profile: HardwareProfile) -> Path:
    return Path(cache_dir).expanduser() / "calibration" / f"{profile.name}.json"


def save(path: Path, profile: HardwareProfile, fitted: RooflineConfig, device: str,
         before: dict[str, float], after: dict[str, float], count: int) -> None:
    """Write the fitted factors (atomically) with how well they fit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"profile": profile.name, "device": device, "backend": profile.backend,
            "precision": profile.precision, "samples": count,
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "compute_efficiency": fitted.compute_efficiency,
            "memory_efficiency": fitted.memory_efficiency,
            "kernel_overhead_us": fitted.kernel_overhead_us,
            "fit_before": before, "fit_after": after}
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


def calibrated(profile: HardwareProfile, cache_dir: str) -> tuple[HardwareProfile, str]:
    """`profile` with its stored calibration applied, and a line saying which was used."""
    path = calibration_path(cache_dir, profile)
    if profile.roofline is None:
        return profile, "no latency model"
    if not path.is_file():
        return profile, "latency model uncalibrated (run: python -m autoprune calibrate " \
                        f"hardware={profile.name})"
    try:
        data = json.loads(path.read_text())
        roofline = dataclasses.replace(
            profile.roofline, compute_efficiency=float(data["compute_efficiency"]),
            memory_efficiency=float(data["memory_efficiency"]),
            kernel_overhead_us=float(data["kernel_overhead_us"]))
    except (ValueError, KeyError, TypeError) as exc:
        return profile, f"latency model uncalibrated ({path} is unreadable: {exc})"
    return (dataclasses.replace(profile, roofline=roofline),
            f"latency model calibrated on {data.get('device', '?')} at {data.get('created', '?')}")
