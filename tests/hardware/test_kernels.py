"""The kernel-level latency model: kernels keyed by what they compute, timed once in context
and cached, estimated where they cannot be timed, corrected by a fitted model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.hardware import kernels as K
from autoprune.hardware.predictor import Kernel

aten = torch.ops.aten


@pytest.fixture(scope="module")
def cpu():
    return settings_from_dict(compose("search", ["hardware=cpu"])).hardware


def _mlp(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, hidden), nn.ReLU(), nn.Linear(hidden, 10)).eval()


def test_a_kernel_key_names_operator_shapes_dtypes_layout_and_scalars():
    x, y = torch.zeros(2, 3), torch.zeros(3, 2)
    key = K.kernel_key(aten.add.Tensor, (x, x), {})
    assert key == K.kernel_key(aten.add.Tensor, (torch.ones(2, 3), torch.ones(2, 3)), {})
    others = [K.kernel_key(aten.mul.Tensor, (x, x), {}),              # operator
              K.kernel_key(aten.add.Tensor, (x, torch.zeros(2, 4)[:, :3]), {}),  # layout
              K.kernel_key(aten.add.Tensor, (y.t(), x), {}),          # strides
              K.kernel_key(aten.add.Tensor, (x.double(), x), {}),     # dtype
              K.kernel_key(aten.add.Tensor, (x, x), {"alpha": 2})]    # scalar argument
    assert len({key, *others}) == 6


def test_kernels_are_timed_once_and_then_read_from_the_table(cpu, tmp_path):
    table = K.KernelTable(tmp_path / "k.sqlite")
    x = torch.zeros(1, 32)
    timed, modules = K.time_kernels(_mlp(64), x, cpu, table, measure_new=True)
    assert modules == 4  # the Sequential and its three layers
    assert timed and all(t.ms is not None and t.ms > 0 for t in timed)
    assert {t.op for t in timed} >= {"aten.linear.default", "aten.relu.default"}
    assert len(table.ms) == len({t.key for t in timed})
    # Read back from the file by another process's table: the same times, nothing retimed.
    again = K.KernelTable(tmp_path / "k.sqlite")
    reread, _ = K.time_kernels(_mlp(64), x, cpu, again, measure_new=False)
    assert [t.ms for t in reread] == [t.ms for t in timed]
    # Another width is other kernels: not timed without measure_new.
    wider, _ = K.time_kernels(_mlp(256), x, cpu, again, measure_new=False)
    assert any(t.ms is None for t in wider)


def test_a_kernel_timed_twice_keeps_its_faster_time(tmp_path):
    table = K.KernelTable(tmp_path / "k.sqlite")
    table.add("k", "aten.relu.default", Kernel("relu", 0.0, 8.0), 0.5)
    table.add("k", "aten.relu.default", Kernel("relu", 0.0, 8.0), 0.2)
    table.add("k", "aten.relu.default", Kernel("relu", 0.0, 8.0), 0.9)
    assert table.ms["k"] == 0.2 and K.KernelTable(tmp_path / "k.sqlite").ms["k"] == 0.2


def test_replayed_times_follow_the_work(cpu):
    small, big = torch.zeros(8, 8), torch.zeros(384, 384)
    calls = [(aten.mm.default, (small, small), {}), (aten.mm.default, (big, big), {})]
    fast, slow = K.replay_times(calls, budget_s=0.05)
    assert 0 < fast < slow / 10


def test_an_untimed_kernel_is_scaled_from_the_nearest_timed_one(cpu, tmp_path):
    table = K.KernelTable(tmp_path / "k.sqlite")
    op = "aten.linear.default"
    table.add("a", op, Kernel("gemm", 1e6, 1e4), 0.1)
    table.add("b", op, Kernel("gemm", 1e8, 1e6), 3.0)
    near_a = K.Timed("c", op, Kernel("gemm", 2e6, 2e4), None)
    roof = K.kernel_time_ms
    expected = 0.1 * roof(near_a.kernel, cpu.roofline, "fp32") / roof(
        Kernel("gemm", 1e6, 1e4), cpu.roofline, "fp32")
    assert K.estimate_ms(near_a, table, cpu) == pytest.approx(expected)
    assert K.estimate_ms(K.Timed("a", op, Kernel("gemm", 1e6, 1e4), 0.1), table, cpu) == 0.1
    # An operator never timed: the roofline's own time.
    alone = K.Timed("d", "aten.gelu.default", Kernel("fusible", 1e3, 4e3), None)
    assert K.estimate_ms(alone, table, cpu) == pytest.approx(
        roof(alone.kernel, cpu.roofline, "fp32"))
    summed = K.summed([near_a, K.Timed("a", op, Kernel("gemm", 1e6, 1e4), 0.1)], 3, table, cpu)
    assert summed.estimated == pytest.approx(expected / (expected + 0.1))


def test_the_correction_is_recovered_from_exact_measurements():
    truth = (1.25, 0.002, 0.003, 0.01)
    passes = [K.Summed(0.1 * i, 10 + (i * i) % 11, 12 + (i * 7) % 5, 0.0) for i in range(1, 30)]
    measured = [sum(w * f for w, f in zip(truth, p.features(), strict=True)) for p in passes]
    weights, spread = K.fit_correction(passes, measured)
    assert weights == pytest.approx(truth, rel=1e-6)
    assert spread < 1e-9


def test_a_prediction_carries_an_uncertainty_that_grows_with_estimated_time(cpu, tmp_path):
    path = str(tmp_path / "k.sqlite")
    model = K.KernelModel(path, (1.0, 0.0, 0.0, 0.0), 0.05, "cpu", measure_new=False)
    x = torch.zeros(1, 32)
    estimated_ms, wide = K.kernel_prediction(_mlp(64), x, cpu, model)  # empty table
    timing = K.KernelModel(path, (1.0, 0.0, 0.0, 0.0), 0.05, "cpu", measure_new=True)
    timed_ms, narrow = K.kernel_prediction(_mlp(64), x, cpu, timing)
    assert narrow == pytest.approx(0.05) and wide > narrow
    assert math.isfinite(estimated_ms) and estimated_ms > 0 and timed_ms > 0
    K.forget_tables()
