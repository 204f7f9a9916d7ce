"""Ray actors for latency measurement that other trials cannot disturb.

`CoreGate` is a readers-writer lock over this node's cores: training steps hold it shared,
a measurement holds it exclusively (and new training waits while one is pending). `Bench`
measures one model at a time, on the driver's node or on the node that advertises the
profile's custom resource (a Jetson that joined the cluster). Both are created by the driver:
actors created inside a Tune trial would be captured into that trial's placement group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import ray
import torch
from torch import nn

from autoprune.config import HardwareProfile
from autoprune.hardware.latency import Latency
from autoprune.hardware.measure import measure_latency, timed_model, timing_key


@ray.remote(num_cpus=0)
class CoreGate:
    """Readers-writer lock: many trainers, or one measurement, never both."""

    def __init__(self) -> None:
        self._trainers = 0
        self._measuring = False
        self._pending = 0
        self._changed = asyncio.Condition()

    async def enter_train(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._measuring and self._pending == 0)
            self._trainers += 1

    async def exit_train(self) -> None:
        async with self._changed:
            self._trainers -= 1
            self._changed.notify_all()

    async def enter_measure(self) -> None:
        async with self._changed:
            self._pending += 1
            await self._changed.wait_for(lambda: self._trainers == 0 and not self._measuring)
            self._pending -= 1
            self._measuring = True

    async def exit_measure(self) -> None:
        async with self._changed:
            self._measuring = False
            self._changed.notify_all()


class TrainingGuard:
    """Callable guard for `autoprune.training`: holds the gate shared around a training step."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        ray.get(self.gate.enter_train.remote())
        try:
            yield
        finally:
            ray.get(self.gate.exit_train.remote())


@ray.remote(num_cpus=0, max_concurrency=1)
class Bench:
    """Measures latency on the node it runs on; identical architectures once."""

    def __init__(self, profile: HardwareProfile, input_shape: Sequence[int],
                 gate: Any | None) -> None:
        self.profile = profile
        self.input_shape = tuple(input_shape)
        self.gate = gate
        self.cache: dict[str, Latency] = {}
        self.measured = 0

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        key = timing_key(model, self.profile, self.input_shape, int8_calibration is not None)
        if key in self.cache and not refresh:
            return self.cache[key]
        model = timed_model(model, int8_calibration)
        if self.gate is not None:
            ray.get(self.gate.enter_measure.remote())
        try:
            result = measure_latency(model, self.input_shape, self.profile)
        finally:
            if self.gate is not None:
                ray.get(self.gate.exit_measure.remote())
        if key in self.cache:  # measured again: interference only adds time, keep the faster
            result = min(result, self.cache[key], key=lambda lat: lat.median_ms)
        self.cache[key] = result
        self.measured += 1
        return result

    def stats(self) -> dict[str, int]:
        return {"measured": self.measured, "cached": len(self.cache)}


class BenchLatency:
    """Latency backend that asks the shared bench actor, with a timeout."""

    source = "measured"

    def __init__(self, bench: Any, timeout_s: float = 300.0) -> None:
        self.bench = bench
        self.timeout_s = timeout_s

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        return ray.get(self.bench.latency.remote(model, refresh, int8_calibration),
                       timeout=self.timeout_s)
