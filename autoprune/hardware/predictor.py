"""A latency model of a device: per-kernel roofline with channel alignment and launch overhead.

The model's ATen operators are recorded once at the profile's batch size (a dispatch mode, so
any PyTorch model works). Each kernel costs max(compute time, memory time) plus a fixed
overhead: one for arithmetic kernels, one for data movers (normalisation, activations).
Depthwise convolutions have an efficiency of their own. Channel counts are rounded up to the
profile's alignment before counting compute, because tensor-core tiles process whole
multiples of it: 57 channels cost as much as 64.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from autoprune.config import HardwareProfile, RooflineConfig
from autoprune.hardware.latency import Latency, timing_input
from autoprune.tasks import call_model

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
aten = torch.ops.aten
# Operators that move no data (views) or are folded into neighbours by graph compilers.
FREE = {aten.view.default, aten.t.default, aten._unsafe_view.default, aten.reshape.default,
        aten.expand.default, aten.permute.default, aten.detach.default, aten.alias.default,
        aten.squeeze.dim, aten.unsqueeze.default, aten.flatten.using_ints,
        aten.transpose.int}
FUSIBLE = {aten._native_batch_norm_legit_no_training.default, aten.batch_norm.default,
           aten.relu.default, aten.relu_.default, aten.add.Tensor, aten.add_.Tensor,
           aten.hardtanh.default, aten.hardtanh_.default, aten.sigmoid.default,
           aten.mul.Tensor, aten.gelu.default, aten.silu.default, aten.silu_.default,
           aten.clamp.default, aten.clamp_min.default}

# Kernels whose arithmetic can bound their time; the rest only move data.
COMPUTE = {"conv", "dwconv", "gemm", "attention"}


@dataclass(frozen=True)
class Kernel:
    """One recorded kernel: its name, arithmetic (FLOPs, aligned) and bytes moved."""

    op: str
    flops: float
    bytes: float


def _aligned(n: int, alignment: int) -> int:
    return alignment * math.ceil(n / alignment)


class KernelRecorder(TorchDispatchMode):
    """Records the roofline's view of every kernel a forward pass dispatches."""

    def __init__(self, alignment: int, element_bytes: int) -> None:
        super().__init__()
        self.alignment = alignment
        self.element_bytes = element_bytes
        self.kernels: list[Kernel] = []

    def _count(self, func, args, out) -> Kernel | None:  # noqa: ANN001
        a, eb = self.alignment, self.element_bytes
        if func in FREE:
            return None
        if func in (aten.convolution.default, aten.conv2d.default, aten.conv1d.default):
            # Under inference_mode convolutions arrive undecomposed (aten.conv2d); else as
            # aten.convolution, whose `groups` argument sits further back.
            x, w = args[0], args[1]
            if func is aten.convolution.default:
                groups = args[8]
            else:
                groups = args[6] if len(args) > 6 else 1
            n, c_in = x.shape[0], x.shape[1]
            c_out, k = w.shape[0], math.prod(w.shape[2:])
            spatial = math.prod(out.shape[2:])
            per_group_in = 1 if groups == c_in and groups > 1 else _aligned(c_in // groups, a)
            out_channels = c_out if groups == c_in and groups > 1 else _aligned(c_out, a)
            flops = 2.0 * n * spatial * out_channels * per_group_in * k
            moved = (x.numel() + w.numel() + out.numel()) * eb
            depthwise = groups == c_in and groups > 1
            return Kernel("dwconv" if depthwise else "conv", flops, moved)
        if func is aten.linear.default:
            x, w = args[0], args[1]  # weight is (out_features, in_features)
            m, k_dim, n_dim = x.numel() // x.shape[-1], x.shape[-1], w.shape[0]
            flops = 2.0 * m * _aligned(k_dim, a) * _aligned(n_dim, a)
            return Kernel("gemm", flops, (x.numel() + w.numel() + out.numel()) * eb)
        if func in (aten.addmm.default, aten.mm.default):
            x, w = (args[1], args[2]) if func is aten.addmm.default else (args[0], args[1])
            m, k_dim, n_dim = x.shape[0], x.shape[1], w.shape[1]
            flops = 2.0 * m * _aligned(k_dim, a) * _aligned(n_dim, a)
            return Kernel("gemm", flops, (x.numel() + w.numel() + out.numel()) * eb)
        if func is aten.scaled_dot_product_attention.default:
            q, k, v = args[0], args[1], args[2]  # (..., length, head size)
            batch_heads = q.numel() // (q.shape[-2] * q.shape[-1])
            flops = 2.0 * batch_heads * q.shape[-2] * k.shape[-2] * (
                _aligned(q.shape[-1], a) + _aligned(v.shape[-1], a))
            return Kernel("attention", flops, float(sum(t.numel() for t in (q, k, v, out)) * eb))
        tensors = [v for v in args if isinstance(v, torch.Tensor)]
        elements = sum(t.numel() for t in tensors)
        if isinstance(out, torch.Tensor):
            elements += out.numel()
        name = "fusible" if func in FUSIBLE else str(func.__name__)
        return Kernel(name, float(elements), float(elements * eb))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        kernel = self._count(func, args, out)
        if kernel is not None:
            self.kernels.append(kernel)
        return out


def record_kernels(model: nn.Module, example: Any, profile: HardwareProfile) -> list[Kernel]:
    """Return the kernels one forward pass of `model` runs at the profile's batch size."""
    recorder = KernelRecorder(profile.alignment, BYTES[profile.precision])
    x = timing_input(example, profile.batch_size, random=False)
    with torch.inference_mode():
        call_model(model.eval(), x)  # one pass first: what a layer prepares once (gated
        with recorder:               # layers fold their BatchNorm) is not part of every pass
            call_model(model, x)
    return recorder.kernels


# The factors of the cost model that describe how well a device does against its published
# peaks (what calibration fits).
FITTED = ("compute_efficiency", "depthwise_efficiency", "memory_efficiency",
          "kernel_overhead_us", "elementwise_overhead_us")


def roofline_ms(flops: Any, moved: Any, arithmetic: Any, depthwise: Any,
                factors: Mapping[str, float], peak_flops: float, bandwidth: float) -> Any:
    """The cost model, for one kernel (numbers) or many (NumPy arrays) alike: max(compute
    time, memory time) plus a launch overhead, in ms. Arithmetic kernels are bounded by
    `peak_flops` times their efficiency (a depthwise one's own); data movers by memory
    alone, with an overhead of their own."""
    import numpy as np

    efficiency = np.where(depthwise, factors["depthwise_efficiency"],
                          factors["compute_efficiency"])
    compute = np.where(arithmetic, flops / (peak_flops * efficiency), 0.0)
    memory = moved / (bandwidth * factors["memory_efficiency"])
    overhead = np.where(arithmetic, factors["kernel_overhead_us"],
                        factors["elementwise_overhead_us"])
    return (np.maximum(compute, memory) * 1e6 + overhead) / 1e3


def fitted_factors(roof: RooflineConfig) -> dict[str, float]:
    return {name: getattr(roof, name) for name in FITTED}


def kernel_time_ms(kernel: Kernel, roof: RooflineConfig, precision: str) -> float:
    """One kernel's roofline time plus launch overhead; 0 for a kernel fused into another."""
    if kernel.op == "fusible" and roof.fuse_elementwise:
        return 0.0
    return float(roofline_ms(kernel.flops, kernel.bytes, kernel.op in COMPUTE,
                             kernel.op == "dwconv", fitted_factors(roof),
                             roof.peak_tflops[precision] * 1e12, roof.bandwidth_gbps * 1e9))


def predict_latency(model: nn.Module, example: Any, profile: HardwareProfile) -> Latency:
    """Return the prediction of `model`'s latency on `profile` (source "predicted"): the
    kernel-level model where `calibrate` fitted one (with its uncertainty), else the
    roofline."""
    if profile.kernel_model is not None:
        from autoprune.hardware.kernels import kernel_prediction

        ms, uncertainty = kernel_prediction(model, example, profile, profile.kernel_model)
        return Latency(median_ms=ms, p90_ms=ms, cv=0.0, source="predicted",
                       device=profile.description, uncertainty=uncertainty)
    roof = profile.roofline
    if roof is None:
        raise ValueError(f"hardware={profile.name} has no latency model (roofline)")
    ms = sum(kernel_time_ms(k, roof, profile.precision)
             for k in record_kernels(model, example, profile))
    return Latency(median_ms=ms, p90_ms=ms, cv=0.0, source="predicted",
                   device=profile.description)


class PredictedLatency:
    """The latency model as a backend; cheap enough to run inside every trial."""

    source = "predicted"

    def __init__(self, profile: HardwareProfile, example: Any) -> None:
        self.profile = profile
        self.example = example

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        profile = self.profile
        if int8_calibration is not None:  # the roofline's int8 peak: kernels are fp32
            profile = dataclasses.replace(profile, precision="int8", kernel_model=None)
        return predict_latency(model, self.example, profile)
