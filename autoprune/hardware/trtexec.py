"""NVIDIA's `trtexec` timing an ONNX file: the TensorRT backend's measurement, no torch needed.

`trtexec` ships with TensorRT (on JetPack at /usr/src/tensorrt/bin/trtexec). It builds an engine
in the profile's precision and times it the way NVIDIA's best-practices guide does: CUDA graphs
(`--useCudaGraph`, no launch overhead between kernels), GPU compute time only
(`--noDataTransfers`: the model, not PCIe copies), warm-up by duration. With `--exportTimes` it
writes every inference's timings, from which the same statistics as the other backends are
computed: `repeats` blocks of `number` inferences, median block, p90, robust CV.

`settings` is the bench's plain description of a profile (`autoprune.hardware.exported`):
batch_size, precision and the `measure` fields.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoprune.hardware.timing import quietest

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
PRECISION_FLAGS = {"fp32": [], "fp16": ["--fp16"], "bf16": ["--bf16"],
                   "int8": ["--int8", "--fp16"]}


def find_trtexec() -> str | None:
    """Path of `trtexec`: on PATH, or where JetPack installs it; None when absent."""
    found = shutil.which("trtexec")
    if found:
        return found
    return JETPACK_TRTEXEC if os.access(JETPACK_TRTEXEC, os.X_OK) else None


def trtexec_command(trtexec: str, onnx: Path, times: Path,
                    shapes: Mapping[str, Sequence[int]], settings: Mapping[str, Any]) -> list[str]:
    """The `trtexec` invocation that builds and times the engine as `settings` say; `shapes`
    are the inputs' full shapes (batch included), by input name."""
    m = settings["measure"]
    shape = ",".join(f"{name}:{'x'.join(str(d) for d in dims)}" for name, dims in shapes.items())
    return [trtexec, f"--onnx={onnx}", f"--shapes={shape}",
            *PRECISION_FLAGS[settings["precision"]],
            f"--warmUp={max(int(m['warmup_s'] * 1000), 200)}", "--duration=0",
            f"--iterations={m['repeats'] * m['number']}", "--useCudaGraph", "--useSpinWait",
            "--noDataTransfers", f"--exportTimes={times}"]


def block_times(records: Sequence[dict], number: int) -> list[float]:
    """Per-block mean GPU compute time (ms) of `trtexec --exportTimes` records, in order."""
    key = "computeMs" if records and "computeMs" in records[0] else "latencyMs"
    samples = [float(r[key]) for r in records]
    return [sum(samples[i:i + number]) / number
            for i in range(0, len(samples) - number + 1, number)]


def onnx_blocks(onnx: bytes, shapes: Mapping[str, Sequence[int]],
                settings: Mapping[str, Any]) -> tuple[list[float], str]:
    """Block times (ms) of an ONNX model built and timed by trtexec, and the TensorRT version
    it reported; a run whose spread is too wide is repeated, the fastest kept."""
    trtexec = find_trtexec()
    if trtexec is None:
        raise RuntimeError("hardware.backend=tensorrt needs TensorRT's trtexec on PATH or at "
                           f"{JETPACK_TRTEXEC} on the node that measures")
    m, versions = settings["measure"], []
    with tempfile.TemporaryDirectory() as folder:
        path, times = Path(folder) / "model.onnx", Path(folder) / "times.json"
        path.write_bytes(onnx)

        def attempt() -> list[float]:
            proc = subprocess.run(trtexec_command(trtexec, path, times, shapes, settings),
                                  capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0 or not times.is_file():
                errors = [line for line in (proc.stdout + proc.stderr).splitlines()
                          if "[E]" in line or "rror" in line]
                raise RuntimeError(f"trtexec failed ({proc.returncode}): "
                                   f"{(errors or ['no timings written'])[-1].strip()[:300]}")
            versions.append(tensorrt_version(proc.stdout))
            records = json.loads(times.read_text())
            times.unlink()
            blocks = block_times(records, m["number"])
            if len(blocks) < 3:
                raise RuntimeError(f"trtexec wrote {len(records)} timings; expected "
                                   f"{m['repeats'] * m['number']}")
            return blocks

        blocks = quietest(attempt, m["retries"], m["max_cv"])
    return blocks, versions[-1]


def tensorrt_version(output: str) -> str:
    """TensorRT's version from trtexec's banner (`[TensorRT v8602]` is 8.6.2); "" if absent."""
    found = re.search(r"\[TensorRT v(\d+)\]", output)
    if not found:
        return ""
    n = int(found.group(1))
    # TensorRT 8 encodes major*1000 + minor*100 + patch (v8602: 8.6.2), TensorRT 10
    # major*10000 + minor*100 + patch (v100300: 10.3.0).
    major, minor = (n // 10000, n // 100 % 100) if n >= 100000 else (n // 1000, n // 100 % 10)
    return f"{major}.{minor}.{n % 100}"
