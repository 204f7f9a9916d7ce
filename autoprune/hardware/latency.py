"""What a latency backend returns, and the key under which identical architectures share one."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class Latency:
    """One model's latency at the profile's batch size, in milliseconds.

    `source` is "measured" or "predicted"; a predicted figure is never reported as measured.
    For measurements, `p90_ms` and `cv` (robust coefficient of variation of the timed blocks)
    give the spread; for predictions both describe the model, not noise (p90 = median, cv 0),
    and `uncertainty`, where known, is the log-scale standard deviation of the prediction
    (0: not estimated).
    """

    median_ms: float
    p90_ms: float
    cv: float
    source: str
    device: str
    uncertainty: float = 0.0

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


class LatencyBackend(Protocol):
    """Gives the latency of a model on one hardware profile."""

    source: str

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        """Return the latency of float `model` (in eval mode) at the profile's batch size.

        Identical architectures may be answered from a cache; `refresh` measures again and
        keeps the faster of the new and the cached measurement. With `int8_calibration`
        inputs, the int8 version of `model` is timed: a measurement quantises it where it
        measures (quantised modules do not travel between processes), a prediction uses the
        profile's int8 peak.
        """
        ...


def settled_latency(backend: LatencyBackend, model: nn.Module, attempts: int = 5,
                    gain: float = 0.02, int8_calibration: torch.Tensor | None = None) -> Latency:
    """A reference latency (every speedup divides by it): measured again, a second apart,
    until a measurement is no longer more than `gain` faster than the best so far (at most
    `attempts` measurements).

    A burst of other work (Ray starting, a previous study's processes exiting) can slow a whole
    measurement evenly, which its spread does not reveal, and it can last a few seconds;
    interference only adds time, so the fastest is kept (`refresh` keeps the faster).
    Predictions are returned as they are. `int8_calibration` times the int8 version.
    """
    best = backend.latency(model, int8_calibration=int8_calibration)
    if best.source != "measured":
        return best
    for _ in range(attempts - 1):
        time.sleep(1.0)
        again = backend.latency(model, refresh=True, int8_calibration=int8_calibration)
        improved = again.median_ms < (1.0 - gain) * best.median_ms
        best = min(best, again, key=lambda latency: latency.median_ms)
        if not improved:
            break
    return best


def timing_input(example: Any, batch_size: int, random: bool = True) -> Any:
    """Model inputs of `batch_size` examples shaped like `example` (one example's inputs):
    floating tensors filled with seeded normal values (or zeros), integer tensors (token ids)
    the example repeated; tuples and dicts of tensors alike."""
    if isinstance(example, Mapping):
        return {k: timing_input(v, batch_size, random) for k, v in example.items()}
    if isinstance(example, (tuple, list)):
        return type(example)(timing_input(v, batch_size, random) for v in example)
    if not isinstance(example, torch.Tensor):
        return example
    shape = (batch_size, *example.shape[1:])
    if not example.is_floating_point():
        return example[:1].expand(shape).clone()
    if not random:
        return torch.zeros(shape, dtype=example.dtype)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(example.dtype)


def input_signature(example: Any) -> str:
    """Shapes and dtypes of one example's inputs (part of a timing's cache key)."""
    if isinstance(example, Mapping):
        return "{" + ",".join(f"{k}:{input_signature(v)}" for k, v in example.items()) + "}"
    if isinstance(example, (tuple, list)):
        return "(" + ",".join(input_signature(v) for v in example) + ")"
    if isinstance(example, torch.Tensor):
        return f"{tuple(example.shape[1:])}:{example.dtype}"
    return repr(example)


def cast_inputs(inputs: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """`inputs` on `device`, floating tensors in `dtype` (integer ones kept as they are)."""
    if isinstance(inputs, Mapping):
        return {k: cast_inputs(v, device, dtype) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(cast_inputs(v, device, dtype) for v in inputs)
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, dtype=dtype if inputs.is_floating_point() else inputs.dtype)
    return inputs


def architecture_key(model: nn.Module, *extra: object) -> str:
    """Hash of module types, settings and tensor shapes: equal for models that run the same
    kernels (a gated layer's settings include how many channels it runs)."""
    parts = [f"{name}:{type(m).__name__}:{m.extra_repr()}" for name, m in model.named_modules()]
    parts += [f"{name}:{tuple(t.shape)}" for name, t in model.state_dict().items()]
    parts += [repr(e) for e in extra]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
