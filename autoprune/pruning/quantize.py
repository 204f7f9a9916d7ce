"""Post-training int8 quantisation of a pruned model (PyTorch FX graph mode, x86/fbgemm).

Static quantisation: weights and activations int8, activation ranges observed on calibration
batches of training data. Runs after fine-tuning; the float weights stay the source of truth
(a quantised model is rebuilt from them and the same calibration data, so it is reproducible).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from autoprune.deprecations import known_deprecations

QUANTIZATIONS = ("none", "int8")


def quantize_int8(model: nn.Module, calibration: torch.Tensor, batch_size: int = 64) -> nn.Module:
    """Return an int8 copy of `model`, calibrated on `calibration` (N, ...) inputs.

    Raises RuntimeError (with the tracer's reason) when the model cannot be FX-traced.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    float_model = copy.deepcopy(model).eval()
    with known_deprecations():  # torch.ao's notices, on every call
        try:
            prepared = prepare_fx(float_model, get_default_qconfig_mapping("x86"),
                                  (calibration[:1],))
        except Exception as exc:
            raise RuntimeError(f"int8 quantisation cannot trace the model: {exc}") from exc
        with torch.no_grad():
            for start in range(0, len(calibration), batch_size):
                prepared(calibration[start:start + batch_size])
        return convert_fx(prepared).eval()


def is_quantized(model: nn.Module) -> bool:
    """True when `model` holds quantised layers."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
