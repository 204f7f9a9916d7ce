"""Where a study's latencies come from: a bench actor on the device, or the latency model."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import ray

from autoprune.config import HardwareProfile
from autoprune.errors import StudyFailed, UserError
from autoprune.hardware.bench import Bench, BenchLatency
from autoprune.hardware.gate import CoreGate
from autoprune.hardware.latency import LatencyBackend
from autoprune.hardware.predictor import PredictedLatency


@dataclass
class LatencyPlan:
    """Where a study's latencies come from."""

    source: str  # "measured" or "predicted"
    where: str
    bench: Any = None
    gate: Any = None
    node: str = ""  # Ray node id of the bench, when measured

    def backend(self, profile: HardwareProfile, example: Any) -> LatencyBackend:
        if self.bench is not None:
            return BenchLatency(self.bench, profile.measure.timeout_s, profile.measure.attempts)
        return PredictedLatency(profile, example)


def plan_latency(profile: HardwareProfile, example: Any) -> LatencyPlan:
    """Create the bench (and core gate) the profile needs, or choose the latency model.

    Measured on this machine, a gate pauses every trial's training here (CPU or GPU) while
    the bench measures, so a measurement never shares its cores or GPU with training."""
    resource = profile.ray_resource
    available = ray.cluster_resources().get(resource, 0) if resource else 0
    if profile.mode == "predict" or (profile.mode == "auto" and available < 1):
        why = f"no Ray node advertises the resource '{resource}'" if resource else "mode=predict"
        return LatencyPlan("predicted", f"latency model of {profile.description} ({why})")
    if resource:
        if available < 1:
            raise UserError(f"hardware={profile.name} measures on a Ray node with resource "
                            f"'{resource}', and the cluster has none")
        # Restarted if it dies (a crashed driver library); a hung one is restarted by its
        # callers (BenchLatency).
        bench = Bench.options(resources={resource: 1}, max_restarts=-1,
                              max_task_retries=-1).remote(profile, example, None)
        node = _bench_node(bench, profile)
        return LatencyPlan("measured", f"Ray node {node[:12]} advertising '{resource}'", bench,
                           node=node)
    pin = here()
    gate_name = f"autoprune-core-gate-{os.getpid()}-{time.time_ns()}"
    gate = CoreGate.options(scheduling_strategy=pin, name=gate_name).remote()
    bench = Bench.options(scheduling_strategy=pin, max_restarts=-1,
                          max_task_retries=-1).remote(profile, example, gate_name)
    return LatencyPlan("measured", f"this machine ({profile.description}, "
                                   f"{profile.threads} thread(s), training paused meanwhile)",
                       bench, gate, node=_bench_node(bench, profile))


def _bench_node(bench: Any, profile: HardwareProfile) -> str:
    """The Ray node the bench started on; StudyFailed when it does not start in time."""
    try:
        return ray.get(bench.node_id.remote(), timeout=profile.measure.timeout_s)
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
        raise StudyFailed(f"the latency bench for hardware={profile.name} did not start within "
                          f"{profile.measure.timeout_s:g} s ({type(exc).__name__}); check the "
                          "device's Ray node") from exc


def here() -> Any:
    """A scheduling strategy that pins an actor to the driver's node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(),
                                          soft=False)
