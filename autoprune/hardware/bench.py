"""Ray actors for latency measurement that other trials cannot disturb.

`Bench` measures one model at a time on the driver's node, holding that node's core gate
(`autoprune.hardware.gate`) while it does; a node that advertises the profile's custom resource
(a Jetson that joined the cluster) runs the slim `DeviceBench` instead, which gets exported
files (`autoprune.hardware.device_bench`). Both are created by the driver: actors created
inside a Tune trial would be captured into that trial's placement group. `BenchLatency` and
`DeviceBenchLatency` are the trials' side of them.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from typing import Any

import ray
import torch
from torch import nn

from autoprune.config import HardwareProfile
from autoprune.errors import TrialFailed
from autoprune.hardware.latency import Latency
from autoprune.hardware.measure import measure_latency, timed_model, timing_key
from autoprune.hardware.timing import keep_faster


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
        return self.ask(lambda: self.bench.latency.remote(model, refresh, int8_calibration))

    def ask(self, submit: Callable[[], Any]) -> Any:
        """The answer to the call `submit()` makes, asked again as the class says."""
        reasons: list[str] = []
        call = submit()
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
                call = submit()
        tried = "; ".join(dict.fromkeys(reasons))
        raise BenchUnavailable(f"latency bench gave up after {len(reasons)} attempt(s): {tried}")


class DeviceBenchLatency(BenchLatency):
    """Latency backend that asks a slim device bench (`autoprune.hardware.device_bench`): the
    model is exported here, where the trial runs, and the device gets the file; an
    architecture the bench has timed is answered from its cache without exporting."""

    def __init__(self, bench: Any, profile: HardwareProfile, example: Any) -> None:
        super().__init__(bench, profile.measure.timeout_s, profile.measure.attempts)
        self.profile = profile
        self.example = example

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        from autoprune.hardware.exported import export_job

        if int8_calibration is not None:
            raise TrialFailed("PyTorch's int8 modules do not export to a device bench; time "
                              "int8 there with hardware.backend=tensorrt "
                              "hardware.precision=int8")
        key = timing_key(model, self.profile, self.example, False)
        found = None if refresh else self.ask(lambda: self.bench.cached.remote(key))
        if found is None:
            try:
                job = ray.put(export_job(model, self.example, self.profile))
            except RuntimeError as exc:
                raise TrialFailed(str(exc)) from exc
            found = self.ask(lambda: self.bench.latency.remote(key, job, refresh))
        return Latency(median_ms=found["median_ms"], p90_ms=found["p90_ms"], cv=found["cv"],
                       source="measured", device=found["device"])


def _death(exc: ray.exceptions.RayActorError) -> str:
    """Why the bench actor is gone, in a few words: its own error when its start failed."""
    errors = [line.strip() for line in str(exc).splitlines()
              if re.match(r"^\s*\w+(Error|Exception): ", line)]
    return f"the bench failed to start: {errors[-1][:200]}" if errors else \
        "the bench process died"


def _first_line(exc: BaseException) -> str:
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
