"""The ONNX Runtime backend: the model exported to ONNX and run by an InferenceSession.

What a deployment without PyTorch would run: ONNX Runtime applies its own graph optimisations
(BatchNorm folding, operator fusion), so its latency can differ from PyTorch eager's on the
same hardware.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from autoprune.config import HardwareProfile
from autoprune.deprecations import known_deprecations
from autoprune.export import MainOutput
from autoprune.hardware.latency import timing_input
from autoprune.pruning.strategies.gate_kernels import onnx_static_batch


def ort_runner(model: nn.Module, example: Any,
               profile: HardwareProfile) -> tuple[Callable[[], object], str]:
    """A no-argument callable that runs one batch through ONNX Runtime, and the device name.

    The model is exported in fp32 (ONNX Runtime's CPU kernels are fp32). On a CUDA profile the
    CUDA execution provider is used where this ONNX Runtime build has it.
    """
    import onnxruntime as ort

    x = timing_input(example, profile.batch_size)
    buffer = io.BytesIO()
    with known_deprecations(), onnx_static_batch():
        torch.onnx.export(MainOutput(model.float()).eval(), (x,), buffer, dynamo=False,
                          input_names=["input"], output_names=["logits"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = profile.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if profile.device.startswith("cuda") and "CUDAExecutionProvider" in \
            ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(buffer.getvalue(), options, providers=providers)
    feed = {"input": x.numpy()}
    where = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    return (lambda: session.run(None, feed)), f"{where} (onnxruntime {ort.__version__}, fp32)"
