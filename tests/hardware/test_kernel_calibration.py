"""Calibrating the kernel-level model, storing it beside the roofline's factors, and
predicting with it where the profile can use it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.errors import UserError
from autoprune.hardware import calibrate as cal
from autoprune.hardware import kernel_calibration as kc
from autoprune.hardware.kernels import KernelTable, forget_tables
from autoprune.hardware.measure import measure_latency
from autoprune.hardware.predictor import PredictedLatency, predict_latency

QUICK = ["hardware.measure.warmup=2", "hardware.measure.repeats=3", "hardware.measure.number=5"]


@pytest.fixture(scope="module")
def cpu():
    return settings_from_dict(compose("search", ["hardware=cpu", *QUICK])).hardware


def _mlps() -> list[nn.Module]:
    torch.manual_seed(0)
    return [nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(64, width), nn.ReLU(),
                                                              nn.Linear(width, 64))]).eval()
            for depth in (1, 2, 3) for width in (16, 128, 512)]


@pytest.fixture()
def calibrated_here(cpu, tmp_path):
    """A calibration file with a kernel-level model fitted to MLPs measured here."""
    models, x = _mlps(), torch.zeros(1, 64)
    measured = [measure_latency(m, x, cpu).median_ms for m in models]
    path = cal.calibration_path(str(tmp_path), cpu)
    path.parent.mkdir(parents=True)
    model, passes = kc.fit_kernel_model(models, measured, cpu, x, kc.table_path(path), "cpu")
    fit = kc.kernel_errors(model, passes, measured)
    kernels = len(KernelTable(kc.table_path(path)).ms)
    cal.save(path, cpu, cpu.roofline, "cpu", {}, {"mape": 0.2, "kendall_tau": 0.8},
             len(models), kc.stored(model, fit, kernels))
    yield fit
    forget_tables()


def test_the_fit_is_stored_with_its_table_and_nothing_half_written(cpu, tmp_path,
                                                                  calibrated_here):
    fit = calibrated_here
    assert set(fit) == {"mape", "kendall_tau", "within_10"}
    # Nine MLPs from 0.01 to 0.3 ms: ranked right, within a quarter of measured.
    assert fit["kendall_tau"] > 0.6 and fit["mape"] < 0.25
    folder = cal.calibration_path(str(tmp_path), cpu).parent
    assert sorted(p.name for p in folder.iterdir()) == ["cpu.json", "cpu.kernels.sqlite"]
    assert cal.calibration_fit(str(tmp_path), cpu)["mape"] == 0.2  # the roofline's fit...
    profile, line = cal.calibrated(cpu, str(tmp_path))
    assert line.endswith("(kernel-level)")
    assert cal.calibration_fit(str(tmp_path), profile) == {**fit, "samples": 9}  # ...and its


def test_a_calibrated_cpu_profile_predicts_with_kernels_and_says_how_sure(cpu, tmp_path,
                                                                       calibrated_here):
    profile, _ = cal.calibrated(cpu, str(tmp_path), measure_new=True)
    assert profile.kernel_model is not None and profile.kernel_model.measure_new
    assert not cal.calibrated(cpu, str(tmp_path))[0].kernel_model.measure_new
    x = torch.zeros(1, 64)
    small, large = _mlps()[0], _mlps()[-1]
    first = predict_latency(small, x, profile)
    assert first.source == "predicted" and first.uncertainty > 0
    assert predict_latency(large, x, profile).median_ms > 2 * first.median_ms
    # int8 kernels were never timed: the roofline's int8 peak predicts them.
    int8 = PredictedLatency(profile, x).latency(small, int8_calibration=torch.zeros(4, 64))
    assert int8.uncertainty == 0.0


@pytest.mark.parametrize("change", [{"backend": "onnxruntime"}, {"ray_resource": "jetson"},
                                    {"device": "cuda"}])
def test_profiles_that_cannot_time_kernels_here_keep_the_roofline(cpu, tmp_path,
                                                                  calibrated_here, change):
    other = dataclasses.replace(cpu, **change)
    profile, line = cal.calibrated(other, str(tmp_path))
    assert profile.kernel_model is None and line.endswith("(roofline)")


def test_a_calibration_without_a_readable_table_keeps_the_roofline(cpu, tmp_path,
                                                                     calibrated_here):
    path = kc.table_path(cal.calibration_path(str(tmp_path), cpu))
    forget_tables()
    path.write_text("not a database")
    assert cal.calibrated(cpu, str(tmp_path))[0].kernel_model is None
    path.unlink()
    assert cal.calibrated(cpu, str(tmp_path))[0].kernel_model is None


def test_the_kernel_model_is_not_a_setting():
    with pytest.raises(UserError, match="hardware.kernel_model is not a setting"):
        settings_from_dict(compose("search", ["hardware=cpu", "+hardware.kernel_model=1"]))
