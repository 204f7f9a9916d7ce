"""Fitting the latency model: recovers known factors, stores them, applies them."""

from __future__ import annotations

import dataclasses

import pytest

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.hardware import calibrate as cal
from autoprune.hardware.predictor import Kernel


@pytest.fixture(scope="module")
def cpu():
    return settings_from_dict(compose("search", ["hardware=cpu"])).hardware


def _samples(roofline, precision):
    kernels = []
    for i in range(1, 13):  # a mix of compute-bound, memory-bound and tiny kernels
        kernels.append((Kernel("conv", 2e6 * i * i, 4e4 * i),
                        Kernel("fusible", 1e3 * i, 4e3 * i), Kernel("gemm", 1e5 * i, 2e5 * i),
                        Kernel("dwconv", 5e4 * i * (i % 3), 1e3 * i),
                        *[Kernel("fusible", 10.0, 40.0)] * (i % 4)))
    return [cal.Sample(f"m{i}", k, cal.predict_ms(k, roofline, precision))
            for i, k in enumerate(kernels)]


def test_fit_recovers_the_factors_that_made_the_latencies(cpu):
    truth = dataclasses.replace(cpu.roofline, compute_efficiency=0.8, memory_efficiency=0.3,
                                kernel_overhead_us=9.0, depthwise_efficiency=0.02,
                                elementwise_overhead_us=2.0)
    samples = _samples(truth, cpu.precision)
    fitted = cal.fit(samples, cpu.roofline, cpu.precision)
    for name in cal.FITTED:
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=0.02), name
    assert cal.errors(samples, fitted, cpu.precision)["mape"] < 0.01
    assert cal.errors(samples, cpu.roofline, cpu.precision)["mape"] > 0.1


def test_stored_calibration_is_applied_per_profile(cpu, tmp_path):
    profile, line = cal.calibrated(cpu, str(tmp_path))
    assert profile == cpu and "uncalibrated" in line
    fitted = dataclasses.replace(cpu.roofline, compute_efficiency=0.7, memory_efficiency=0.2,
                                 kernel_overhead_us=3.0)
    cal.save(cal.calibration_path(str(tmp_path), cpu), cpu, fitted, "cpu", {}, {}, 36)
    profile, line = cal.calibrated(cpu, str(tmp_path))
    assert profile.roofline == fitted
    assert line.startswith("latency model calibrated on cpu at ")
    other = dataclasses.replace(cpu, name="other")
    assert cal.calibrated(other, str(tmp_path))[0] == other  # stored per profile


def test_unreadable_calibration_is_ignored_and_said(cpu, tmp_path):
    path = cal.calibration_path(str(tmp_path), cpu)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    profile, line = cal.calibrated(cpu, str(tmp_path))
    assert profile == cpu and "unreadable" in line
    assert cal.calibration_fit(str(tmp_path), cpu) is None


def test_the_fit_of_a_stored_calibration_is_read_back(cpu, tmp_path):
    assert cal.calibration_fit(str(tmp_path), cpu) is None  # uncalibrated
    cal.save(cal.calibration_path(str(tmp_path), cpu), cpu, cpu.roofline, "cpu",
             {"mape": 0.3, "kendall_tau": 0.7}, {"mape": 0.05, "kendall_tau": 0.95}, 36)
    assert cal.calibration_fit(str(tmp_path), cpu) == {"mape": 0.05, "kendall_tau": 0.95,
                                                       "samples": 36}


def test_variants_are_seeded_and_the_first_is_unpruned():
    first = cal.pruned_variants("resnet8", 4, seed=3)
    again = cal.pruned_variants("resnet8", 4, seed=3)
    shapes = [[tuple(p.shape) for p in m.parameters()] for m in first]
    assert shapes == [[tuple(p.shape) for p in m.parameters()] for m in again]
    sizes = [sum(p.numel() for p in m.parameters()) for m in first]
    assert sizes[0] == max(sizes) and len(set(sizes)) > 1
