"""The slim device bench: times exported models on the node that advertises a device.

What runs on a Jetson (or any node a profile's `ray_resource` names). It receives an exported
file (`autoprune.hardware.exported`), never a pickled module, and imports only Ray, NumPy and
what its backend needs: ONNX Runtime, TensorRT's `trtexec`, or PyTorch for `torch.export`
programs. So a device needs `pip install "autoprune[bench]"` (and JetPack's PyTorch for the
torch backend), not Hydra, MLflow, Optuna or the user's model code.

A job is {format: "onnx" | "pt2", model: bytes, inputs: {name: ndarray}}; settings are
`exported.bench_settings(profile)`; a result is {median_ms, p90_ms, cv, device}.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Mapping
from typing import Any

import ray

from autoprune.hardware.device_state import device_state, jetpack, nvidia_smi
from autoprune.hardware.timing import keep_faster, summary, time_blocks


def _nothing() -> None:
    return None


def onnx_runner(model: bytes, inputs: Mapping[str, Any],
                settings: Mapping[str, Any]) -> tuple[Callable[[], object], str]:
    """One batch through ONNX Runtime (fp32; its CUDA provider on a CUDA profile where this
    build has it), and the device's name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings["threads"]
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if settings["device"].startswith("cuda") and \
            "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(model, options, providers=providers)
    feed = dict(inputs)
    where = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    return (lambda: session.run(None, feed)), f"{where} (onnxruntime {ort.__version__}, fp32)"


def program_runner(model: bytes, inputs: Mapping[str, Any], settings: Mapping[str, Any]
                   ) -> tuple[Callable[[], object], str, Callable[[], object]]:
    """One batch through a `torch.export` program on the profile's device, as the backend runs
    it (eager, compiled, or a CUDA graph): (run, device's name, synchronise)."""
    import torch
    from torch.export.passes import move_to_device_pass

    device = torch.device(settings["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"hardware={settings['name']} measures on CUDA, which this node lacks")
    program = torch.export.load(io.BytesIO(model))
    if device.type != "cpu":
        program = move_to_device_pass(program, device)
    from autoprune.hardware.compiled import compiled, replayed, timing_dtype

    backend = settings["backend"]
    module = compiled(program.module(), backend, device)
    dtype = timing_dtype(settings["precision"], device)
    args = [torch.from_numpy(a).to(device, dtype=dtype if a.dtype.kind == "f" else None)
            for a in inputs.values()]
    run = replayed(lambda: module(*args), backend, device)
    suffix = "" if backend == "torch" else f" ({backend})"
    if device.type == "cuda":
        return run, torch.cuda.get_device_name(device) + suffix, torch.cuda.synchronize
    return run, "cpu" + suffix, _nothing


@functools.cache
def _gpu_name() -> str:
    return nvidia_smi().get("gpu") or jetpack().get("board") or "GPU"


def time_job(job: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Time one exported model as `settings` say: {median_ms, p90_ms, cv, device}."""
    backend, inputs = settings["backend"], job["inputs"]
    if backend == "tensorrt":
        from autoprune.hardware.trtexec import onnx_blocks

        blocks, version = onnx_blocks(job["model"], {n: a.shape for n, a in inputs.items()},
                                      settings)
        trt = f"TensorRT {version}" if version else "TensorRT"
        return {**summary(blocks),
                "device": f"{_gpu_name()} ({trt} via trtexec, {settings['precision']})"}
    if job["format"] == "onnx":
        run, name = onnx_runner(job["model"], inputs, settings)
        return {**summary(time_blocks(run, _nothing, settings["measure"])), "device": name}
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(settings["threads"])
    try:
        # Loaded, compiled or captured, and run without autograd.
        with torch.inference_mode():
            run, name, sync = program_runner(job["model"], inputs, settings)
            blocks = time_blocks(run, sync, settings["measure"])
    finally:
        torch.set_num_threads(threads)
    return {**summary(blocks), "device": name}


@ray.remote(num_cpus=0, max_concurrency=1)
class DeviceBench:
    """Times exported models on the node it runs on; each architecture (by the driver's key)
    once, unless asked to refresh (then the faster of the two is kept)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.cache: dict[str, dict[str, Any]] = {}
        self.measured = 0

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        return os.getpid()

    def state(self) -> dict[str, str]:
        return device_state()

    def cached(self, key: str) -> dict[str, Any] | None:
        return self.cache.get(key)

    def latency(self, key: str, job: Mapping[str, Any], refresh: bool = False
                ) -> dict[str, Any]:
        if key in self.cache and not refresh:
            return self.cache[key]
        result = time_job(job, self.settings)
        self.measured += 1
        return keep_faster(self.cache, key, result, median=lambda r: r["median_ms"])

    def stats(self) -> dict[str, int]:
        return {"measured": self.measured, "cached": len(self.cache)}
