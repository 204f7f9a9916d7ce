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
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import ray
import torch
from torch import nn

from autoprune.config import HardwareProfile
from autoprune.errors import TrialFailed
from autoprune.hardware.latency import Latency
from autoprune.hardware.measure import keep_faster, measure_latency, timed_model, timing_key


@ray.remote(num_cpus=0)
class CoreGate:
    """Readers-writer lock: many trainers, or one measurement, never both.

    Holders are named, so that a holder which died cannot block the others for ever: the
    driver drops a failed trial's holds (`drop`), and a restarted bench starts a new
    generation (`new_bench`), which voids whatever its earlier incarnation held or waited for.
    """

    def __init__(self) -> None:
        self._trainers: dict[str, int] = {}
        self._dropped: set[str] = set()
        self._measuring = False
        self._pending = 0
        self._generation = 0
        self._changed = asyncio.Condition()

    async def enter_train(self, owner: str = "") -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._measuring and self._pending == 0)
            if owner not in self._dropped:
                self._trainers[owner] = self._trainers.get(owner, 0) + 1

    async def exit_train(self, owner: str = "") -> None:
        async with self._changed:
            if self._trainers.get(owner, 0) > 0:
                self._trainers[owner] -= 1
            self._changed.notify_all()

    async def drop(self, owner: str) -> None:
        """`owner` (a trial whose worker died) holds nothing from now on."""
        async with self._changed:
            self._dropped.add(owner)
            self._trainers.pop(owner, None)
            self._changed.notify_all()

    async def new_bench(self) -> int:
        """A bench (re)started: release what an earlier one held; returns its generation."""
        async with self._changed:
            self._generation += 1
            self._measuring = False
            self._changed.notify_all()
            return self._generation

    async def enter_measure(self, generation: int = 0) -> bool:
        """Wait until no trainer holds the gate, then hold it; False for a stale bench."""
        async with self._changed:
            self._pending += 1
            try:
                await self._changed.wait_for(
                    lambda: generation < self._generation
                    or (not any(self._trainers.values()) and not self._measuring))
            finally:
                self._pending -= 1
                self._changed.notify_all()
            if generation < self._generation:
                return False
            self._measuring = True
            return True

    async def exit_measure(self, generation: int = 0) -> None:
        async with self._changed:
            if generation == self._generation:
                self._measuring = False
            self._changed.notify_all()


class TrainingGuard:
    """Callable guard for `autoprune.training`: holds the gate shared around a training step.

    `owner` names the holder (the trial) so the driver can release it if its worker dies.
    """

    def __init__(self, gate: Any, owner: str = "") -> None:
        self.gate = gate
        self.owner = owner

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        ray.get(self.gate.enter_train.remote(self.owner))
        try:
            yield
        finally:
            ray.get(self.gate.exit_train.remote(self.owner))


@ray.remote(num_cpus=0, max_concurrency=1)
class Bench:
    """Measures latency on the node it runs on; identical architectures once."""

    def __init__(self, profile: HardwareProfile, example: Any, gate: str | None) -> None:
        self.profile = profile
        self.example = example
        # The gate by name: an actor handle among the arguments would keep a restarted bench
        # from finding its arguments again.
        self.gate = ray.get_actor(gate) if gate is not None else None
        # A restarted bench (the previous one hung or died) voids what that one held.
        self.generation = ray.get(self.gate.new_bench.remote()) if self.gate is not None else 0
        self.cache: dict[str, Latency] = {}
        self.measured = 0

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        return os.getpid()

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        key = timing_key(model, self.profile, self.example, int8_calibration is not None)
        if key in self.cache and not refresh:
            return self.cache[key]
        model = timed_model(model, int8_calibration)
        if self.gate is not None and not ray.get(
                self.gate.enter_measure.remote(self.generation)):
            raise RuntimeError("this bench was replaced by a restarted one")
        try:
            result = measure_latency(model, self.example, self.profile)
        finally:
            if self.gate is not None:
                ray.get(self.gate.exit_measure.remote(self.generation))
        self.measured += 1
        return keep_faster(self.cache, key, result)

    def stats(self) -> dict[str, int]:
        return {"measured": self.measured, "cached": len(self.cache)}


class BenchUnavailable(TrialFailed):
    """The latency bench did not answer after every attempt: the device hung, died or left."""


class BenchLatency:
    """Latency backend that asks the shared bench actor: each attempt bounded by `timeout_s`,
    at most `attempts` of them.

    The bench is created with restarts and task retries allowed: one that does not answer in
    time is restarted, and runs the call again; one that crashed is restarted by Ray. A
    measurement that raised is asked again. When every attempt failed, or the bench cannot be
    restarted, BenchUnavailable says why.
    """

    source = "measured"

    def __init__(self, bench: Any, timeout_s: float = 300.0, attempts: int = 3) -> None:
        self.bench = bench
        self.timeout_s = timeout_s
        self.attempts = attempts

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        reasons: list[str] = []
        call = self.bench.latency.remote(model, refresh, int8_calibration)
        for attempt in range(self.attempts):
            try:
                return ray.get(call, timeout=self.timeout_s)
            except ray.exceptions.GetTimeoutError:
                reasons.append(f"no answer within {self.timeout_s:g} s")
                # Restarted, the bench runs the call again (it retries its tasks).
                with contextlib.suppress(Exception):
                    ray.kill(self.bench, no_restart=False)
            except ray.exceptions.RayActorError as exc:  # it cannot be restarted
                reasons.append(_death(exc))
                break
            except ray.exceptions.RayTaskError as exc:  # the measurement itself failed
                reasons.append(_first_line(exc.cause if exc.cause is not None else exc))
                time.sleep(min(2.0 ** attempt, 10.0))
                call = self.bench.latency.remote(model, refresh, int8_calibration)
        tried = "; ".join(dict.fromkeys(reasons))
        raise BenchUnavailable(f"latency bench gave up after {len(reasons)} attempt(s): {tried}")


def _death(exc: ray.exceptions.RayActorError) -> str:
    """Why the bench actor is gone, in a few words: its own error when its start failed."""
    errors = [line.strip() for line in str(exc).splitlines()
              if re.match(r"^\s*\w+(Error|Exception): ", line)]
    return f"the bench failed to start: {errors[-1][:200]}" if errors else \
        "the bench process died"


def _first_line(exc: BaseException) -> str:
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
