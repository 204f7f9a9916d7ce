"""The roofline latency model: monotone in work, aligned channel counts, honest source."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from autoprune.cli import compose
from autoprune.config import HardwareProfile, settings_from_dict
from autoprune.hardware import PredictedLatency, predict_latency
from autoprune.hardware.predictor import Kernel, kernel_time_ms, record_kernels
from autoprune.models.resnet import ResNet
from autoprune.pruning import Policy, PruneSettings, apply_policy, find_groups

SIDE = 64  # large enough that a c->c 3x3 convolution is compute-bound on the jetson profile



@pytest.fixture(scope="module")
def jetson() -> HardwareProfile:
    return settings_from_dict(compose("search", ["hardware=jetson"])).hardware


def _conv(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1))


def _predict_ms(channels: int, profile: HardwareProfile) -> float:
    return predict_latency(_conv(channels), torch.zeros(1, channels, SIDE, SIDE), profile).median_ms


def _compute_ms(channels: int, profile: HardwareProfile) -> float:
    """Roofline compute time of the c->c 3x3 conv: channels rounded up to the alignment."""
    roof = profile.roofline
    aligned = profile.alignment * math.ceil(channels / profile.alignment)
    flops = 2.0 * SIDE * SIDE * aligned * aligned * 9
    peak = roof.peak_tflops[profile.precision] * 1e12 * roof.compute_efficiency
    return flops / peak * 1e3


def _memory_ms(channels: int, profile: HardwareProfile) -> float:
    roof = profile.roofline
    elements = 2 * channels * SIDE * SIDE + 9 * channels * channels
    return elements * 2 / (roof.bandwidth_gbps * 1e9 * roof.memory_efficiency) * 1e3


def test_prediction_is_monotone_in_channels(jetson: HardwareProfile) -> None:
    predictions = [_predict_ms(c, jetson) for c in range(1, 81)]
    assert all(b >= a for a, b in zip(predictions, predictions[1:], strict=False))
    assert predictions[-1] > predictions[0]


def test_premise_the_conv_is_compute_bound(jetson: HardwareProfile) -> None:
    # The alignment tests below rely on compute dominating memory traffic from 57 channels on.
    assert jetson.alignment == 8
    for channels in range(57, 73):
        assert _compute_ms(channels, jetson) > 2 * _memory_ms(channels, jetson)


def test_channels_within_one_alignment_step_cost_the_same(jetson: HardwareProfile) -> None:
    reference = _predict_ms(64, jetson)
    for channels in range(57, 64):
        assert _predict_ms(channels, jetson) == pytest.approx(reference, rel=1e-9)


def test_crossing_an_alignment_step_adds_a_whole_tile(jetson: HardwareProfile) -> None:
    step = _predict_ms(65, jetson) - _predict_ms(64, jetson)
    expected = _compute_ms(72, jetson) - _compute_ms(64, jetson)
    assert step == pytest.approx(expected, rel=1e-6)
    # A 65-channel layer costs what a 72-channel one does.
    assert _predict_ms(65, jetson) == pytest.approx(_predict_ms(72, jetson), rel=1e-9)


def test_convolution_and_linear_are_recorded_as_compute_kernels(
    jetson: HardwareProfile,
) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    ops = [k.op for k in record_kernels(model, torch.zeros(1, 3, 8, 8), jetson)]
    assert ops == ["conv", "gemm"]


def test_prediction_is_labelled_predicted(jetson: HardwareProfile) -> None:
    latency = predict_latency(_conv(16), torch.zeros(1, 16, SIDE, SIDE), jetson)
    assert latency.source == "predicted"
    assert latency.median_ms > 0
    assert latency.p90_ms == latency.median_ms
    assert latency.cv == 0.0
    assert latency.device == jetson.description


def test_backend_gives_the_same_prediction(jetson: HardwareProfile) -> None:
    backend = PredictedLatency(jetson, torch.zeros(1, 16, SIDE, SIDE))
    assert backend.source == "predicted"
    x = torch.zeros(1, 16, SIDE, SIDE)
    assert backend.latency(_conv(16)) == predict_latency(_conv(16), x, jetson)


def test_fusible_elementwise_ops_cost_nothing_when_fused(jetson: HardwareProfile) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1)
    fused = nn.Sequential(conv, nn.BatchNorm2d(16), nn.ReLU())
    shape = torch.zeros(1, 16, SIDE, SIDE)
    assert predict_latency(fused, shape, jetson) == predict_latency(nn.Sequential(conv), shape,
                                                                     jetson)
    unfused = dataclasses.replace(
        jetson, roofline=dataclasses.replace(jetson.roofline, fuse_elementwise=False))
    assert (predict_latency(fused, shape, unfused).median_ms
            > predict_latency(nn.Sequential(conv), shape, unfused).median_ms)


def test_channel_pruning_lowers_the_prediction(jetson: HardwareProfile) -> None:
    torch.manual_seed(0)
    model = ResNet(width=16, blocks_per_stage=1).eval()
    example = torch.zeros(1, 1, 16, 16)
    groups = find_groups(model, example)
    policy = Policy.uniform([g.id for g in groups if g.kind == "conv"], "channel", 0.5)
    pruned = apply_policy(model, policy, groups, example,
                          PruneSettings(alignment=jetson.alignment)).model
    shape = torch.zeros(1, 1, 16, 16)
    assert (predict_latency(pruned, shape, jetson).median_ms
            < predict_latency(model, shape, jetson).median_ms)


def test_profile_without_roofline_raises(jetson: HardwareProfile) -> None:
    profile = dataclasses.replace(jetson, roofline=None)
    with pytest.raises(ValueError, match="roofline"):
        predict_latency(_conv(8), torch.zeros(1, 8, SIDE, SIDE), profile)


def test_depthwise_convolutions_and_attention_are_their_own_kernels(
    jetson: HardwareProfile,
) -> None:
    class Attend(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x.flatten(2).transpose(1, 2).unsqueeze(1)  # (batch, 1 head, 64 tokens, 8)
            return nn.functional.scaled_dot_product_attention(q, q, q)

    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), Attend())
    kernels = record_kernels(model, torch.zeros(1, 8, 8, 8), jetson)
    assert [k.op for k in kernels] == ["dwconv", "attention"]
    # 8 channels x 64 outputs x 9 taps; Q K^T and the weighted sum over 64 x 64 pairs.
    assert kernels[0].flops == 2 * jetson.batch_size * 64 * 8 * 9
    assert kernels[1].flops == 2 * jetson.batch_size * 64 * 64 * (8 + 8)


def test_each_kernel_class_uses_its_own_efficiency_and_overhead(
    jetson: HardwareProfile,
) -> None:
    roof = dataclasses.replace(jetson.roofline, compute_efficiency=0.5, depthwise_efficiency=0.05,
                               kernel_overhead_us=7.0, elementwise_overhead_us=3.0,
                               fuse_elementwise=False, memory_efficiency=1e9)
    peak = roof.peak_tflops[jetson.precision] * 1e12
    flops = 1e9
    for op, efficiency in (("conv", 0.5), ("gemm", 0.5), ("dwconv", 0.05), ("attention", 0.5)):
        expected = flops / (peak * efficiency) * 1e3 + 7.0e-3
        assert kernel_time_ms(Kernel(op, flops, 1.0), roof, jetson.precision) == \
            pytest.approx(expected, rel=1e-9), op
    # A data mover's arithmetic is ignored; it pays the data movers' overhead.
    assert kernel_time_ms(Kernel("fusible", flops, 1.0), roof, jetson.precision) == \
        pytest.approx(3.0e-3, rel=1e-6)
