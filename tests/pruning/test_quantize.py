"""Post-training int8 quantisation: really int8, close to the float model, clear when it can't."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.models.resnet import ResNet
from autoprune.pruning.quantize import is_quantized, quantize_int8


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on values: FX cannot trace it
            return self.fc(x)
        return -self.fc(x)


def test_int8_model_is_quantised_and_close_to_the_float_one():
    torch.manual_seed(0)
    model = ResNet(width=8, blocks_per_stage=1).eval()
    calibration = torch.randn(32, 1, 16, 16)
    quantized = quantize_int8(model, calibration)
    assert is_quantized(quantized) and not is_quantized(model)
    with torch.no_grad():
        reference, approximate = model(calibration), quantized(calibration)
    assert approximate.shape == reference.shape
    assert (approximate - reference).abs().max() < 0.1 * reference.abs().max()
    assert (approximate.argmax(1) == reference.argmax(1)).float().mean() > 0.8


def test_untraceable_model_gives_a_clear_error():
    with pytest.raises(RuntimeError, match="int8 quantisation cannot trace the model"):
        quantize_int8(DataDependent(), torch.randn(4, 4))
