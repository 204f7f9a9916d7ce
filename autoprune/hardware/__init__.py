"""Latency on a hardware profile: real measurement, or a roofline model of the device.

The names below load on first use: the gate's actor (`autoprune.hardware.gate`) imports this
package, and should not pay for torch.
"""

from importlib import import_module
from typing import Any

_HOMES = {
    "Latency": "latency", "LatencyBackend": "latency", "architecture_key": "latency",
    "MeasuredLatency": "measure", "measure_latency": "measure",
    "PredictedLatency": "predictor", "predict_latency": "predictor",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
