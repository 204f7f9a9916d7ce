"""What the driver hands a device bench: an exported model file, its inputs and the settings.

A device that measures needs neither the user's model code nor autoprune's search stack: it
receives an ONNX file (ONNX Runtime and TensorRT backends) or a `torch.export` program (.pt2,
the torch backend), the inputs of one timed batch as NumPy arrays, and the profile as plain
values (`bench_settings`). `autoprune.hardware.device_bench` runs them.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from autoprune.config import HardwareProfile
from autoprune.deprecations import known_deprecations
from autoprune.export import MainOutput
from autoprune.hardware.compiled import timing_dtype
from autoprune.hardware.latency import cast_inputs, timing_input
from autoprune.pruning.strategies.gate_kernels import onnx_static_batch

MEASURE_FIELDS = ("warmup", "warmup_s", "repeats", "number", "max_cv", "retries")


def bench_settings(profile: HardwareProfile) -> dict[str, Any]:
    """The profile as the device bench reads it: plain values, no autoprune types."""
    return {"name": profile.name, "backend": profile.backend, "device": profile.device,
            "precision": profile.precision, "batch_size": profile.batch_size,
            "threads": profile.threads,
            "measure": {f: getattr(profile.measure, f) for f in MEASURE_FIELDS}}


def named_inputs(example: Any, batch_size: int) -> dict[str, torch.Tensor]:
    """One timed batch's inputs by graph input name: `input` for a tensor, the keywords of a
    dict (Hugging Face inputs)."""
    inputs = timing_input(example, batch_size)
    return dict(inputs) if isinstance(inputs, Mapping) else {"input": inputs}


def _keywords(inputs: Mapping[str, torch.Tensor]) -> list[str]:
    """The names the model takes its inputs under: none for a single tensor."""
    return [] if list(inputs) == ["input"] else list(inputs)


def onnx_bytes(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> bytes:
    """`model` (float) exported to ONNX for exactly these inputs (the batch size fixed)."""
    buffer = io.BytesIO()
    with known_deprecations(), onnx_static_batch():
        torch.onnx.export(MainOutput(model.float(), _keywords(inputs)).eval(),
                          tuple(inputs.values()), buffer, dynamo=False,
                          input_names=list(inputs), output_names=["logits"])
    return buffer.getvalue()


def program_bytes(model: nn.Module, inputs: Mapping[str, torch.Tensor],
                  profile: HardwareProfile) -> bytes:
    """`model` as a `torch.export` program in the profile's precision (fp16 or bf16 on
    CUDA, fp32 elsewhere)."""
    dtype = timing_dtype(profile.precision, torch.device(profile.device))
    args = tuple(cast_inputs(list(inputs.values()), torch.device("cpu"), dtype))
    buffer = io.BytesIO()
    with known_deprecations(), onnx_static_batch(), torch.no_grad():
        program = torch.export.export(MainOutput(model.to(dtype), _keywords(inputs)).eval(),
                                      args)
        torch.export.save(program, buffer)
    return buffer.getvalue()


def export_job(model: nn.Module, example: Any, profile: HardwareProfile) -> dict[str, Any]:
    """What the device bench times for `model`: {format, model (bytes), inputs (NumPy)}.

    Raises RuntimeError, saying why, when the model cannot be exported."""
    model = copy.deepcopy(model).eval()
    inputs = named_inputs(example, profile.batch_size)
    form = "onnx" if profile.backend in ("onnxruntime", "tensorrt") else "pt2"
    try:
        data = program_bytes(model, inputs, profile) if form == "pt2" else \
            onnx_bytes(model, inputs)
    except Exception as exc:  # the exporters raise many kinds; the trial says which
        tool = "torch.export" if form == "pt2" else "the ONNX exporter"
        line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RuntimeError(f"{tool} could not export the model for the device bench: "
                           f"{type(exc).__name__}: {line}") from exc
    return {"format": form, "model": data,
            "inputs": {name: t.float().numpy() if t.is_floating_point() else t.numpy()
                       for name, t in inputs.items()}}
