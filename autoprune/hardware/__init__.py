"""Latency on a hardware profile: real measurement, or a roofline model of the device."""

from autoprune.hardware.latency import Latency, LatencyBackend, architecture_key
from autoprune.hardware.measure import MeasuredLatency, measure_latency
from autoprune.hardware.predictor import PredictedLatency, predict_latency

__all__ = [
    "Latency",
    "LatencyBackend",
    "MeasuredLatency",
    "PredictedLatency",
    "architecture_key",
    "measure_latency",
    "predict_latency",
]
