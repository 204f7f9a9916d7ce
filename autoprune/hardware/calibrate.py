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
from autoprune.hardware.predictor import (
    COMPUTE,
    FITTED,
    Kernel,
    kernel_time_ms,
    record_kernels,
    roofline_ms,
)

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
    """One model's recorded kernels, its measured latency and each pass's measurement."""

    name: str
    kernels: tuple[Kernel, ...]
    measured_ms: float
    passes: tuple[float, ...] = ()


def pruned_variants(name: str, count: int, seed: int, alignment: int = 8,
                    input_shape: Sequence[int] = (1, 16, 16)) -> list[nn.Module]:
    """`count` random structured prunings of zoo model `name` (untrained weights: latency does
    not depend on them); the first is the unpruned model."""
    from autoprune.models import build_model
    from autoprune.pruning import PruneSettings, apply_policy, find_groups

    target, kwargs = ZOO[name]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name, target, None, {"num_classes": 10,
                                                        "in_channels": input_shape[0],
                                                        **kwargs})).eval()
    x = torch.zeros(1, *input_shape)
    groups = find_groups(model, x)
    variants = [model]
    for policy in random_policies(model, x, count - 1, seed, alignment):
        usable = [g for g in groups if g.id in policy.decisions]
        variants.append(apply_policy(model, policy, usable, x, PruneSettings(alignment)).model)
    return variants


def random_policies(model: nn.Module, x: torch.Tensor, count: int, seed: int,
                    alignment: int = 8) -> list:
    """`count` random structured pruning policies of `model`: each group pruned by one of
    the structured strategies it allows at a random ratio (a removed layer entirely), or
    left alone."""
    from autoprune.pruning import Decision, Policy, PruneSettings, check_groups, find_groups

    choices, _ = check_groups(model, find_groups(model, x), STRUCTURED, x,
                              PruneSettings(alignment))
    rng = random.Random(seed)
    policies = []
    for _ in range(count):
        decisions = {}
        for gid, names in choices.items():
            strategy = rng.choice([*names, "none"])
            if strategy == "none":
                continue
            ratio = 1.0 if strategy == "layer" else rng.choice(RATIOS)
            decisions[gid] = Decision(strategy, ratio)
        policies.append(Policy(decisions))
    return policies


def predict_ms(kernels: Sequence[Kernel], roofline: RooflineConfig, precision: str) -> float:
    """The latency model's prediction for recorded kernels, in milliseconds."""
    return sum(kernel_time_ms(k, roofline, precision) for k in kernels)


def _prediction(samples: Sequence[Sample], roofline: RooflineConfig, precision: str):  # noqa: ANN202
    """A vectorised `predict_ms` over all samples, as a function of the fitted factors."""
    import numpy as np

    kernels = [(i, k) for i, s in enumerate(samples) for k in s.kernels
               if not (k.op == "fusible" and roofline.fuse_elementwise)]
    owner = np.array([i for i, _ in kernels])
    flops = np.array([k.flops for _, k in kernels])
    moved = np.array([k.bytes for _, k in kernels])
    arithmetic = np.array([k.op in COMPUTE for _, k in kernels])
    depthwise = np.array([k.op == "dwconv" for _, k in kernels])
    peak = roofline.peak_tflops[precision] * 1e12
    bandwidth = roofline.bandwidth_gbps * 1e9

    def predict(factors: dict[str, float]):  # noqa: ANN202
        ms = roofline_ms(flops, moved, arithmetic, depthwise, factors, peak, bandwidth)
        return np.bincount(owner, weights=ms, minlength=len(samples))

    return predict


def fit(samples: Sequence[Sample], roofline: RooflineConfig, precision: str) -> RooflineConfig:
    """The roofline with the `FITTED` factors fitted to `samples` (least squares of log
    latency, from a few starting points)."""
    import numpy as np
    from scipy.optimize import minimize

    predict = _prediction(samples, roofline, precision)
    measured = np.log([s.measured_ms for s in samples])

    def loss(params) -> float:  # noqa: ANN001
        factors = np.exp(np.clip(params, -30.0, 30.0))
        predicted = predict(dict(zip(FITTED, factors, strict=True)))
        return float(np.sum((np.log(predicted) - measured) ** 2))

    given = np.log([max(getattr(roofline, name), 1e-3) for name in FITTED])
    best = None
    methods = {"Nelder-Mead": {"xatol": 1e-6, "fatol": 1e-12}, "Powell": {"xtol": 1e-6}}
    for start in (given, given + math.log(2), given - math.log(2)):
        for method, tolerances in methods.items():
            result = minimize(loss, start, method=method,
                              options={"maxiter": 20000, "maxfev": 20000, **tolerances})
            if best is None or result.fun < best.fun:
                best = result
    fitted = dict(zip(FITTED, (float(v) for v in np.exp(np.clip(best.x, -30.0, 30.0))),
                      strict=True))
    return dataclasses.replace(roofline, **fitted)


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
            example: torch.Tensor, measure, passes: int = 2,  # noqa: ANN001
            progress=None) -> list[Sample]:  # noqa: ANN001
    """Record each model and measure it (`measure(model) -> Latency`) once per pass, all
    models in turn; its latency is the fastest pass. A shared machine can run at half speed
    for a second or more, which a single measurement's spread does not reveal but a second
    pass minutes later does. `progress(done, total, name, ms)` is called per measurement."""
    times: list[list[float]] = [[] for _ in models]
    total = passes * len(models)
    for p in range(passes):
        for index, (name, model) in enumerate(models):
            times[index].append(measure(model).median_ms)
            if progress is not None:
                progress(p * len(models) + index + 1, total, name, times[index][-1])
    return [Sample(name, tuple(record_kernels(model, example, profile)), min(runs),
                   tuple(runs)) for (name, model), runs in zip(models, times, strict=True)]


def calibration_path(cache_dir: str, profile: HardwareProfile) -> Path:
    return Path(cache_dir).expanduser() / "calibration" / f"{profile.name}.json"


def save(path: Path, profile: HardwareProfile, fitted: RooflineConfig, device: str,
         before: dict[str, float], after: dict[str, float], count: int,
         kernel_model: dict | None = None) -> None:
    """Write the fitted factors (atomically) with how well they fit, and the kernel-level
    model's section where one was fitted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"profile": profile.name, "device": device, "backend": profile.backend,
            "precision": profile.precision, "samples": count,
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            **{name: getattr(fitted, name) for name in FITTED},
            "fit_before": before, "fit_after": after,
            **({"kernel_model": kernel_model} if kernel_model else {})}
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


def calibrated(profile: HardwareProfile, cache_dir: str,
               measure_new: bool = False) -> tuple[HardwareProfile, str]:
    """`profile` with its stored calibration applied (the kernel-level model attached where
    one was fitted; kernels it has not timed are timed in this process when `measure_new`),
    and a line saying which was used."""
    from autoprune.hardware.kernel_calibration import applied

    path = calibration_path(cache_dir, profile)
    if profile.roofline is None:
        return profile, "no latency model"
    if not path.is_file():
        return profile, "latency model uncalibrated (run: python -m autoprune calibrate " \
                        f"hardware={profile.name})"
    try:
        data = json.loads(path.read_text())
        roofline = dataclasses.replace(
            profile.roofline, **{name: float(data[name]) for name in FITTED})
    except KeyError as exc:
        return profile, f"latency model uncalibrated ({path} lacks {exc}: run calibrate again)"
    except (ValueError, TypeError) as exc:
        return profile, f"latency model uncalibrated ({path} is unreadable: {exc})"
    profile = applied(dataclasses.replace(profile, roofline=roofline), data, path, measure_new)
    kind = "kernel-level" if profile.kernel_model else "roofline"
    return profile, f"latency model calibrated on {data.get('device', '?')} at " \
                    f"{data.get('created', '?')} ({kind})"


def calibration_fit(cache_dir: str, profile: HardwareProfile) -> dict[str, float] | None:
    """How well the stored calibration of the model `profile` uses (kernel-level where it
    has one attached) fitted its samples (`mape`, `kendall_tau`, `samples`), or None when
    the profile is uncalibrated or its file is unreadable."""
    try:
        data = json.loads(calibration_path(cache_dir, profile).read_text())
        if profile.kernel_model is not None:
            return {**data["kernel_model"]["fit"], "samples": data["samples"]}
        return {**data["fit_after"], "samples": data["samples"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
