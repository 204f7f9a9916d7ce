"""Real latency measurement: warm-up, repeated timed blocks, median and spread."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from autoprune.config import HardwareProfile
from autoprune.hardware.compiled import compiled, replayed, timing_dtype
from autoprune.hardware.latency import (
    Latency,
    architecture_key,
    cast_inputs,
    input_signature,
    timing_input,
)
from autoprune.hardware.timing import keep_faster, summary, time_blocks
from autoprune.pruning.quantize import is_quantized, quantize_int8
from autoprune.tasks import call_model


def resolve_device(profile: HardwareProfile) -> torch.device:
    """Return the torch device this profile measures on; CUDA only where it exists."""
    if profile.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"hardware={profile.name} measures on CUDA, which this node lacks")
    return torch.device(profile.device)


def _torch_runner(model: nn.Module, example: Any, profile: HardwareProfile,
                  device: torch.device) -> tuple[Callable[[], object], str, Callable[[], object]]:
    """PyTorch eager on `device` in the profile's precision: (run one batch, device, sync)."""
    dtype = timing_dtype(profile.precision, device)
    if is_quantized(model):
        if device.type != "cpu":
            raise RuntimeError("int8 models from PyTorch quantisation run on the CPU only")
        dtype = torch.float32
    else:
        model = model.to(device=device, dtype=dtype)
    x = cast_inputs(timing_input(example, profile.batch_size), device, dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model = compiled(model, profile.backend, device)
    run = replayed(lambda: call_model(model, x), profile.backend, device)
    return run, name + ("" if profile.backend == "torch" else f" ({profile.backend})"), sync


@torch.inference_mode()
def measure_latency(model: nn.Module, example: Any, profile: HardwareProfile) -> Latency:
    """Time `model` on this machine as `profile` says: blocked runs, median of blocks.

    Threads are fixed to `profile.threads` for the measurement and restored afterwards. A
    measurement whose robust CV exceeds `measure.max_cv` is repeated up to `measure.retries`
    times; the fastest attempt is returned (interference only adds time).
    """
    settings = profile.measure
    device = resolve_device(profile)
    if profile.backend in ("tensorrt", "onnxruntime"):
        return exported_latency(model, example, profile)  # exports a copy
    model = copy.deepcopy(model).eval()
    run, name, sync = _torch_runner(model, example, profile, device)
    threads = torch.get_num_threads()
    torch.set_num_threads(profile.threads)
    try:
        best = time_blocks(run, sync, settings)
    finally:
        torch.set_num_threads(threads)
    return from_blocks(best, name)


def from_blocks(blocks: Sequence[float], device: str) -> Latency:
    """A measurement's Latency: the median block, its 0.9 quantile and robust CV."""
    return Latency(**summary(blocks), source="measured", device=device)


def exported_latency(model: nn.Module, example: Any, profile: HardwareProfile) -> Latency:
    """The ONNX Runtime and TensorRT backends: `model` exported to ONNX and timed as the
    device bench times it (`autoprune.hardware.device_bench`)."""
    from autoprune.hardware.device_bench import time_job
    from autoprune.hardware.exported import bench_settings, export_job

    if is_quantized(model):
        raise RuntimeError("int8 models from PyTorch quantisation are timed with the torch "
                           "backend only")
    result = time_job(export_job(model, example, profile), bench_settings(profile))
    return Latency(median_ms=result["median_ms"], p90_ms=result["p90_ms"], cv=result["cv"],
                   source="measured", device=result["device"])


def measurable_here(profile: HardwareProfile) -> tuple[bool, str]:
    """Whether `profile` can be measured in this process, and if not, why."""
    if profile.mode == "predict":
        return False, "hardware.mode=predict"
    if profile.ray_resource and profile.mode == "auto":
        return False, (f"the profile measures on a Ray node advertising '{profile.ray_resource}'"
                       "; run this command on that device (with hardware.mode=measure)")
    if profile.device.startswith("cuda") and not torch.cuda.is_available():
        return False, f"{profile.device} is not available on this machine"
    if profile.backend == "tensorrt":
        from autoprune.hardware.trtexec import JETPACK_TRTEXEC, find_trtexec

        if find_trtexec() is None:
            return False, f"TensorRT's trtexec is not on PATH or at {JETPACK_TRTEXEC}"
    return True, ""


def timing_key(model: nn.Module, profile: HardwareProfile, example: Any, int8: bool) -> str:
    """Cache key of one measurement: the float architecture, the profile's settings, the
    inputs' shapes, int8."""
    return architecture_key(model, profile.name, profile.backend, profile.batch_size,
                            profile.precision, input_signature(example), "int8" if int8 else "")


def timed_model(model: nn.Module, int8_calibration: torch.Tensor | None) -> nn.Module:
    """The model a measurement times: `model`, or its int8 version."""
    if int8_calibration is None:
        return model
    return quantize_int8(model, int8_calibration)


class MeasuredLatency:
    """Measures in this process; identical architectures are measured once."""

    source = "measured"

    def __init__(self, profile: HardwareProfile, example: Any) -> None:
        self.profile = profile
        self.example = example
        self._cache: dict[str, Latency] = {}

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        key = timing_key(model, self.profile, self.example, int8_calibration is not None)
        if key in self._cache and not refresh:
            return self._cache[key]
        return keep_faster(self._cache, key, measure_latency(
            timed_model(model, int8_calibration), self.example, self.profile))
