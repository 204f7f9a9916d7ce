"""The deprecated PyTorch paths this package still takes, and the notices they print.

- ONNX files come from the TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`):
  the `torch.export`-based one needs `onnxscript`, which is not a dependency;
- `model.torchscript.pt` comes from `torch.jit.trace`: it is what runtimes without Python
  (LibTorch, Triton's PyTorch backend) load; the front models logged to MLflow are
  `torch.export` graphs as well;
- int8 models come from `torch.ao.quantization`'s FX mode, the only int8 path of PyTorch
  itself that runs on the CPU without another package (torchao).

Around those calls, and only there, `known_deprecations()` silences their deprecation notices
and the tracer's notes on Python values it records as constants; every other warning shows.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def known_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        # torch.ao's own deprecation notices come as UserWarnings ("... will be deprecated",
        # "... are deprecated and will be removed").
        warnings.filterwarnings("ignore", message=r"(?s).*deprecated", category=UserWarning)
        yield
