"""Compiled timing: `torch.compile` and CUDA graphs time what the model computes, where they
can run, and refuse clearly where they cannot."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from autoprune.errors import UserError
from autoprune.hardware.compiled import compiled, replayed
from autoprune.hardware.device_bench import time_job
from autoprune.hardware.exported import bench_settings, export_job
from autoprune.hardware.measure import measure_latency

EXAMPLE = torch.zeros(1, 8)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


@pytest.fixture
def cpu(settings_for):
    profile = settings_for("hardware=cpu").hardware
    return dataclasses.replace(profile, backend="compile", measure=dataclasses.replace(
        profile.measure, warmup=2, warmup_s=0.0, repeats=3, number=2, retries=0))


def test_a_compiled_model_is_timed_and_computes_what_the_model_computes(cpu):
    model = _net()
    x = torch.randn(3, 8)
    with torch.inference_mode():
        assert torch.allclose(compiled(model, "compile", torch.device("cpu"))(x), model(x),
                              atol=1e-5)
    latency = measure_latency(model, EXAMPLE, cpu)
    assert latency.source == "measured" and latency.device == "cpu (compile)"
    assert latency.median_ms > 0


def test_the_device_bench_compiles_the_exported_program(cpu):
    job = export_job(_net(), EXAMPLE, cpu)
    assert job["format"] == "pt2"
    result = time_job(job, bench_settings(cpu))
    assert result["device"] == "cpu (compile)" and result["median_ms"] > 0


def test_cuda_graphs_need_a_gpu_and_say_so(settings_for):
    with pytest.raises(UserError, match="hardware.backend=cudagraphs runs on an NVIDIA GPU; "
                                        "hardware.device is cpu"):
        settings_for("hardware=cpu", "hardware.backend=cudagraphs")
    with pytest.raises(RuntimeError, match="cudagraphs captures CUDA graphs and needs a CUDA"):
        replayed(lambda: None, "cudagraphs", torch.device("cpu"))


def test_the_cuda_profile_times_compiled_and_takes_bf16(settings_for):
    cuda = settings_for("hardware=cuda").hardware
    assert cuda.backend == "compile" and cuda.device == "cuda"
    assert settings_for("hardware=cuda", "hardware.precision=bf16").hardware.precision == "bf16"
    with pytest.raises(UserError, match="hardware.precision"):
        settings_for("hardware=cuda", "hardware.precision=fp8")


@CUDA
@pytest.mark.parametrize("backend", ["compile", "cudagraphs"])
def test_on_a_gpu_compiled_backends_replay_the_models_computation(settings_for, backend):
    profile = settings_for("hardware=cuda", f"hardware.backend={backend}").hardware
    model = _net().cuda().half()
    x = torch.randn(1, 8, device="cuda", dtype=torch.float16)
    out = torch.empty(1, 4, device="cuda", dtype=torch.float16)
    with torch.inference_mode():
        module = compiled(model, backend, x.device)
        run = replayed(lambda: out.copy_(module(x)), backend, x.device)
        run()
        torch.cuda.synchronize()
        assert torch.allclose(out, model(x), atol=1e-2)
    latency = measure_latency(_net(), EXAMPLE, profile)
    assert latency.device.endswith(f"({backend})") and latency.median_ms > 0
