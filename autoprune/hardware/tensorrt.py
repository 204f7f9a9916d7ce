"""The TensorRT backend: the model exported to ONNX, built and timed by NVIDIA's `trtexec`.

What a Jetson deployment runs: TensorRT fuses layers and picks kernels per shape, so its
latency can differ a lot from PyTorch eager's. `trtexec` ships with TensorRT (on JetPack at
/usr/src/tensorrt/bin/trtexec); it builds an engine in the profile's precision, runs it, and
with `--exportTimes` writes every inference's timings, from which the same statistics as the
other backends are computed: `repeats` blocks of `number` inferences, median block, p90, robust
CV. The GPU compute time is what is timed (`--noDataTransfers`): the model, not PCIe copies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from autoprune.config import HardwareProfile
from autoprune.deprecations import known_deprecations
from autoprune.export import MainOutput
from autoprune.hardware.latency import timing_input
from autoprune.pruning.strategies.gate_kernels import onnx_static_batch

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
PRECISION_FLAGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}


def find_trtexec() -> str | None:
    """Path of `trtexec`: on PATH, or where JetPack installs it; None when absent."""
    found = shutil.which("trtexec")
    if found:
        return found
    return JETPACK_TRTEXEC if os.access(JETPACK_TRTEXEC, os.X_OK) else None


def trtexec_command(trtexec: str, onnx: Path, times: Path, input_shape: Sequence[int],
                    profile: HardwareProfile) -> list[str]:
    """The `trtexec` invocation that builds and times the engine as the profile says;
    `input_shape` is one example's (without the batch dimension)."""
    m = profile.measure
    shape = "x".join(str(d) for d in (profile.batch_size, *input_shape))
    return [trtexec, f"--onnx={onnx}", f"--shapes=input:{shape}",
            *PRECISION_FLAGS[profile.precision],
            f"--warmUp={max(int(m.warmup_s * 1000), 200)}", "--duration=0",
            f"--iterations={m.repeats * m.number}", "--useSpinWait", "--noDataTransfers",
            f"--exportTimes={times}"]


def block_times(records: Sequence[dict], number: int) -> list[float]:
    """Per-block mean GPU compute time (ms) of `trtexec --exportTimes` records, in order."""
    key = "computeMs" if records and "computeMs" in records[0] else "latencyMs"
    samples = [float(r[key]) for r in records]
    return [sum(samples[i:i + number]) / number
            for i in range(0, len(samples) - number + 1, number)]


def trtexec_blocks(model: nn.Module, example: torch.Tensor,
                   profile: HardwareProfile) -> tuple[list[float], str]:
    """Build and time `model` with trtexec; returns block times (ms) and the device name."""
    trtexec = find_trtexec()
    if trtexec is None:
        raise RuntimeError("hardware.backend=tensorrt needs TensorRT's trtexec on PATH or at "
                           f"{JETPACK_TRTEXEC} on the node that measures")
    x = timing_input(example, profile.batch_size)
    input_shape = tuple(example.shape[1:])
    with tempfile.TemporaryDirectory() as folder:
        onnx, times = Path(folder) / "model.onnx", Path(folder) / "times.json"
        with known_deprecations(), onnx_static_batch():
            torch.onnx.export(MainOutput(model.float()).eval(), (x,), str(onnx), dynamo=False,
                              input_names=["input"], output_names=["logits"])
        proc = subprocess.run(trtexec_command(trtexec, onnx, times, input_shape, profile),
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 or not times.is_file():
            errors = [line for line in (proc.stdout + proc.stderr).splitlines()
                      if "[E]" in line or "rror" in line]
            raise RuntimeError(f"trtexec failed ({proc.returncode}): "
                               f"{(errors or ['no timings written'])[-1].strip()[:300]}")
        records = json.loads(times.read_text())
    blocks = block_times(records, profile.measure.number)
    if len(blocks) < 3:
        raise RuntimeError(f"trtexec wrote {len(records)} timings; expected "
                           f"{profile.measure.repeats * profile.measure.number}")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "GPU"
    return blocks, f"{device} (TensorRT via trtexec, {profile.precision})"
