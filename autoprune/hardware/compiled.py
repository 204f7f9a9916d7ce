"""Compiled timing: the model run as a deployment runs it, not op by op from Python.

Eager PyTorch launches every kernel from Python, so on a GPU at small batch a model's time is
mostly launch overhead, and pruning that removes work saves little of it. A deployment runs
compiled, where pruning pays differently, so the backends below time that instead:

- `compile`: `torch.compile` (TorchInductor: fused Triton or C++ kernels); on CUDA in its
  `reduce-overhead` mode, which also replays the kernels as CUDA graphs.
- `cudagraphs`: the eager kernels captured once into a CUDA graph and replayed: no Python and
  no launch gaps, but no fusion (CUDA only).

Imports torch only (no autoprune config): the device bench uses it for `torch.export` programs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

HALVES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def timing_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a model is timed in: the profile's half precision on CUDA, fp32 elsewhere
    (a CPU has no fast fp16 kernels; int8 is a quantised model, timed from fp32 inputs)."""
    return HALVES.get(precision, torch.float32) if device.type == "cuda" else torch.float32


def compiled(module: torch.nn.Module, backend: str, device: torch.device) -> torch.nn.Module:
    """`module` as `backend` runs it: compiled by `torch.compile` for `compile`, as it is
    otherwise. The first calls compile it (seconds to minutes); a measurement's warm-up
    absorbs them."""
    if backend != "compile":
        return module
    return torch.compile(module, mode="reduce-overhead" if device.type == "cuda" else "default",
                         dynamic=False)


def replayed(run: Callable[[], object], backend: str,
             device: torch.device) -> Callable[[], object]:
    """`run` as `backend` runs it: captured once into a CUDA graph and replayed for
    `cudagraphs` (after three warm-up calls on a side stream, as PyTorch's CUDA graph
    documentation prescribes), as it is otherwise."""
    if backend != "cudagraphs":
        return run
    if device.type != "cuda":
        raise RuntimeError("hardware.backend=cudagraphs captures CUDA graphs and needs a CUDA "
                           "device")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    return graph.replay
