"""The slim device bench: exported files in, the same statistics out, and nothing of the
search stack imported on the device."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import pytest
import ray
import torch
from torch import nn

from autoprune.errors import TrialFailed
from autoprune.hardware.bench import DeviceBenchLatency
from autoprune.hardware.device_bench import DeviceBench, time_job
from autoprune.hardware.exported import bench_settings, export_job
from autoprune.models.resnet import ResNet

EXAMPLE = torch.zeros(1, 1, 8, 8)


@pytest.fixture
def cpu(settings_for):
    profile = settings_for("hardware=cpu").hardware
    return dataclasses.replace(profile, measure=dataclasses.replace(
        profile.measure, warmup=1, warmup_s=0.0, repeats=3, number=2, retries=0))


def test_the_device_bench_imports_nothing_of_the_search_stack():
    """What a device with only autoprune[bench] can import: not torch, not autoprune's config
    (Hydra), MLflow, Optuna or torch-pruning."""
    code = ("import sys; import autoprune.hardware.device_bench, autoprune.hardware.trtexec; "
            "print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'mlflow', 'optuna', "
            "'torch_pruning', 'autoprune.config', 'autoprune.tasks') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def _run(job: dict, x: torch.Tensor) -> torch.Tensor:
    """What the exported file computes for `x` (its single input)."""
    if job["format"] == "pt2":
        return torch.export.load(io.BytesIO(job["model"])).module()(x)
    import onnxruntime as ort

    session = ort.InferenceSession(job["model"], providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_an_exported_model_computes_what_the_model_computes(cpu, backend):
    torch.manual_seed(0)
    model = ResNet(width=8, blocks_per_stage=1).eval()
    x = torch.randn(1, 1, 8, 8)
    job = export_job(model, x, dataclasses.replace(cpu, backend=backend))
    assert job["format"] == ("pt2" if backend == "torch" else "onnx")
    assert isinstance(job["model"], bytes) and set(job["inputs"]) == {"input"}
    assert job["inputs"]["input"].shape == (cpu.batch_size, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(_run(job, x), model(x), atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_an_exported_model_is_timed_like_a_module(cpu, backend):
    profile = dataclasses.replace(cpu, backend=backend)
    result = time_job(export_job(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()), EXAMPLE,
                                 profile), bench_settings(profile))
    assert result["median_ms"] > 0 and result["p90_ms"] >= result["median_ms"]
    assert result["cv"] >= 0
    assert result["device"] == ("cpu" if backend == "torch" else
                                f"cpu (onnxruntime {__import__('onnxruntime').__version__}, fp32)")


def test_a_device_bench_times_each_architecture_once_from_files(local_ray, cpu):
    bench = DeviceBench.remote(bench_settings(cpu))
    backend = DeviceBenchLatency(bench, cpu, EXAMPLE)
    first = backend.latency(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()))
    again = backend.latency(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()))
    assert first.source == "measured" and first.device == "cpu" and again == first
    assert ray.get(bench.stats.remote()) == {"measured": 1, "cached": 1}
    refreshed = backend.latency(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()), refresh=True)
    assert ray.get(bench.stats.remote())["measured"] == 2
    assert refreshed.median_ms <= first.median_ms
    state = ray.get(bench.state.remote())
    assert state["cores"].isdigit() and state["python"] == ".".join(
        map(str, sys.version_info[:3]))


class _Unexportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if float(x.sum()) > 0 else x  # data-dependent control flow


def test_what_cannot_go_to_the_device_fails_the_trial_with_the_reason(local_ray, cpu):
    bench = DeviceBench.remote(bench_settings(cpu))
    backend = DeviceBenchLatency(bench, cpu, EXAMPLE)
    with pytest.raises(TrialFailed, match="torch.export could not export the model for the "
                                          "device bench"):
        backend.latency(_Unexportable())
    with pytest.raises(TrialFailed, match="hardware.backend=tensorrt hardware.precision=int8"):
        backend.latency(nn.Conv2d(1, 8, 3), int8_calibration=EXAMPLE)
    assert ray.get(bench.stats.remote())["measured"] == 0


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_language_model_goes_to_the_device_as_its_token_ids(cpu, backend):
    from autoprune.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(context=16, dim=32).eval()
    ids = torch.randint(0, 256, (1, 16))
    job = export_job(model, ids, dataclasses.replace(cpu, backend=backend))
    assert job["inputs"]["input"].dtype.kind == "i"  # token ids stay integers
    with torch.no_grad():
        assert torch.allclose(_run(job, ids), model(ids), atol=1e-4)
