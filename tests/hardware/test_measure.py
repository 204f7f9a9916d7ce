"""Real measurement: sane statistics, honest source, identical architectures measured once."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from autoprune.cli import compose
from autoprune.config import HardwareProfile, settings_from_dict
from autoprune.hardware import Latency, MeasuredLatency, architecture_key, measure_latency
from autoprune.hardware import measure as measure_module
from autoprune.hardware import timing as timing_module

SHAPE = (1, 16, 16)
EXAMPLE = torch.zeros(1, *SHAPE)  # one example's input


@pytest.fixture(scope="module")
def cpu() -> HardwareProfile:
    profile = settings_from_dict(compose("search", ["hardware=cpu"])).hardware
    quick = dataclasses.replace(profile.measure, warmup=1, repeats=3, number=2, retries=0)
    return dataclasses.replace(profile, measure=quick)


def _net(width: int = 8, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


class _Clock:
    """perf_counter for the measurement, moved on only by the model below."""

    now = 0.0


class _Scripted(nn.Module):
    """A model each of whose forward passes takes the next of `SCRIPT` milliseconds."""

    script: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _Clock.now += _Scripted.script.pop(0) / 1e3
        return x


def test_blocks_give_median_p90_and_robust_cv_and_a_noisy_attempt_is_retried(
        cpu: HardwareProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing_module.time, "perf_counter", lambda: _Clock.now)
    settings = dataclasses.replace(cpu.measure, warmup=1, warmup_s=0.0, repeats=5, number=2,
                                   max_cv=0.05, retries=2)
    profile = dataclasses.replace(cpu, measure=settings)
    # One warm-up pass, then blocks of two passes: the first attempt's blocks take 1, 2, 3,
    # 4 and 10 ms a pass (median 3, robust CV 1.4826 * 1 / 3: too noisy), the second's
    # 2, 2, 2, 2.2 and 2 ms (CV 0: kept, and no third attempt).
    first, second = [1, 2, 3, 4, 10], [2, 2, 2, 2.2, 2]
    _Scripted.script = [50.0] + [b for b in first + second for _ in range(2)] + [99.0] * 10
    latency = measure_latency(_Scripted(), EXAMPLE, profile)
    assert latency.source == "measured" and latency.device == "cpu"
    assert latency.median_ms == pytest.approx(2.0)
    assert latency.p90_ms == pytest.approx(2.2)  # the 0.9 quantile of five blocks: the top
    assert latency.cv == pytest.approx(0.0)
    assert _Scripted.script == [99.0] * 10  # exactly one warm-up pass and two attempts

    _Scripted.script = [50.0] + [b for b in first for _ in range(2)]
    noisy = measure_latency(_Scripted(), EXAMPLE, dataclasses.replace(
        profile, measure=dataclasses.replace(settings, retries=0)))
    assert (noisy.median_ms, noisy.p90_ms) == pytest.approx((3.0, 10.0))
    assert noisy.cv == pytest.approx(1.4826 / 3)


def test_measurement_restores_thread_count(cpu: HardwareProfile) -> None:
    before = torch.get_num_threads()
    measure_latency(_net(), EXAMPLE, dataclasses.replace(cpu, threads=1))
    assert torch.get_num_threads() == before


def test_measurement_leaves_the_model_alone(cpu: HardwareProfile) -> None:
    model = _net().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    measure_latency(model, EXAMPLE, cpu)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_profile_without_cuda_raises(cpu: HardwareProfile) -> None:
    with pytest.raises(RuntimeError, match="CUDA"):
        measure_latency(_net(), EXAMPLE, dataclasses.replace(cpu, device="cuda"))


def test_architecture_key_depends_on_shapes_not_weights() -> None:
    assert architecture_key(_net(8, seed=0)) == architecture_key(_net(8, seed=1))
    assert architecture_key(_net(8)) != architecture_key(_net(16))
    assert architecture_key(_net(8), "cpu", 1) != architecture_key(_net(8), "cpu", 2)


def test_architecture_key_sees_layer_types() -> None:
    relu = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    gelu = nn.Sequential(nn.Linear(4, 4), nn.GELU())
    assert architecture_key(relu) != architecture_key(gelu)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """Replace the real measurement with a recorder of the models it was asked to time."""
    calls: list[nn.Module] = []

    def fake(model: nn.Module, input_shape: tuple[int, ...], profile: HardwareProfile) -> Latency:
        calls.append(model)
        return Latency(float(len(calls)), float(len(calls)), 0.0, "measured", "fake")

    monkeypatch.setattr(measure_module, "measure_latency", fake)
    return calls


def test_identical_architectures_are_measured_once(
    cpu: HardwareProfile, counted: list[nn.Module]
) -> None:
    backend = MeasuredLatency(cpu, EXAMPLE)
    first = backend.latency(_net(8, seed=0))
    second = backend.latency(_net(8, seed=1))  # same shapes, other weights
    assert len(counted) == 1
    assert second == first


def test_different_architectures_are_measured_separately(
    cpu: HardwareProfile, counted: list[nn.Module]
) -> None:
    backend = MeasuredLatency(cpu, EXAMPLE)
    narrow, wide = backend.latency(_net(8)), backend.latency(_net(16))
    assert len(counted) == 2
    assert narrow != wide


def test_real_backend_caches_a_real_measurement(cpu: HardwareProfile) -> None:
    backend = MeasuredLatency(cpu, EXAMPLE)
    assert backend.source == "measured"
    first = backend.latency(_net(8, seed=0))
    assert backend.latency(_net(8, seed=1)) is first
    assert first.source == "measured"


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1  # counted on the class: the measurement runs a deep copy
        return self.fc(x.flatten(1)[:, :4])


def test_warm_up_lasts_at_least_warmup_s(cpu: HardwareProfile) -> None:
    timed = cpu.measure.repeats * cpu.measure.number
    _Counting.calls = 0
    measure_latency(_Counting(), EXAMPLE, cpu)
    by_count = _Counting.calls - timed
    assert by_count == cpu.measure.warmup
    _Counting.calls = 0
    slow = dataclasses.replace(cpu, measure=dataclasses.replace(cpu.measure, warmup_s=0.2))
    measure_latency(_Counting(), EXAMPLE, slow)
    assert _Counting.calls - timed > 10 * by_count  # kept warming up for 0.2 s, not 1 pass


def test_onnxruntime_backend_measures_the_exported_model(cpu: HardwareProfile) -> None:
    profile = dataclasses.replace(cpu, backend="onnxruntime")
    latency = measure_latency(_net(), EXAMPLE, profile)
    assert latency.source == "measured"
    assert latency.device.startswith("cpu (onnxruntime ")
    assert latency.median_ms > 0 and latency.p90_ms >= latency.median_ms
    # Same architecture, other backend: cached apart.
    backend = MeasuredLatency(profile, EXAMPLE)
    assert backend.latency(_net()).device == latency.device
    assert MeasuredLatency(cpu, EXAMPLE).latency(_net()).device == "cpu"


def test_int8_model_is_refused_by_the_onnxruntime_backend(cpu: HardwareProfile) -> None:
    from autoprune.pruning.quantize import quantize_int8

    profile = dataclasses.replace(cpu, backend="onnxruntime")
    with pytest.raises(RuntimeError, match="torch backend only"):
        measure_latency(quantize_int8(_net(), torch.randn(8, *SHAPE)), EXAMPLE, profile)


class _Sequence:
    """A backend whose measurements come from a list (refresh keeps the faster, as the real
    backends do)."""

    source = "measured"

    def __init__(self, values: list[float], source: str = "measured") -> None:
        self.values, self.source, self.calls, self.best = list(values), source, 0, None

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        self.calls += 1
        value = self.values.pop(0)
        result = Latency(value, value, 0.01, self.source, "cpu")
        if self.best is None or value < self.best.median_ms:
            self.best = result
        return self.best if refresh else result


def test_a_reference_is_measured_until_it_stops_getting_faster(monkeypatch):
    from autoprune.hardware.latency import settled_latency

    monkeypatch.setattr("autoprune.hardware.latency.time.sleep", lambda _: None)
    backend = _Sequence([3.0, 2.5, 2.0, 1.99, 1.0])  # Ray's start-up slowing the first three
    assert settled_latency(backend, _net()).median_ms == 1.99 and backend.calls == 4
    steady = _Sequence([2.0, 2.1, 1.0])
    assert settled_latency(steady, _net()).median_ms == 2.0 and steady.calls == 2
    capped = _Sequence([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    assert settled_latency(capped, _net(), attempts=3).median_ms == 3.0
    predicted = _Sequence([1.0], source="predicted")
    assert settled_latency(predicted, _net()).median_ms == 1.0 and predicted.calls == 1
